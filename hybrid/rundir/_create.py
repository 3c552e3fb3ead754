"""Create a run folder whole or not at all; open one to read or to continue it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genomes.serialize import atomic_write

from ..errors import HybridError, RunDirError
from ._lock import Lock
from ._rundir import _CREATION_LEFTOVERS, BEST_DIR, CHECKPOINTS_DIR, CONFIG_FILE, LOCK_FILE, RunDir

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["create_run_dir", "open_run_dir", "output_path"]


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
                Lock(p / LOCK_FILE, p).release()
            except RunDirError:
                continue  # another process is building it right now
            shutil.rmtree(p, ignore_errors=True)


def create_run_dir(
    runs_dir: str | os.PathLike[str],
    name: str,
    config: Config,
    overwrite: bool = False,
    task: Mapping[str, Any] | None = None,
    data: str | os.PathLike[str] | None = None,
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
        data: a data file to move into the folder as ``data.npz`` / ``data.csv``
            (:meth:`RunDir.data_name`; the array API stages one in ``runs_dir``).

    Returns:
        The new :class:`RunDir`, holding the writer lock.

    Raises:
        RunDirError: the folder exists (and ``overwrite`` is False), or it exists,
            is not empty and is not a run folder (never deleted), or it is in use by
            another process, or it cannot be made.
    """
    from ..config import dump_config

    runs = Path(runs_dir)
    path = runs / name
    old_lock: Lock | None = None
    if path.exists() or path.is_symlink():
        if path.is_symlink() or not path.is_dir():
            raise RunDirError(f"{path}: exists and is not a run folder; refusing to use or overwrite it")
        if _is_run_dir(path):
            if not overwrite:
                raise RunDirError(
                    f"{path}: run folder exists; continue it with `hybrid resume {path}` or start afresh "
                    "with --overwrite"
                )
            old_lock = Lock(path / LOCK_FILE, path)  # refuses a live run
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
        lock = Lock(build / LOCK_FILE, path)
        (build / CHECKPOINTS_DIR).mkdir()
        (build / BEST_DIR).mkdir()
        staged = RunDir(build)
        if task is not None:
            staged.write_task(task)
        if data is not None:
            os.replace(data, build / RunDir.data_name(Path(data).suffix))
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
    lock = Lock(run.lock_path, p)
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
