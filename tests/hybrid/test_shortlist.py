"""The short list: the capped Pareto front and the smallest-within-epsilon choice (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import Genome, InnovationTracker
from hybrid.shortlist import choose_within, update_front
from hybrid.state import Champion

_GENOME = Genome.minimal(2, 2, np.random.default_rng(0), InnovationTracker(), hidden=[2])


def _c(i: int, metric: float, size: int) -> Champion:
    return Champion(i, 0, metric, size, 0, 0.0, _GENOME)


def _points(draw_list: list[tuple[int, int]]) -> list[Champion]:
    # metrics on a grid of 1/200 (a 200-sample validation split's accuracies)
    return [_c(i, m / 200, s) for i, (m, s) in enumerate(draw_list)]


POINTS = st.lists(st.tuples(st.integers(150, 200), st.integers(1, 400)), min_size=1, max_size=60)


def test_dominated_entries_leave_and_equal_ones_keep_the_lowest_id() -> None:
    front = update_front((), [_c(0, 0.9, 100), _c(1, 0.95, 200), _c(2, 0.9, 150), _c(3, 0.95, 200)])
    assert [c.id for c in front] == [1, 0]  # 2 is dominated by 0; 3 equals 1 and has a higher id
    front = update_front(front, [_c(4, 0.96, 90)])
    assert [c.id for c in front] == [4]


def test_the_cap_cuts_the_lowest_metrics_and_keeps_the_best() -> None:
    line = [_c(i, 0.5 + i / 100, 10 + i) for i in range(10)]  # every point on the front
    front = update_front((), line, cap=4)
    assert [c.id for c in front] == [9, 8, 7, 6]
    with pytest.raises(ValueError, match="cap"):
        update_front((), line, cap=0)


def test_choose_within_takes_the_smallest_within_epsilon_then_the_higher_metric() -> None:
    front = [_c(0, 1.0, 300), _c(1, 0.995, 150), _c(2, 0.995, 150), _c(3, 0.99, 40)]
    assert choose_within(front, 0.005).id == 1  # 1.0 - 0.005 is within despite float rounding
    assert choose_within(front, 0.0).id == 0
    assert choose_within(front, 0.01).id == 3
    with pytest.raises(ValueError, match="empty"):
        choose_within([], 0.1)


def test_with_average_flops_the_front_and_the_choice_read_flops_per_input_not_parameters() -> None:
    # 0: fewest parameters but dear per input; 1: more parameters, cheap per input (exits)
    a = Champion(0, 0, 0.99, 100, 2000, 0.0, _GENOME, average_flops=1900.0)
    b = Champion(1, 0, 0.99, 300, 3000, 0.0, _GENOME, average_flops=900.0)
    best = Champion(2, 0, 1.0, 400, 4000, 0.0, _GENOME, average_flops=3000.0)
    front = update_front((), [a, b, best])
    assert [c.id for c in front] == [2, 1]  # a is dominated per input
    assert choose_within(front, 0.01).id == 1
    assert (a.cost, b.cost, _c(3, 0.5, 42).cost) == (1900.0, 900.0, 42.0)
    # without average FLOPs the same entries are ranked by parameters
    plain = [Champion(c.id, 0, c.metric, c.active_params, c.flops, 0.0, _GENOME) for c in (a, b, best)]
    assert choose_within(update_front((), plain), 0.01).id == 0


@settings(max_examples=200, deadline=None)
@given(POINTS, st.integers(1, 12), st.sampled_from([0.0, 0.005, 0.02, 0.1]))
def test_the_choice_is_on_the_front_within_epsilon_and_nothing_smaller_is(
    raw: list[tuple[int, int]], cap: int, epsilon: float
) -> None:
    points = _points(raw)
    # offered in two batches, as two generations would
    front = update_front(update_front((), points[: len(points) // 2], cap), points[len(points) // 2 :], cap)
    assert 1 <= len(front) <= cap
    for a in front:  # a front: no entry dominates another
        assert not any(
            b is not a and b.metric >= a.metric and b.active_params <= a.active_params for b in front
        )
    best = max(p.metric for p in points)
    top = max(points, key=lambda p: (p.metric, -p.active_params, -p.id))
    assert front[0].metric == best and front[0].active_params == top.active_params  # never cut
    chosen = choose_within(front, epsilon)
    assert chosen in front
    assert chosen.metric >= best - epsilon - 1e-12
    # no genome evaluated is smaller and within epsilon unless the cap cut it
    if len(update_front((), points, cap=10**6)) <= cap:
        assert not any(p.metric >= best - epsilon - 1e-12 and p.active_params < chosen.active_params for p in points)
    assert choose_within(front, 0.0).metric == best
