"""NEAT speciation: assignment by distance, stagnation bookkeeping, threshold, offspring split."""

from __future__ import annotations

import numpy as np
import pytest

from genomes import Genome, InnovationTracker
from hybrid.speciation import Species, adapt_threshold, allocate_offspring, drop_stagnant, speciate

FAILED = -1e9


def _genomes(n: int) -> list[Genome]:
    tracker = InnovationTracker()
    return [Genome.minimal(2, 1, np.random.default_rng(i), tracker, hidden=(2,)) for i in range(n)]


def _on_a_line(positions: dict[int, float], genomes: dict[int, Genome]):
    """A distance that places each genome at a point on a line."""
    where = {id(g): positions[i] for i, g in genomes.items()}
    return lambda a, b: abs(where[id(a)] - where[id(b)])


def test_genomes_join_the_first_species_within_the_threshold_or_found_a_new_one() -> None:
    gs = dict(enumerate(_genomes(5)))
    dist = _on_a_line({0: 0.0, 1: 0.5, 2: 3.0, 3: 3.4, 4: 10.0}, gs)
    fitness = dict.fromkeys(gs, 0.5)
    species, next_id = speciate(gs, fitness, [], 1.0, dist, generation=0, next_species_id=7)
    assert [(s.id, s.members) for s in species] == [(7, (0, 1)), (8, (2, 3)), (9, (4,))]
    assert next_id == 10
    assert all(s.created == 0 for s in species)


def test_the_best_member_becomes_representative_and_improvement_is_recorded() -> None:
    gs = dict(enumerate(_genomes(3)))
    dist = _on_a_line({0: 0.0, 1: 0.2, 2: 0.4}, gs)
    old = Species(3, gs[0], created=0, best_fitness=0.6, last_improved=0)
    (s,), _ = speciate(gs, {0: 0.5, 1: 0.9, 2: 0.1}, [old], 1.0, dist, generation=4, next_species_id=4)
    assert s.id == 3 and s.members == (0, 1, 2)
    assert s.representative is gs[1] and s.best_fitness == 0.9 and s.last_improved == 4
    (s2,), _ = speciate(gs, {0: 0.5, 1: 0.7, 2: 0.1}, [s], 1.0, dist, generation=5, next_species_id=4)
    assert s2.best_fitness == 0.9 and s2.last_improved == 4  # no improvement: the counter stays
    assert old.members == () and old.best_fitness == 0.6  # the input species is not changed


def test_a_species_left_without_members_disappears() -> None:
    gs = dict(enumerate(_genomes(3)))
    dist = _on_a_line({0: 0.0, 1: 5.0, 2: 5.1}, gs)
    old = [Species(0, gs[0], 0), Species(1, gs[1], 0)]
    now = {1: gs[1], 2: gs[2]}
    species, next_id = speciate(now, {1: 0.1, 2: 0.2}, old, 1.0, dist, generation=1, next_species_id=2)
    assert [(s.id, s.members) for s in species] == [(1, (1, 2))] and next_id == 2


def test_a_failed_member_is_never_a_species_best() -> None:
    gs = dict(enumerate(_genomes(2)))
    dist = _on_a_line({0: 0.0, 1: 0.1}, gs)
    (s,), _ = speciate(gs, {0: FAILED, 1: 0.2}, [], 1.0, dist, generation=0, next_species_id=0)
    assert s.representative is gs[1] and s.best_fitness == 0.2


@pytest.mark.parametrize(
    ("n_species", "expected"),
    [(1, 1.5), (3, 2.0), (5, 2.5)],
)
def test_the_threshold_moves_one_step_toward_the_target(n_species: int, expected: float) -> None:
    assert adapt_threshold(2.0, n_species, target=3, step=0.5) == expected


def test_the_threshold_never_falls_below_its_floor() -> None:
    assert adapt_threshold(0.1, 1, target=3, step=0.5, floor=0.05) == 0.05


def test_stagnant_species_are_dropped_unless_they_hold_the_best_genome() -> None:
    (g,) = _genomes(1)
    fresh = Species(0, g, 0, 0.5, last_improved=9, members=(1,))
    stale = Species(1, g, 0, 0.5, last_improved=2, members=(2,))
    stale_with_best = Species(2, g, 0, 0.9, last_improved=1, members=(3,))
    kept = drop_stagnant([fresh, stale, stale_with_best], generation=10, stagnation=5, best_id=3)
    assert [s.id for s in kept] == [0, 2]
    # the boundary: improved exactly `stagnation` generations ago is stagnant
    assert drop_stagnant([fresh, stale], generation=14, stagnation=5, best_id=99) == [fresh, stale]  # none left
    assert [s.id for s in drop_stagnant([fresh, stale], 13, 5, 99)] == [0]


def test_offspring_are_split_by_share_and_always_sum_to_the_total() -> None:
    assert allocate_offspring([1.0, 1.0], 10) == [5, 5]
    counts = allocate_offspring([0.9, 0.1, 0.5], 20)
    assert sum(counts) == 20 and counts[0] > counts[2] > counts[1] >= 1
    assert allocate_offspring([0.5, FAILED, 0.7], 3) == [1, 1, 1]  # every species gets one while it can
    assert sum(allocate_offspring([0.3] * 5, 3)) == 3
    assert allocate_offspring([], 4) == []


def test_species_round_trip_through_json() -> None:
    (g,) = _genomes(1)
    for s in (Species(4, g, 2, 0.75, 3, (5, 6)), Species(0, g, 0)):
        assert Species.from_dict(s.to_dict()) == s
