"""prune_neurons, prune_edge and remove_node: what each removes and what it keeps."""

from __future__ import annotations

import numpy as np
import pytest

from genomes import (
    Genome,
    InnovationTracker,
    MutationConfig,
    NotApplicable,
    add_edge,
    add_node,
    evaluate,
    prune_edge,
    prune_neurons,
    remove_node,
)

HC = MutationConfig(gate="hard_concrete")
CLOSED, OPEN = np.float32(-6.0), np.float32(3.0)


def _chain(n_in=3, hidden=(4,), n_out=2, activation="relu", seed=0):
    rng = np.random.default_rng(seed)
    t = InnovationTracker()
    return Genome.minimal(n_in, n_out, rng, t, hidden=hidden, activation=activation), t, rng


def _x(genome, seed=1):
    return np.random.default_rng(seed).normal(size=(32, genome.n_inputs))


def _same_function(a, b, gate="hard_concrete"):
    x = _x(a)
    np.testing.assert_allclose(evaluate(b, x, gate), evaluate(a, x, gate), rtol=1e-9, atol=1e-12)


# -------------------------------------------------------------- prune_neurons
def test_prune_neurons_removes_exactly_the_closed_neurons():
    g, t, rng = _chain(hidden=(5,))
    h = g.hidden_nodes()[0]
    g.graph.nodes[h]["gate"] = np.array([OPEN, CLOSED, OPEN, CLOSED, OPEN], np.float32)
    child, record = prune_neurons(g, rng, t, HC)
    assert record.args == {"node": h, "removed": [1, 3], "closed": True}
    assert child.node(h)["width"] == 3
    np.testing.assert_array_equal(child.edge(0, h)["weight"], g.edge(0, h)["weight"][[0, 2, 4]])
    np.testing.assert_array_equal(child.edge(h, 1)["weight"], g.edge(h, 1)["weight"][:, [0, 2, 4]])
    _same_function(g, child.validate())


def test_prune_neurons_keeps_one_neuron_of_a_fully_closed_node():
    g, t, rng = _chain(hidden=(3,))
    h = g.hidden_nodes()[0]
    g.graph.nodes[h]["gate"] = np.full(3, CLOSED)
    child, record = prune_neurons(g, rng, t, HC)
    assert child.node(h)["width"] == 1 and len(record.args["removed"]) == 2
    _same_function(g, child.validate())


def test_prune_neurons_removes_the_weakest_when_none_is_closed():
    g, t, rng = _chain(hidden=(4,))
    h = g.hidden_nodes()[0]
    g.graph.edges[h, 1]["weight"][:, 2] *= 1e-3  # neuron 2 barely reaches the output
    child, record = prune_neurons(g, rng, t, MutationConfig(prune_weakest=1))
    assert record.args == {"node": h, "removed": [2], "closed": False}
    child, record = prune_neurons(g, rng, t, MutationConfig(prune_weakest=10))
    assert child.node(h)["width"] == 1 and len(record.args["removed"]) == 3


def test_prune_neurons_has_nothing_to_do_on_width_one_open_nodes():
    g, t, rng = _chain(hidden=(1, 1))
    with pytest.raises(NotApplicable):
        prune_neurons(g, rng, t, HC)


# ----------------------------------------------------------------- prune_edge
def test_prune_edge_removes_a_closed_skip_edge():
    g, t, rng = _chain(hidden=(3,))
    g, record = add_edge(g, rng, t, HC)  # the only addable pair: 0 -> 1
    g.graph.edges[0, 1]["weight"][:] = 1.0
    g.graph.edges[0, 1]["gate"] = CLOSED
    child, record = prune_edge(g, rng, t, HC)
    assert record.args == {"src": 0, "dst": 1, "innovation": t.edge(0, 1), "closed": True}
    assert not child.graph.has_edge(0, 1)
    _same_function(g, child.validate())


def test_prune_edge_removes_the_weakest_open_edge():
    g, t, rng = _chain(hidden=(3,))
    g, _ = add_edge(g, rng, t, HC)
    g.graph.edges[0, 1]["weight"][:] = 1e-4
    _, record = prune_edge(g, rng, t, HC)
    assert (record.args["src"], record.args["dst"], record.args["closed"]) == (0, 1, False)


def test_prune_edge_never_disconnects_the_genome():
    g, t, rng = _chain(hidden=(3, 2))
    for e in g.graph.edges:
        g.graph.edges[e]["gate"] = CLOSED  # all closed, yet each is the only path
    with pytest.raises(NotApplicable, match="connected"):
        prune_edge(g, rng, t, HC)


# ---------------------------------------------------------------- remove_node
def test_remove_node_bridges_a_chain_with_the_linearised_path():
    # an identity node with zero bias is linear: the bridge reproduces it exactly
    g, t, rng = _chain(hidden=(4,), activation="identity")
    h = g.hidden_nodes()[0]
    g.graph.nodes[h]["gate"] = np.array([3.0, -1.0, 0.5, 2.0], np.float32)
    child, record = remove_node(g, rng, t, MutationConfig())
    assert record.args == {"node": h, "closed": False, "reconnected": [[0, 1]]}
    assert h not in child.graph and child.edge(0, 1)["innovation"] == t.edge(0, 1)
    x = _x(g)
    np.testing.assert_allclose(evaluate(child.validate(), x), evaluate(g, x), rtol=1e-5, atol=1e-6)


def test_remove_node_re_enables_a_disabled_edge_it_bridges():
    g, t, rng = _chain(hidden=())
    g, _ = add_node(g, rng, t, MutationConfig())
    child, record = remove_node(g, rng, t, MutationConfig())
    assert record.args["reconnected"] == [[0, 1]]
    e = child.edge(0, 1)
    assert e["enabled"] and e["innovation"] == g.edge(0, 1)["innovation"]
    child.validate()


def test_remove_node_adds_no_edge_where_the_graph_stays_connected():
    g, t, rng = _chain(hidden=(3,))
    g, _ = add_edge(g, rng, t, MutationConfig())  # 0 -> 1 skip
    _, record = remove_node(g, rng, t, MutationConfig())
    assert record.args["reconnected"] == []


def test_remove_node_prefers_a_closed_node_and_keeps_the_function():
    g, t, rng = _chain(hidden=(3, 2))
    a, b = g.hidden_nodes()
    g, _ = add_edge(g, rng, t, HC)
    g, _ = add_edge(g, rng, t, HC)
    g, _ = add_edge(g, rng, t, HC)  # now 0->b, 0->1, a->1 too
    g.graph.nodes[b]["gate"] = np.full(2, CLOSED)
    for seed in range(5):
        child, record = remove_node(g, np.random.default_rng(seed), t, HC)
        assert record.args["node"] == b and record.args["closed"]
        _same_function(g, child.validate())


def test_remove_node_needs_a_hidden_node():
    g, t, rng = _chain(hidden=())
    with pytest.raises(NotApplicable):
        remove_node(g, rng, t, MutationConfig())
