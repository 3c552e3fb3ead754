"""The run's champion: the best genome so far, and its one score on the test split.

The champion is the best genome of any generation by validation metric, ties going
to the smaller network (active parameters). It is scored on the held-out test split
exactly once, when the search stops, and written to ``best/``.

With ``selection.champion_objective = "budget_auc"`` (issue 17: one trained network,
many budgets) the short list is scored once more at each of ``selection.auc_budgets``
(:func:`budget_curves`, the population engine with budget masks): the champion rule
then reads each entry's *budget AUC*, the mean of its metric over those budgets, and
the chosen one's curve (budgets, FLOPs, scores) is written to ``best/metrics.json`` as
``budget_curve``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genomes import Genome, from_dict, to_dict
from genomes.adaptive import is_adaptive

from .adaptive import adaptive_record
from .backends import evaluate_members
from .errors import ConfigError
from .metrics import METRICS, Metrics, metric_for_loss, metric_value
from .rundir import RunDir
from .tasks import Task
from .train import TrainConfig

if TYPE_CHECKING:
    from .budgets import BudgetScores
    from .config import Config
    from .config._sections import SelectionConfig
    from .state import Champion

__all__ = [
    "BudgetCurves",
    "SearchResult",
    "ShortlistEntry",
    "budget_curves",
    "champion_record",
    "check_budget_objective",
    "dial_scores",
    "curve_record",
    "is_better",
    "score_champion",
]


@dataclass(frozen=True)
class ShortlistEntry:
    """One genome of the short list the champion was chosen from.

    ``val_fitness`` and ``selection_fitness`` are fitnesses (higher is better);
    ``selection_fitness`` is None without a selection split, NaN if not finite.
    """

    id: int
    generation: int
    val_fitness: float
    selection_fitness: float | None
    active_params: int
    budget_auc: float | None = None  # under champion_objective "budget_auc" (NaN: not finite)
    average_flops: float | None = None  # FLOPs per validation input under selection.cost "average_flops"


@dataclass(frozen=True)
class SearchResult:
    """What a finished (or stopped) search produced.

    ``val_metric`` and ``test_metric`` are the real values of ``task.metric`` (a
    lower-is-better metric is not negated here).
    """

    run_dir: Path
    generations: int
    stop_reason: str
    champion_id: int
    val_metric: float
    test_metric: float
    test_loss: float
    active_parameters: int
    flops: int
    elapsed_s: float
    selected_by: str = "best"
    final_steps: int = 0
    selection_metric: float | None = None
    budget_auc: float | None = None


@dataclass(frozen=True)
class BudgetCurves:
    """Every short-list entry's metric at each budget, on the split the champion rule reads.

    Attributes:
        split: "selection" (the task has a selection split) or "validation".
        curves: each entry's :class:`hybrid.budgets.BudgetScores` by genome id.
    """

    split: str
    curves: Mapping[int, BudgetScores]

    @property
    def auc(self) -> dict[int, float]:
        """Each entry's budget AUC by id (what :func:`hybrid.shortlist.choose` reads)."""
        return {i: float(c.auc) for i, c in self.curves.items()}


def check_budget_objective(config: Config, task: Task, where: str) -> None:
    """Refuse ``selection.champion_objective`` or ``selection.fitness = "budget_auc"`` where it means nothing: one line.

    Raises:
        ConfigError: a sequence task (budgets are for feed-forward networks), or a
            lower-is-better metric (a budget below the smallest network scores 0, the
            worst only for a higher-is-better metric).
    """
    if config.selection.fitness == "budget_auc":
        _check_budget_fitness(config, task, where)
    objective = config.selection.champion_objective
    if objective != "budget_auc":
        return
    if task.sequence:
        raise ConfigError(
            f"{where}: selection.champion_objective: expected 'metric' for the sequence task {task.name!r} "
            f"(budgets are for feed-forward networks), got {objective!r}"
        )
    kw = config.train_kwargs()
    name = metric_for_loss(kw["metric"], kw["loss"])
    m = config.mutation
    if (m.add_exit > 0 or m.add_skip > 0) and config.training.budgets == "off" and name != "accuracy":
        raise ConfigError(
            f"{where}: selection.champion_objective: expected 'metric' with task.metric = {name!r} and "
            f"adaptive genes (an exit threshold is dialled to each budget by its accuracy), got {objective!r}"
        )
    if not METRICS[name].greater_is_better:
        raise ConfigError(
            f"{where}: selection.champion_objective: expected 'metric' with task.metric = {name!r} "
            f"(budget_auc averages a higher-is-better metric such as accuracy or r2), got {objective!r}"
        )


