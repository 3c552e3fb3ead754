"""Export a genome of a finished (or running) search, reading only its run folder.

What is read (see ``shared/DESIGN.md``, "A run on disk")::

    run_dir/config.toml        the gate kind, key training.gate
    run_dir/task.json          name, kind, n_inputs, n_outputs, feature_mean,
                               feature_std, class_labels
    run_dir/best/genome.json   the champion (genome="best")
    run_dir/best/metrics.json  its metrics (free-form; optional)
    run_dir/lineage.sqlite     any other genome with stored weights, by id, and
                               its record's metrics (hybrid.lineage.open)

Default output: ``run_dir/best/model.<suffix>`` for the champion,
``run_dir/exports/genome_<id>.<suffix>`` for another genome.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genomes import Genome, GenomeError, load

from ..errors import RunDirError
from .formats import FORMATS, ExportError, ExportResult, export_genome

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - python 3.10
    import tomli as tomllib

__all__ = ["TASK_KEYS", "export_run"]

#: Keys task.json must hold.
TASK_KEYS = ("name", "kind", "n_inputs", "n_outputs", "feature_mean", "feature_std", "class_labels")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def _read_task(run_dir: Path) -> Mapping[str, Any]:
    path = run_dir / "task.json"
    task = _read_json(path)
    if not isinstance(task, dict):
        raise RunDirError(f"{path}: should hold a JSON object, got {type(task).__name__}")
    missing = [k for k in TASK_KEYS if k not in task]
    if missing:
        raise RunDirError(f"{path}: missing key(s) {', '.join(missing)}")
    return task


def _read_gate(run_dir: Path) -> str:
    path = run_dir / "config.toml"
    try:
        config = tomllib.loads(path.read_text())
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise RunDirError(f"{path}: not valid TOML ({exc})") from None
    gate = config.get("training", {}).get("gate")
    if not isinstance(gate, str):
        raise RunDirError(f"{path}: training.gate should be a gate kind, got {gate!r}")
    return gate


def _best(run_dir: Path) -> tuple[Genome, dict[str, Any]]:
    try:
        genome = load(run_dir / "best" / "genome.json")
    except GenomeError as exc:  # the message names the file
        raise RunDirError(str(exc)) from None
    metrics_path = run_dir / "best" / "metrics.json"
    metrics = _read_json(metrics_path) if metrics_path.exists() else {}
    if not isinstance(metrics, dict):
        raise RunDirError(
            f"{metrics_path}: should hold a JSON object, got {type(metrics).__name__}"
        )
    return genome, metrics


def _from_lineage(run_dir: Path, genome_id: int) -> tuple[Genome, dict[str, Any]]:
    """Return a genome with weights from the run's lineage store, and its record's metrics."""
    from .. import lineage  # sqlite + networkx: only when a genome other than "best" is asked

    with lineage.open(run_dir) as store:
        genome = store.genome(genome_id)
        record = store.record(genome_id)
    metrics = {
        key: getattr(record, key)
        for key in (
            "generation",
            "status",
            "train_loss",
            "val_loss",
            "val_metric",
            "active_params",
            "flops",
        )
    }
    return genome, metrics


def _genome_id(genome: str | int) -> int | None:
    """Return the integer id asked for, or None for "best"."""
    if genome == "best":
        return None
    if isinstance(genome, int) and not isinstance(genome, bool):
        return genome
    if isinstance(genome, str) and genome.isdigit():
        return int(genome)
    raise ExportError(f"genome should be 'best' or an integer genome id, got {genome!r}")


def _out_path(
    run_dir: Path, out: str | os.PathLike[str] | None, genome_id: int | None, suffix: str
) -> Path:
    name = "model" if genome_id is None else f"genome_{genome_id}"
    if out is None:
        folder = run_dir / "best" if genome_id is None else run_dir / "exports"
        return folder / f"{name}{suffix}"
    out = Path(out)
    if out.is_dir() or not out.suffix:
        return out / f"{name}{suffix}"
    return out


def export_run(
    run_dir: str | os.PathLike[str],
    genome: str | int = "best",
    fmt: str = "python",
    out: str | os.PathLike[str] | None = None,
) -> ExportResult:
    """Export a genome of the run in ``run_dir`` (the champion by default).

    The module takes raw features: it applies the task's standardisation
    (``task.json`` feature_mean/feature_std) first. The sidecar records the task,
    the run, the genome id and its metrics.

    Args:
        run_dir: the run folder.
        genome: ``"best"`` or an integer genome id (from the lineage store).
        fmt: a format of ``hybrid.export.FORMATS``.
        out: the file to write, or a folder for the default file name
            (``model.<suffix>`` for the champion, ``genome_<id>.<suffix>``
            otherwise); default ``run_dir/best/`` or ``run_dir/exports/``.

    Returns:
        What was written.

    Raises:
        RunDirError: if a file of the run is missing or malformed, or the task
            does not fit the genome.
        ExportError: for an unknown format or statistics that do not fit.
        LineageError: for a genome id the lineage does not hold with weights.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: not a run directory (no such folder)")
    if fmt not in FORMATS:
        raise ExportError(f"{run_dir}: format should be one of {sorted(FORMATS)}, got {fmt!r}")
    genome_id = _genome_id(genome)
    task = _read_task(run_dir)
    gate = _read_gate(run_dir)
    if genome_id is None:
        chosen, metrics = _best(run_dir)
        genome_id = chosen.meta.get("id")
        default_id = None
    else:
        chosen, metrics = _from_lineage(run_dir, genome_id)
        default_id = genome_id
    for key in ("n_inputs", "n_outputs"):
        if task[key] != getattr(chosen, key):
            raise RunDirError(
                f"{run_dir / 'task.json'}: {key} is {task[key]!r} but genome {genome_id} has "
                f"{getattr(chosen, key)}"
            )
    sidecar = {
        "genome_id": genome_id,
        "run": {"name": run_dir.resolve().name, "path": str(run_dir.resolve())},
        "task": {"name": task["name"], "kind": task["kind"]},
        "n_inputs": task["n_inputs"],
        "n_outputs": task["n_outputs"],
        "feature_mean": task["feature_mean"],
        "feature_std": task["feature_std"],
        "class_labels": task["class_labels"],
        "metrics": metrics,
    }
    path = _out_path(run_dir, out, default_id, FORMATS[fmt][0])
    return export_genome(chosen, path, fmt, gate, sidecar)
