"""Budgets (issue 17): the chain, its masks, sub_genome, assign_orders and the attributes.

The properties run on random feed-forward genomes (``tests.strategies``) given random
neuron orders and drop ranks, under both gate kinds (hard-concrete genomes carry
exactly closed gates, so dead and constant nodes occur).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import (
    GATE_KINDS,
    MUTATIONS,
    Genome,
    GenomeError,
    InnovationTracker,
    NotApplicable,
    active_structure,
    assign_orders,
    budget_chain,
    budget_masks,
    check_budget,
    check_budgets,
    crossover,
    evaluate,
    from_dict,
    load,
    save,
    sub_genome,
    to_dict,
    to_graphml,
)
from genomes.adaptive import is_adaptive
from genomes.budgets import _drop_allowed, _live_kept, drop_order, neuron_importance, neuron_order
from genomes.genome import edge_attrs, node_attrs
from genomes.mutations._neurons import append_neurons, keep_neurons
from genomes.prune import prune_closed
from tests.strategies import grown_genomes

BUDGETS = st.floats(0.001, 1.0, allow_nan=False)


def with_random_orders(genome: Genome, rng: np.random.Generator) -> Genome:
    """Return a copy with random orders on most hidden nodes and unique random drop ranks on some."""
    child = genome.copy()
    g = child.graph
    hidden = child.hidden_nodes()
    for n in hidden:
        g.nodes[n].pop("drop", None)
        if rng.random() < 0.7:
            g.nodes[n]["order"] = rng.permutation(int(g.nodes[n]["width"])).astype(np.int64)
    ranked = [n for n in hidden if rng.random() < 0.6]
    ranks = np.sort(rng.choice(3 * len(ranked) + 1, size=len(ranked), replace=False))
    for n, r in zip(rng.permutation(ranked), ranks, strict=True):
        g.nodes[int(n)]["drop"] = int(r)
    return child.validate()


@st.composite
def budgeted(draw: Any, max_mutations: int = 10) -> tuple[Genome, str, np.random.Generator]:
    """Draw ``(genome with random orders and ranks, gate kind, rng)``."""
    kind = draw(st.sampled_from(GATE_KINDS))
    grown = draw(grown_genomes(gate=kind, max_mutations=max_mutations))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    genome = grown.genome
    if draw(st.booleans()):  # a direct input -> output edge: the chain's step 0 (skip edges)
        genome = with_direct_edge(genome, grown.tracker, rng)
    return with_random_orders(genome, rng), kind, rng


def with_direct_edge(
    genome: Genome, tracker: InnovationTracker, rng: np.random.Generator
) -> Genome:
    """Return a copy with an open, enabled input -> output edge (as evolved champions keep)."""
    child = genome.copy()
    g, i, o = child.graph, child.input_id, child.output_id
    if g.has_edge(i, o):  # there already (enabled or not): leave it
        return child
    w = rng.normal(size=(g.nodes[o]["width"], g.nodes[i]["width"]))
    g.add_edge(i, o, **edge_attrs(tracker.edge(i, o), w, 3.0))
    return child.validate()


def _x(genome: Genome, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(6, genome.n_inputs))


# ------------------------------------------------------------------ the chain
@settings(max_examples=40)
@given(budgeted(), BUDGETS, BUDGETS)
def test_a_larger_budget_keeps_every_neuron_a_smaller_one_keeps(drawn, b1, b2):
    genome, kind, _ = drawn
    small, large = sorted((b1, b2))
    chain = budget_chain(genome, kind)
    lo, hi = chain.select(small), chain.select(large)
    assert lo.removed >= hi.removed and lo.flops <= hi.flops
    for n in genome.graph.nodes:
        assert not (lo.masks[n] & ~hi.masks[n]).any(), n
    flops = [chain.level(k).flops for k in range(len(chain.removals) + 1)]
    assert all(a >= b for a, b in zip(flops[:-1], flops[1:], strict=True))


@settings(max_examples=40)
@given(budgeted(), BUDGETS)
def test_the_selected_level_fits_the_budget_unless_it_is_the_smallest(drawn, b):
    genome, kind, _ = drawn
    chain = budget_chain(genome, kind)
    level = chain.select(b)
    full = chain.full.flops
    if level.removed < len(chain.removals) or b >= chain.min_budget:
        assert level.flops <= b * full * (1 + 1e-9)
    if level.removed > 0:  # the level before did not fit
        assert chain.level(level.removed - 1).flops > b * full
    smallest = chain.level(len(chain.removals))
    assert chain.min_budget == pytest.approx(smallest.flops / full if full else 1.0)
    # only a node with a drop rank loses its last neuron to a removal
    ranked = set(drop_order(genome))
    for n in genome.hidden_nodes():
        removed = sum(1 for k, m, _ in chain.removals if k == "neuron" and m == n)
        live = int(chain.full.masks[n].sum())
        assert removed < live or (n in ranked and removed == live) or live == 0


@settings(max_examples=40)
@given(budgeted(), BUDGETS)
def test_masks_cover_every_node_input_and_output_whole(drawn, b):
    genome, kind, _ = drawn
    masks = budget_masks(genome, b, kind)
    assert set(masks) == set(genome.graph.nodes)
    for n, a in genome.graph.nodes(data=True):
        assert masks[n].dtype == bool and masks[n].shape == (a["width"],)
        if a["role"] != "hidden":
            assert masks[n].all()


def test_a_direct_edge_goes_first_then_widths_shrink_in_order():
    # the worked example: input (4) -> h (3) -> output (2) plus a direct input -> output edge
    rng = np.random.default_rng(0)
    g = Genome.minimal(4, 2, rng, InnovationTracker(), hidden=(3,))
    h = g.hidden_nodes()[0]
    g.graph.add_edge(0, 1, **edge_attrs(99, rng.normal(size=(2, 4)), 3.0))  # the linear path
    g.graph.nodes[h]["order"] = np.array([2, 0, 1])
    g.graph.nodes[h]["drop"] = 0  # ranked, but the only path left: never dropped
    chain = budget_chain(g.validate())
    # 0 -> h (12 products) would leave h unreached; 0 -> 1 (8) goes; h -> 1 (6) is the only path
    assert chain.removals == (("edge", 0, 1), ("neuron", h, 1), ("neuron", h, 0))
    assert [lv.flops for lv in chain.levels()] == [52, 36, 24, 12]
    assert chain.level(1).edges_off == {(0, 1)} and chain.full.edges_off == frozenset()
    assert (0, 1) not in chain.level(1).structure.edges
    assert chain.select(0.25).flops <= 0.25 * 52 and chain.min_budget == pytest.approx(12 / 52)
    sub = sub_genome(g, 0.9)
    assert not sub.graph.has_edge(0, 1) and sub.graph.nodes[h]["width"] == 3
    x = rng.normal(size=(5, 4))
    for b in (1.0, 0.9, 0.5, 0.1):
        np.testing.assert_allclose(
            evaluate(g, x, budget=b), evaluate(sub_genome(g, b).validate(), x), rtol=0, atol=1e-12
        )
    assert not np.allclose(evaluate(g, x, budget=0.9), evaluate(g, x))  # the edge mattered


def test_only_edges_that_bypass_other_nodes_are_skip_edges():
    rng = np.random.default_rng(0)
    g = Genome.minimal(2, 1, rng, InnovationTracker(), hidden=(4,))
    h = g.hidden_nodes()[0]
    g.graph.add_edge(0, 1, **edge_attrs(99, rng.normal(size=(1, 2)), 3.0))  # a skip: h may go
    g.graph.nodes[h]["order"] = np.array([2, 0, 3, 1])
    g.graph.nodes[h]["drop"] = 0
    chain = budget_chain(g.validate())
    # h -> 1 (4 products) outweighs 0 -> 1 (2), and the check alone would let it go (the
    # direct edge still reaches the output), but it bypasses nothing: h stays; 0 -> 1 goes
    assert chain.removals == (("edge", 0, 1), ("neuron", h, 1), ("neuron", h, 3), ("neuron", h, 0))
    assert [lv.flops for lv in chain.levels()] == [28, 24, 18, 12, 6]
    assert chain.select(0.5).masks[h].tolist() == [True, False, True, False]
    smallest = sub_genome(g, 0.01)
    assert list(smallest.graph.edges) == [(0, h), (h, 1)] and smallest.graph.nodes[h]["width"] == 1


def test_parallel_branches_and_layers_survive_step_0():
    # input -> a -> b -> output, shortcuts input -> b, a -> output and input -> output;
    # a parallel branch input -> c -> output: only the three shortcuts go in step 0
    rng = np.random.default_rng(3)
    t = InnovationTracker()
    g = Genome.minimal(5, 2, rng, t, hidden=(6, 6))
    a, b = g.hidden_nodes()
    c = t.named_node("c")
    g.graph.add_node(c, **node_attrs("hidden", 3, "tanh", bias=np.zeros(3)))
    for s, d in ((0, b), (a, 1), (0, 1), (0, c), (c, 1)):
        shape = (g.graph.nodes[d]["width"], g.graph.nodes[s]["width"])
        g.graph.add_edge(s, d, **edge_attrs(t.edge(s, d), rng.normal(size=shape), 3.0))
    chain = budget_chain(g.validate())
    edges = [r[1:] for r in chain.removals if r[0] == "edge"]
    assert edges == [(0, b), (a, 1), (0, 1)]  # by FLOPs: 30, 12, 10 (ties: dst, then src)
    assert all(r[0] == "neuron" for r in chain.removals[3:])
    level = chain.level(3)
    assert set(level.structure.neurons) == {0, a, b, c, 1}  # every node still live
    x = rng.normal(size=(4, 5))
    for budget in (0.95, 0.6, 0.2):
        np.testing.assert_allclose(
            evaluate(g, x, budget=budget),
            evaluate(sub_genome(g, budget).validate(), x),
            rtol=0,
            atol=1e-12,
        )


def test_without_a_skip_edge_a_chain_removes_neurons_in_order():
    rng = np.random.default_rng(0)
    g = Genome.minimal(2, 1, rng, InnovationTracker(), hidden=(4,))
    h = g.hidden_nodes()[0]
    g.graph.nodes[h]["order"] = np.array([2, 0, 3, 1])
    g.graph.nodes[h]["drop"] = 0  # the only path: never dropped whole
    chain = budget_chain(g.validate())
    assert chain.removals == (("neuron", h, 1), ("neuron", h, 3), ("neuron", h, 0))
    assert [lv.flops for lv in chain.levels()] == [24, 18, 12, 6]
    assert chain.select(1.0).removed == 0 and chain.select(0.79).removed == 1
    assert chain.select(0.5).masks[h].tolist() == [True, False, True, False]
    assert chain.select(0.01).removed == 3 and chain.min_budget == pytest.approx(6 / 24)
    sub = sub_genome(g, 0.5)
    assert sub.graph.nodes[h]["width"] == 2 and "order" in sub.graph.nodes[h]


# ---------------------------------------------------------- the sub-network
@settings(max_examples=50)
@given(budgeted(), BUDGETS)
def test_sub_genome_computes_what_the_masked_genome_computes(drawn, b):
    genome, kind, rng = drawn
    sub = sub_genome(genome, b, kind).validate()
    x = _x(genome, rng)
    np.testing.assert_allclose(
        evaluate(genome, x, kind, budget=b), evaluate(sub, x, kind), rtol=0, atol=1e-12
    )
    level = budget_chain(genome, kind).select(b)
    live = active_structure(sub, kind)
    assert live.flops == level.flops and live.n_parameters == level.n_parameters
    for n in sub.hidden_nodes():  # kept neurons only; orders and ranks carried
        a = sub.graph.nodes[n]
        if not level.masks[n].any():  # a dead node kept on a closed path to a constant node
            assert n not in live.neurons and a["width"] == genome.graph.nodes[n]["width"]
            continue
        assert a["width"] == int(level.masks[n].sum())
        assert a.get("drop") == genome.graph.nodes[n].get("drop")
        kept = np.flatnonzero(level.masks[n])
        full_order = [i for i in neuron_order(genome.graph.nodes[n]) if i in set(kept.tolist())]
        assert [int(kept[i]) for i in neuron_order(a)] == full_order


@settings(max_examples=30)
@given(budgeted())
def test_budget_one_is_the_full_network(drawn):
    genome, kind, rng = drawn
    x = _x(genome, rng)
    assert budget_chain(genome, kind).select(1.0).removed == 0
    assert np.array_equal(evaluate(genome, x, kind, budget=1.0), evaluate(genome, x, kind))
    assert np.array_equal(evaluate(genome, x, kind, budget=None), evaluate(genome, x, kind))
    seqs = rng.normal(size=(2, 3, genome.n_inputs))
    assert np.array_equal(evaluate(genome, seqs, kind, budget=1.0), evaluate(genome, seqs, kind))


def test_a_constant_node_keeps_its_closed_path_so_the_sub_genome_is_valid():
    rng = np.random.default_rng(1)
    t = InnovationTracker()
    g = Genome.minimal(2, 2, rng, t, hidden=(3,))
    h2 = t.named_node("h2")
    g.graph.add_node(h2, **node_attrs("hidden", 2, "sigmoid", bias=[0.5, -1.0], order=[1, 0]))
    g.graph.add_edge(0, h2, **edge_attrs(t.edge(0, h2), rng.normal(size=(2, 2)), -8.0))  # closed
    g.graph.add_edge(h2, 1, **edge_attrs(t.edge(h2, 1), rng.normal(size=(2, 2)), 3.0))
    g.validate()
    x = rng.normal(size=(5, 2))
    assert all(r[0] == "neuron" for r in budget_chain(g, "hard_concrete").removals)
    for b in (1.0, 0.6, 0.3):
        sub = sub_genome(g, b, "hard_concrete").validate()
        assert sub.graph.has_edge(0, h2)  # kept, closed: it adds exactly 0
        np.testing.assert_allclose(
            evaluate(g, x, "hard_concrete", budget=b),
            evaluate(sub, x, "hard_concrete"),
            atol=1e-12,
            rtol=0,
        )
        assert (
            active_structure(sub, "hard_concrete").flops
            == budget_chain(g, "hard_concrete").select(b).flops
        )


# ------------------------------------------------------------ bad budgets
@pytest.mark.parametrize(
    "bad", [0, -1, 1.5, float("nan"), float("inf"), "a", True, None, [], [0.5]]
)
def test_a_bad_budget_is_one_line_naming_it(bad):
    with pytest.raises(GenomeError) as e:
        check_budget(bad)
    assert "\n" not in str(e.value) and "budget" in str(e.value) and repr(bad)[:3] in str(e.value)
    if bad is not None:  # budget=None is no budget
        g = Genome.minimal(2, 1, np.random.default_rng(0), InnovationTracker(), hidden=(2,))
        with pytest.raises(GenomeError, match="budget"):
            evaluate(g, np.zeros((1, 2)), budget=bad)


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ([], "at least one"),
        ([0.5, 0.25], "strictly increasing"),
        ([0.5, 0.5], "strictly increasing"),
        ([0.5, 0], r"\(0, 1\]"),
        ([0.5, "a"], "number"),
        ("0.5", "list"),
        (0.5, "list"),
        (None, "list"),
    ],
)
def test_bad_budget_lists_are_one_line(bad, expected):
    with pytest.raises(GenomeError, match=expected) as e:
        check_budgets(bad)
    assert "\n" not in str(e.value)


def test_good_budgets_pass_through():
    assert check_budgets([0.25, 0.5, 1]) == (0.25, 0.5, 1.0)
    assert check_budgets(np.array([0.1, 1.0])) == (0.1, 1.0)
    assert check_budget(np.float32(0.5)) == 0.5


def test_recurrent_genomes_are_refused_in_one_line():
    rng = np.random.default_rng(0)
    t = InnovationTracker()
    g = Genome.minimal(2, 1, rng, t, hidden=(2,))
    h = g.hidden_nodes()[0]
    g.graph.add_edge(
        h, h, **edge_attrs(t.edge(h, h, recurrent=True), np.zeros((2, 2)), recurrent=True)
    )
    g.validate()
    for call in (
        lambda: budget_chain(g),
        lambda: budget_masks(g, 0.5),
        lambda: sub_genome(g, 0.5),
        lambda: assign_orders(g),
        lambda: evaluate(g, np.zeros((1, 2)), budget=0.5),
    ):
        with pytest.raises(GenomeError, match="feed-forward") as e:
            call()
        assert "\n" not in str(e.value)
    assert evaluate(g, np.zeros((1, 2))).shape == (1, 1)  # without a budget it still runs


# ----------------------------------------------------------- assign_orders
@settings(max_examples=40)
@given(budgeted())
def test_assign_orders_sorts_by_importance_and_ranks_only_droppable_nodes(drawn):
    genome, kind, rng = drawn
    out = assign_orders(genome, kind)
    out.validate()
    x = _x(genome, rng)
    assert np.array_equal(evaluate(out, x, kind), evaluate(genome.copy(), x, kind))
    kept = _live_kept(genome, kind)
    importance = {n: neuron_importance(genome, n, kind) for n in genome.hidden_nodes()}
    for n in genome.hidden_nodes():
        order = neuron_order(out.graph.nodes[n])
        imp = importance[n][order]
        assert (np.diff(imp) <= 0).all()
        ties = imp[:-1] == imp[1:]
        assert (order[:-1][ties] < order[1:][ties]).all()  # ties by index
    droppable = [
        n for n in genome.hidden_nodes() if kept[n].any() and _drop_allowed(genome, kept, n, kind)
    ]
    assert drop_order(out) == sorted(droppable, key=lambda n: (importance[n].sum(), n))
    assert sorted(out.graph.nodes[n]["drop"] for n in droppable) == list(range(len(droppable)))
    # neurons=False / nodes=False keep what is there
    only_nodes = assign_orders(genome, kind, neurons=False)
    only_neurons = assign_orders(genome, kind, nodes=False)
    for n in genome.hidden_nodes():
        assert np.array_equal(
            neuron_order(only_nodes.graph.nodes[n]), neuron_order(genome.graph.nodes[n])
        )
        assert only_neurons.graph.nodes[n].get("drop") == genome.graph.nodes[n].get("drop")
        assert only_nodes.graph.nodes[n].get("drop") == out.graph.nodes[n].get("drop")


def test_importance_is_gate_times_scaled_column_norm():
    rng = np.random.default_rng(3)
    g = Genome.minimal(2, 3, rng, InnovationTracker(), hidden=(3,))
    h = g.hidden_nodes()[0]
    g.graph.nodes[h]["gate"] = np.array([3.0, -1.0, 0.5], np.float32)
    w = g.graph.edges[h, 1]["weight"]
    g.graph.edges[h, 1]["gate"] = np.float32(0.0)
    expected = (
        (1 / (1 + np.exp(-g.graph.nodes[h]["gate"].astype(np.float64))))
        * 0.5
        * np.linalg.norm(w.astype(np.float64), axis=0)
    )
    np.testing.assert_allclose(neuron_importance(g, h, "sigmoid"), expected, rtol=1e-12)
    order = neuron_order(assign_orders(g).graph.nodes[h])
    assert order.tolist() == np.argsort(-expected, kind="stable").tolist()


def test_frozen_nodes_keep_their_order_and_get_no_drop_rank():
    rng = np.random.default_rng(0)
    t = InnovationTracker()
    g = Genome.minimal(2, 1, rng, t, hidden=(3,))
    g.graph.add_edge(0, 1, **edge_attrs(t.edge(0, 1), rng.normal(size=(1, 2))))
    h = g.hidden_nodes()[0]
    a = g.graph.nodes[h]
    a["frozen"], a["module"] = True, {"name": "m", "hash": "0" * 64, "graft": h}
    a["order"] = np.array([2, 1, 0])
    g.graph.edges[0, h]["frozen"] = True
    out = assign_orders(g.validate())
    assert neuron_order(out.graph.nodes[h]).tolist() == [2, 1, 0]
    assert out.graph.nodes[h].get("drop") is None
    assert drop_order(assign_orders(_unfrozen(g))) == [h]


def _unfrozen(g: Genome) -> Genome:
    c = g.copy()
    h = c.hidden_nodes()[0]
    c.graph.nodes[h].update(frozen=False, module=None)
    c.graph.edges[0, h]["frozen"] = False
    return c.validate()


# -------------------------------------------------------------- attributes
def _small() -> Genome:
    return Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), hidden=(4,))


def test_absent_and_identity_orders_are_the_same_genome():
    g = _small()
    h = g.hidden_nodes()[0]
    same = g.copy()
    same.graph.nodes[h]["order"] = np.arange(4)
    assert same == g and same.structure_key() == g.structure_key()
    other = g.copy()
    other.graph.nodes[h]["order"] = np.array([1, 0, 2, 3])
    assert other != g and other.structure_key() != g.structure_key()
    ranked = g.copy()
    ranked.graph.nodes[h]["drop"] = 0
    assert ranked != g
    copied = other.copy()
    copied.graph.nodes[h]["order"][0] = 0  # the copy owns its array
    assert other.graph.nodes[h]["order"][0] == 1
    assert "order" not in node_attrs("hidden", 3, "relu", order=[0, 1, 2])
    assert "drop" not in node_attrs("hidden", 3, "relu")
    attrs = node_attrs("hidden", 3, "relu", order=[2, 0, 1], drop=4)
    assert (
        attrs["order"].tolist() == [2, 0, 1]
        and attrs["order"].dtype == np.int64
        and attrs["drop"] == 4
    )


BROKEN = {
    "order not a permutation": (
        "order",
        np.array([0, 0, 1, 2]),
        "node 2: order should be a permutation",
    ),
    "order too short": (
        "order",
        np.array([0, 1]),
        "node 2: order should be a permutation of range",
    ),
    "order of floats": (
        "order",
        np.array([0.0, 1.0, 2.0, 3.0]),
        "node 2: order should be an int array",
    ),
    "order as text": ("order", "0123", "node 2: order should be an int array"),
    "drop negative": ("drop", -1, "node 2: drop should be None or an int >= 0"),
    "drop as bool": ("drop", True, "node 2: drop should be None or an int >= 0"),
    "drop as float": ("drop", 1.0, "node 2: drop should be None or an int >= 0"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_validate_refuses_bad_orders_and_drop_ranks(case):
    key, value, message = BROKEN[case]
    g = _small()
    g.graph.nodes[2][key] = value
    with pytest.raises(GenomeError, match=message):
        g.validate()


def test_validate_refuses_orders_off_hidden_nodes_and_shared_drop_ranks():
    g = _small()
    g.graph.nodes[1]["order"] = np.array([1, 0])
    with pytest.raises(GenomeError, match="node 1: order is for hidden nodes only"):
        g.validate()
    g = _small()
    g.graph.nodes[0]["drop"] = 0
    with pytest.raises(GenomeError, match="node 0: drop is for hidden nodes only"):
        g.validate()
    g = with_random_orders(_small(), np.random.default_rng(0))
    k = 10
    g.graph.add_node(k, **node_attrs("hidden", 1, "relu", drop=7))
    g.graph.add_edge(0, k, **edge_attrs(50, np.ones((1, 3))))
    g.graph.add_edge(k, 1, **edge_attrs(51, np.ones((2, 1))))
    g.graph.nodes[2]["drop"] = 7
    with pytest.raises(GenomeError, match="drop rank 7 is also used by node"):
        g.validate()


# --------------------------------------------------------------- operators
def test_neuron_surgery_keeps_orders():
    g = _small()
    h = g.hidden_nodes()[0]
    g.graph.nodes[h]["order"] = np.array([2, 0, 3, 1])
    wide = g.copy()
    append_neurons(wide, h, 2, None, 3.0)
    assert neuron_order(wide.graph.nodes[h]).tolist() == [2, 0, 3, 1, 4, 5]
    narrow = g.copy()
    keep_neurons(narrow, h, np.array([1, 2, 3]))  # old 1, 2, 3 -> new 0, 1, 2
    assert neuron_order(narrow.graph.nodes[h]).tolist() == [1, 2, 0]
    ident = g.copy()
    keep_neurons(ident, h, np.array([0, 2]))  # old order 2, 0 -> new 1, 0
    assert neuron_order(ident.graph.nodes[h]).tolist() == [1, 0]
    back = g.copy()
    keep_neurons(back, h, np.array([1]))
    assert "order" not in back.graph.nodes[h]  # the identity is not stored


def test_prune_closed_keeps_the_order_of_the_kept_neurons():
    g = _small()
    h = g.hidden_nodes()[0]
    g.graph.nodes[h]["order"] = np.array([3, 1, 0, 2])
    g.graph.nodes[h]["drop"] = 5
    g.graph.nodes[h]["gate"] = np.array([3.0, -8.0, 3.0, 3.0], np.float32)
    pruned, record = prune_closed(g, "hard_concrete")
    assert record is not None and pruned.graph.nodes[h]["width"] == 3
    assert neuron_order(pruned.graph.nodes[h]).tolist() == [2, 0, 1]  # old 3, 0, 2
    assert pruned.graph.nodes[h]["drop"] == 5


@settings(max_examples=30)
@given(
    st.sampled_from(GATE_KINDS).flatmap(lambda k: grown_genomes(gate=k, max_mutations=6)),
    st.integers(0, 2**32 - 1),
    st.lists(st.sampled_from(sorted(MUTATIONS) + ["crossover"] * 3), min_size=1, max_size=12),
)
def test_operators_keep_orders_and_drop_ranks_valid(grown, seed, ops):
    rng = np.random.default_rng(seed)
    pool = [with_random_orders(grown.genome, rng)]
    for op in ops:
        parent = pool[int(rng.integers(len(pool)))]
        if op == "crossover":
            other = pool[int(rng.integers(len(pool)))]
            if not is_adaptive(other):  # budget attributes and adaptive genes never mix
                other = with_random_orders(other, rng)
            child, _ = crossover(parent, other, rng, grown.config)
        else:
            try:
                child, _ = MUTATIONS[op](parent, rng, grown.tracker, grown.config)
            except NotApplicable:
                continue
        child.validate()
        ranks = [a["drop"] for _, a in child.graph.nodes(data=True) if a.get("drop") is not None]
        assert len(set(ranks)) == len(ranks)
        pool.append(child)


def test_crossover_takes_order_and_rank_with_the_node_gene():
    g = _small()
    h = g.hidden_nodes()[0]
    a, b = g.copy(), g.copy()
    a.graph.nodes[h].update(order=np.array([0, 1, 3, 2]), drop=0)
    b.graph.nodes[h].update(order=np.array([3, 2, 1, 0]), drop=2)
    seen = set()
    for seed in range(20):
        child, _ = crossover(a, b, np.random.default_rng(seed), None)
        node = child.graph.nodes[h]
        seen.add((tuple(neuron_order(node)), node["drop"]))
    assert seen == {((0, 1, 3, 2), 0), ((3, 2, 1, 0), 2)}


# ---------------------------------------------------------- serialisation
@settings(max_examples=30)
@given(budgeted())
def test_json_round_trip_keeps_orders_and_drop_ranks(drawn):
    genome, _, _ = drawn
    data = json.loads(json.dumps(to_dict(genome)))
    back = from_dict(data)
    assert back == genome
    for n in genome.hidden_nodes():
        assert np.array_equal(
            neuron_order(back.graph.nodes[n]), neuron_order(genome.graph.nodes[n])
        )
        assert back.graph.nodes[n].get("drop") == genome.graph.nodes[n].get("drop")
    has = any(neuron_order(a).tolist() != list(range(a["width"])) or a.get("drop") is not None
              for _, a in genome.graph.nodes(data=True))  # fmt: skip
    assert data["version"] == (3 if has else 2)


def test_plain_genomes_are_still_written_as_version_2_and_graphml_carries_the_attributes(tmp_path):
    g = _small()
    assert to_dict(g)["version"] == 2
    h = g.hidden_nodes()[0]
    g.graph.nodes[h].update(order=np.array([1, 0, 3, 2]), drop=3)
    data = to_dict(g)
    node = next(n for n in data["nodes"] if n["id"] == h)
    assert data["version"] == 3 and node["order"] == [1, 0, 3, 2] and node["drop"] == 3
    save(g, tmp_path / "g.json")
    assert load(tmp_path / "g.json") == g
    gm = to_graphml(g, tmp_path / "g.graphml")
    assert gm.nodes[h]["order"] == "1 0 3 2" and gm.nodes[h]["drop"] == 3
    assert "order" not in gm.nodes[0] and "drop" not in gm.nodes[0]


BAD_FILES = {
    "order as text": (2, "order", "0123", r"\(node 2\)\.order: should be a list of ints"),
    "order with a bool": (
        2,
        "order",
        [0, 1, 2, True],
        r"\(node 2\)\.order: should be a list of ints",
    ),
    "order too long": (2, "order", [0, 1, 2, 3, 4], r"\(node 2\)\.order: should be a permutation"),
    "order repeats": (2, "order", [0, 1, 1, 2], r"\(node 2\)\.order: should be a permutation"),
    "order on the output": (1, "order", [1, 0], "node 1: order is for hidden nodes only"),
    "drop negative": (2, "drop", -1, r"\(node 2\)\.drop: should be an int in \[0, 2\*\*53\]"),
    "drop as float": (2, "drop", 1.5, r"\(node 2\)\.drop: should be int"),
    "drop as bool": (2, "drop", True, r"\(node 2\)\.drop: should be int"),
    "drop on the input": (0, "drop", 0, "node 0: drop is for hidden nodes only"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_orders_and_drop_ranks_in_a_file_are_one_line(case, tmp_path):
    nid, key, value, message = BAD_FILES[case]
    data = to_dict(_small())
    next(n for n in data["nodes"] if n["id"] == nid)[key] = value
    path = tmp_path / "g.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GenomeError, match=message) as e:
        load(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
