"""Checkpoints: a generation's complete state, written atomically, no pickle.

A checkpoint is ``checkpoints/gen_{generation:06d}/`` holding ``state.json`` (the
JSON-ready state: genomes via ``genomes.to_dict``, tracker, species, RNG states...)
and ``tensors.safetensors``. It is written into a hidden temp folder, every file
and the folder fsynced, then renamed into place in one step: a folder named
``gen_*`` is always complete, and a crash leaves at most a ``.tmp-*`` folder that
loading ignores and the next save removes. Then only the newest ``keep`` remain.

RNG states are captured exactly (:func:`capture_rng` / :func:`restore_rng`): numpy
``Generator`` bit-generator states and ``random.Random`` states as JSON, torch
``Generator`` states as uint8 tensors, so a resumed run draws the same numbers.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import RunDirError
from .rundir import CHECKPOINTS_DIR

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "RngSource",
    "capture_rng",
    "checkpoint_path",
    "list_checkpoints",
    "load_checkpoint",
    "load_latest_checkpoint",
    "restore_rng",
    "save_checkpoint",
]

FORMAT = "hybrid.checkpoint"
FORMAT_VERSION = 1
STATE_FILE = "state.json"
TENSORS_FILE = "tensors.safetensors"
_GEN = re.compile(r"gen_(\d{6,})")
_TMP_PREFIX = ".tmp-"

RngSource = np.random.Generator | torch.Generator | random.Random


def _checkpoints(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR


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
    tensors: Mapping[str, torch.Tensor] | None = None,
    keep: int = 3,
) -> Path:
    """Write generation ``generation``'s checkpoint atomically, then prune old ones.

    Args:
        run_dir: the run folder (a path or :class:`~hybrid.rundir.RunDir`).
        generation: the generation just completed (>= 0).
        state: JSON-ready state (dicts, lists, str, int, float, bool, None).
        tensors: named tensors (any device; stored on CPU). Views are copied.
        keep: how many of the newest complete checkpoints to keep (>= 1).

    Returns:
        The checkpoint folder.

    Raises:
        TypeError: ``state`` is not JSON-ready (nothing is written).
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
    state_bytes = json.dumps(doc, separators=(",", ":")).encode()
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in (tensors or {}).items()}
    tensor_bytes = st_save(plain)
    folder = _checkpoints(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"{_TMP_PREFIX}*"):  # left by a crash mid-save: never complete
        shutil.rmtree(stale, ignore_errors=True)
    final = checkpoint_path(run_dir, generation)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{final.name}-", dir=folder))
    try:
        _write_synced(tmp / STATE_FILE, state_bytes)
        _write_synced(tmp / TENSORS_FILE, tensor_bytes)
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
        shutil.rmtree(checkpoint_path(run_dir, old_gen), ignore_errors=True)
    return final