def _check_budget_fitness(config: Config, task: Task, where: str) -> None:
    """Refuse ``selection.fitness = "budget_auc"`` where the search cannot rank on it: one line."""
    kw = config.train_kwargs()
    name = metric_for_loss(kw["metric"], kw["loss"])
    m = config.mutation
    why = None
    if task.sequence:
        why = f"for the sequence task {task.name!r} (budgets are for feed-forward networks)"
    elif not METRICS[name].greater_is_better:
        why = f"with task.metric = {name!r} (budget_auc averages a higher-is-better metric)"
    elif task.folds:
        why = f"with task.folds = {task.folds} (K-fold fitness averages folds at full cost)"
    elif m.add_exit > 0 or m.add_skip > 0:
        why = "with mutation.add_exit or mutation.add_skip > 0 (exit heads and skip gates have no budget chain)"
    if why is not None:
        raise ConfigError(f"{where}: selection.fitness: expected 'metric' {why}, got 'budget_auc'")


def budget_curves(
    entries: Sequence[Champion],
    task: Task,
    config: TrainConfig,
    selection: SelectionConfig,
    *,
    device: str | None = None,
    threads: int | None = None,
) -> BudgetCurves | None:
    """Score every entry at each of ``selection.auc_budgets``; None unless the objective is "budget_auc".

    The split is the one the champion rule reads: the selection split if the task has
    one, else validation. One population-engine pass per budget
    (:func:`hybrid.budgets.budget_scores`).

    Raises:
        ConfigError: a sequence task (a run that bypassed the start-up check,
            :func:`check_budget_objective`).
    """
    if selection.champion_objective != "budget_auc":
        return None
    if task.sequence:
        raise ConfigError(
            f"task {task.name!r}: selection.champion_objective: expected 'metric' for a sequence task "
            "(budgets are for feed-forward networks), got 'budget_auc'"
        )
    from .budgets import budget_scores

    split = "selection" if task.X_sel is not None else "validation"
    X, y = (task.X_sel, task.y_sel) if task.X_sel is not None else (task.X_val, task.y_val)
    genomes = [c.genome for c in entries]
    budgets = tuple(selection.auc_budgets)
    if config.budgets == "off" and any(is_adaptive(g) for g in genomes):
        scored = [dial_scores(g, X, y, config.gate, budgets) for g in genomes]
    else:
        scored = budget_scores(genomes, X, y, config, budgets, device=device, threads=threads)
    return BudgetCurves(split=split, curves={c.id: s for c, s in zip(entries, scored, strict=True)})


