"""Checkpoints: a generation's complete state, written atomically, no pickle.

A checkpoint is ``checkpoints/gen_{generation:06d}/state.json``: the search's
state after that generation (``SearchState.to_dict()``: genomes via
``genomes.to_dict``, species, tracker, champion, counters) in a small envelope
naming the format, its version and the generation. It holds no RNG state: every
generation's generators are derived from the run's seed and the generation
number, so none is needed. (Checkpoints written before this also hold an empty
``tensors.safetensors``; it is ignored.)

A checkpoint is written into a hidden temp folder, the file and the folder
fsynced, then renamed into place in one step: a folder named ``gen_*`` is always
complete, and a crash leaves at most a ``.tmp-*`` folder that loading ignores and
the next save removes. Then only the newest ``keep`` remain. This module checks
the envelope; ``SearchState.from_dict`` checks the state inside it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import RunDirError
from .rundir import CHECKPOINTS_DIR, RunDir

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "STATE_FILE",
    "checkpoint_path",
    "list_checkpoints",
    "load_checkpoint",
    "load_latest_checkpoint",
    "save_checkpoint",
]

FORMAT = "hybrid.checkpoint"
FORMAT_VERSION = 1
STATE_FILE = "state.json"
_GEN = re.compile(r"gen_(\d{6,})")
_TMP_PREFIX = ".tmp-"


def _checkpoints(run_dir: str | os.PathLike[str]) -> Path:
    # Resolved and checked: a `checkpoints` symlink leading outside is refused, so
    # nothing outside the run folder is ever written or pruned.
    return RunDir(Path(run_dir)).child(CHECKPOINTS_DIR)


def checkpoint_path(run_dir: str | os.PathLike[str], generation: int) -> Path:
    """Return the folder of generation ``generation``'s checkpoint."""
    return _checkpoints(run_dir) / f"gen_{generation:06d}"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[int]:
    """Return the generations with a complete checkpoint, oldest first."""
    folder = _checkpoints(run_dir)
    if not folder.is_dir():
        return []
    gens = [
        int(m.group(1)) for p in folder.iterdir() if p.is_dir() and (m := _GEN.fullmatch(p.name))
    ]
    return sorted(gens)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    generation: int,
    state: Mapping[str, Any],
    keep: int = 3,
) -> Path:
    """Write generation ``generation``'s checkpoint atomically, then prune old ones.

    Args:
        run_dir: the run folder (a path or :class:`~hybrid.rundir.RunDir`).
        generation: the generation just completed (>= 0).
        state: JSON-ready state (dicts, lists, str, int, float, bool, None).
        keep: how many of the newest complete checkpoints to keep (>= 1).

    Returns:
        The checkpoint folder.

    Raises:
        TypeError: ``state`` is not JSON-ready (nothing is written).
        ValueError: ``state`` holds NaN or infinity (nothing is written: not JSON).
        ValueError: ``generation < 0`` or ``keep < 1``.
    """
    if generation < 0 or keep < 1:
        raise ValueError(
            f"need generation >= 0 and keep >= 1, got generation={generation}, keep={keep}"
        )
    doc = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "generation": generation,
        "state": dict(state),
    }
    state_bytes = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    folder = _checkpoints(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"{_TMP_PREFIX}*"):  # left by a crash mid-save: never complete
        shutil.rmtree(stale, ignore_errors=True)
    final = checkpoint_path(run_dir, generation)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{final.name}-", dir=folder))
    try:
        _write_synced(tmp / STATE_FILE, state_bytes)
        _fsync_dir(tmp)
        if final.exists():  # re-saving a generation (after a resume): swap, then delete
            old = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}old-", dir=folder))
            os.rename(final, old / final.name)
            os.rename(tmp, final)
            shutil.rmtree(old)
        else:
            os.rename(tmp, final)
        _fsync_dir(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old_gen in list_checkpoints(run_dir)[:-keep]:
        old = RunDir(Path(run_dir)).child(checkpoint_path(run_dir, old_gen))
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(run_dir: str | os.PathLike[str], generation: int) -> dict[str, Any]:
    """Read generation ``generation``'s checkpoint.

    Returns:
        The state it holds (JSON-ready; rebuild with ``SearchState.from_dict``).

    Raises:
        RunDirError: the checkpoint is missing, unreadable or of another format.
    """
    state_file = checkpoint_path(run_dir, generation) / STATE_FILE
    try:
        doc = json.loads(state_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{state_file}: checkpoint file missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{state_file}: cannot read the checkpoint ({exc})") from None
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{state_file}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != FORMAT
        or doc.get("version") != FORMAT_VERSION
    ):
        raise RunDirError(f"{state_file}: expected format {FORMAT!r} version {FORMAT_VERSION}")
    if doc.get("generation") != generation:
        raise RunDirError(
            f"{state_file}: generation: expected {generation}, got {doc.get('generation')!r}"
        )
    if not isinstance(doc.get("state"), dict):
        raise RunDirError(f"{state_file}: state: expected an object, got {type(doc.get('state')).__name__}")
    return doc["state"]


def load_latest_checkpoint(
    run_dir: str | os.PathLike[str],
) -> tuple[int, dict[str, Any]] | None:
    """Read the newest complete checkpoint, ignoring unfinished temp folders.

    Returns:
        ``(generation, state)``, or None if the run has no checkpoint.

    Raises:
        RunDirError: the newest checkpoint is unreadable (never silently skipped:
            resuming from an older one would not reproduce the run).
    """
    gens = list_checkpoints(run_dir)
    if not gens:
        return None
    return gens[-1], load_checkpoint(run_dir, gens[-1])
