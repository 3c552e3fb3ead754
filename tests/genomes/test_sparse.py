"""Sparse edges (``mutation.sparsify``): the ``mask`` attribute, its operator and its counts.

A sparse edge's ``mask`` says which entries of its weight are connections; the weight
is exactly 0 elsewhere, so the function is that of the dense edge holding the zeros,
while parameters and FLOPs count only the connections.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import (
    Genome,
    GenomeError,
    InnovationTracker,
    MutationConfig,
    NotApplicable,
    active_structure,
    crossover,
    evaluate,
)
from genomes.adaptive import adaptive_plan
from genomes.budgets import budget_chain
from genomes.mutations import add_node, perturb_weights, remove_node, sparsify, widen
from genomes.serialize import from_dict, to_dict, to_graphml
from tests.strategies import grown_genomes, without_masks

SEEDS = st.integers(0, 2**32 - 1)


def _sparse_edges(genome: Genome) -> list[tuple[int, int]]:
    return [(s, d) for s, d, a in genome.graph.edges(data=True) if a.get("mask") is not None]


def _minimal(seed: int, n_in: int = 6, n_out: int = 3, hidden: tuple[int, ...] = (5,)) -> tuple[Genome, InnovationTracker]:
    tracker = InnovationTracker()
    return Genome.minimal(n_in, n_out, np.random.default_rng(seed), tracker, hidden=hidden), tracker


@settings(max_examples=150, deadline=None)
@given(grown=grown_genomes(sparse=True), seed=SEEDS, fraction=st.sampled_from([0.1, 0.5, 1.0]))
def test_sparsify_removes_the_weakest_connections_and_keeps_one_per_neuron(grown, seed, fraction):
    config = MutationConfig(sparsify_fraction=fraction)
    try:
        child, record = sparsify(grown.genome, np.random.default_rng(seed), grown.tracker, config)
    except NotApplicable:
        return
    child.validate()
    s, d = record.args["edge"]
    before, after = grown.genome.graph.edges[s, d], child.graph.edges[s, d]
    old = before.get("mask")
    old = np.ones(before["weight"].shape, bool) if old is None else old
    new = after["mask"]
    removable = int((old.sum(1) - 1).clip(min=0).sum())
    assert record.args["removed"] == int(np.ceil(fraction * removable)) == int(old.sum() - new.sum())
    # never a row's last connection (a row may have none already: pruning its sources' neurons
    # removes columns)
    assert (new <= old).all() and (new.sum(1) >= np.minimum(old.sum(1), 1)).all()
    assert (after["weight"][~new] == 0).all()
    np.testing.assert_array_equal(after["weight"][new], before["weight"][new])
    gone = old & ~new
    if gone.any():  # magnitude pruning: nothing kept in a row that could lose one is weaker
        w = np.abs(before["weight"])
        kept_weakest = min(
            (w[r][new[r]].min() for r in range(len(new)) if new[r].sum() > 1), default=np.inf
        )
        assert w[gone].max() <= kept_weakest
    for other in grown.genome.graph.edges:
        if other != (s, d):  # only one edge changes
            assert np.array_equal(grown.genome.graph.edges[other]["weight"], child.graph.edges[other]["weight"])
    # Counts: each removed live connection saves a parameter and two FLOPs.
    live_before, live_after = active_structure(grown.genome, grown.config.gate), active_structure(child, grown.config.gate)
    if (s, d) in live_before.edges and live_after.edges == live_before.edges:
        saved = live_before.entries(s, d) - live_after.entries(s, d)
        assert live_before.n_parameters - live_after.n_parameters == saved
        assert live_before.flops - live_after.flops == 2 * saved
    assert grown.genome.n_parameters() - child.n_parameters() == record.args["removed"]
    if record.args["closed"]:
        x = np.random.default_rng(seed).normal(size=(5, child.n_inputs))
        np.testing.assert_array_equal(evaluate(child, x, grown.config.gate), evaluate(grown.genome, x, grown.config.gate))


@settings(max_examples=100, deadline=None)
@given(grown=grown_genomes(sparse=True, adaptive=True, n_outputs=st.integers(2, 3)), seed=SEEDS)
def test_a_sparse_genome_computes_the_dense_function_and_counts_its_connections(grown, seed):
    genome = grown.genome
    dense = without_masks(genome)
    x = np.random.default_rng(seed).normal(size=(7, genome.n_inputs))
    gate = grown.config.gate
    np.testing.assert_allclose(evaluate(genome, x, gate), evaluate(dense, x, gate), rtol=1e-12, atol=1e-14)
    live, full = active_structure(genome, gate), active_structure(dense, gate)
    absent = sum(
        int((~genome.graph.edges[e]["mask"])[live.neurons[e[1]]][:, live.neurons[e[0]]].sum())
        for e in live.edges
        if e in live.sparse
    )
    assert full.n_weights - live.n_weights == absent
    assert full.flops - live.flops == 2 * absent
    assert dense.n_parameters() - genome.n_parameters() == sum(
        int((~genome.graph.edges[e]["mask"]).sum()) for e in _sparse_edges(genome) if genome.graph.edges[e]["enabled"]
    )
    plan = adaptive_plan(genome, gate)  # per-node FLOPs read the same counts
    assert plan.full_flops == live.flops


def test_growth_connects_new_neurons_on_a_sparse_edge():
    genome, tracker = _minimal(0, hidden=(4,))
    rng = np.random.default_rng(1)
    config = MutationConfig(sparsify_fraction=1.0, widen_max=2)
    for _ in range(2):  # sparsify both edges (input -> hidden and hidden -> output)
        genome, _ = sparsify(genome, rng, tracker, config)
    hidden = genome.hidden_nodes()[0]
    before = {e: genome.graph.edges[e]["mask"].copy() for e in _sparse_edges(genome)}
    child, record = widen(genome, rng, tracker, config)
    added = record.args["added"] if "added" in record.args else child.graph.nodes[hidden]["width"] - 4
    for (s, d), old in before.items():
        new = child.graph.edges[s, d]["mask"]
        if d == hidden:  # new rows: connected to every source neuron
            assert new.shape == (old.shape[0] + added, old.shape[1]) and new[old.shape[0] :].all()
        if s == hidden:  # new columns: connected (zero weights that training moves)
            assert new.shape == (old.shape[0], old.shape[1] + added) and new[:, old.shape[1] :].all()
        assert (new[: old.shape[0], : old.shape[1]] == old).all()
    child.validate()


def test_removing_a_node_re_enables_the_edge_it_split_dense_and_valid():
    # sparsify an edge, split it (add_node disables it, mask and all), remove the new node:
    # the re-enabled gene carries the dense linear stand-in, so its old mask must go
    # (found by the mutation-sequence property test under the dev profile)
    genome, tracker = _minimal(0, n_in=2, n_out=2, hidden=())
    config = MutationConfig(sparsify_fraction=0.5)
    rng = np.random.default_rng(0)
    sparse, _ = sparsify(genome, rng, tracker, config)
    assert _sparse_edges(sparse) == [(0, 1)]
    split, record = add_node(sparse, rng, tracker, config)
    assert not split.graph.edges[0, 1]["enabled"] and split.graph.edges[0, 1].get("mask") is not None
    back, record = remove_node(split, rng, tracker, config)
    back.validate()
    assert record.args["reconnected"] == [[0, 1]]
    edge = back.graph.edges[0, 1]
    assert edge["enabled"] and edge.get("mask") is None
    assert edge["innovation"] == genome.graph.edges[0, 1]["innovation"]
    x = np.random.default_rng(1).normal(size=(16, 2))
    np.testing.assert_allclose(evaluate(back, x), evaluate(split, x), atol=1e-5)  # the relu split is exact


def test_sparsify_is_not_applicable_when_every_neuron_has_one_connection():
    genome, tracker = _minimal(0, n_in=1, n_out=2, hidden=(3,))
    rng = np.random.default_rng(0)
    config = MutationConfig(sparsify_fraction=1.0)
    applied = 0
    while True:
        try:
            genome, _ = sparsify(genome, rng, tracker, config)
            applied += 1
        except NotApplicable as e:
            assert "no edge has a neuron with two connections" in str(e)
            break
    assert applied == 1  # hidden -> output (3 columns); input -> hidden has one column
    assert all(m.sum(1).min() == 1 for m in (genome.graph.edges[e]["mask"] for e in _sparse_edges(genome)))


def test_perturb_and_crossover_keep_absent_connections_absent():
    genome, tracker = _minimal(3)
    rng = np.random.default_rng(3)
    sparse, _ = sparsify(genome, rng, tracker, MutationConfig())
    (s, d), = _sparse_edges(sparse)
    for k in range(20):
        child, _ = perturb_weights(sparse, np.random.default_rng(k), tracker, MutationConfig(perturb_fraction=1.0))
        child.validate()
        assert (child.graph.edges[s, d]["weight"][~sparse.graph.edges[s, d]["mask"]] == 0).all()
    for k in range(20):  # the weights come with their own parent's mask (or none)
        child, _ = crossover(genome, sparse, np.random.default_rng(k), MutationConfig())
        child.validate()
        e = child.graph.edges[s, d]
        src = sparse if np.array_equal(e["weight"], sparse.graph.edges[s, d]["weight"]) else genome
        assert (e.get("mask") is None) == (src.graph.edges[s, d].get("mask") is None)


def test_json_round_trip_writes_version_5_only_with_a_mask():
    genome, tracker = _minimal(4)
    assert to_dict(genome)["version"] == 2
    sparse, _ = sparsify(genome, np.random.default_rng(4), tracker, MutationConfig())
    data = json.loads(json.dumps(to_dict(sparse)))
    assert data["version"] == 5
    back = from_dict(data)
    assert back == sparse
    (s, d), = _sparse_edges(sparse)
    np.testing.assert_array_equal(back.graph.edges[s, d]["mask"], sparse.graph.edges[s, d]["mask"])
    h = to_graphml(sparse)
    assert h.edges[s, d]["connections"] == int(sparse.graph.edges[s, d]["mask"].sum())
    older = to_dict(genome)
    older["version"] = 4
    assert from_dict(older) == genome


def _with_mask(genome: Genome, mask, weight_zero: bool = True, edge=None) -> Genome:
    child = genome.copy()
    s, d = edge or next((s, d) for s, d in child.graph.edges if child.graph.nodes[s]["role"] == "input")
    child.graph.edges[s, d]["mask"] = mask
    if weight_zero and isinstance(mask, np.ndarray) and mask.dtype == bool and mask.shape == child.graph.edges[s, d]["weight"].shape:
        child.graph.edges[s, d]["weight"] = np.where(mask, child.graph.edges[s, d]["weight"], np.float32(0))
    return child


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda w: np.ones((w.shape[0] + 1, w.shape[1]), bool), "mask should be a bool array of shape"),
        (lambda w: np.ones(w.shape, np.float32), "mask should be a bool array of shape"),
    ],
)
def test_validate_refuses_a_malformed_mask(make, message):
    genome, _ = _minimal(5)
    edge = next((s, d) for s, d in genome.graph.edges if genome.graph.nodes[s]["role"] == "input")
    bad = _with_mask(genome, make(genome.graph.edges[edge]["weight"]))
    with pytest.raises(GenomeError, match=message):
        bad.validate()


def test_validate_refuses_a_weight_where_the_mask_has_no_connection():
    genome, _ = _minimal(6)
    edge = next((s, d) for s, d in genome.graph.edges if genome.graph.nodes[s]["role"] == "input")
    mask = np.ones(genome.graph.edges[edge]["weight"].shape, bool)
    mask[0, 0] = False
    bad = _with_mask(genome, mask, weight_zero=False)
    bad.graph.edges[edge]["weight"][0, 0] = 0.5
    with pytest.raises(GenomeError, match="weight should be 0 where mask is False"):
        bad.validate()


def test_json_refuses_a_mask_that_is_not_zeros_and_ones():
    genome, tracker = _minimal(7)
    sparse, _ = sparsify(genome, np.random.default_rng(7), tracker, MutationConfig())
    data = to_dict(sparse)
    edge = next(e for e in data["edges"] if "mask" in e)
    w = sparse.graph.edges[edge["src"], edge["dst"]]["mask"].astype(float)
    w[0, 0] = 0.5
    edge["mask"] = w.tolist()
    with pytest.raises(GenomeError, match=r"mask: every entry should be 0 or 1"):
        from_dict(data)


def test_budget_levels_count_connections():
    genome, tracker = _minimal(8, hidden=(6,))
    rng = np.random.default_rng(8)
    genome, _ = sparsify(genome, rng, tracker, MutationConfig(sparsify_fraction=0.7))
    chain = budget_chain(genome, "sigmoid")
    for k in range(len(chain.removals) + 1):
        level = chain.level(k)
        st_ = level.structure
        dense = sum(int(st_.neurons[d].sum()) * int(st_.neurons[s].sum()) for s, d in st_.edges)
        assert level.flops == 2 * st_.n_weights
        assert st_.n_weights <= dense
    assert chain.level(0).flops == active_structure(genome).flops
