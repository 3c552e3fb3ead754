"""The short list a final champion is chosen from: a capped Pareto front, and the choice.

Every generation, every member with a finite validation score is offered to the
front of (validation metric: higher is better, cost: lower is better; the cost is
:attr:`~hybrid.state.Champion.cost`, the active parameters, or the FLOPs per
validation input under the exit rule with ``selection.cost = "average_flops"``;
with ``selection.fitness = "budget_auc"`` the first objective is the budget AUC on
validation instead of the metric), kept with its trained weights in :class:`~hybrid.state.SearchState`. A
generation's best member is always offered, so it is either on the front or
dominated by an entry that is; the run's "best" champion (highest metric, then
smallest) is never dominated and is always on it.

The front is capped at :data:`SHORTLIST_CAP` entries. When it grows past the cap,
the entries with the *lowest* metric go first (they are the smallest, least
accurate nets of the front: the furthest from being within ``epsilon`` of the
best), so the best entry and its near neighbours always stay.

With a selection split (``task.selection_fraction``), :func:`choose` applies the
champion rule to the entries' scores on that split instead: data the search never
ranked a genome on, so the winner of ~1,000 validation scores is not believed on the
strength of the very score it won with.

With ``selection.champion_objective = "budget_auc"`` (issue 17) the rule reads each
entry's *budget AUC* instead: the mean of its metric at each of ``selection.auc_budgets``
(:func:`hybrid.champion.budget_curves`, on the selection split if there is one, else
validation), so the champion is the entry that stays good when its cost is dialled
down, not only the best at full cost.

The functions are pure: the front is a function of the state, so a resumed run
keeps the same front as the uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from .state import Champion

__all__ = ["SHORTLIST_CAP", "choose", "choose_within", "update_front"]

#: Most entries the short list keeps (each with its weights, in every checkpoint).
SHORTLIST_CAP = 32


def _key(c: Champion) -> tuple[float, float, int]:
    """Order of the front: highest score first, then lowest cost, then lowest id."""
    return (-c.score, c.cost, c.id)


def _dominates(a: Champion, b: Champion) -> bool:
    """Return True if ``a`` is at least as good as ``b`` on both objectives and better on one."""
    return a.score >= b.score and a.cost <= b.cost and (a.score > b.score or a.cost < b.cost)


def update_front(
    front: Iterable[Champion], candidates: Iterable[Champion], cap: int = SHORTLIST_CAP
) -> tuple[Champion, ...]:
    """Return the Pareto front of ``front`` and ``candidates``, capped at ``cap`` entries.

    The objectives are :attr:`~hybrid.state.Champion.score` (the validation metric,
    or the budget AUC under ``selection.fitness = "budget_auc"``) and
    :attr:`~hybrid.state.Champion.cost`. Of entries with equal score and cost only
    the first in order (lowest id) is kept. Past ``cap``, the entries with the lowest
    score are cut. The result is sorted by score (highest first), then cost, then id.
    """
    if cap < 1:
        raise ValueError(f"cap should be >= 1, got {cap}")
    pool = sorted({c.id: c for c in (*front, *candidates)}.values(), key=_key)
    kept: list[Champion] = []
    for c in pool:  # sorted: a dominating entry (or an equal one with a lower id) comes first
        if not any(_dominates(k, c) or (k.score, k.cost) == (c.score, c.cost) for k in kept):
            kept.append(c)
    return tuple(kept[:cap])


def choose_within(front: Iterable[Champion], epsilon: float) -> Champion:
    """Return the cheapest entry (:attr:`Champion.cost`) whose metric is within ``epsilon`` of the best.

    Ties on cost go to the higher metric, then to the lower id. ``epsilon = 0``
    gives the best entry (the "best" rule's champion when the front holds it).

    Raises:
        ValueError: ``front`` is empty or ``epsilon`` is negative.
    """
    entries = list(front)
    if not entries:
        raise ValueError("the short list is empty: no genome to choose from")
    if epsilon < 0:
        raise ValueError(f"epsilon should be >= 0, got {epsilon}")
    best = max(c.metric for c in entries)
    floor = best - epsilon - 1e-12  # 1.0 - 0.005 rounds below 0.995: a float's slack, not a rule
    within = [c for c in entries if c.metric >= floor]
    return min(within, key=lambda c: (c.cost, -c.metric, c.id))


def choose(
    front: Iterable[Champion],
    rule: str,
    epsilon: float,
    selection: Mapping[int, float] | None = None,
    auc: Mapping[int, float] | None = None,
) -> Champion:
    """Return the champion ``rule`` picks from the short list.

    Args:
        front: the short list (entries with their validation fitness in ``metric``).
        rule: "best" (highest score, then smallest) or "smallest_within" (the
            smallest entry within ``epsilon`` of the highest score).
        epsilon: the slack of "smallest_within" (ignored by "best").
        selection: each entry's fitness on the selection split by id (higher is
            better). When given, the rule reads these scores, and ties on them go to
            the higher validation fitness; entries without a finite selection
            score are left out (unless none has one: then validation decides).
        auc: each entry's budget AUC by id (``selection.champion_objective =
            "budget_auc"``: the mean of its metric over the budgets; higher is
            better). When given, the rule reads these instead, ties going to the
            higher selection score, then the higher validation fitness; entries
            without a finite AUC are left out (unless none has one: then the
            scores above decide).

    Raises:
        ValueError: ``front`` is empty, ``rule`` is unknown or ``epsilon`` negative.
    """
    entries = list(front)
    if rule not in ("best", "smallest_within"):
        raise ValueError(f"rule should be 'best' or 'smallest_within', got {rule!r}")
    if auc is not None:
        ranked = [c for c in entries if math.isfinite(auc.get(c.id, math.nan))]
        if ranked:
            sel = {} if selection is None else selection

            def second(c: Champion) -> float:
                s = sel.get(c.id, math.nan)
                return s if math.isfinite(s) else -math.inf

            return _pick(ranked, rule, epsilon, lambda c: auc[c.id], lambda c: (-second(c), -c.metric))
    scored = [c for c in entries if selection is not None and math.isfinite(selection.get(c.id, math.nan))]
    if not scored:
        return choose_within(entries, epsilon if rule == "smallest_within" else 0.0)
    assert selection is not None
    return _pick(scored, rule, epsilon, lambda c: selection[c.id], lambda c: (-c.metric,))


def _pick(
    entries: list[Champion],
    rule: str,
    epsilon: float,
    score: Callable[[Champion], float],
    ties: Callable[[Champion], tuple[float, ...]],
) -> Champion:
    """Apply ``rule`` to ``score`` (higher is better); ``ties`` orders equal scores (lowest first)."""
    if rule == "best":
        return min(entries, key=lambda c: (-score(c), *ties(c), c.cost, c.id))
    if epsilon < 0:
        raise ValueError(f"epsilon should be >= 0, got {epsilon}")
    top = max(score(c) for c in entries)
    within = [c for c in entries if score(c) >= top - epsilon - 1e-12]
    return min(within, key=lambda c: (c.cost, -score(c), *ties(c), c.id))
