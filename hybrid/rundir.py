"""Run directories: every path in a run folder, its writer lock, and typed readers.

A run folder is self-describing (see ``docs/design.md``, "A run on disk")::

    runs/<name>/
      config.toml      resolved config, every key written out
      task.json        the task's facts (kind, sizes, standardisation, class labels)
      stats.jsonl      one JSON object per completed generation ({"generation": g, ...})
      checkpoints/     gen_000012/ ... (hybrid.checkpoint)
      best/            genome.json and metrics.json of the champion (when finished)
      lineage.sqlite   the lineage store (hybrid.lineage)
      report.html      written by ``hybrid report``
      exports/         ``hybrid export`` of genomes other than the champion
      .lock            held (``flock``) by the one process writing the run

No other module spells these names: they ask a :class:`RunDir`.

Writers (``run``, ``resume``) hold an exclusive ``flock`` on ``.lock`` for as long
as they run; the OS drops it when the process dies, so a killed run never leaves
a stale lock. Readers (``status``, ``lineage``, ``show``, ``report``, ``export``)
never take it. A folder is created whole or not at all: it is built under a
temporary name next to its final place and renamed into place.

Everything read back is validated: a bad file is a :class:`~hybrid.errors.RunDirError`
whose one line names the file, the key and what was expected. Paths are confined:
an entry of the folder that resolves outside it (a symlink) is refused.

``stats.jsonl`` is appended line by line with an fsync after each line; a line cut
short by a crash is ignored when reading and dropped by the next append. On resume
call :meth:`RunDir.truncate_stats` with the generation of the checkpoint resumed
from, so that the log and the checkpoint agree.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from genomes.serialize import atomic_write

from .errors import HybridError, RunDirError

if TYPE_CHECKING:
    from genomes import Genome

    from .config import Config

__all__ = [
    "BEST_DIR",
    "BEST_GENOME_FILE",
    "BEST_METRICS_FILE",
    "CHECKPOINTS_DIR",
    "CONFIG_FILE",
    "EXPORTS_DIR",
    "LINEAGE_FILE",
    "LOCK_FILE",
    "REPORT_FILE",
    "STATS_FILE",
    "TASK_FILE",
    "BestMetrics",
    "RunDir",
    "StatsRecord",
    "TaskInfo",
    "create_run_dir",
    "dumps_json",
    "open_run_dir",
    "output_path",
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

#: Entries of a run folder that must stay inside it (checked on open).
_CONFINED = (
    CONFIG_FILE, TASK_FILE, STATS_FILE, CHECKPOINTS_DIR, BEST_DIR, LINEAGE_FILE,
    f"{LINEAGE_FILE}-wal", f"{LINEAGE_FILE}-shm", REPORT_FILE, EXPORTS_DIR, LOCK_FILE,
    f"{BEST_DIR}/{BEST_GENOME_FILE}", f"{BEST_DIR}/{BEST_METRICS_FILE}",
)
#: What an interrupted creation by an older hybrid could leave (no config.toml yet).
_CREATION_LEFTOVERS = {CHECKPOINTS_DIR, BEST_DIR, LOCK_FILE}


# --------------------------------------------------------------------- JSON
def _finite(value: Any, where: str, replaced: dict[str, str]) -> Any:
    """Return ``value`` with every NaN/inf float replaced by None (noted in ``replaced``)."""
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()  # numpy scalars and arrays
    if isinstance(value, float) and not math.isfinite(value):
        replaced[where or "."] = repr(value)
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v, f"{where}.{k}" if where else str(k), replaced) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v, f"{where}[{i}]", replaced) for i, v in enumerate(value)]
    return value


def dumps_json(obj: Mapping[str, Any], *, indent: int | None = 1) -> str:
    """Return ``obj`` as strict JSON: NaN and inf become ``null``, and say why.

    Every replaced value is listed under the key ``"not_finite"`` (dotted key ->
    ``'nan'``/``'inf'``/``'-inf'``), so a reader can tell a missing number from one
    that was not finite. numpy scalars and arrays are written as numbers and lists.

    With ``indent=None`` the text is one compact line (``stats.jsonl``).

    >>> dumps_json({"loss": float("nan"), "n": 3}, indent=None)
    '{"loss":null,"n":3,"not_finite":{"loss":"nan"}}'
    """
    replaced: dict[str, str] = {}
    clean = _finite(dict(obj), "", replaced)
    if replaced:
        clean["not_finite"] = replaced
    compact = (",", ":") if indent is None else None
    return json.dumps(clean, indent=indent, separators=compact, allow_nan=False)


def _first_error(path: Path, exc: ValidationError) -> RunDirError:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "missing":
        return RunDirError(f"{path}: key {key!r} is missing")
    got = err.get("input")
    shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
    return RunDirError(f"{path}: key {key!r}: {err['msg'].lower()}, got {shown}")


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except ValueError as exc:
        raise RunDirError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: should hold a JSON object, got {type(data).__name__}")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"holds {name}, which is not JSON (expected a number or null)")


# ------------------------------------------------------------------- models
class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")


class TaskInfo(_Model):
    """What ``task.json`` holds (written from ``Task.info()``)."""

    name: str
    kind: Literal["classification", "regression"]
    n_inputs: int
    n_outputs: int
    feature_mean: list[float]
    feature_std: list[float]
    class_labels: list[str | int | float]
    source: str = ""

    @field_validator("n_inputs", "n_outputs")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("should be >= 1")
        return v

    @field_validator("feature_mean", "feature_std", "class_labels")
    @classmethod
    def _all_finite(cls, v: list[Any]) -> list[Any]:
        if any(isinstance(x, float) and not math.isfinite(x) for x in v):
            raise ValueError("should hold finite values only (no NaN or inf)")
        return v

    def check(self, path: Path) -> TaskInfo:
        """Check the lengths against the sizes; return self."""
        for key in ("feature_mean", "feature_std"):
            if len(getattr(self, key)) != self.n_inputs:
                raise RunDirError(f"{path}: key {key!r} should have n_inputs = {self.n_inputs} entries")
        if any(s <= 0 for s in self.feature_std):
            raise RunDirError(f"{path}: key 'feature_std' should hold positive values")
        want = self.n_outputs if self.kind == "classification" else 0
        if len(self.class_labels) != want:
            raise RunDirError(f"{path}: key 'class_labels' should have {want} entries for a {self.kind} task")
        return self


class BestMetrics(_Model):
    """What ``best/metrics.json`` holds (written when a search finishes)."""

    genome_id: int
    generation: int
    val_metric: float | None
    val_loss: float | None
    test_metric: float | None
    test_loss: float | None
    metric: Literal["accuracy", "neg_mse"]
    active_parameters: int
    flops: int
    generations: int
    stop_reason: str
    elapsed_s: float
    not_finite: dict[str, str] = {}


class StatsRecord(_Model):
    """The keys of a ``stats.jsonl`` line that readers (``hybrid status``) rely on."""

    generation: int
    best_metric: float | None
    mean_metric: float | None
    n_species: int
    champion_id: int
    champion_metric: float | None
    champion_active_params: int


# -------------------------------------------------------------------- lock
class _Lock:
    """An exclusive ``flock`` on a run folder's lock file, held until :meth:`release`."""

    def __init__(self, path: Path, run: Path) -> None:
        try:
            f: IO[str] = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
        except OSError as exc:
            raise RunDirError(f"{path}: cannot open the lock file ({exc.strerror})") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RunDirError(
                f"{run}: in use by another hybrid process (pid {holder}); wait for it to end or stop it"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file: IO[str] | None = f

    def release(self) -> None:
        """Drop the lock (closing the file drops the flock)."""
        if self._file is not None:
            self._file.close()
            self._file = None


# ------------------------------------------------------------------ RunDir
@dataclass(frozen=True)
class RunDir:
    """A run folder and the paths inside it.

    ``os.fspath(run_dir)`` is the folder, so a ``RunDir`` goes wherever a path does.
    A writer's ``RunDir`` (from :func:`create_run_dir` or ``open_run_dir(...,
    writer=True)``) holds the folder's lock until :meth:`close` or process exit.
    """

    path: Path
    _lock: _Lock | None = field(default=None, compare=False, repr=False)

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

        Raises:
            ConfigError: naming ``config.toml`` if it is malformed.
        """
        from .config import load_config

        return load_config(self.config_path)

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
            try:
                rec = json.loads(line, parse_constant=_no_constant)
            except json.JSONDecodeError as exc:
                raise RunDirError(f"{where} is not valid JSON ({exc.msg})") from None
            except ValueError as exc:
                raise RunDirError(f"{where} {exc}") from None
            if not isinstance(rec, dict):
                raise RunDirError(f"{where} is not a JSON object")
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


def _is_run_dir(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file()


def _is_unfinished_creation(path: Path) -> bool:
    """Whether ``path`` holds only what an interrupted creation leaves (empty subfolders)."""
    for p in path.iterdir():
        if p.name not in _CREATION_LEFTOVERS or p.is_symlink():
            return False
        if p.is_dir() and any(p.iterdir()):
            return False
    return True


def _remove_stale_builds(runs: Path, name: str) -> None:
    """Delete ``.name.*.tmp`` folders that a killed creation left (their lock is free)."""
    for p in runs.glob(f".{name}.*.build"):
        if p.is_dir() and not p.is_symlink():
            try:
                _Lock(p / LOCK_FILE, p).release()
            except RunDirError:
                continue  # another process is building it right now
            shutil.rmtree(p, ignore_errors=True)


def create_run_dir(
    runs_dir: str | os.PathLike[str],
    name: str,
    config: Config,
    overwrite: bool = False,
    task: Mapping[str, Any] | None = None,
) -> RunDir:
    """Create ``runs_dir/name`` whole (config, task, subfolders) and lock it for writing.

    The folder is built as ``runs_dir/.name.XXXX.build`` and renamed into place, so
    a kill at any moment leaves either no run folder or a complete one.

    Args:
        runs_dir: folder holding run folders (created if missing).
        name: the run's folder name.
        config: written to ``config.toml`` with every key spelled out.
        overwrite: replace an existing run folder of that name (refused while a
            process is writing it).
        task: the task's facts (``Task.info()``) for ``task.json``.

    Returns:
        The new :class:`RunDir`, holding the writer lock.

    Raises:
        RunDirError: the folder exists (and ``overwrite`` is False), or it exists,
            is not empty and is not a run folder (never deleted), or it is in use by
            another process, or it cannot be made.
    """
    from .config import dump_config

    runs = Path(runs_dir)
    path = runs / name
    old_lock: _Lock | None = None
    if path.exists() or path.is_symlink():
        if path.is_symlink() or not path.is_dir():
            raise RunDirError(f"{path}: exists and is not a run folder; refusing to use or overwrite it")
        if _is_run_dir(path):
            if not overwrite:
                raise RunDirError(
                    f"{path}: run folder exists; continue it with `hybrid resume {path}` or start afresh "
                    "with --overwrite"
                )
            old_lock = _Lock(path / LOCK_FILE, path)  # refuses a live run
        elif not _is_unfinished_creation(path):
            raise RunDirError(f"{path}: exists and is not a run folder; refusing to use or overwrite it")
    try:
        runs.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(runs, name)
        build = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".build", dir=runs))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(build, 0o777 & ~umask)  # mkdtemp makes 0700; give the folder the usual mode
    except OSError as exc:
        if old_lock is not None:
            old_lock.release()
        raise RunDirError(f"{path}: cannot create run folder ({exc.strerror or exc})") from None
    try:
        lock = _Lock(build / LOCK_FILE, path)
        (build / CHECKPOINTS_DIR).mkdir()
        (build / BEST_DIR).mkdir()
        staged = RunDir(build)
        if task is not None:
            staged.write_task(task)
        atomic_write(staged.config_path, dump_config(config))
        if path.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".build", dir=runs))
            os.replace(path, trash / "old")
            os.replace(build, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(build, path)
    except OSError as exc:
        shutil.rmtree(build, ignore_errors=True)
        raise RunDirError(f"{path}: cannot create run folder ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    finally:
        if old_lock is not None:
            old_lock.release()
    return RunDir(path, lock)


def open_run_dir(path: str | os.PathLike[str], *, writer: bool = False) -> RunDir:
    """Open an existing run folder (to read, or with ``writer=True`` to continue it).

    Args:
        path: the run folder (as printed by ``hybrid run``).
        writer: take the folder's exclusive lock (``resume``) and clean temp files
            a killed writer left. Readers never lock and never block.

    Raises:
        RunDirError: the folder does not exist, holds no ``config.toml``, has an
            entry leading outside it, or (``writer``) another process writes it.
    """
    p = Path(path)
    if not p.is_dir():
        raise RunDirError(f"{p}: no such run folder")
    if not _is_run_dir(p):
        if any(p.iterdir()) and _is_unfinished_creation(p):
            raise RunDirError(
                f"{p}: its creation was interrupted before {CONFIG_FILE} was written; "
                "start it again with `hybrid run` (it may be replaced)"
            )
        raise RunDirError(f"{p}: not a run folder (no {CONFIG_FILE}); expected a folder made by `hybrid run`")
    run = RunDir(p)
    run.check_confined()
    if not writer:
        return run
    lock = _Lock(run.lock_path, p)
    run = RunDir(p, lock)
    run.remove_stale_temp_files()
    return run


def output_path(path: str | os.PathLike[str], flag: str) -> Path:
    """Check a user-given output file: its folder exists and it is not a folder.

    Raises:
        HybridError: naming ``flag``, the path and what is wrong.
    """
    p = Path(path)
    parent = p.parent
    if p.is_dir():
        raise HybridError(f"{flag} {p}: is a folder; expected a file name")
    if not parent.exists():
        raise HybridError(f"{flag} {p}: folder {parent} does not exist")
    if not parent.is_dir():
        raise HybridError(f"{flag} {p}: {parent} is not a folder")
    return p
