"""Genome: building, copying, comparing, and validate() naming what is wrong."""

from __future__ import annotations

import re

import networkx as nx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from genomes import Genome, GenomeError, InnovationTracker
from genomes.genome import branch_name, edge_attrs, node_attrs
from tests.strategies import grown_genomes


def _genome() -> Genome:
    """Return 0 (input x3) -> 2 (hidden x4) -> 1 (output x2); edges 0->2 (inv 3), 2->1 (inv 4)."""
    return Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), hidden=(4,))


def _set(path, value):
    def edit(g: Genome) -> None:
        target = g.graph.nodes[path[0]] if len(path) == 2 else g.graph.edges[path[0], path[1]]
        target[path[-1]] = value

    return edit


def _delete(path):
    def edit(g: Genome) -> None:
        target = g.graph.nodes[path[0]] if len(path) == 2 else g.graph.edges[path[0], path[1]]
        del target[path[-1]]

    return edit


def _add_edge(s, d, **kw):
    def edit(g: Genome) -> None:
        shape = (g.graph.nodes[d]["width"], g.graph.nodes[s]["width"])
        g.graph.add_edge(s, d, **edge_attrs(kw.pop("innovation", 99), np.zeros(shape), **kw))

    return edit


def _add_node(n, role="hidden", width=2, activation="relu"):
    return lambda g: g.graph.add_node(n, **node_attrs(role, width, activation))


def _chain(*edits):
    def edit(g: Genome) -> None:
        for e in edits:
            e(g)

    return edit


