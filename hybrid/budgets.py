"""Score trained networks at many budgets (issue 17: one trained network, many costs).

:func:`budget_scores` runs every member of a population at each budget of a list
with the population engine (one pass over the data per budget for the whole
population, the budgets as gate masks: :meth:`PopulationEngine.budget_scale`) and
scores it with the task metric the search ranks by (``TrainConfig.metric``, or the
loss's default). A budget ``b`` runs the level ``genomes.budgets.budget_chain(genome,
gate).select(b)``: the sub-network with the fewest removals (skip edges, then
neurons) whose FLOPs are at most ``b`` times the full network's (the smallest level
when none is that small).

The summary is the mean score over the budgets (``auc``: the area under the
score-budget curve on the budgets given), a budget below the member's
``min_budget`` (no sub-network fits it) scoring the metric's worst value there: 0.0
for a higher-is-better metric (accuracy, r2, ...), ``inf`` for a lower-is-better one
(log loss, mse, ...), so an infeasible budget never helps. ``auc`` is meant for
higher-is-better metrics (an accuracy-like area); the search's ``budget_auc``
objective refuses lower-is-better metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from genomes import Genome
from genomes.budgets import check_budgets

from .metrics import METRICS, metric_for_loss
from .population.engine import PopulationEngine
from .population.train import _data, engine_scores
from .train import TrainConfig

__all__ = ["BudgetScores", "budget_scores"]


@dataclass(frozen=True)
class BudgetScores:
    """One network's scores at each budget.

    Attributes:
        budgets: the budgets, increasing.
        flops: FLOPs per sample of the level each budget selects.
        scores: the task metric at each budget (of the level it selects).
        auc: mean of ``scores`` over the budgets, a budget below the network's
            ``min_budget`` counting the metric's worst value (0.0 if higher is
            better, ``inf`` if lower is better: the ``auc`` is then ``inf``).
    """

    budgets: tuple[float, ...]
    flops: tuple[int, ...]
    scores: tuple[float, ...]
    auc: float


def budget_scores(
    genomes: Sequence[Genome],
    X: Any,
    y: Any,
    train_config: TrainConfig,
    budgets: Sequence[float],
    device: torch.device | str | None = None,
    threads: int | None = None,
) -> list[BudgetScores]:
    """Return each genome's scores at each budget, from one engine pass per budget.

    Args:
        genomes: feed-forward genomes sharing widths (not modified).
        X, y: a data split (see :func:`hybrid.metrics.check_data`).
        train_config: gives the gate kind, the loss and the metric.
        budgets: strictly increasing budgets in (0, 1].
        device: where to run (default: ``X``'s device).
        threads: torch intra-op threads for the call (default: as they are).

    Returns:
        One :class:`BudgetScores` per genome.

    Raises:
        GenomeError: for bad budgets or a recurrent genome.
        DataError: if the data does not fit the genomes or the loss.
    """
    levels = check_budgets(budgets)
    if not genomes:
        return []
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        X, y = _data(genomes, X, y, train_config, device)
        engine = PopulationEngine(genomes, train_config.gate, device=X.device, dtype=X.dtype)
        metric = metric_for_loss(train_config.metric, train_config.loss)
        table = engine.budget_table
        per_budget, per_flops = [], []
        rows = torch.arange(engine.n_members, device=engine.device)
        for b in levels:
            entries = table.entries(torch.full((engine.n_members,), b, dtype=torch.float64, device=engine.device))
            per_flops.append(table.entry_flops[rows, entries].tolist())
            scale = engine.entry_scale(entries)
            per_budget.append(engine_scores(engine, X, y, train_config.loss, metric, scale)[2])
        min_budget = table.min_budget.tolist()
    finally:
        if threads is not None:
            torch.set_num_threads(before)
    worst = 0.0 if METRICS[metric].greater_is_better else math.inf
    out = []
    for m in range(len(genomes)):
        scores = tuple(float(s[m]) for s in per_budget)  # type: ignore[arg-type]
        flops = tuple(int(f[m]) for f in per_flops)
        fits = [worst if b < min_budget[m] else s for b, s in zip(levels, scores, strict=True)]
        out.append(BudgetScores(budgets=levels, flops=flops, scores=scores, auc=sum(fits) / len(fits)))
    return out
