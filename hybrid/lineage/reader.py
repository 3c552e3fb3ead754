"""Read a run's lineage: records, the parent->child graph, genomes.

The store is opened read-only, so reading a run that is still going (or was killed)
is safe: SQLite's WAL lets a reader see the last committed generation while the
search writes the next one. The parent->child graph (a ``networkx.DiGraph`` over
every genome id) is built once, on first use, from the ``id/generation/parents``
columns only; records and structures are read on demand.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from genomes import ACTIVATIONS, GATE_KINDS

from ..errors import HybridError, RunDirError
from ..rundir import RunDir, open_run_dir
from .records import GenerationRecord, GenomeRecord, Operator, Structure
from .store import SCHEMA_VERSION, STATUSES

if TYPE_CHECKING:
    from genomes import Genome

__all__ = ["Lineage", "LineageError", "open"]

_RECORD_COLUMNS = (
    "id, generation, parents, operators, species, status, train_loss, val_loss, val_metric, "
    "active_params, flops, n_parameters, weights IS NOT NULL AS has_weights"
)
_ROLES = ("input", "hidden", "output", "exit")


class LineageError(HybridError):
    """A lineage query names a genome or generation the run does not have."""


class _Column:
    """Checks of one stored value; errors name the file, table, column and row."""

    def __init__(self, path: Path, table: str, key: str) -> None:
        self.where = f"{path}: {table} {key}"

    def bad(self, column: str, expected: str, got: Any) -> RunDirError:
        shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
        return RunDirError(f"{self.where}, column {column}: expected {expected}, got {shown}")

    def int(self, column: str, v: Any, optional: bool = False) -> int | None:
        if v is None and optional:
            return None
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.bad(column, "an integer" + (" or NULL" if optional else ""), v)
        return v

    def float(self, column: str, v: Any, optional: bool = True) -> float | None:
        if v is None and optional:
            return None
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            raise self.bad(column, "a finite number" + (" or NULL" if optional else ""), v)
        return float(v)

    def json(self, column: str, v: Any, kind: type, expected: str) -> Any:
        if not isinstance(v, str):
            raise self.bad(column, expected, v)
        try:
            data = json.loads(v)
        except ValueError:
            raise self.bad(column, expected, v) from None
        if not isinstance(data, kind):
            raise self.bad(column, expected, v)
        return data


def _record(row: sqlite3.Row, path: Path) -> GenomeRecord:
    c = _Column(path, "genome", f"{row['id']!r}")
    parents = c.json("parents", row["parents"], list, "a JSON list of genome ids")
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in parents):
        raise c.bad("parents", "a JSON list of genome ids", row["parents"])
    ops = c.json("operators", row["operators"], list, "a JSON list of operators")
    if not all(isinstance(o, dict) and isinstance(o.get("op"), str) and isinstance(o.get("args", {}), dict | None)
               for o in ops):
        raise c.bad("operators", 'a JSON list of {"op": name, "args": {...}}', row["operators"])
    status = row["status"]
    if status not in STATUSES:
        raise c.bad("status", f"one of {', '.join(STATUSES)}", status)
    return GenomeRecord(
        id=c.int("id", row["id"]),
        generation=c.int("generation", row["generation"]),
        parents=tuple(parents),
        operators=tuple(Operator.from_dict(o) for o in ops),
        species=c.int("species", row["species"], optional=True),
        status=status,
        train_loss=c.float("train_loss", row["train_loss"]),
        val_loss=c.float("val_loss", row["val_loss"]),
        val_metric=c.float("val_metric", row["val_metric"]),
        active_params=c.int("active_params", row["active_params"], optional=True),
        flops=c.int("flops", row["flops"], optional=True),
        n_parameters=c.int("n_parameters", row["n_parameters"], optional=True),
        has_weights=bool(row["has_weights"]),
    )


def _structure(text: Any, c: _Column) -> Structure:
    expected = "a JSON structure (nodes with id/role/width/activation, edges with src/dst/...)"
    d = c.json("structure", text, dict, expected)
    try:
        s = Structure.from_json(text)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise c.bad("structure", expected, text) from None
    for n in s.nodes:
        if n.role not in _ROLES or n.activation not in ACTIVATIONS or n.width < 1:
            raise c.bad("structure", f"nodes with a role in {_ROLES}, a known activation and width >= 1", d)
    return s


def _generation(row: sqlite3.Row, path: Path) -> GenerationRecord:
    c = _Column(path, "generation", f"{row['generation']!r}")
    return GenerationRecord(
        generation=c.int("generation", row["generation"]),
        champion=c.int("champion", row["champion"]),
        best_metric=c.float("best_metric", row["best_metric"]),
        mean_metric=c.float("mean_metric", row["mean_metric"]),
        n_species=c.int("n_species", row["n_species"]),
        threshold=c.float("threshold", row["threshold"], optional=False),
        elapsed_s=c.float("elapsed_s", row["elapsed_s"], optional=False),
        stats=c.json("stats", row["stats"], dict, "a JSON object"),
    )


def _open_checked(target: str | Path, uri: bool, path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(target, uri=uri)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute("SELECT id, generation, parents FROM genomes LIMIT 1")
        conn.execute("SELECT generation, champion FROM generations LIMIT 1")
    except sqlite3.Error:
        conn.close()
        raise
    if version != SCHEMA_VERSION:
        conn.close()
        raise RunDirError(
            f"{path}: lineage store schema version {version}, but this hybrid reads version {SCHEMA_VERSION}"
        )
    conn.row_factory = sqlite3.Row
    return conn


def _connect(path: Path) -> sqlite3.Connection:
    """Open the database read-only; fall back to a normal open after a crash.

    A read-only connection cannot replay a WAL left by a killed writer when the
    shared-memory file is gone; a normal connection recovers it (reading only).

    Raises:
        RunDirError: the file is not a lineage store.
    """
    try:
        return _open_checked(f"{path.resolve().as_uri()}?mode=ro", uri=True, path=path)
    except sqlite3.Error:
        pass
    try:
        return _open_checked(path, uri=False, path=path)
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
        self.path = path
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
            meta = {}
            for key, value in self.conn.execute("SELECT key, value FROM meta"):
                c = _Column(self.path, "meta", repr(key))
                try:
                    meta[key] = json.loads(value)
                except (TypeError, ValueError):
                    raise c.bad("value", "a JSON value", value) from None
            expect = {"gate": (str, f"one of {GATE_KINDS}"), "seed": (int, "an integer"), "task": (str, "a string")}
            for key, (kind, what) in expect.items():
                v = meta.get(key)
                ok = v is None or (isinstance(v, kind) and not isinstance(v, bool))
                if not ok or (key == "gate" and v is not None and v not in GATE_KINDS):
                    raise _Column(self.path, "meta", repr(key)).bad("value", what, v)
            self._meta = meta
        return self._meta

    @property
    def gate(self) -> str:
        """The run's gate kind (``sigmoid`` or ``hard_concrete``)."""
        return str(self.meta.get("gate", "sigmoid"))

    @property
    def metric_name(self) -> str:
        """The validation metric's registry name (``task.metric``), or ``metric`` if unknown."""
        try:
            return str(self.run.load_config().task.metric or "metric")
        except Exception:  # noqa: BLE001 - a report of a damaged run still shows its numbers
            kind = self.run.read_task().kind if self.run.task_path.exists() else None
            return {"classification": "accuracy"}.get(kind, "metric")

    @property
    def metric_sign(self) -> float:
        """+1, or -1 for a lower-is-better metric: ``val_metric`` (a fitness) times it is the real value."""
        from ..metrics import METRICS

        spec = METRICS.get(self.metric_name)
        return -1.0 if spec is not None and not spec.greater_is_better else 1.0

    @property
    def graph(self) -> nx.DiGraph:
        """Every genome id, with an edge parent -> child (``rank`` 0 = first parent).

        Nodes carry ``generation``; built on first use, then kept.
        """
        if self._graph is None:
            g = nx.DiGraph()
            rows = self.conn.execute("SELECT id, generation, parents FROM genomes").fetchall()
            links = {}
            for row in rows:
                c = _Column(self.path, "genome", repr(row["id"]))
                gid = c.int("id", row["id"])
                g.add_node(gid, generation=c.int("generation", row["generation"]))
                links[gid] = c.json("parents", row["parents"], list, "a JSON list of genome ids")
            g.add_edges_from(
                (p, i, {"rank": k}) for i, ps in links.items() for k, p in enumerate(ps) if p in g
            )
            self._graph = g
        return self._graph

    def generations(self) -> list[GenerationRecord]:
        """Return every recorded generation's summary, oldest first."""
        rows = self.conn.execute(
            "SELECT generation, champion, best_metric, mean_metric, n_species, threshold, elapsed_s, stats "
            "FROM generations ORDER BY generation"
        ).fetchall()
        return [_generation(r, self.path) for r in rows]

    # ------------------------------------------------------------------ records
    def record(self, genome_id: int) -> GenomeRecord:
        """Return one genome's record.

        Raises:
            LineageError: no genome with that id in this run.
        """
        row = self.conn.execute(f"SELECT {_RECORD_COLUMNS} FROM genomes WHERE id = ?", (int(genome_id),)).fetchone()
        if row is None:
            raise LineageError(f"{self.run.path}: no genome {genome_id} in the lineage ({self._id_range()})")
        return _record(row, self.path)

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
        return sorted((_record(r, self.path) for r in rows), key=lambda r: r.id)

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
        out = {
            r["id"]: _structure(r["structure"], _Column(self.path, "genome", repr(r["id"])))
            for r in self._where_ids("id, structure", want)
        }
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
        from genomes import GenomeError, from_dict

        row = self.conn.execute("SELECT generation, weights FROM genomes WHERE id = ?", (int(genome_id),)).fetchone()
        if row is None:
            raise LineageError(f"{self.run.path}: no genome {genome_id} in the lineage ({self._id_range()})")
        if row["weights"] is None:
            raise LineageError(
                f"genome {genome_id} (generation {row['generation']}): only its structure is stored; weights are "
                f"kept for each generation's champion and the latest generation"
            )
        c = _Column(self.path, "genome", str(int(genome_id)))
        data = c.json("weights", row["weights"], dict, "a genome as JSON")
        try:
            genome = from_dict(data)
        except GenomeError as exc:
            raise c.bad("weights", f"a valid genome ({exc})", "...") from None
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
        return self.record(row["champion"])

    def best(self) -> GenomeRecord:
        """Return the run's champion.

        That is ``best/metrics.json``'s genome when the run finished, else the
        champion so far (the latest generation's ``champion_id``).

        Raises:
            LineageError: no generation is recorded yet.
        """
        finished = self.run.read_best_metrics()
        if finished is not None:
            return self.record(finished.genome_id)
        row = self.conn.execute("SELECT * FROM generations ORDER BY generation DESC LIMIT 1").fetchone()
        if row is None:
            raise LineageError(f"{self.run.path}: no generation recorded yet")
        last = _generation(row, self.path)
        champion = last.stats.get("champion_id", last.champion)
        if not isinstance(champion, int) or isinstance(champion, bool):
            raise _Column(self.path, "generation", str(last.generation)).bad(
                "stats", "champion_id to be a genome id", champion
            )
        return self.record(champion)

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

    def _where_ids(self, columns: str, ids: Iterable[int]) -> list[sqlite3.Row]:
        want = sorted({int(i) for i in ids})
        rows: list[sqlite3.Row] = []
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