def load_checkpoint(
    run_dir: str | os.PathLike[str], generation: int
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read generation ``generation``'s checkpoint.

    Returns:
        ``(state, tensors)``; tensors are on the CPU.

    Raises:
        RunDirError: the checkpoint is missing, unreadable or of another format.
    """
    path = checkpoint_path(run_dir, generation)
    state_file, tensors_file = path / STATE_FILE, path / TENSORS_FILE
    try:
        doc = json.loads(state_file.read_text(encoding="utf-8"))
        tensors = st_load(tensors_file.read_bytes())
    except FileNotFoundError as exc:
        raise RunDirError(f"{exc.filename}: checkpoint file missing") from None
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{state_file}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except Exception as exc:  # safetensors raises its own error types for a corrupt file
        raise RunDirError(f"{tensors_file}: cannot read tensors ({exc})") from None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != FORMAT
        or doc.get("version") != FORMAT_VERSION
    ):
        raise RunDirError(f"{state_file}: expected format {FORMAT!r} version {FORMAT_VERSION}")
    if doc.get("generation") != generation or not isinstance(doc.get("state"), dict):
        raise RunDirError(
            f"{state_file}: expected generation {generation}, got {doc.get('generation')!r}"
        )
    return doc["state"], tensors


def load_latest_checkpoint(
    run_dir: str | os.PathLike[str],
) -> tuple[int, dict[str, Any], dict[str, torch.Tensor]] | None:
    """Read the newest complete checkpoint, ignoring unfinished temp folders.

    Returns:
        ``(generation, state, tensors)``, or None if the run has no checkpoint.

    Raises:
        RunDirError: the newest checkpoint is unreadable (never silently skipped:
            resuming from an older one would not reproduce the run).
    """
    gens = list_checkpoints(run_dir)
    if not gens:
        return None
    state, tensors = load_checkpoint(run_dir, gens[-1])
    return gens[-1], state, tensors


def _to_json(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _to_json(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return {"__ndarray__": x.tolist(), "dtype": str(x.dtype)}
    if isinstance(x, np.integer):
        return int(x)
    return x


def _from_json(x: Any) -> Any:
    if isinstance(x, dict):
        if "__ndarray__" in x:
            return np.array(x["__ndarray__"], dtype=x["dtype"])
        return {k: _from_json(v) for k, v in x.items()}
    return x


def capture_rng(
    generators: Mapping[str, RngSource],
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Capture the exact state of named random generators.

    Args:
        generators: ``{name: numpy Generator | torch.Generator | random.Random}``.

    Returns:
        ``(state, tensors)``: put ``state`` in the checkpoint's state and ``tensors``
        (torch states, keyed ``"rng.<name>"``) among its tensors.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> state, tensors = capture_rng({"numpy": rng})
        >>> a = rng.random(); restore_rng({"numpy": rng}, state, tensors); a == rng.random()
        True
    """
    state: dict[str, Any] = {}
    tensors: dict[str, torch.Tensor] = {}
    for name, g in generators.items():
        if isinstance(g, np.random.Generator):
            state[name] = {"kind": "numpy", "state": _to_json(g.bit_generator.state)}
        elif isinstance(g, random.Random):
            version, internal, gauss_next = g.getstate()
            state[name] = {
                "kind": "python",
                "version": version,
                "state": list(internal),
                "gauss_next": gauss_next,
            }
        elif isinstance(g, torch.Generator):
            key = f"rng.{name}"
            tensors[key] = g.get_state()
            state[name] = {"kind": "torch", "tensor": key, "device": str(g.device)}
        else:
            raise TypeError(f"rng {name!r}: cannot capture a {type(g).__name__}")
    return state, tensors


def restore_rng(
    generators: Mapping[str, RngSource],
    state: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
) -> None:
    """Put the states saved by :func:`capture_rng` back into the same generators.

    Args:
        generators: the generators to restore, by the names they were captured under.
        state: the ``state`` half of :func:`capture_rng`'s result (from a checkpoint).
        tensors: the checkpoint's tensors (holding the torch states).

    Raises:
        RunDirError: a name is missing from the checkpoint or was captured from a
            different kind of generator.
    """
    for name, g in generators.items():
        entry = state.get(name)
        kind = {np.random.Generator: "numpy", random.Random: "python", torch.Generator: "torch"}
        want = next((k for t, k in kind.items() if isinstance(g, t)), type(g).__name__)
        if not isinstance(entry, dict) or entry.get("kind") != want:
            raise RunDirError(
                f"checkpoint rng {name!r}: expected a saved {want} state, got {entry!r:.60}"
            )
        if want == "numpy":
            g.bit_generator.state = _from_json(entry["state"])
        elif want == "python":
            g.setstate((entry["version"], tuple(entry["state"]), entry["gauss_next"]))
        else:
            if entry["tensor"] not in tensors:
                raise RunDirError(f"checkpoint rng {name!r}: tensor {entry['tensor']!r} missing")
            g.set_state(tensors[entry["tensor"]])
