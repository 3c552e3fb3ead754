"""Read a run's lineage: records, the parent->child graph, genomes.

The store is opened read-only, so reading a run that is still going (or was killed)
is safe: SQLite's WAL lets a reader see the last committed generation while the
search writes the next one. The parent->child graph (a ``networkx.DiGraph`` over
every genome id) is built once, on first use, from the ``id/generation/parents``
columns only; records and structures are read on demand.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from ..errors import HybridError, RunDirError
from ..rundir import RunDir, open_run_dir
from .records import GenerationRecord, GenomeRecord, Operator, Structure

if TYPE_CHECKING:
    from genomes import Genome

__all__ = ["Lineage", "LineageError", "open"]

_RECORD_COLUMNS = (
    "id, generation, parents, operators, species, status, train_loss, val_loss, val_metric, "
    "active_params, flops, n_parameters, weights IS NOT NULL"
)


class LineageError(HybridError):
    """A lineage query names a genome or generation the run does not have."""


def _record(row: Sequence[Any]) -> GenomeRecord:
    return GenomeRecord(
        id=row[0],
        generation=row[1],
        parents=tuple(json.loads(row[2])),
        operators=tuple(Operator.from_dict(o) for o in json.loads(row[3])),
        species=row[4],
        status=row[5],
        train_loss=row[6],
        val_loss=row[7],
        val_metric=row[8],
        active_params=row[9],
        flops=row[10],
        n_parameters=row[11],
        has_weights=bool(row[12]),
    )


def _open_checked(target: str | Path, uri: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(target, uri=uri)
    try:
        conn.execute("SELECT id, generation, parents FROM genomes LIMIT 1")
        conn.execute("SELECT generation, champion FROM generations LIMIT 1")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _connect(path: Path) -> sqlite3.Connection:
    """Open the database read-only; fall back to a normal open after a crash.

    A read-only connection cannot replay a WAL left by a killed writer when the
    shared-memory file is gone; a normal connection recovers it (reading only).

    Raises:
        RunDirError: the file is not a lineage store.
    """
    try:
        return _open_checked(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        pass
    try:
        return _open_checked(path, uri=False)
    except sqlite3.Error as exc:
        raise RunDirError(f"{path}: not a readable lineage store ({exc})") from None


class Lineage:
    """A read-only view of one run's lineage store (see :func:`open`).

    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, run: RunDir) -> None:
        self.run = run
        path = run.lineage_path
        if not path.is_file():
            raise RunDirError(f"{run.path}: no {path.name} yet (the run has not completed a generation)")
        self.conn = _connect(path)
        self._graph: nx.DiGraph | None = None
        self._meta: dict[str, Any] | None = None

    def __enter__(self) -> Lineage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection."""
        self.conn.close()

    # -------------------------------------------------------------- run facts
    @property
    def meta(self) -> dict[str, Any]:
        """Run-level facts the search stored (seed, task, gate kind)."""
        if self._meta is None:
            self._meta = {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}
        return self._meta

    @property
    def gate(self) -> str:
        """The run's gate kind (``sigmoid`` or ``hard_concrete``)."""
        return str(self.meta.get("gate", "sigmoid"))

    @property
    def metric_name(self) -> str:
        """The validation metric's name: ``accuracy``, ``-MSE``, or ``metric`` if unknown."""
        try:
            kind = json.loads((self.run.path / "task.json").read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            kind = None
        return {"classification": "accuracy", "regression": "-MSE"}.get(kind, "metric")

    @property
    def graph(self) -> nx.DiGraph:
        """Every genome id, with an edge parent -> child (``rank`` 0 = first parent).

        Nodes carry ``generation``; built on first use, then kept.
        """
        if self._graph is None:
            g = nx.DiGraph()
            rows = self.conn.execute("SELECT id, generation, parents FROM genomes").fetchall()
            g.add_nodes_from((i, {"generation": gen}) for i, gen, _ in rows)
            g.add_edges_from(
                (p, i, {"rank": k}) for i, _, ps in rows for k, p in enumerate(json.loads(ps)) if p in g
            )
            self._graph = g
        return self._graph

    def generations(self) -> list[GenerationRecord]:
        """Return every recorded generation's summary, oldest first."""
        rows = self.conn.execute(
            "SELECT generation, champion, best_metric, mean_metric, n_species, threshold, elapsed_s, stats "
            "FROM generations ORDER BY generation"
        ).fetchall()
        return [GenerationRecord(*r[:7], stats=json.loads(r[7])) for r in rows]

    # ------------------------------------------------------------------ records
    def record(self, genome_id: int) -> GenomeRecord:
        """Return one genome's record.

        Raises:
            LineageError: no genome with that id in this run.
        """
        row = self.conn.execute(f"SELECT {_RECORD_COLUMNS} FROM genomes WHERE id = ?", (int(genome_id),)).fetchone()
        if row is None:
            raise LineageError(f"{self.run.path}: no genome {genome_id} in the lineage ({self._id_range()})")
        return _record(row)

    def records(self, ids: Iterable[int] | None = None, generation: int | None = None) -> list[GenomeRecord]:
        """Return records in id order: all of them, those in ``ids``, or one generation's.

        Args:
            ids: only these genomes; unknown ids are skipped (:meth:`record`
                raises for one).
            generation: only the genomes evaluated in this generation.

        Returns:
            Frozen :class:`GenomeRecord` objects, sorted by id.
        """
        if ids is not None:
            rows = self._where_ids(_RECORD_COLUMNS, ids)
        elif generation is not None:
            rows = self.conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM genomes WHERE generation = ?", (int(generation),)
            ).fetchall()
        else:
            rows = self.conn.execute(f"SELECT {_RECORD_COLUMNS} FROM genomes").fetchall()
        return [_record(r) for r in sorted(rows)]

    def structure(self, genome_id: int) -> Structure:
        """Return a genome's structure (stored for every genome).

        Raises:
            LineageError: unknown genome id.
        """
        return self.structures([genome_id])[int(genome_id)]

    def structures(self, ids: Iterable[int]) -> dict[int, Structure]:
        """Return the structures of ``ids`` (one query).

        Raises:
            LineageError: one of the ids is unknown.
        """
        want = sorted({int(i) for i in ids})
        out = {i: Structure.from_json(t) for i, t in self._where_ids("id, structure", want)}
        missing = [i for i in want if i not in out]
        if missing:
            raise LineageError(f"{self.run.path}: no genome {missing[0]} in the lineage ({self._id_range()})")
        return out

    def genome(self, genome_id: int) -> Genome:
        """Return a genome with its full weights.

        Raises:
            LineageError: unknown id, or only its structure is stored (weights are
                kept for each generation's champion and the latest generation).
        """
        from genomes import from_dict

        row = self.conn.execute("SELECT generation, weights FROM genomes WHERE id = ?", (int(genome_id),)).fetchone()
        if row is None:
            raise LineageError(f"{self.run.path}: no genome {genome_id} in the lineage ({self._id_range()})")
        if row[1] is None:
            raise LineageError(
                f"genome {genome_id} (generation {row[0]}): only its structure is stored; weights are kept "
                f"for each generation's champion and the latest generation"
            )
        genome = from_dict(json.loads(row[1]))
        genome.meta.setdefault("id", int(genome_id))
        return genome

    # ------------------------------------------------------------------- graph
    def ancestors(self, genome_id: int) -> frozenset[int]:
        """Return the ids of every ancestor (all parents, crossover included).

        Raises:
            LineageError: unknown genome id.
        """
        return frozenset(nx.ancestors(self.graph, self._known(genome_id)))

    def descendants(self, genome_id: int) -> frozenset[int]:
        """Return the ids of every descendant.

        Raises:
            LineageError: unknown genome id.
        """
        return frozenset(nx.descendants(self.graph, self._known(genome_id)))

    def path_to_root(self, genome_id: int, depth: int | None = None) -> list[GenomeRecord]:
        """Return the genome and its first-parent ancestors back to generation 0.

        Args:
            genome_id: where the path starts.
            depth: stop after this many parent steps (None: go to the root).

        Returns:
            Records from ``genome_id`` (first) to the root (last).

        Raises:
            LineageError: unknown genome id.
        """
        g = self.graph
        path = [self._known(genome_id)]
        while depth is None or len(path) <= depth:
            first = [p for p in g.predecessors(path[-1]) if g.edges[p, path[-1]]["rank"] == 0]
            if not first:
                break
            path.append(first[0])
        by_id = {r.id: r for r in self.records(ids=path)}
        return [by_id[i] for i in path]

    def champion(self, generation: int) -> GenomeRecord:
        """Return the best genome evaluated in ``generation``.

        Raises:
            LineageError: the generation is not recorded.
        """
        row = self.conn.execute("SELECT champion FROM generations WHERE generation = ?", (int(generation),)).fetchone()
        if row is None:
            last = self.conn.execute("SELECT MAX(generation) FROM generations").fetchone()[0]
            raise LineageError(
                f"{self.run.path}: generation {generation} is not recorded (generations 0..{last})"
            )
        return self.record(row[0])

    def best(self) -> GenomeRecord:
        """Return the run's champion.

        That is ``best/metrics.json``'s genome when the run finished, else the
        champion so far (the latest generation's ``champion_id``).

        Raises:
            LineageError: no generation is recorded yet.
        """
        metrics = self.run.best_dir / "metrics.json"
        if metrics.is_file():
            try:
                return self.record(int(json.loads(metrics.read_text())["genome_id"]))
            except (ValueError, KeyError, TypeError):
                pass  # a damaged file: fall back to the store
        row = self.conn.execute("SELECT champion, stats FROM generations ORDER BY generation DESC LIMIT 1").fetchone()
        if row is None:
            raise LineageError(f"{self.run.path}: no generation recorded yet")
        return self.record(int(json.loads(row[1]).get("champion_id", row[0])))

    def resolve(self, spec: str | int) -> int:
        """Turn a command-line genome argument (an id or ``best``) into an id.

        Raises:
            LineageError: neither an integer nor ``best``, or an unknown id.
        """
        if isinstance(spec, str) and spec.strip().lower() in ("best", "champion"):
            return self.best().id
        try:
            gid = int(spec)
        except ValueError:
            raise LineageError(f"genome should be an integer id or 'best', got {spec!r}") from None
        return self._known(gid)

    # ----------------------------------------------------------------- helpers
    def _known(self, genome_id: int) -> int:
        gid = int(genome_id)
        if gid not in self.graph:
            raise LineageError(f"{self.run.path}: no genome {gid} in the lineage ({self._id_range()})")
        return gid

    def _where_ids(self, columns: str, ids: Iterable[int]) -> list[tuple[Any, ...]]:
        want = sorted({int(i) for i in ids})
        rows: list[tuple[Any, ...]] = []
        for k in range(0, len(want), 500):  # SQLite caps the bound parameters of one query
            chunk = want[k : k + 500]
            marks = ",".join("?" * len(chunk))
            rows += self.conn.execute(f"SELECT {columns} FROM genomes WHERE id IN ({marks})", chunk).fetchall()
        return rows

    def _id_range(self) -> str:
        lo, hi, n = self.conn.execute("SELECT MIN(id), MAX(id), COUNT(*) FROM genomes").fetchone()
        return "it is empty" if n == 0 else f"ids {lo}..{hi}"


def open(run_dir: str | os.PathLike[str] | RunDir) -> Lineage:
    """Open a run directory's lineage store for reading.

    Args:
        run_dir: the run folder (or a :class:`~hybrid.rundir.RunDir`).

    Returns:
        A :class:`Lineage`; close it (or use ``with``) when done.

    Raises:
        RunDirError: not a run folder, or it has no lineage store yet.
    """
    run = run_dir if isinstance(run_dir, RunDir) else open_run_dir(run_dir)
    return Lineage(run)