BROKEN = {
    "second input": (_add_node(9, "input", 3, "identity"), "exactly one input node, found 2"),
    "no output": (_set((1, "role"), "hidden"), "exactly one output node, found 0"),
    "width zero": (_set((2, "width"), 0), "node 2: width should be an int >= 1, got 0"),
    "width bool": (_set((2, "width"), True), "node 2: width should be an int >= 1"),
    "missing bias": (_delete((2, "bias")), "node 2: missing attribute 'bias'"),
    "unknown role": (_set((2, "role"), "middle"), "node 2: role should be one of"),
    "unknown activation": (_set((2, "activation"), "swish"), "node 2: activation should be one of"),
    "output activation": (_set((1, "activation"), "relu"), "node 1: output node activation should be 'identity'"),
    "bias shape": (_set((2, "bias"), np.zeros(3, np.float32)), r"node 2: bias should be a float32 array of shape \(4,\)"),
    "gate dtype": (_set((2, "gate"), np.zeros(4)), r"node 2: gate should be a float32 array .* float64"),
    "input bias": (_set((0, "bias"), np.ones(3, np.float32)), "node 0: input node bias is unused and should be zero"),
    "output gate": (_set((1, "gate"), np.ones(2, np.float32)), "node 1: output node gate is unused and should be zero"),
    "negative id": (_add_node(-1), "node -1: id should be a non-negative int"),
    "string id": (_add_node("x"), "node x: id should be a non-negative int"),
    "weight shape": (_set((0, 2, "weight"), np.zeros((3, 4), np.float32)), r"edge 0->2: weight should be a float32 array of shape \(4, 3\)"),
    "gate float": (_set((0, 2, "gate"), 3.0), "edge 0->2: gate should be a float32 scalar"),
    "enabled int": (_set((0, 2, "enabled"), 1), "edge 0->2: enabled should be a bool"),
    "negative innovation": (_set((0, 2, "innovation"), -3), "edge 0->2: innovation should be a non-negative int"),
    "missing weight": (_delete((2, 1, "weight")), "edge 2->1: missing attribute 'weight'"),
    "duplicate innovation": (_set((2, 1, "innovation"), 3), "edge 2->1: innovation 3 is also used by edge 0->2"),
    "into input": (_add_edge(2, 0), "edge 2->0: no non-recurrent edge may enter the input node"),
    "out of output": (_add_edge(1, 2), "edge 1->2: no non-recurrent edge may leave the output node"),
    "self-loop": (_add_edge(2, 2), "edge 2->2: a self-loop should be recurrent"),
    "cycle": (_chain(_add_node(5), _add_edge(2, 5, innovation=7), _add_edge(5, 2, innovation=8)), "non-recurrent edges should form a DAG, found cycle"),
    "unreachable output": (_set((2, 1, "enabled"), False), "output node 1 should be reachable from input node 0"),
    "dead end": (_chain(_add_node(7), _add_edge(0, 7)), "hidden node 7 should lie on an enabled path from input 0 to output 1"),
    "orphan": (_chain(_add_node(7), _add_edge(7, 1)), "hidden node 7 should lie on an enabled path"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_validate_names_the_node_or_edge_and_the_rule(case):
    edit, message = BROKEN[case]
    g = _genome()
    edit(g)
    with pytest.raises(GenomeError, match=message):
        g.validate()


def test_validate_rejects_a_multigraph():
    g = Genome(nx.MultiDiGraph(_genome().graph))
    with pytest.raises(GenomeError, match="networkx.DiGraph"):
        g.validate()


def test_validate_accepts_recurrent_edges_that_close_cycles():
    g = _genome()
    g.graph.add_edge(2, 2, **edge_attrs(7, np.zeros((4, 4)), recurrent=True))
    g.graph.add_edge(1, 2, **edge_attrs(8, np.zeros((4, 2)), recurrent=True))
    assert g.validate() is g


def test_minimal_builds_ids_widths_and_innovations():
    t = InnovationTracker()
    g = Genome.minimal(3, 2, np.random.default_rng(0), t, hidden=(4, 5), activation="tanh")
    a, b = g.hidden_nodes()
    assert (g.input_id, g.output_id, g.n_inputs, g.n_outputs) == (0, 1, 3, 2)
    assert [g.node(n)["width"] for n in (a, b)] == [4, 5]
    assert {g.node(n)["activation"] for n in (a, b)} == {"tanh"}
    assert g.enabled_edges() == [(0, a), (a, b), (b, 1)]
    assert [g.edge(*e)["innovation"] for e in g.enabled_edges()] == [t.edge(0, a), t.edge(a, b), t.edge(b, 1)]
    assert g.topological_order() == [0, a, b, 1]
    assert g.depths() == {0: 0, a: 1, b: 2, 1: 3}
    assert g.n_parameters() == 3 * 4 + 4 * 5 + 5 * 2 + 4 + 5 + 2


def test_minimal_branches_sit_side_by_side_between_input_and_output():
    t = InnovationTracker()
    g = Genome.minimal(3, 2, np.random.default_rng(0), t, branches=(4, 6), activation="tanh").validate()
    a, b = g.hidden_nodes()
    assert (a, b) == (t.named_node(branch_name(0, 4)), t.named_node(branch_name(1, 6)))
    assert [g.node(n)["width"] for n in (a, b)] == [4, 6]
    assert sorted(g.enabled_edges()) == sorted([(0, a), (a, 1), (0, b), (b, 1)])
    assert g.depths() == {0: 0, a: 1, b: 1, 1: 2}
    assert g.n_parameters() == 3 * 4 + 4 * 2 + 3 * 6 + 6 * 2 + 4 + 6 + 2
    # the output's blocks are scaled by 1/sqrt(2): the two branches' sum keeps a chain's scale
    again = Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), branches=(4, 6))
    rng = np.random.default_rng(0)
    draws = [rng.normal(0.0, 1.0 / np.sqrt(s), size=(d, s)) for s, d in ((3, 4), (4, 2), (3, 6), (6, 2))]
    np.testing.assert_allclose(again.edge(a, 1)["weight"], (draws[1] / np.sqrt(2)).astype(np.float32))
    np.testing.assert_allclose(again.edge(0, b)["weight"], draws[2].astype(np.float32))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_inputs": 0}, "widths should be >= 1"),
    ({"hidden": (2, 0)}, "widths should be >= 1"),
    ({"branches": (2, 0)}, "widths should be >= 1"),
    ({"hidden": (2,), "branches": (3,)}, "hidden .a chain. or branches .side by side., not both"),
    ({"activation": "swish"}, "activation should be one of"),
])  # fmt: skip
def test_minimal_rejects_bad_arguments(kwargs, message):
    args = {"n_inputs": 2, "n_outputs": 1, "rng": np.random.default_rng(0), "tracker": InnovationTracker()}
    with pytest.raises(GenomeError, match=message):
        Genome.minimal(**{**args, **kwargs})


