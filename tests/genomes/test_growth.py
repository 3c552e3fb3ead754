"""add_node, widen and add_edge: what each builds, beyond the shared properties."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from genomes import (
    GATE_KINDS,
    Genome,
    InnovationTracker,
    MutationConfig,
    NotApplicable,
    add_edge,
    add_node,
    evaluate,
    widen,
)
from tests.strategies import randomise


def _chain(n_in=3, hidden=(4,), n_out=2, seed=0):
    rng = np.random.default_rng(seed)
    t = InnovationTracker()
    return Genome.minimal(n_in, n_out, rng, t, hidden=hidden), t, rng


def _x(genome, seed=1):
    return np.random.default_rng(seed).normal(size=(32, genome.n_inputs))


# ------------------------------------------------------------------- add_node
@pytest.mark.parametrize("gate", GATE_KINDS)
@pytest.mark.parametrize(("activation", "per_rank"), [("relu", 2), ("identity", 1)])
def test_add_node_splits_an_edge_with_an_exact_low_rank_node(gate, activation, per_rank):
    g, t, rng = _chain(n_in=3, hidden=(), n_out=2)
    g = randomise(g, rng, closed_share=0.0)
    config = MutationConfig(gate=gate, new_node_activation=activation)
    child, record = add_node(g, rng, t, config)
    k = record.args["node"]
    assert k == t.split_node(0, 1)
    assert record.args == {
        "src": 0, "dst": 1, "node": k, "width": 2 * per_rank, "activation": activation,
        "rank": 2, "truncated": False,
    }  # fmt: skip
    a = child.node(k)
    assert (a["role"], a["width"], a["activation"]) == ("hidden", 2 * per_rank, activation)
    assert not a["bias"].any()
    assert not child.edge(0, 1)["enabled"]
    assert child.edge(0, k)["innovation"] == t.edge(0, k)
    assert child.edge(k, 1)["innovation"] == t.edge(k, 1)
    x = _x(g)
    np.testing.assert_allclose(evaluate(child, x, gate), evaluate(g, x, gate), rtol=1e-6, atol=1e-6)


def test_add_node_with_an_inexact_activation_falls_back_to_relu():
    g, t, rng = _chain()
    child, record = add_node(g, rng, t, MutationConfig(new_node_activation="tanh"))
    assert record.args["activation"] == "relu"
    assert child.node(record.args["node"])["activation"] == "relu"


def test_add_node_truncates_the_svd_to_the_width_cap():
    g, t, rng = _chain(n_in=6, hidden=(), n_out=5)
    child, record = add_node(g, rng, t, MutationConfig(max_new_node_width=4))
    assert record.args["rank"] == 2 and record.args["truncated"]
    assert child.node(record.args["node"])["width"] == 4
    # a rank-2 approximation: close to, but not, the old function
    x = _x(g)
    assert not np.allclose(evaluate(child, x), evaluate(g, x))


def test_add_node_compensates_a_half_open_edge_gate():
    g, t, rng = _chain(hidden=())
    g.graph.edges[0, 1]["gate"] = np.float32(-1.3)
    child, _ = add_node(g, rng, t, MutationConfig())
    x = _x(g)
    np.testing.assert_allclose(evaluate(child, x), evaluate(g, x), rtol=1e-6, atol=1e-6)


def test_add_node_splits_another_edge_when_one_split_node_exists():
    g, t, rng = _chain(hidden=())
    child, record = add_node(g, rng, t, MutationConfig())
    k = record.args["node"]
    again = child.copy()
    again.graph.edges[0, 1]["enabled"] = True  # splitting 0->1 again would reuse id k
    for seed in range(10):
        _, r = add_node(again.validate(), np.random.default_rng(seed), t, MutationConfig())
        assert (r.args["src"], r.args["dst"]) in {(0, k), (k, 1)}


def test_add_node_refuses_when_every_split_node_exists():
    g, _, rng = _chain(hidden=(2,))
    h = g.hidden_nodes()[0]
    t = InnovationTracker.from_dict(  # a tracker that maps both edges' splits to h itself
        {"next_id": 10, "generation": 0, "edges": [], "splits": [[0, h, h], [h, 1, h]], "named": {}}
    )
    with pytest.raises(NotApplicable, match="already exists"):
        add_node(g, rng, t, MutationConfig())


def test_add_node_gets_a_fresh_id_in_a_later_generation():
    g, t, rng = _chain(hidden=())
    first, r1 = add_node(g, rng, t, MutationConfig())
    same, r2 = add_node(g, rng, t, MutationConfig())
    t.next_generation()
    later, r3 = add_node(g, rng, t, MutationConfig())
    assert r1.args["node"] == r2.args["node"] != r3.args["node"]


def test_add_node_skips_edges_with_non_finite_weights():
    g, t, rng = _chain(hidden=())
    g.graph.edges[0, 1]["weight"][0, 0] = np.nan
    with pytest.raises(NotApplicable, match="finite"):
        add_node(g, rng, t, MutationConfig())


def test_add_node_rejects_a_gate_init_that_closes_new_gates():
    g, t, rng = _chain(hidden=())
    with pytest.raises(ValueError, match="gate_init"):
        add_node(g, rng, t, MutationConfig(gate="hard_concrete", gate_init=-6.0))


# ---------------------------------------------------------------------- widen
def test_widen_adds_neurons_with_zero_outgoing_weights():
    g, t, rng = _chain(hidden=(4,))
    h = g.hidden_nodes()[0]
    child, record = widen(g, rng, t, MutationConfig(widen_max=3))
    added = record.args["added"]
    assert record.args["node"] == h and 1 <= added <= 3
    a = child.node(h)
    assert a["width"] == 4 + added
    np.testing.assert_array_equal(a["bias"][4:], 0)
    np.testing.assert_array_equal(a["gate"][4:], np.float32(MutationConfig().gate_init))
    assert child.edge(0, h)["weight"].shape == (4 + added, 3)
    assert child.edge(0, h)["weight"][4:].any()  # new incoming rows are random
    out = child.edge(h, 1)["weight"]
    assert out.shape == (2, 4 + added) and not out[:, 4:].any()
    np.testing.assert_array_equal(out[:, :4], g.edge(h, 1)["weight"])


def test_widen_resizes_a_recurrent_self_loop_both_ways():
    g, t, rng = _chain(hidden=(2,))
    h = g.hidden_nodes()[0]
    g.graph.add_edge(h, h, innovation=t.edge(h, h), enabled=True, recurrent=True,
                     weight=np.ones((2, 2), np.float32), gate=np.float32(3.0))  # fmt: skip
    child, record = widen(g.validate(), rng, t, MutationConfig())
    w = child.edge(h, h)["weight"]
    n = 2 + record.args["added"]
    assert w.shape == (n, n) and not w[:, 2:].any()
    child.validate()


def test_widen_respects_the_width_cap():
    g, t, rng = _chain(hidden=(5,))
    child, record = widen(g, rng, t, MutationConfig(widen_max=4, max_node_width=6))
    assert record.args["added"] == 1
    with pytest.raises(NotApplicable):
        widen(child, rng, t, MutationConfig(max_node_width=6))


def test_widen_needs_a_hidden_node():
    g, t, rng = _chain(hidden=())
    with pytest.raises(NotApplicable):
        widen(g, rng, t, MutationConfig())


# ------------------------------------------------------------------- add_edge
def test_add_edge_makes_a_zero_weight_skip_connection():
    g, t, rng = _chain(hidden=(4, 3))
    child, record = add_edge(g, rng, t, MutationConfig())
    s, d = record.args["src"], record.args["dst"]
    assert not g.graph.has_edge(s, d)
    e = child.edge(s, d)
    assert e["innovation"] == record.args["innovation"] == t.edge(s, d)
    assert e["enabled"] and not e["recurrent"] and not e["weight"].any()
    assert e["weight"].shape == (child.node(d)["width"], child.node(s)["width"])
    assert nx.is_directed_acyclic_graph(child.feedforward_graph())


def test_add_edge_finds_every_allowed_pair_then_stops():
    g, t, rng = _chain(hidden=(2, 2))  # 0 -> a -> b -> 1: allowed extra pairs 0->b, 0->1, a->1
    added = set()
    for _ in range(3):
        g, record = add_edge(g, rng, t, MutationConfig())
        added.add((record.args["src"], record.args["dst"]))
    a, b = g.hidden_nodes()
    assert added == {(0, b), (0, 1), (a, 1)}
    with pytest.raises(NotApplicable, match="already connected"):
        add_edge(g, rng, t, MutationConfig())


def test_add_edge_never_closes_a_cycle_through_a_disabled_edge():
    g, t, rng = _chain(hidden=(2, 2))
    a, b = g.hidden_nodes()
    for pair in [(0, b), (0, 1), (a, 1)]:
        g.graph.add_edge(*pair, innovation=t.edge(*pair), enabled=False, recurrent=False,
                         weight=np.zeros((g.node(pair[1])["width"], g.node(pair[0])["width"]), np.float32),
                         gate=np.float32(3.0))  # fmt: skip
    with pytest.raises(NotApplicable):
        add_edge(g.validate(), rng, t, MutationConfig())