def dial_scores(genome: Genome, X: Any, y: Any, gate: str, budgets: Sequence[float]) -> BudgetScores:
    """An adaptive genome's accuracy when its exit threshold dials it to each budget (issue 16).

    At budget ``b`` the shared threshold is :func:`genomes.adaptive.threshold_for_flops`'s
    for ``b`` times the full path's FLOPs on ``(X, y)``: its accuracy and mean FLOPs.
    A budget no threshold reaches (or, for a genome without exits, any budget below
    its full path) scores 0, as a budget below a budget chain's smallest level does.
    The budget AUC of an adaptive run (``training.budgets = "off"``) is the mean of these.
    """
    from genomes.adaptive import evaluate_adaptive, threshold_for_flops

    from .budgets import BudgetScores

    X = np.asarray(X, np.float64)
    y = np.asarray(y).reshape(-1)
    r = evaluate_adaptive(genome, X, gate)
    full = float(r.plan.full_flops)
    full_acc = float((r.output.argmax(-1) == y).mean()) if y.size else 0.0
    flops, scores = [], []
    for b in budgets:
        fit = threshold_for_flops(r.heads, r.output, y, r.stage_flops, b * full)
        if fit is not None:
            flops.append(int(round(fit[2])))
            scores.append(fit[1])
        elif b >= 1.0:  # no exits: the full path is within a budget of 1
            flops.append(int(full))
            scores.append(full_acc)
        else:
            flops.append(0)
            scores.append(0.0)
    return BudgetScores(tuple(float(b) for b in budgets), tuple(flops), tuple(scores), float(np.mean(scores)))


def curve_record(curve: BudgetScores, full_flops: int, split: str) -> dict[str, Any]:
    """Return a budget curve as ``best/metrics.json`` holds it (``budget_curve``).

    ``flops`` are FLOPs per sample at each budget; ``share`` is each one over
    ``full_flops`` (the full network's); ``scores`` the metric's real values.
    """
    flops = [int(f) for f in curve.flops]
    return {
        "split": split,
        "budgets": [float(b) for b in curve.budgets],
        "flops": flops,
        "share": [f / full_flops if full_flops > 0 else 1.0 for f in flops],
        "scores": [float(v) for v in curve.scores],
        "auc": float(curve.auc),
        "full_flops": int(full_flops),
    }


def is_better(metric: float, size: int, champion: dict[str, Any] | None) -> bool:
    """Return True if ``(metric, size)`` beats the champion (higher metric, then smaller)."""
    return champion is None or (metric, -size) > (champion["metric"], -champion["active_params"])


def champion_record(
    gid: int, generation: int, metric: float, size: int, ev: Metrics, genome: Genome
) -> dict[str, Any]:
    """Return the JSON-ready champion record kept in checkpoints."""
    return {
        "id": gid,
        "generation": generation,
        "metric": metric,
        "active_params": size,
        "flops": ev.flops,
        "val_loss": ev.loss,
        "genome": to_dict(genome),
    }


