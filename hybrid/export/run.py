"""Export a genome of a finished (or running) search, reading only its run folder.

What is read, each through :class:`hybrid.rundir.RunDir`'s checked readers::

    config.toml        the gate kind, key training.gate
    task.json          name, kind, n_inputs, n_outputs, feature_mean,
                       feature_std, class_labels, encoding (tables: the
                       module fills missing numbers; preprocess.py encodes rows),
                       sequence, per_step, stream, T (sequence tasks)
    best/genome.json   the champion (genome="best")
    best/metrics.json  its metrics (optional)
    lineage.sqlite     any other genome with stored weights, by id, and
                       its record's metrics (hybrid.lineage.open)

With ``budgets`` (a feed-forward genome's budgeted export, :mod:`hybrid.export.budgets`)
the task's data is loaded too (``hybrid.tasks.load_task`` with the run's config and
seed: the same splits the search scored) and every listed budget's sub-network is
scored on the validation split (and on the test split when the genome's metrics
hold a ``test_metric``), with the run's metric.

Default output: ``best/model.<suffix>`` for the champion, ``exports/genome_<id>.<suffix>``
for another genome.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genomes import Genome, GenomeError, state_size
from genomes.budgets import check_budget, check_budgets

from ..errors import RunDirError
from ..rundir import RunDir, open_run_dir
from ..tasks._encode import input_fill
from .formats import FORMATS, ExportError, ExportResult, export_genome
from .module import ExportedNet, to_module

__all__ = ["export_run", "run_module"]


def _best(run: RunDir) -> tuple[Genome, dict[str, Any]]:
    genome = run.read_best_genome()
    metrics = run.read_best_metrics()
    return genome, {} if metrics is None else metrics.model_dump()


def _from_lineage(run_dir: RunDir, genome_id: int) -> tuple[Genome, dict[str, Any]]:
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
    run: RunDir, out: str | os.PathLike[str] | None, genome_id: int | None, suffix: str
) -> Path:
    name = "model" if genome_id is None else f"genome_{genome_id}"
    if out is None:
        folder = run.best_dir if genome_id is None else run.exports_dir
        return run.child(folder / f"{name}{suffix}")
    out = Path(out)
    if out.is_dir() or not out.suffix:
        return out / f"{name}{suffix}"
    return out


def export_run(
    run_dir: str | os.PathLike[str],
    genome: str | int = "best",
    fmt: str = "python",
    out: str | os.PathLike[str] | None = None,
    budgets: Sequence[float] | None = None,
    all_paths: bool = False,
    threshold: float | None = None,
    flops_share: float | None = None,
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
        budgets: budgets in (0, 1], strictly increasing, for a budgeted export of
            a feed-forward genome (see :func:`hybrid.export.export_genome`); the
            sidecar's ``budgets`` entries then also hold ``metric``,
            ``val_metric`` and, when the genome's metrics have one,
            ``test_metric``, each the sub-network's on the run's split.
        all_paths: allow ``pt2``/``onnx`` for an adaptive genome (exits or skip
            gates): every sample computes every path (see
            :func:`hybrid.export.export_genome`).
        threshold: one exit threshold in (0, 1] for every exit, instead of the
            genome's own (adaptive genomes with exits only).
        flops_share: dial an adaptive genome's cost: the shared exit threshold is
            fitted on the run's validation split to the one that spends this
            share, in (0, 1], of the full path's FLOPs per input: the largest
            average at most that (``genomes.adaptive.threshold_for_flops``); the
            sidecar's ``dial`` records the threshold and its validation FLOPs and
            accuracy.
            Not with ``threshold``.

    Returns:
        What was written.

    Raises:
        RunDirError: if a file of the run is missing or malformed, an entry leads
            outside the folder, or the task does not fit the genome.
        ExportError: for an unknown format or statistics that do not fit, bad
            budgets, budgets for a recurrent genome or a sequence task.
        DataError: the task's data cannot be loaded (budgets only).
        LineageError: for a genome id the lineage does not hold with weights.
    """
    run = open_run_dir(run_dir)
    if fmt not in FORMATS:
        raise ExportError(f"{run.path}: format should be one of {sorted(FORMATS)}, got {fmt!r}")
    genome_id = _genome_id(genome)
    if budgets is not None:
        try:
            budgets = check_budgets(budgets)
        except GenomeError as exc:
            raise ExportError(f"{run.path}: {exc}") from None
    config = run.load_config()
    gate = config.training.gate
    task = run.read_task()
    if genome_id is None:
        chosen, metrics = _best(run)
        genome_id = chosen.meta.get("id")  # an int or None (read_best_genome checks it)
        default_id = None
    else:
        chosen, metrics = _from_lineage(run, genome_id)
        default_id = genome_id
    for key in ("n_inputs", "n_outputs"):
        if getattr(task, key) != getattr(chosen, key):
            raise RunDirError(
                f"{run.task_path}: {key} is {getattr(task, key)!r} but genome {genome_id} has "
                f"{getattr(chosen, key)}"
            )
    root = run.path.resolve()
    sidecar = {
        "genome_id": genome_id,
        "run": {"name": root.name, "path": str(root)},
        "task": {"name": task.name, "kind": task.kind},
        "n_inputs": task.n_inputs,
        "n_outputs": task.n_outputs,
        "feature_mean": task.feature_mean,
        "feature_std": task.feature_std,
        "class_labels": task.class_labels,
        "metrics": metrics,
    }
    if task.sequence:  # how to read the outputs: every step, or each sequence's last one
        sidecar["task"].update(sequence=True, per_step=task.per_step, stream=task.stream, T=task.T)
    if task.encoding is not None:  # a table: raw rows go through preprocess.py
        encoding = task.encoding.model_dump()
        sidecar["encoding"] = encoding
        sidecar["feature_fill"] = input_fill(encoding)
    path = _out_path(run, out, default_id, FORMATS[fmt][0])
    if flops_share is not None:
        if threshold is not None:
            raise ExportError(f"{run.path}: give an exit threshold or a FLOPs share to fit one, not both")
        threshold, sidecar["dial"] = _dial(run, config, chosen, gate, flops_share, genome_id)
    if budgets is None:
        return export_genome(
            chosen, path, fmt, gate, sidecar, all_paths=all_paths, thresholds=threshold
        )
    if chosen.is_recurrent or chosen.state_size or task.sequence:
        raise ExportError(
            f"{path}: budgets are for feed-forward genomes on row tasks; genome {genome_id} "
            + ("has recurrent edges" if chosen.is_recurrent or chosen.state_size else "is of a sequence task")
        )
    scores = _budget_scores(run, config, chosen, gate, budgets, "test_metric" in metrics)
    return export_genome(chosen, path, fmt, gate, sidecar, budgets, scores)


