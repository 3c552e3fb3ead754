"""Mutation operators: purity, validity, records, and function preservation."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import (
    GATE_KINDS,
    GROWTH,
    MUTATIONS,
    PERTURBATION,
    PRUNING,
    Genome,
    InnovationTracker,
    MutationConfig,
    NotApplicable,
    add_edge,
    crossover,
    evaluate,
    to_dict,
)
from tests.strategies import grown_genomes, mutation_config, randomise

SEEDS = st.integers(0, 2**32 - 1)


def _copy_tracker(t: InnovationTracker) -> InnovationTracker:
    return InnovationTracker.from_dict(t.to_dict())


def _inputs(genome: Genome, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(16, genome.n_inputs))


def _chain(widths=(3, 4, 2), activation="relu", rng_seed=0):
    """Return (genome, tracker, rng): input -> hidden -> output."""
    rng = np.random.default_rng(rng_seed)
    t = InnovationTracker()
    g = Genome.minimal(widths[0], widths[-1], rng, t, hidden=widths[1:-1], activation=activation)
    return g, t, rng


# ----------------------------------------------------------------- the registry
def test_registry_groups_cover_every_operator_once():
    assert sorted(GROWTH + PRUNING + PERTURBATION) == sorted(MUTATIONS)


@pytest.mark.parametrize("name", sorted(MUTATIONS))
@settings(max_examples=60)
@given(grown=grown_genomes(gate=st.sampled_from(GATE_KINDS), adaptive=True), seed=SEEDS)
def test_operator_returns_valid_child_and_leaves_parent_untouched(name, grown, seed):
    parent = grown.genome
    before = to_dict(parent)
    try:
        child, record = MUTATIONS[name](parent, np.random.default_rng(seed), grown.tracker, grown.config)
    except NotApplicable:
        return
    child.validate()
    assert to_dict(parent) == before
    assert record.op == name
    assert json.loads(json.dumps(record.to_dict())) == record.to_dict()


@pytest.mark.parametrize("name", sorted(MUTATIONS))
@settings(max_examples=20)
@given(grown=grown_genomes(), seed=SEEDS)
def test_operator_is_reproducible_from_the_seed(name, grown, seed):
    results = []
    for _ in range(2):
        try:
            results.append(
                MUTATIONS[name](
                    grown.genome, np.random.default_rng(seed), _copy_tracker(grown.tracker), grown.config
                )
            )
        except NotApplicable:
            results.append(None)
    if results[0] is None:
        assert results[1] is None
        return
    (a, ra), (b, rb) = results
    assert a == b and ra == rb


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_operator_never_shares_arrays_with_its_parent(name):
    g, t, rng = _chain(widths=(3, 4, 3, 2))
    g, _ = MUTATIONS["add_edge"](g, rng, t, MutationConfig())  # give every operator something
    g = randomise(g, rng, closed_share=0.3)
    try:
        child, _ = MUTATIONS[name](g, rng, t, MutationConfig(perturb_fraction=1.0))
    except NotApplicable:
        pytest.skip(f"{name} not applicable to the chain")
    parent = [a for _, a in g.iter_arrays() if isinstance(a, np.ndarray)]  # not immutable scalars
    for label, a in child.iter_arrays():
        assert not any(np.shares_memory(a, p) for p in parent), label


# --------------------------------------------------------------- properties
@settings(max_examples=300)
@given(
    grown=grown_genomes(gate=st.sampled_from(GATE_KINDS), max_mutations=4, adaptive=True),
    steps=st.lists(st.sampled_from(sorted(MUTATIONS) + ["crossover"]), max_size=12),
    seed=SEEDS,
)
def test_any_sequence_of_mutations_and_crossovers_gives_a_valid_genome(grown, steps, seed):
    rng = np.random.default_rng(seed)
    seen = [grown.genome]
    g = grown.genome
    for name in steps:
        try:
            if name == "crossover":
                other = seen[int(rng.integers(len(seen)))]
                g, _ = crossover(g, other, rng, grown.config) if rng.random() < 0.5 else crossover(
                    other, g, rng, grown.config
                )
            else:
                g, _ = MUTATIONS[name](g, rng, grown.tracker, grown.config)
        except NotApplicable:
            continue
        g.validate()
        seen.append(g)


@pytest.mark.parametrize("name", GROWTH)
@settings(max_examples=300)
@given(grown=grown_genomes(), gate=st.sampled_from(GATE_KINDS), seed=SEEDS)
def test_growth_keeps_the_function(name, grown, gate, seed):
    config = dataclasses.replace(mutation_config(gate), max_new_node_width=64)  # no truncated SVD
    rng = np.random.default_rng(seed)
    try:
        child, record = MUTATIONS[name](grown.genome, rng, grown.tracker, config)
    except NotApplicable:
        return
    if name == "add_node":
        assert not record.args["truncated"]
    x = _inputs(grown.genome, seed)
    before, after = evaluate(grown.genome, x, gate), evaluate(child, x, gate)
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)


@st.composite
def redundant_genomes(draw):
    """Draw a hard-concrete genome with extra skip edges and many closed gates."""
    grown = draw(grown_genomes(gate="hard_concrete", max_mutations=6))
    rng = np.random.default_rng(draw(SEEDS))
    g = grown.genome
    for _ in range(draw(st.integers(1, 4))):
        try:
            g, _ = add_edge(g, rng, grown.tracker, grown.config)
        except NotApplicable:
            break
    return dataclasses.replace(grown, genome=randomise(g, rng, closed_share=0.5))


@pytest.mark.parametrize("name", PRUNING)
@settings(max_examples=300)
@given(grown=redundant_genomes(), seed=SEEDS)
def test_pruning_closed_structure_keeps_the_function(name, grown, seed):
    try:
        child, record = MUTATIONS[name](grown.genome, np.random.default_rng(seed), grown.tracker, grown.config)
    except NotApplicable:
        return
    if not record.args["closed"]:
        return
    x = _inputs(grown.genome, seed)
    before = evaluate(grown.genome, x, "hard_concrete")
    np.testing.assert_allclose(evaluate(child, x, "hard_concrete"), before, rtol=1e-9, atol=1e-12)
