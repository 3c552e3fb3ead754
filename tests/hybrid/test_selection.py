"""Parent selection: lexicographic tournaments, NSGA-II Pareto survivors, explicit randomness."""

from __future__ import annotations

import random

import numpy as np

from hybrid.selection import Candidate, nsga2, tournament


def test_tournaments_rank_by_metric_then_by_the_smaller_network() -> None:
    cands = [Candidate(0, 0.8, 10), Candidate(1, 0.9, 50), Candidate(2, 0.9, 20), Candidate(3, 0.1, 1)]
    assert cands[2].fitness > cands[1].fitness > cands[0].fitness > cands[3].fitness
    picks = tournament(cands, 400, size=4, rng=np.random.default_rng(0))  # entrants drawn with replacement
    counts = [picks.count(i) for i in range(4)]
    assert counts[2] > counts[1] > counts[0] > counts[3]
    assert tournament(cands[1:3], 50, size=2, rng=np.random.default_rng(1)).count(1) < 25


def test_tournaments_depend_only_on_the_generator_and_leave_global_random_alone() -> None:
    cands = [Candidate(i, i / 10, 10) for i in range(10)]
    random.seed(123)
    expected_next = random.random()
    random.seed(123)
    a = tournament(cands, 20, 3, np.random.default_rng(5))
    b = tournament(cands, 20, 3, np.random.default_rng(5))
    assert a == b and random.random() == expected_next
    assert tournament(cands, 20, 3, np.random.default_rng(6)) != a
    assert max(a) >= 5  # size-3 tournaments favour the fitter half


def test_nsga2_keeps_the_pareto_front_of_metric_and_size() -> None:
    cands = [
        Candidate(0, 1.0, 100),  # best metric
        Candidate(1, 0.9, 10),  # smallest among the good
        Candidate(2, 0.8, 50),  # dominated by 1
        Candidate(3, 0.2, 5),  # smallest overall: on the front
        Candidate(4, 0.1, 200),  # dominated by everything
    ]
    assert sorted(nsga2(cands, 3)) == [0, 1, 3]
    assert sorted(nsga2(cands, 4)) == [0, 1, 2, 3]
    assert 4 not in nsga2(cands, 4)


def test_nsga2_prefers_a_failed_members_absence() -> None:
    failed = Candidate(9, -1e9, 10**12)
    cands = [Candidate(0, 0.5, 30), Candidate(1, 0.6, 40), failed]
    assert 9 not in nsga2(cands, 2)