def _dial(
    run: RunDir, config: Any, genome: Genome, gate: str, share: float, genome_id: int | None
) -> tuple[float, dict[str, Any]]:
    """Return the exit threshold that dials ``genome`` to ``share`` of its full path's FLOPs on
    the run's validation split, and the sidecar's ``dial`` record."""
    from genomes.adaptive import evaluate_adaptive, exit_nodes, threshold_for_flops

    from ..tasks import load_task

    try:  # a share of the full FLOPs is a budget (genomes.budgets): the same check
        share = check_budget(share, "flops_share")
    except GenomeError as exc:
        raise ExportError(f"{run.path}: {exc}") from None
    if not exit_nodes(genome):
        raise ExportError(
            f"{run.path}: genome {genome_id} has no exit head, so its cost cannot be dialled "
            "(grow exits with mutation.add_exit)"
        )
    data = load_task(config.task, config.run.seed)
    X = np.asarray(data.X_val, np.float64)
    if X.shape[1] != genome.n_inputs:
        raise RunDirError(
            f"{run.path}: the task's data has {X.shape[1]} inputs but genome {genome_id} {genome.n_inputs}"
        )
    r = evaluate_adaptive(genome, X, gate)
    full = float(r.plan.full_flops)
    fit = threshold_for_flops(r.heads, r.output, np.asarray(data.y_val), r.stage_flops, share * full)
    if fit is None:
        cheapest = float(r.stage_flops[0].mean()) / full
        raise ExportError(
            f"{run.path}: no exit threshold brings genome {genome_id} to {share:g} of its full path's "
            f"{full:.0f} FLOPs on the validation split (the cheapest, every input at its first exit: "
            f"{cheapest:.3g})"
        )
    q, accuracy, flops = fit
    return q, {
        "flops_share": float(share),
        "threshold": q,
        "val_average_flops": flops,
        "val_flops_share": flops / full,
        "val_accuracy": accuracy,
        "full_flops": int(full),
    }


