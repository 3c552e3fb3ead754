"""A run folder's paths, confinement, typed readers and writers."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from genomes.serialize import atomic_write

from ..errors import RunDirError
from ._json import _first_error, _loads_object, _read_json_object, dumps_json
from ._lock import Lock
from ._records import BestMetrics, StatsRecord, TaskInfo

if TYPE_CHECKING:
    from genomes import Genome

    from ..config import Config

__all__ = [
    "BEST_DIR",
    "BEST_GENOME_FILE",
    "BEST_METRICS_FILE",
    "CHECKPOINTS_DIR",
    "CONFIG_FILE",
    "DATA_STEM",
    "EXPORTS_DIR",
    "LINEAGE_FILE",
    "LOCK_FILE",
    "REPORT_FILE",
    "STATS_FILE",
    "TASK_FILE",
    "TENSORBOARD_DIR",
    "RunDir",
]

CONFIG_FILE = "config.toml"
TASK_FILE = "task.json"
STATS_FILE = "stats.jsonl"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
BEST_GENOME_FILE = "genome.json"
BEST_METRICS_FILE = "metrics.json"
LINEAGE_FILE = "lineage.sqlite"
REPORT_FILE = "report.html"
EXPORTS_DIR = "exports"
LOCK_FILE = ".lock"
TENSORBOARD_DIR = "tensorboard"
#: Data the array API (``hybrid.search``) keeps in the run folder: ``data.npz`` or ``data.csv``.
DATA_STEM = "data"
DATA_SUFFIXES = (".npz", ".csv")

#: Entries of a run folder that must stay inside it (checked on open).
_CONFINED = (
    CONFIG_FILE, TASK_FILE, STATS_FILE, CHECKPOINTS_DIR, BEST_DIR, LINEAGE_FILE,
    f"{LINEAGE_FILE}-wal", f"{LINEAGE_FILE}-shm", REPORT_FILE, EXPORTS_DIR, LOCK_FILE,
    f"{BEST_DIR}/{BEST_GENOME_FILE}", f"{BEST_DIR}/{BEST_METRICS_FILE}",
    *(DATA_STEM + suffix for suffix in DATA_SUFFIXES),
)
#: What an interrupted creation by an older hybrid could leave (no config.toml yet).
_CREATION_LEFTOVERS = {CHECKPOINTS_DIR, BEST_DIR, LOCK_FILE}


@dataclass(frozen=True)
class RunDir:
    """A run folder and the paths inside it.

    ``os.fspath(run_dir)`` is the folder, so a ``RunDir`` goes wherever a path does.
    A writer's ``RunDir`` (from :func:`create_run_dir` or ``open_run_dir(...,
    writer=True)``) holds the folder's lock until :meth:`close` or process exit.
    """

    path: Path
    _lock: Lock | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Absolute, so every path a property builds is absolute and `child` (which
        # joins onto the folder) never doubles a relative prefix ("runs/x/runs/x/...").
        object.__setattr__(self, "path", Path(self.path).absolute())

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def is_writer(self) -> bool:
        """Whether this handle holds the folder's writer lock."""
        return self._lock is not None and self._lock._file is not None

    def close(self) -> None:
        """Release the writer lock (a no-op for readers)."""
        if self._lock is not None:
            self._lock.release()

    # ------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        """The resolved ``config.toml``."""
        return self.path / CONFIG_FILE

    @property
    def task_path(self) -> Path:
        """The task's facts, ``task.json``."""
        return self.path / TASK_FILE

    @property
    def stats_path(self) -> Path:
        """The per-generation ``stats.jsonl``."""
        return self.path / STATS_FILE

    @property
    def checkpoints_dir(self) -> Path:
        """The ``checkpoints/`` folder (see :mod:`hybrid.checkpoint`)."""
        return self.path / CHECKPOINTS_DIR

    @property
    def best_dir(self) -> Path:
        """The ``best/`` folder: the champion's genome, metrics and default export."""
        return self.path / BEST_DIR

    @property
    def best_genome_path(self) -> Path:
        """``best/genome.json``: the champion, written when the search finishes."""
        return self.best_dir / BEST_GENOME_FILE

    @property
    def best_metrics_path(self) -> Path:
        """``best/metrics.json``: the champion's test score and the run's end."""
        return self.best_dir / BEST_METRICS_FILE

    @property
    def exports_dir(self) -> Path:
        """Where ``hybrid export`` writes genomes other than the champion."""
        return self.path / EXPORTS_DIR

    @property
    def lineage_path(self) -> Path:
        """The lineage store's database."""
        return self.path / LINEAGE_FILE

    @property
    def report_path(self) -> Path:
        """Where ``hybrid report`` writes ``report.html``."""
        return self.path / REPORT_FILE

    @staticmethod
    def data_name(suffix: str) -> str:
        """Return the file name of data kept in the run folder (``data.npz``, ``data.csv``).

        Raises:
            ValueError: for a suffix other than ``.npz`` or ``.csv``.
        """
        if suffix.lower() not in DATA_SUFFIXES:
            raise ValueError(f"data suffix should be one of {DATA_SUFFIXES}, got {suffix!r}")
        return DATA_STEM + suffix.lower()

    @property
    def tensorboard_dir(self) -> Path:
        """Where ``hybrid run --tensorboard`` logs by default (:mod:`hybrid.tracking`)."""
        return self.path / TENSORBOARD_DIR

    @property
    def lock_path(self) -> Path:
        """The writer lock file."""
        return self.path / LOCK_FILE

    def child(self, path: str | os.PathLike[str]) -> Path:
        """Return ``path`` (relative to the folder, or absolute) checked to lie inside it.

        Use it before deleting or writing anything found in the folder (checkpoint
        pruning): a symlink leading outside is refused.

        Raises:
            RunDirError: the resolved path is outside the run folder.
        """
        p = self.path / path
        root = self.path.resolve()
        real = p.resolve()
        if real != root and not real.is_relative_to(root):
            raise RunDirError(f"{p}: leads outside the run folder (to {real}); refusing to use it")
        return p

    def check_confined(self) -> None:
        """Refuse a folder whose known entries (``best``, ``checkpoints``, ...) lead outside it.

        Raises:
            RunDirError: naming the first such entry.
        """
        for name in _CONFINED:
            p = self.path / name
            if p.is_symlink() or p.exists():
                self.child(name)
        if self.checkpoints_dir.is_dir():
            for p in self.checkpoints_dir.iterdir():
                self.child(p)

    # ------------------------------------------------------------ readers
    def load_config(self) -> Config:
        """Read the run's resolved config.

        A regression run written before ``task.metric`` existed (no such key in its
        ``config.toml``) was ranked by negated MSE: it reads as ``metric = "mse"``, so
        resuming, ``status`` and the report go on with the metric it was run with.
        Likewise a run written before ``task.folds`` existed was ranked on its
        validation split: it reads as ``folds = "off"`` (not today's ``"auto"``).

        Raises:
            ConfigError: naming ``config.toml`` if it is malformed.
        """
        import tomllib

        from ..config import load_config

        config = load_config(self.config_path)
        task = tomllib.loads(self.config_path.read_text(encoding="utf-8")).get("task", {})
        legacy: dict[str, object] = {}
        if config.task.kind == "regression" and "metric" not in task:
            legacy["task.metric"] = "mse"
        if "folds" not in task:
            legacy["task.folds"] = "off"
        return load_config(self.config_path, legacy) if legacy else config

    def read_task(self) -> TaskInfo:
        """Read and check ``task.json``.

        Raises:
            RunDirError: missing, not JSON, or a key missing or of the wrong type.
        """
        path = self.task_path
        try:
            return TaskInfo.model_validate(_read_json_object(path)).check(path)
        except ValidationError as exc:
            raise _first_error(path, exc) from None

    def read_best_metrics(self) -> BestMetrics | None:
        """Read ``best/metrics.json``; None while the run is not finished.

        Raises:
            RunDirError: the file is not JSON or a key is missing or wrong.
        """
        path = self.best_metrics_path
        if not path.exists():
            return None
        try:
            return BestMetrics.model_validate(_read_json_object(path))
        except ValidationError as exc:
            raise _first_error(path, exc) from None

    def read_best_genome(self) -> Genome:
        """Read ``best/genome.json`` (its ``meta.id``, if any, must be an integer).

        Raises:
            RunDirError: missing, or not a valid genome.
        """
        from genomes import GenomeError, load

        path = self.best_genome_path
        if not path.is_file():
            raise RunDirError(f"{path}: missing (the run has not finished; export a genome id instead)")
        try:
            genome = load(path)
        except GenomeError as exc:
            raise RunDirError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None
        gid = genome.meta.get("id")
        if gid is not None and (not isinstance(gid, int) or isinstance(gid, bool)):
            shown = repr(gid) if len(repr(gid)) <= 40 else repr(gid)[:37] + "..."
            raise RunDirError(f"{path}: key 'meta.id' should be an integer genome id, got {shown}")
        return genome

    def read_stats(self, *, check: bool = False) -> list[dict[str, Any]]:
        """Return every complete stats record, oldest first.

        A last line without its newline (cut short by a crash) is ignored.

        Args:
            check: also check each line against :class:`StatsRecord` (the keys a
                reader relies on).

        Raises:
            RunDirError: a complete line that is not a JSON object with an int
                ``generation`` (or, with ``check``, lacks a key or has a wrong value).
        """
        try:
            text = self.stats_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise RunDirError(f"{self.stats_path}: cannot read ({exc})") from None
        lines = text.split("\n")
        records = []
        for n, line in enumerate(lines[:-1], start=1):  # lines[-1]: "" or a partial line
            where = f"{self.stats_path}: line {n}"
            rec = _loads_object(line, where)
            gen = rec.get("generation")
            if not isinstance(gen, int) or isinstance(gen, bool):
                raise RunDirError(f"{where}: key 'generation' should be an integer, got {gen!r}")
            if check:
                try:
                    StatsRecord.model_validate(rec)
                except ValidationError as exc:
                    raise RunDirError(str(_first_error(Path(where), exc))) from None
            records.append(rec)
        return records

    # ------------------------------------------------------------ writers
    def write_task(self, info: Mapping[str, Any]) -> None:
        """Write ``task.json`` (strict JSON) atomically."""
        atomic_write(self.task_path, dumps_json(info) + "\n")

    def write_best(self, genome: Genome, metrics: Mapping[str, Any]) -> None:
        """Write ``best/genome.json`` and ``best/metrics.json`` (NaN/inf as null, noted).

        Args:
            genome: the champion (its ``meta`` should carry its int ``id``).
            metrics: the keys of :class:`BestMetrics`.
        """
        from genomes import save

        self.child(BEST_DIR).mkdir(exist_ok=True)
        save(genome, self.child(f"{BEST_DIR}/{BEST_GENOME_FILE}"))
        atomic_write(self.child(f"{BEST_DIR}/{BEST_METRICS_FILE}"), dumps_json(metrics) + "\n")

    def append_stats(self, record: Mapping[str, Any]) -> None:
        """Append one generation's stats as a JSON line and fsync it.

        NaN and inf are written as ``null`` (see :func:`dumps_json`).

        Args:
            record: JSON-ready values (numpy scalars/arrays allowed) with an int
                ``"generation"``.

        Raises:
            ValueError: if ``record`` has no int ``"generation"``.
        """
        gen = record.get("generation")
        if not isinstance(gen, int) or isinstance(gen, bool):
            raise ValueError(f"stats record needs an int 'generation', got {gen!r}")
        line = dumps_json(record, indent=None) + "\n"
        with open(self.stats_path, "a+b") as f:
            _drop_partial_tail(f)
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())

    def truncate_stats(self, generation: int | None) -> None:
        """Keep only records of generations ``<= generation`` (atomically).

        Args:
            generation: the generation of the checkpoint resumed from; None drops
                every record (no checkpoint: the run starts over).
        """
        keep = [] if generation is None else [r for r in self.read_stats() if r["generation"] <= generation]
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in keep)
        atomic_write(self.stats_path, text)

    def remove_stale_temp_files(self) -> None:
        """Delete temp files an interrupted atomic write left (``.name.XXXX.tmp``)."""
        for folder in (self.path, self.best_dir):
            if folder.is_dir() and not folder.is_symlink():
                for p in folder.glob(".*.tmp"):
                    if p.is_file() and not p.is_symlink():
                        p.unlink(missing_ok=True)


def _drop_partial_tail(f: Any) -> None:
    """Cut a last line that has no newline (a crash mid-append) off an open file."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return
    f.seek(size - 1)
    if f.read(1) == b"\n":
        return
    f.seek(0)
    data = f.read()
    f.truncate(data.rfind(b"\n") + 1)
    f.seek(0, os.SEEK_END)


