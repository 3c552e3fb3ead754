"""Reproduction: exact population size, elites unchanged, parents from the right pool, pure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genomes import Genome, GenomeError, InnovationTracker, MutationRecord, to_dict
from hybrid.config import loads_config
from hybrid.reproduction import Member, mutate, reproduce
from hybrid.selection import Candidate
from hybrid.speciation import Species
from tests.hybrid.tiny import tiny_toml


@pytest.fixture(scope="module")
def config():
    return loads_config(tiny_toml(Path("/tmp")), source="tiny.toml")


def _population(n: int) -> tuple[dict[int, Genome], InnovationTracker]:
    tracker = InnovationTracker()
    return {i: Genome.minimal(2, 2, np.random.default_rng(i), tracker, hidden=(3,)) for i in range(n)}, tracker


def _reproduce(config, genomes, cands, species, tracker, *, method="tournament", population=10, elitism=1, seed=0):
    return reproduce(
        genomes,
        cands,
        species,
        population=population,
        elitism=elitism,
        crossover_rate=0.5,
        survival_fraction=0.5,
        method=method,
        tournament_size=2,
        rates=config.mutation.rates(),
        mutation_config=config.mutation_config(),
        rng=np.random.default_rng(seed),
        tracker=tracker,
        generation=3,
        next_id=100,
    )


def _setup():
    genomes, tracker = _population(8)
    metric = [0.9, 0.5, 0.4, 0.3, 0.95, 0.2, 0.1, 0.05]
    cands = {i: Candidate(i, metric[i], 10 + i) for i in genomes}
    species = [
        Species(0, genomes[0], 0, members=(0, 1, 2, 3)),
        Species(1, genomes[4], 0, members=(4, 5, 6, 7)),
    ]
    return genomes, tracker, cands, species


@pytest.mark.parametrize("method", ["tournament", "nsga2"])
@pytest.mark.parametrize("population", [2, 7, 10])
def test_the_next_generation_has_exactly_the_population_size(config, method: str, population: int) -> None:
    genomes, tracker, cands, species = _setup()
    children, next_id = _reproduce(config, genomes, cands, species, tracker, method=method, population=population)
    assert len(children) == population
    assert [c.id for c in children] == list(range(100, 100 + population)) and next_id == 100 + population
    assert all(c.born == 4 for c in children)


def test_each_species_best_survives_unchanged_as_an_elite(config) -> None:
    genomes, tracker, cands, species = _setup()
    children, _ = _reproduce(config, genomes, cands, species, tracker)
    elites = [c for c in children if c.operators == (MutationRecord("elite").to_dict(),)]
    assert [(c.parents, c.genome) for c in elites] == [((0,), genomes[0]), ((4,), genomes[4])]


def test_tournament_parents_come_from_their_species_top_fraction(config) -> None:
    genomes, tracker, cands, species = _setup()
    children, _ = _reproduce(config, genomes, cands, species, tracker, elitism=0, population=40)
    # survival_fraction 0.5 of 4 members: the two best of each species
    allowed = {0, 1, 4, 5}
    assert {p for c in children for p in c.parents} <= allowed
    assert {p for c in children for p in c.parents} & {0, 1} and {p for c in children for p in c.parents} & {4, 5}


def test_nsga2_parents_come_from_the_pareto_survivors_of_the_whole_population(config) -> None:
    genomes, tracker, cands, species = _setup()
    # fronts of (metric up, size down): {0 (0.9, 10), 4 (0.95, 14)}, then {1}, {2}, {3}, ...;
    # NSGA-II keeps ceil(0.5 * 8) = 4 across both species: 0, 4, 1, 2
    children, _ = _reproduce(config, genomes, cands, species, tracker, method="nsga2", elitism=0, population=40)
    parents = {p for c in children for p in c.parents}
    assert {0, 4} <= parents <= {0, 1, 2, 4}


def test_reproduction_does_not_change_the_parents(config) -> None:
    genomes, tracker, cands, species = _setup()
    snap = {i: to_dict(g) for i, g in genomes.items()}
    _reproduce(config, genomes, cands, species, tracker)
    assert {i: to_dict(g) for i, g in genomes.items()} == snap


def test_same_generator_same_children(config) -> None:
    genomes, _, cands, species = _setup()
    a, _ = _reproduce(config, genomes, cands, species, InnovationTracker(50))
    b, _ = _reproduce(config, genomes, cands, species, InnovationTracker(50))
    c, _ = _reproduce(config, genomes, cands, species, InnovationTracker(50), seed=1)
    assert a == b and a != c


def test_mutate_with_all_rates_zero_changes_nothing_but_prunes_closed_gates(config) -> None:
    genomes, tracker = _population(1)
    g, records = mutate(genomes[0], {}, np.random.default_rng(0), tracker, config.mutation_config())
    assert g == genomes[0] and records == []


def test_a_mutation_that_makes_an_invalid_child_is_named_in_one_error(config) -> None:
    genomes, tracker = _population(1)

    def broken(genome, rng, tracker, mutation_config):
        child = genome.copy()
        hidden = next(n for n, a in child.graph.nodes(data=True) if a["role"] == "hidden")
        child.graph.nodes[hidden]["bias"] = np.zeros(99, np.float32)  # not the node's width
        return child, MutationRecord("broken", {"node": hidden})

    with pytest.raises(GenomeError, match=r"mutations broken\(node=\d+\) made an invalid child: node \d+"):
        mutate(genomes[0], {"broken": 1.0}, np.random.default_rng(0), tracker, config.mutation_config(), {"broken": broken})
    g, records = mutate(genomes[0], {"broken": 0.0}, np.random.default_rng(0), tracker, config.mutation_config(), {"broken": broken})
    assert records == [] and g == genomes[0]


def test_member_round_trips_through_json() -> None:
    genomes, _ = _population(1)
    m = Member(5, genomes[0], 2, (1, 3), ({"op": "elite", "args": {}},))
    assert Member.from_dict(m.to_dict()) == m