def _budget_scores(
    run: RunDir, config: Any, genome: Genome, gate: str, budgets: Sequence[float], test: bool
) -> list[dict[str, Any]]:
    """Return each budget's ``metric``, ``val_metric`` (and ``test_metric``) on the run's splits.

    The sub-network is the budgeted module's (:class:`hybrid.export.budgets.BudgetedNet`)
    on the task's standardised features, scored by ``hybrid.metrics.metric_score``.
    """
    from ..metrics import metric_for_loss, metric_score
    from ..tasks import load_task

    data = load_task(config.task, config.run.seed)
    if (data.n_inputs, data.n_outputs) != (genome.n_inputs, genome.n_outputs):
        raise RunDirError(
            f"{run.path}: the task's data has {data.n_inputs} inputs / {data.n_outputs} outputs "
            f"but the genome {genome.n_inputs} / {genome.n_outputs}"
        )
    name = metric_for_loss(config.task.metric, config.training.loss)
    try:
        net = to_module(genome, gate, budgets=budgets)
    except GenomeError as exc:
        raise ExportError(f"{run.path}: {exc}") from None
    splits = [("val_metric", data.X_val, data.y_val)]
    if test:
        splits.append(("test_metric", data.X_test, data.y_test))
    out = []
    for b in budgets:
        entry: dict[str, Any] = {"metric": name}
        for key, X, y in splits:
            with torch.no_grad():
                pred = net(torch.from_numpy(np.array(X, np.float32)), b).numpy()
            entry[key] = metric_score(name, np.asarray(y), pred)
        out.append(entry)
    return out


def run_module(run_dir: str | os.PathLike[str]) -> ExportedNet:
    """Return the run's champion as the exported module, in memory (nothing is written).

    The same module ``hybrid export`` writes: gates folded, the task's feature
    standardisation (``task.json``) stored as buffers, so it takes raw features.
    It takes rows ``(B, n_inputs)`` (the scikit-learn estimators' ``module_``), so a
    recurrent champion, whose module takes sequences and a state, is refused.

    Raises:
        RunDirError: the run has not finished, or a file of it is missing or malformed.
        ExportError: the champion is recurrent.
    """
    run = open_run_dir(run_dir)
    gate = run.load_config().training.gate
    task = run.read_task()
    genome = run.read_best_genome()
    if (task.n_inputs, task.n_outputs) != (genome.n_inputs, genome.n_outputs):
        raise RunDirError(
            f"{run.task_path}: n_inputs/n_outputs are {task.n_inputs}/{task.n_outputs} but the "
            f"champion has {genome.n_inputs}/{genome.n_outputs}"
        )
    if state_size(genome):
        raise ExportError(
            f"{run.best_genome_path}: genome {genome.meta.get('id')} is recurrent (a state of "
            f"{state_size(genome)} values), but run_module and the scikit-learn estimators' "
            "module_ take rows (B, n_inputs), not sequences; use hybrid.export.to_module or "
            "hybrid export"
        )
    return to_module(genome, gate, feature_mean=task.feature_mean, feature_std=task.feature_std)
