"""The lineage store: every genome ever evaluated in a run, in ``lineage.sqlite``.

SQLite in WAL mode; everything a generation adds is written in ONE transaction, so
a crash leaves either the whole generation or none of it. Rows are keyed by genome
id and written with ``INSERT OR REPLACE``, so a generation re-run after a resume
rewrites the same rows with the same values.

Tables:
    genomes(id, generation, parents, operators, species, status (ok | failed |
            pruned), metrics...,
            structure, weights)  -- ``structure`` for every genome (ids, widths,
            activations, edges; no arrays), ``weights`` (a full genome JSON) for each
            generation's champion and for the latest generation's members.
    generations(generation, champion, best_metric, mean_metric, n_species, ...)
    meta(key, value)

The schema's version is SQLite's ``user_version`` (:data:`SCHEMA_VERSION`); the
reader refuses a store of another version, naming both.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from genomes import Genome, to_dict

from ..errors import RunDirError

__all__ = [
    "GENOME_COLUMNS",
    "PRUNED",
    "SCHEMA_VERSION",
    "STATUSES",
    "GenerationRow",
    "GenomeRow",
    "LineageWriter",
    "structure_dict",
]

#: Version of the tables below, kept in ``PRAGMA user_version``. 1: named columns
#: and a recorded version (stores made before it read as version 0).
SCHEMA_VERSION = 1

#: Status of a member whose species was dropped for stagnation (it had no children).
PRUNED = "pruned"
#: Every status a genome row can have.
STATUSES = ("ok", "failed", PRUNED)

#: The ``genomes`` table's columns, in the order of :meth:`LineageWriter._row`.
GENOME_COLUMNS = (
    "id", "generation", "parents", "operators", "species", "status", "train_loss", "val_loss",
    "val_metric", "active_params", "flops", "n_parameters", "structure", "weights",
)
_GENERATION_COLUMNS = (
    "generation", "champion", "best_metric", "mean_metric", "n_species", "threshold", "elapsed_s", "stats",
)


def _insert(table: str, columns: Sequence[str]) -> str:
    names = ", ".join(columns)
    marks = ", ".join(f":{c}" for c in columns)
    return f"INSERT OR REPLACE INTO {table} ({names}) VALUES ({marks})"

SCHEMA = """
CREATE TABLE IF NOT EXISTS genomes (
    id INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL,
    parents TEXT NOT NULL,
    operators TEXT NOT NULL,
    species INTEGER,
    status TEXT NOT NULL,
    train_loss REAL,
    val_loss REAL,
    val_metric REAL,
    active_params INTEGER,
    flops INTEGER,
    n_parameters INTEGER,
    structure TEXT NOT NULL,
    weights TEXT
);
CREATE INDEX IF NOT EXISTS genomes_generation ON genomes(generation);
CREATE TABLE IF NOT EXISTS generations (
    generation INTEGER PRIMARY KEY,
    champion INTEGER NOT NULL,
    best_metric REAL,
    mean_metric REAL,
    n_species INTEGER,
    threshold REAL,
    elapsed_s REAL,
    stats TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def structure_dict(genome: Genome) -> dict[str, Any]:
    """Return the genome's structure without arrays (JSON-ready).

    A sparse edge (``mutation.sparsify``) adds ``connections``, its mask's count; dense
    edges have no such key, so stores of runs without sparse edges are unchanged.
    """
    g = genome.graph
    return {
        "nodes": [
            {"id": int(n), "role": a["role"], "width": int(a["width"]), "activation": a["activation"]}
            for n, a in sorted(g.nodes(data=True))
        ],
        "edges": [
            {
                "src": int(s),
                "dst": int(d),
                "innovation": int(a["innovation"]),
                "enabled": bool(a["enabled"]),
                "recurrent": bool(a["recurrent"]),
                **({"connections": int(a["mask"].sum())} if a.get("mask") is not None else {}),
            }
            for s, d, a in sorted(g.edges(data=True))
        ],
    }


@dataclass(frozen=True)
class GenomeRow:
    """One evaluated genome, as the search hands it to the store."""

    id: int
    generation: int
    parents: tuple[int, ...]
    operators: tuple[dict[str, Any], ...]
    species: int | None
    status: str
    train_loss: float | None
    val_loss: float | None
    val_metric: float | None
    active_params: int | None
    flops: int | None
    genome: Genome
    keep_weights: bool


@dataclass(frozen=True)
class GenerationRow:
    """One generation's summary."""

    generation: int
    champion: int
    best_metric: float
    mean_metric: float
    n_species: int
    threshold: float
    elapsed_s: float
    stats: dict[str, Any]


def _num(x: float | None) -> float | None:
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else float(x)


class LineageWriter:
    """Append generations to ``lineage.sqlite`` (the search's side of the store)."""

    def __init__(self, path: str | Path) -> None:
        """Open (or create) the store at ``path``.

        Raises:
            RunDirError: the file exists but is not a lineage store of this version.
        """
        self.path = Path(path)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None)
            if not fresh:
                found = self.conn.execute("PRAGMA user_version").fetchone()[0]
                if found != SCHEMA_VERSION:
                    self.conn.close()
                    raise RunDirError(
                        f"{self.path}: lineage store schema version {found}, but this hybrid writes "
                        f"version {SCHEMA_VERSION}; start a new run"
                    )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.executescript(SCHEMA)
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise RunDirError(f"{self.path}: not a lineage store ({exc})") from None

    def set_meta(self, items: dict[str, Any]) -> None:
        """Store run-level facts (JSON values)."""
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in items.items()],
            )

    def truncate_after(self, generation: int) -> None:
        """Forget everything recorded after ``generation`` (used on resume).

        Raises:
            RunDirError: ``generation >= 0`` is not in the store (a checkpoint of a
                generation whose lineage is gone: the store was emptied or replaced,
                and resuming would silently lose the history).
        """
        if generation >= 0:
            row = self.conn.execute("SELECT 1 FROM generations WHERE generation = ?", (generation,)).fetchone()
            if row is None:
                raise RunDirError(
                    f"{self.path}: holds no generation {generation}, but the run has a checkpoint of it "
                    "(the store was emptied or replaced); refusing to resume over lost history"
                )
        self.conn.execute("BEGIN")
        try:
            self.conn.execute("DELETE FROM genomes WHERE generation > ?", (generation,))
            self.conn.execute("DELETE FROM generations WHERE generation > ?", (generation,))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def write_generation(
        self, rows: Sequence[GenomeRow], summary: GenerationRow, pruned: Iterable[int] = ()
    ) -> None:
        """Write one generation in a single transaction.

        Full weights are kept for rows with ``keep_weights``; earlier generations
        keep theirs only for their champion.

        Args:
            rows: every member evaluated in the generation.
            summary: the generation's summary.
            pruned: ids of members whose species was dropped for stagnation; an
                ``ok`` row among them is stored with status ``pruned``.
        """
        gone = {int(i) for i in pruned}
        if gone:
            rows = [replace(r, status=PRUNED) if r.id in gone and r.status == "ok" else r for r in rows]
        self.conn.execute("BEGIN")
        try:
            self.conn.execute(
                "UPDATE genomes SET weights = NULL WHERE generation < ? AND weights IS NOT NULL "
                "AND id NOT IN (SELECT champion FROM generations)",
                (summary.generation,),
            )
            self.conn.executemany(_insert("genomes", GENOME_COLUMNS), [self._row(r) for r in rows])
            self.conn.execute(
                _insert("generations", _GENERATION_COLUMNS),
                {
                    "generation": summary.generation,
                    "champion": summary.champion,
                    "best_metric": _num(summary.best_metric),
                    "mean_metric": _num(summary.mean_metric),
                    "n_species": summary.n_species,
                    "threshold": summary.threshold,
                    "elapsed_s": summary.elapsed_s,
                    "stats": json.dumps(summary.stats),
                },
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _row(r: GenomeRow) -> dict[str, Any]:
        return {
            "id": r.id,
            "generation": r.generation,
            "parents": json.dumps(list(r.parents)),
            "operators": json.dumps(list(r.operators)),
            "species": r.species,
            "status": r.status,
            "train_loss": _num(r.train_loss),
            "val_loss": _num(r.val_loss),
            "val_metric": _num(r.val_metric),
            "active_params": r.active_params,
            "flops": r.flops,
            "n_parameters": r.genome.n_parameters(),
            "structure": json.dumps(structure_dict(r.genome)),
            "weights": json.dumps(to_dict(r.genome)) if r.keep_weights else None,
        }

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
