"""Gate-driven pruning: closed structure goes, the function stays."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import InnovationTracker, active_structure, evaluate
from genomes.genome import Genome, edge_attrs
from genomes.prune import prune_closed
from tests.strategies import genomes_strategy


@settings(max_examples=300)
@given(genome=genomes_strategy(gate="hard_concrete"), seed=st.integers(0, 2**32 - 1))
def test_prune_closed_keeps_the_function_and_the_live_size(genome: Genome, seed: int) -> None:
    pruned, record = prune_closed(genome, "hard_concrete")
    pruned.validate()
    x = np.random.default_rng(seed).normal(size=(16, genome.n_inputs))
    before = evaluate(genome, x, "hard_concrete")
    after = evaluate(pruned, x, "hard_concrete")
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
    live_before = active_structure(genome, "hard_concrete")
    live_after = active_structure(pruned, "hard_concrete")
    if record is None or not record.args["folded"]:
        assert live_after.n_parameters == live_before.n_parameters
    else:  # a folded constant node's biases live on in the biases downstream
        assert live_after.n_parameters < live_before.n_parameters
    if record is None:
        assert pruned == genome
    else:
        assert pruned.n_parameters() < genome.n_parameters() or record.args["folded"]


@settings(max_examples=100)
@given(genome=genomes_strategy(gate="hard_concrete"))
def test_prune_closed_is_idempotent(genome: Genome) -> None:
    once, _ = prune_closed(genome, "hard_concrete")
    twice, record = prune_closed(once, "hard_concrete")
    assert record is None and twice == once


def test_closed_neurons_are_removed_and_the_argument_is_untouched() -> None:
    g = Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), hidden=(4, 5))
    g.graph.nodes[2]["gate"][:2] = -10.0
    snapshot = g.copy()
    pruned, record = prune_closed(g, "hard_concrete")
    assert record is not None and record.op == "prune_closed" and record.args["neurons"] == 2
    assert pruned.graph.nodes[2]["width"] == 2
    assert pruned.graph.edges[2, 3]["weight"].shape == (5, 2)
    assert g == snapshot


def test_a_constant_node_is_folded_into_the_bias_downstream() -> None:
    # 0 -> 2 -> 3 -> 1 with the edge 0->2 closed: node 2 outputs a constant.
    g = Genome.minimal(2, 2, np.random.default_rng(1), InnovationTracker(), hidden=(3, 4), activation="tanh")
    g.graph.add_edge(0, 3, **{**g.graph.edges[0, 2], "innovation": 99, "weight": np.ones((4, 2), np.float32)})
    g.graph.nodes[2]["bias"][:] = [0.5, -1.0, 2.0]
    g.graph.edges[0, 2]["gate"] = np.float32(-10.0)
    g.validate()
    pruned, record = prune_closed(g, "hard_concrete")
    assert record is not None and record.args["folded"] == [2]
    assert 2 not in pruned.graph
    x = np.random.default_rng(2).normal(size=(8, 2))
    np.testing.assert_allclose(evaluate(pruned, x, "hard_concrete"), evaluate(g, x, "hard_concrete"), atol=1e-5)


def test_sigmoid_gates_never_close_so_nothing_is_pruned() -> None:
    g = Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), hidden=(4,))
    g.graph.nodes[2]["gate"][:] = -10.0
    pruned, record = prune_closed(g, "sigmoid")
    assert record is None and pruned == g


def test_a_node_live_only_through_a_recurrent_edge_keeps_its_closed_path() -> None:
    # 0 -> 2 -> 3 -> 1 with 3 -> 1 closed, plus 0 -> 1 and a recurrent 2 -> 1: node 2 still
    # reaches the output (at the next step), but pruning the dead node 3 would leave it on
    # no feed-forward path, which no valid genome allows. (Found by the dev profile.)
    rng = np.random.default_rng(3)
    g = Genome.minimal(2, 2, rng, InnovationTracker(), hidden=(3, 4))
    g.graph.add_edge(0, 1, **edge_attrs(90, rng.normal(size=(2, 2)).astype(np.float32), 3.0))
    g.graph.add_edge(2, 1, **edge_attrs(91, rng.normal(size=(2, 3)).astype(np.float32), 3.0, recurrent=True))
    g.graph.edges[3, 1]["gate"] = np.float32(-10.0)
    g.validate()
    pruned, record = prune_closed(g, "hard_concrete")
    assert record is None and pruned == g
    pruned.validate()
    # without the recurrent edge node 2 is dead too, and both go
    h = g.copy()
    h.graph.remove_edge(2, 1)
    pruned, record = prune_closed(h.validate(), "hard_concrete")
    assert record is not None and set(pruned.hidden_nodes()) == set()
