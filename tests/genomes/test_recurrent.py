"""Recurrent edges in the genome: semantics, the operator, validity, serialisation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from genomes import (
    MUTATIONS,
    Genome,
    GenomeError,
    InnovationTracker,
    MutationConfig,
    NotApplicable,
    add_recurrent_edge,
    crossover,
    distance,
    evaluate,
    evaluate_sequence,
    from_dict,
    state_layout,
    state_size,
    to_dict,
    to_graphml,
)
from genomes.genome import edge_attrs
from tests.strategies import grown_genomes, randomise


def _one_neuron(w_in: float, w_rec: float, w_out: float) -> Genome:
    """x -> h (identity, self-loop w_rec) -> y: h(t) = w_in x(t) + w_rec h(t-1), y = w_out h."""
    g = Genome.minimal(
        1, 1, np.random.default_rng(0), InnovationTracker(), hidden=[1], activation="identity"
    )
    g = g.copy()
    h = g.hidden_nodes()[0]
    graph = g.graph
    for n in graph.nodes:
        graph.nodes[n]["gate"] = np.full_like(graph.nodes[n]["gate"], 30.0)
        graph.nodes[n]["bias"] = np.zeros_like(graph.nodes[n]["bias"])
    if g.output_id in graph.nodes:
        graph.nodes[g.output_id]["gate"] = np.zeros(1, np.float32)
    graph.nodes[g.input_id]["bias"] = np.zeros(1, np.float32)
    for s, d in list(graph.edges):
        graph.edges[s, d]["gate"] = np.float32(30.0)
    graph.edges[g.input_id, h]["weight"] = np.array([[w_in]], np.float32)
    graph.edges[h, g.output_id]["weight"] = np.array([[w_out]], np.float32)
    graph.add_edge(h, h, **edge_attrs(99, np.array([[w_rec]], np.float32), 30.0, recurrent=True))
    return g.validate()


def test_a_self_loop_computes_the_recurrence_by_hand() -> None:
    g = _one_neuron(2.0, 0.5, 3.0)
    x = np.array([[[1.0], [0.0], [0.0], [4.0]]])
    y, state = evaluate_sequence(g, x, "hard_concrete")
    h = [2.0, 1.0, 0.5, 8.25]
    np.testing.assert_allclose(y[0, :, 0], 3.0 * np.array(h))
    np.testing.assert_allclose(state, [[8.25]])
    assert state_layout(g) == ((g.hidden_nodes()[0], 1),) and state_size(g) == 1
    y0, _ = evaluate_sequence(g, x, "hard_concrete", state=np.array([[10.0]]))
    np.testing.assert_allclose(y0[0, 0, 0], 3.0 * (2.0 + 5.0))


@given(grown_genomes(recurrent=True), st.integers(0, 2**32 - 1))
def test_a_sequence_split_in_two_with_the_state_carried_is_the_whole(grown, seed) -> None:
    g = grown.genome
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, 6, g.n_inputs))
    whole, final = evaluate_sequence(g, x)
    first, mid = evaluate_sequence(g, x[:, :2])
    second, end = evaluate_sequence(g, x[:, 2:], state=mid)
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(end, final, rtol=1e-12, atol=1e-12)
    # A 2-D batch is one step from the zero state; a 3-D batch is evaluated step by step.
    np.testing.assert_array_equal(evaluate(g, x[:, 0]), whole[:, 0])
    np.testing.assert_array_equal(evaluate(g, x), whole)


@given(grown_genomes(recurrent=True), st.integers(0, 2**32 - 1))
def test_add_recurrent_edge_keeps_the_function_over_time(grown, seed) -> None:
    rng = np.random.default_rng(seed)
    g = grown.genome
    try:
        child, record = add_recurrent_edge(g, rng, grown.tracker, grown.config)
    except NotApplicable:
        return
    child.validate()
    assert record.op == "add_recurrent_edge"
    s, d = record.args["src"], record.args["dst"]
    assert child.edge(s, d)["recurrent"] and not np.any(child.edge(s, d)["weight"])
    x = rng.normal(size=(2, 5, g.n_inputs))
    state = rng.normal(size=(2, g.state_size))
    before, _ = evaluate_sequence(g, x, grown.config.gate, state=state)
    # The child's state has the new source's h too: its initial value is read through zero weights.
    layout = dict(child.state_layout())
    old = dict(g.state_layout())
    parts, start = [], 0
    for n, w in child.state_layout():
        if n in old:
            k = list(old).index(n)
            offset = sum(list(old.values())[:k])
            parts.append(state[:, offset : offset + w])
        else:
            parts.append(rng.normal(size=(2, w)))
        start += w
    child_state = np.concatenate(parts, 1) if layout else np.zeros((2, 0))
    after, _ = evaluate_sequence(child, x, grown.config.gate, state=child_state)
    np.testing.assert_allclose(after, before, rtol=1e-12, atol=1e-12)


@given(grown_genomes(recurrent=True), st.integers(0, 2**32 - 1), st.sampled_from(sorted(MUTATIONS)))
def test_every_operator_keeps_recurrent_genomes_valid(grown, seed, name) -> None:
    rng = np.random.default_rng(seed)
    try:
        child, _ = MUTATIONS[name](grown.genome, rng, grown.tracker, grown.config)
    except NotApplicable:
        return
    child.validate()
    assert from_dict(to_dict(child)) == child


@given(grown_genomes(recurrent=True), grown_genomes(recurrent=True), st.integers(0, 2**32 - 1))
def test_crossover_and_distance_take_recurrent_genomes(a, b, seed) -> None:
    child, _ = crossover(a.genome, b.genome, np.random.default_rng(seed), a.config)
    child.validate()
    assert child.recurrent_edges() == a.genome.recurrent_edges()  # the fitter's structure
    assert np.isfinite(distance(a.genome, b.genome))


def test_a_recurrent_edge_is_another_gene_than_the_feedforward_edge_of_its_pair() -> None:
    t = InnovationTracker()
    ff, rec = t.edge(3, 4), t.edge(3, 4, recurrent=True)
    assert ff != rec and t.edge(3, 4, recurrent=True) == rec
    again = InnovationTracker.from_dict(t.to_dict())
    assert again == t and again.edge(3, 4, recurrent=True) == rec
    assert (
        "recurrent_edges" not in InnovationTracker().to_dict()
    )  # feed-forward checkpoints unchanged


def test_validate_names_a_cycle_through_non_recurrent_edges() -> None:
    g = _one_neuron(1.0, 0.5, 1.0).copy()
    h = g.hidden_nodes()[0]
    graph = g.graph
    graph.edges[h, h]["recurrent"] = False
    with pytest.raises(GenomeError, match="self-loop should be recurrent"):
        g.validate()
    g = _one_neuron(1.0, 0.5, 1.0).copy()
    rng = np.random.default_rng(0)
    tracker = InnovationTracker(next_id=100)
    config = MutationConfig(widen_max=1)
    two, _ = MUTATIONS["add_node"](g, rng, tracker, config)
    hidden = two.hidden_nodes()
    child = two.copy()
    a, b = hidden[0], hidden[1]
    src, dst = (a, b) if child.graph.has_edge(a, b) else (b, a)
    shape = (child.node(src)["width"], child.node(dst)["width"])
    child.graph.add_edge(dst, src, **edge_attrs(500, np.zeros(shape, np.float32), 0.0))
    with pytest.raises(GenomeError, match="DAG, found cycle"):
        child.validate()


def test_serialisation_carries_recurrent_edges() -> None:
    g = _one_neuron(2.0, 0.5, 3.0)
    h = g.hidden_nodes()[0]
    back = from_dict(to_dict(g))
    assert back == g and back.edge(h, h)["recurrent"]
    assert to_graphml(g).edges[h, h]["recurrent"] is True


def test_gated_edges_and_recurrent_edges_are_in_innovation_order() -> None:
    g = _one_neuron(2.0, 0.5, 3.0)
    h = g.hidden_nodes()[0]
    assert g.recurrent_edges() == [(h, h)] and g.is_recurrent
    assert g.gated_edges() == [*g.enabled_edges(), (h, h)]
    ff = randomise(
        Genome.minimal(2, 2, np.random.default_rng(1), InnovationTracker()),
        np.random.default_rng(2),
    )
    assert not ff.is_recurrent and ff.state_size == 0 and ff.gated_edges() == ff.enabled_edges()
