"""Run directories: create, open, and keep the per-generation stats log.

A run folder is self-describing (see DESIGN.md, "A run on disk")::

    runs/<name>/
      config.toml      resolved config, every key written out
      stats.jsonl      one JSON object per completed generation ({"generation": g, ...})
      checkpoints/     gen_000012/ ... (hybrid.checkpoint)
      best/            the champion genome and its exported module
      lineage.sqlite   written by the lineage store (path: RunDir.lineage_path)
      report.html

``stats.jsonl`` is appended line by line with an fsync after each line; a line cut
short by a crash is ignored when reading and dropped by the next append. On resume
call :meth:`RunDir.truncate_stats` with the generation of the checkpoint resumed
from, so that the log and the checkpoint agree.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genomes.serialize import atomic_write

from .errors import RunDirError

if TYPE_CHECKING:
    from .config import Config

__all__ = [
    "BEST_DIR",
    "CHECKPOINTS_DIR",
    "CONFIG_FILE",
    "LINEAGE_FILE",
    "REPORT_FILE",
    "STATS_FILE",
    "RunDir",
    "create_run_dir",
    "open_run_dir",
]

CONFIG_FILE = "config.toml"
STATS_FILE = "stats.jsonl"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
LINEAGE_FILE = "lineage.sqlite"
REPORT_FILE = "report.html"


def _json_default(x: Any) -> Any:
    # numpy scalars and arrays turn up in stats (fitness, sizes); keep the log JSON.
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON-serialisable")


@dataclass(frozen=True)
class RunDir:
    """A run folder and the paths inside it.

    ``os.fspath(run_dir)`` is the folder, so a ``RunDir`` goes wherever a path does.
    """

    path: Path

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def config_path(self) -> Path:
        """The resolved ``config.toml``."""
        return self.path / CONFIG_FILE

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
        """The ``best/`` folder for the champion genome and its export."""
        return self.path / BEST_DIR

    @property
    def lineage_path(self) -> Path:
        """Where the lineage store keeps its database (the lead's store writes it)."""
        return self.path / LINEAGE_FILE

    @property
    def report_path(self) -> Path:
        """Where ``hybrid report`` writes ``report.html``."""
        return self.path / REPORT_FILE

    def load_config(self) -> Config:
        """Read the run's resolved config.

        Raises:
            ConfigError: naming ``config.toml`` if it is malformed.
        """
        from .config import load_config

        return load_config(self.config_path)

    def append_stats(self, record: Mapping[str, Any]) -> None:
        """Append one generation's stats as a JSON line and fsync it.

        Args:
            record: JSON-ready values (numpy scalars/arrays allowed) with an int
                ``"generation"``.

        Raises:
            ValueError: if ``record`` has no int ``"generation"``.
        """
        gen = record.get("generation")
        if not isinstance(gen, int) or isinstance(gen, bool):
            raise ValueError(f"stats record needs an int 'generation', got {gen!r}")
        line = json.dumps(dict(record), default=_json_default, separators=(",", ":")) + "\n"
        with open(self.stats_path, "a+b") as f:
            _drop_partial_tail(f)
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())

    def read_stats(self) -> list[dict[str, Any]]:
        """Return every complete stats record, oldest first.

        A last line without its newline (cut short by a crash) is ignored.

        Raises:
            RunDirError: a complete line that is not a JSON object.
        """
        try:
            text = self.stats_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        lines = text.split("\n")
        records = []
        for n, line in enumerate(lines[:-1], start=1):  # lines[-1]: "" or a partial line
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RunDirError(
                    f"{self.stats_path}: line {n} is not valid JSON ({exc.msg})"
                ) from None
            if not isinstance(rec, dict):
                raise RunDirError(f"{self.stats_path}: line {n} is not a JSON object")
            records.append(rec)
        return records

    def truncate_stats(self, generation: int | None) -> None:
        """Keep only records of generations ``<= generation`` (atomically).

        Args:
            generation: the generation of the checkpoint resumed from; None drops
                every record (no checkpoint: the run starts over).
        """
        keep = (
            []
            if generation is None
            else [r for r in self.read_stats() if r.get("generation", -1) <= generation]
        )
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in keep)
        atomic_write(self.stats_path, text)


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


def create_run_dir(
    runs_dir: str | os.PathLike[str], name: str, config: Config, overwrite: bool = False
) -> RunDir:
    """Create ``runs_dir/name`` with the resolved config and empty subfolders.

    Args:
        runs_dir: folder holding run folders (created if missing).
        name: the run's folder name.
        config: written to ``config.toml`` (atomically) with every key spelled out.
        overwrite: delete an existing run folder of that name first.

    Returns:
        The new :class:`RunDir`.

    Raises:
        RunDirError: the folder exists (and ``overwrite`` is False), or it exists,
            is not empty and is not a run folder (never deleted), or cannot be made.
    """
    from .config import dump_config

    path = Path(runs_dir) / name
    if path.exists():
        nonempty = path.is_dir() and any(path.iterdir())
        if not path.is_dir() or (nonempty and not _is_run_dir(path)):
            raise RunDirError(
                f"{path}: exists and is not a run folder; refusing to use or overwrite it"
            )
        if nonempty and not overwrite:
            raise RunDirError(
                f"{path}: run folder exists; continue it with `hybrid resume {path}` or start afresh with --overwrite"
            )
        if nonempty:
            shutil.rmtree(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / CHECKPOINTS_DIR).mkdir()
        (path / BEST_DIR).mkdir()
    except OSError as exc:
        raise RunDirError(f"{path}: cannot create run folder ({exc.strerror})") from None
    run = RunDir(path)
    atomic_write(run.config_path, dump_config(config))
    return run


def open_run_dir(path: str | os.PathLike[str]) -> RunDir:
    """Open an existing run folder.

    Args:
        path: the run folder (as printed by ``hybrid run``).

    Raises:
        RunDirError: the folder does not exist or holds no ``config.toml``.
    """
    p = Path(path)
    if not p.is_dir():
        raise RunDirError(f"{p}: no such run folder")
    if not _is_run_dir(p):
        raise RunDirError(
            f"{p}: not a run folder (no {CONFIG_FILE}); expected a folder made by `hybrid run`"
        )
    return RunDir(p)