def score_champion(
    champion: dict[str, Any],
    task: Task,
    config: TrainConfig,
    run: RunDir,
    *,
    device: str,
    generations: int,
    stop_reason: str,
    elapsed_s: float,
    selected_by: str = "best",
    epsilon: float | None = None,
    best_val_metric: float | None = None,
    final_steps: int = 0,
    genome: Genome | None = None,
    shortlist: list[ShortlistEntry] | None = None,
    budget_curve: BudgetScores | None = None,
    budget_split: str = "validation",
) -> SearchResult:
    """Score the champion on the test split; write ``best/genome.json`` and ``best/metrics.json``.

    Scored by the population engine that chose it on validation (a population of one),
    with ``config.metric``. ``metrics.json`` and the result hold the metric's real
    value (``val_metric``, ``test_metric``), its registry name (``metric``) and its
    direction (``greater_is_better``); the checkpoint's champion keeps the fitness.

    Args:
        champion: the chosen genome's record (``Champion.to_dict()`` form); its
            metric is the validation metric it was chosen on.
        selected_by: the champion rule that chose it ("best" or "smallest_within").
        epsilon: smallest_within's slack (None under "best").
        best_val_metric: the best validation fitness on the short list it was chosen from
            (written with the metric's real sign).
        final_steps: training steps on train + validation after the choice (0: none).
        genome: the genome to score and write when it is not the record's (the
            fine-tuned one); default: the record's genome.
        shortlist: the entries the champion was chosen from, written to
            ``metrics.json`` with their real validation and selection metrics; the
            chosen one's selection metric is ``selection_metric``.
        budget_curve: the chosen genome's scores at each budget (champion objective
            "budget_auc"), written to ``metrics.json`` as ``budget_curve`` (with
            ``champion_objective``); the curve of the genome as chosen, before any
            final fit. None: neither key is written.
        budget_split: the split ``budget_curve`` was scored on.
    """
    genome = from_dict(champion["genome"]) if genome is None else genome
    if task.sequence:  # a recurrent engine over the held-out sequences (zero initial state)
        from .sequences import evaluate_sequences

        (test,) = evaluate_sequences(
            [genome], task.X_test, task.y_test, task.mask_test, task.floor_test, config, device
        )
    else:
        (test,) = evaluate_members([genome], task.X_test, task.y_test, config, device=device)
    name = metric_for_loss(config.metric, config.loss)
    test_metric = float(test.score)
    metrics = {
        "genome_id": champion["id"],
        "generation": champion["generation"],
        "val_metric": metric_value(name, champion["metric"]),
        "val_loss": champion["val_loss"],
        "test_metric": test_metric,
        "test_loss": test.loss,
        "metric": name,
        "greater_is_better": METRICS[name].greater_is_better,
        "active_parameters": test.active_parameters,
        "flops": test.flops,
        "generations": generations,
        "stop_reason": stop_reason,
        "elapsed_s": elapsed_s,
        "selected_by": selected_by,
        "best_val_metric": metric_value(
            name, champion["metric"] if best_val_metric is None else best_val_metric
        ),
        "final_steps": final_steps,
    }
    if epsilon is not None:
        metrics["epsilon"] = epsilon
    if not task.sequence:  # exit heads and skip gates (issue 16): the test split's per-input costs
        adaptive = adaptive_record(genome, task.X_test, task.y_test if task.kind == "classification" else None, config.gate)
        if adaptive is not None:
            metrics["average_flops"] = adaptive["average_flops"]
            metrics["adaptive"] = adaptive
    budget_auc = None
    if budget_curve is not None:
        metrics["champion_objective"] = "budget_auc"
        metrics["budget_curve"] = curve_record(budget_curve, int(champion["flops"]), budget_split)
        budget_auc = metrics["budget_curve"]["auc"]
    selection_metric = None
    if shortlist:
        metrics["shortlist"] = [_entry(name, e) for e in shortlist]
        mine = [e for e in metrics["shortlist"] if e["id"] == champion["id"]]
        selection_metric = mine[0]["selection_metric"] if mine else None
        if selection_metric is not None:
            metrics["selection_metric"] = selection_metric
    genome.meta.update({"id": champion["id"], "run": run.path.name})
    run.write_best(genome, metrics)
    return SearchResult(
        run_dir=run.path,
        generations=generations,
        stop_reason=stop_reason,
        champion_id=champion["id"],
        val_metric=metric_value(name, champion["metric"]),
        test_metric=test_metric,
        test_loss=test.loss,
        active_parameters=test.active_parameters,
        flops=test.flops,
        elapsed_s=elapsed_s,
        selected_by=selected_by,
        final_steps=final_steps,
        selection_metric=selection_metric,
        budget_auc=budget_auc,
    )


def _entry(name: str, e: ShortlistEntry) -> dict[str, Any]:
    """One short-list entry as ``metrics.json`` holds it: real metric values (NaN: None)."""
    sel = e.selection_fitness
    out = {
        "id": e.id,
        "generation": e.generation,
        "val_metric": metric_value(name, e.val_fitness),
        "selection_metric": None if sel is None or sel != sel else metric_value(name, sel),
        "active_parameters": e.active_params,
    }
    if e.budget_auc is not None:
        out["budget_auc"] = None if e.budget_auc != e.budget_auc else float(e.budget_auc)
    if e.average_flops is not None:
        out["average_flops"] = float(e.average_flops)
    return out
