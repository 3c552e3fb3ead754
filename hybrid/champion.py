"""The run's champion: the best genome so far, and its one score on the test split.

The champion is the best genome of any generation by validation metric, ties going
to the smaller network (active parameters). It is scored on the held-out test split
exactly once, when the search stops, and written to ``best/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genomes import Genome, from_dict, to_dict

from .backends import evaluate_members
from .metrics import METRICS, Metrics, metric_for_loss, metric_value
from .rundir import RunDir
from .tasks import Task
from .train import TrainConfig

__all__ = ["SearchResult", "ShortlistEntry", "champion_record", "is_better", "score_champion"]


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
    )


def _entry(name: str, e: ShortlistEntry) -> dict[str, Any]:
    """One short-list entry as ``metrics.json`` holds it: real metric values (NaN: None)."""
    sel = e.selection_fitness
    return {
        "id": e.id,
        "generation": e.generation,
        "val_metric": metric_value(name, e.val_fitness),
        "selection_metric": None if sel is None or sel != sel else metric_value(name, sel),
        "active_parameters": e.active_params,
    }