def test_copy_is_deep():
    g = _genome()
    c = g.copy()
    c.graph.nodes[2]["bias"][0] = 5.0
    c.graph.edges[0, 2]["weight"][0, 0] = 5.0
    c.graph.add_node(9, **node_attrs("hidden", 1, "relu"))
    assert g.node(2)["bias"][0] == 0.0 and g.edge(0, 2)["weight"][0, 0] != 5.0 and 9 not in g.graph


def test_equality_is_bitwise_and_ignores_meta():
    g = _genome()
    c = g.copy()
    c.meta["id"] = 7
    assert c == g
    c.graph.nodes[2]["bias"][0] = -0.0  # equal as floats, different bits
    assert c != g
    nan = g.copy()
    nan.graph.edges[0, 2]["weight"][0, 0] = np.nan
    assert nan == nan.copy()


def test_str_lists_nodes_in_topological_order_with_their_inputs():
    g = _genome()
    g.graph.add_edge(0, 1, **edge_attrs(9, np.zeros((2, 3)), enabled=False))
    text = str(g)
    assert text.splitlines()[0] == repr(g)
    assert re.search(r"^\s+1 output x2\s+identity <- 0 off, 2$", text, re.M)
    assert "hidden=1 nodes/4 neurons, edges=3 (1 disabled)" in repr(g)


def test_iter_arrays_labels_every_array():
    labels = [label for label, _ in _genome().iter_arrays()]
    assert labels[:2] == ["node 0 bias", "node 0 gate"]
    assert "edge 0->2 weight" in labels and len(labels) == 3 * 2 + 2 * 2


def _networkx_depths(g: Genome) -> dict[int, int]:
    """Depths as networkx reads them off the enabled feed-forward view (the reference)."""
    active, depth = g.active_graph(), {}
    for n in nx.lexicographical_topological_sort(g.feedforward_graph()):
        preds = list(active.predecessors(n))
        depth[n] = 1 + max(depth[p] for p in preds) if preds else 0
    return depth


@given(grown_genomes(recurrent=True, max_mutations=20))
def test_topological_order_and_depths_are_networkx_s(grown):
    g = grown.genome
    assert g.topological_order() == list(nx.lexicographical_topological_sort(g.feedforward_graph()))
    assert g.depths() == _networkx_depths(g)
    assert g.depths(order=g.topological_order(), preds=g.active_predecessors()) == g.depths()
    active = g.active_graph()
    assert {n: sorted(p) for n, p in g.active_predecessors().items()} == {
        n: sorted(active.predecessors(n)) for n in g.graph
    }


@given(st.integers(2, 12), st.data())
def test_topological_order_breaks_ties_by_id_on_any_dag(n, data):
    """Random DAGs over shuffled ids, some edges recurrent (these may point backwards)."""
    ids = data.draw(st.permutations(range(100, 100 + n)))
    g = Genome(nx.DiGraph())
    for i in ids:
        g.graph.add_node(i)
    pairs = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.booleans(), st.booleans())
    for a, b, recurrent, enabled in data.draw(st.lists(pairs, max_size=3 * n)):
        if a != b or recurrent:
            s, d = (ids[a], ids[b]) if recurrent or a < b else (ids[b], ids[a])
            g.graph.add_edge(s, d, recurrent=recurrent, enabled=enabled)
    assert g.topological_order() == list(nx.lexicographical_topological_sort(g.feedforward_graph()))
    assert g.depths() == _networkx_depths(g)
    active = g.active_graph()
    assert {n: sorted(p) for n, p in g.active_predecessors().items()} == {
        n: sorted(active.predecessors(n)) for n in g.graph
    }


def test_topological_order_raises_networkx_s_error_on_a_cycle():
    g = _genome()
    g.graph.add_edge(1, 2, **edge_attrs(9, np.zeros((4, 2))))
    with pytest.raises(nx.NetworkXUnfeasible):
        g.topological_order()
