"""The reserve rule (Miconi 2016) on genomes: what it keeps, adds and deletes."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from genomes import Genome, InnovationTracker, evaluate_sequence
from hybrid.growth import ReserveConfig, neuron_sizes, reserve_rule
from tests.strategies import genomes_strategy


def _net(sizes: list[float]) -> Genome:
    """2 inputs -> one hidden node whose neuron i has outgoing |weights| summing to sizes[i] -> 2 outputs."""
    g = Genome.minimal(
        2, 2, np.random.default_rng(0), InnovationTracker(), hidden=[len(sizes)]
    ).copy()
    h = g.hidden_nodes()[0]
    graph = g.graph
    graph.nodes[h]["gate"] = np.full(len(sizes), 30.0, np.float32)  # sigmoid(30) == 1 in float32
    w = np.zeros((2, len(sizes)), np.float32)
    w[0] = sizes
    graph.edges[h, g.output_id]["weight"] = w
    graph.edges[h, g.output_id]["gate"] = np.float32(30.0)
    return g.validate()


def test_sizes_sum_the_outgoing_absolute_weights_through_the_gates() -> None:
    g = _net([0.5, 0.01, 2.0])
    np.testing.assert_allclose(
        neuron_sizes(g, "sigmoid")[g.hidden_nodes()[0]], [0.5, 0.01, 2.0], rtol=1e-6
    )


def test_extra_sub_threshold_neurons_are_deleted_smallest_first_keeping_k() -> None:
    g = _net([0.5, 0.01, 0.02, 0.001, 2.0])
    always = ReserveConfig(k=1, threshold=0.05, p_delete=1.0, p_add=0.0)
    child, edits, records = reserve_rule(g, np.random.default_rng(0), always, "sigmoid", 3.0, 64)
    h = g.hidden_nodes()[0]
    assert child.node(h)["width"] == 3
    np.testing.assert_array_equal(edits[0].keep, [0, 2, 4])  # the largest sub-threshold one stays
    assert records[0].op == "reserve" and records[0].args == {
        "node": h,
        "added": 0,
        "removed": [1, 3],
    }
    assert g.node(h)["width"] == 5  # the input genome is untouched


def test_a_node_without_reserve_gets_one_neuron_of_size_about_the_threshold() -> None:
    g = _net([0.5, 2.0])
    always = ReserveConfig(k=1, threshold=0.05, p_add=1.0)
    child, edits, records = reserve_rule(g, np.random.default_rng(0), always, "sigmoid", 30.0, 64)
    h = g.hidden_nodes()[0]
    assert child.node(h)["width"] == 3 and edits[0].added == 1
    assert neuron_sizes(child, "sigmoid")[h][-1] <= 0.05 + 1e-6
    assert records[0].args == {"node": h, "added": 1, "removed": []}
    x = np.random.default_rng(1).normal(size=(4, 3, 2))
    # The new neuron's output is small: the function moves by at most its size times its activation.
    before, after = evaluate_sequence(g, x)[0], evaluate_sequence(child, x)[0]
    assert np.abs(after - before).max() < 0.05 * 10


def test_a_node_with_exactly_k_in_reserve_is_left_alone() -> None:
    g = _net([0.5, 0.01])
    always = ReserveConfig(k=1, threshold=0.05, p_add=1.0, p_delete=1.0)
    child, edits, records = reserve_rule(g, np.random.default_rng(0), always, "sigmoid", 3.0, 64)
    assert child is g and edits == [] and records == []


def test_probabilities_compound_over_the_steps_between_applications() -> None:
    assert abs(ReserveConfig(every=1).chance(0.01) - 0.01) < 1e-15
    assert abs(ReserveConfig(every=20).chance(0.01) - (1 - 0.99**20)) < 1e-15


@given(genomes_strategy(recurrent=True), st.integers(0, 2**32 - 1))
def test_the_rule_keeps_any_genome_valid_and_never_empties_a_node(genome, seed) -> None:
    cfg = ReserveConfig(k=1, threshold=0.5, p_add=0.5, p_delete=0.5, every=1)
    child, edits, _ = reserve_rule(genome, np.random.default_rng(seed), cfg, "sigmoid", 3.0, 12)
    child.validate()
    for e in edits:
        assert child.node(e.node)["width"] == len(e.keep) + e.added >= 1
