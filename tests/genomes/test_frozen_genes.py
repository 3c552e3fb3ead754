"""Operators leave frozen genes (grafted modules) alone, and a useless graft dies whole."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genomes import (
    MUTATIONS,
    Genome,
    InnovationTracker,
    MutationConfig,
    NotApplicable,
    crossover,
    distance,
    evaluate,
    harvest,
    insert_module,
)
from genomes.prune import prune_closed
from tests.strategies import grown_genomes, mutation_config, randomise

X = np.random.default_rng(5).normal(size=(7, 3))


def _spec(in_width: int = 3):
    rng = np.random.default_rng(11)
    src = randomise(Genome.minimal(in_width, 2, rng, InnovationTracker(), hidden=[4, 3]), rng, 0.0)
    return harvest(src, None, "hard_concrete", name="src")


def _grafted(
    n_inputs: int = 3, hidden: tuple[int, ...] = (), frozen: bool = True, gate: str = "hard_concrete"
) -> tuple[Genome, InnovationTracker, MutationConfig, dict]:
    """A minimal genome with one graft: with ``n_inputs != 3`` through a stitch."""
    tracker = InnovationTracker()
    config = mutation_config(gate)
    g = Genome.minimal(n_inputs, 1, np.random.default_rng(2), tracker, hidden=list(hidden))
    child, record = insert_module(g, np.random.default_rng(0), tracker, config, _spec(), frozen=frozen)
    return child, tracker, config, record.args


def _frozen_genes(g: Genome) -> dict[tuple, tuple]:
    out: dict[tuple, tuple] = {}
    for n, a in g.graph.nodes(data=True):
        if a.get("frozen", False):
            out["node", n] = (a["width"], a["activation"], a["bias"].tobytes(), a["gate"].tobytes(), str(a["module"]))
    for s, d, a in g.graph.edges(data=True):
        if a.get("frozen", False):
            out["edge", s, d] = (a["weight"].tobytes(), np.float32(a["gate"]).tobytes(), a["enabled"], a["recurrent"])
    return out


def _assert_frozen_kept(before: dict[tuple, tuple], child: Genome) -> None:
    after = _frozen_genes(child)
    for key, value in after.items():
        assert key in before, f"{key} became frozen"
        assert value == before[key], f"{key} changed"


def _each_seed(op: str, g: Genome, tracker: InnovationTracker, config: MutationConfig, seeds: int = 30):
    before = _frozen_genes(g)
    for seed in range(seeds):
        try:
            child, record = MUTATIONS[op](g, np.random.default_rng(seed), tracker, config)
        except NotApplicable:
            continue
        child.validate()
        _assert_frozen_kept(before, child)
        yield child, record.args


def test_add_node_never_splits_a_frozen_edge():
    g, tracker, config, _ = _grafted(hidden=(2,))
    seen = [(a["src"], a["dst"]) for _, a in _each_seed("add_node", g, tracker, config)]
    assert seen and not any(g.edge(*e)["frozen"] for e in seen)


def test_widen_never_widens_a_frozen_node_or_the_node_feeding_one():
    g, tracker, config, args = _grafted(n_inputs=5)  # hidden: the stitch and the module
    with pytest.raises(NotApplicable, match="widen"):
        MUTATIONS["widen"](g, np.random.default_rng(0), tracker, config)
    g2, tracker2, config2, _ = _grafted(hidden=(2,))
    nodes = {a["node"] for _, a in _each_seed("widen", g2, tracker2, config2)}
    assert nodes and not any(g2.node(n)["frozen"] or g2.feeds_frozen(n) for n in nodes)


@pytest.mark.parametrize("op", ["add_edge", "add_recurrent_edge"])
def test_no_edge_is_added_into_a_frozen_node(op):
    g, tracker, config, _ = _grafted(n_inputs=5, hidden=(2,))
    dsts = [a["dst"] for _, a in _each_seed(op, g, tracker, config)]
    assert dsts and not any(g.node(d)["frozen"] for d in dsts)


def test_prune_neurons_never_touches_a_frozen_node_or_a_stitch():
    g, tracker, config, _ = _grafted(n_inputs=5)
    with pytest.raises(NotApplicable, match="prune_neurons"):
        MUTATIONS["prune_neurons"](g, np.random.default_rng(0), tracker, config)


def test_remove_node_never_removes_a_frozen_node_or_a_stitch():
    g, tracker, config, _ = _grafted(n_inputs=5)
    with pytest.raises(NotApplicable, match="remove_node"):
        MUTATIONS["remove_node"](g, np.random.default_rng(0), tracker, config)
    g2, tracker2, config2, args = _grafted(n_inputs=5, hidden=(2,))
    nodes = {a["node"] for _, a in _each_seed("remove_node", g2, tracker2, config2)}
    assert nodes and not (nodes & (set(args["nodes"]) | {args["stitch"]}))


def test_prune_edge_never_removes_a_frozen_edge_and_a_cut_off_graft_goes_whole():
    g, tracker, config, args = _grafted(n_inputs=5)
    removed = [(a["src"], a["dst"], a.get("graft_removed")) for _, a in _each_seed("prune_edge", g, tracker, config)]
    assert removed and not any(g.edge(s, d)["frozen"] for s, d, _ in removed)
    # the graft's zero out-edge is the weakest: it goes, and the graft (stitch included) with it
    child, record = MUTATIONS["prune_edge"](g, np.random.default_rng(0), tracker, config)
    (out,) = [o for o in args["nodes"] if child.graph.has_node(o) is False and g.graph.has_edge(o, 1)]
    assert (record.args["src"], record.args["dst"]) == (out, 1)
    assert sorted(record.args["graft_removed"]) == sorted(args["nodes"] + [args["stitch"]])
    assert child.grafts() == {} and child.hidden_nodes() == []
    np.testing.assert_array_equal(evaluate(child, np.ones((2, 5))), evaluate(g, np.ones((2, 5))))


@pytest.mark.parametrize("op", ["perturb_weights", "mutate_activation", "reset_gates"])
def test_perturbations_skip_frozen_genes(op):
    g, tracker, config, _ = _grafted(n_inputs=5, hidden=(2,))
    g = randomise(g, np.random.default_rng(1), 0.0)  # gates away from gate_init everywhere...
    for n in g.frozen_nodes():  # ...but the module's, which keep their bits
        g.graph.nodes[n].update(_grafted(n_inputs=5, hidden=(2,))[0].node(n))
    for e in g.frozen_edges():
        g.graph.edges[e].update(_grafted(n_inputs=5, hidden=(2,))[0].edge(*e))
    g.validate()
    results = list(_each_seed(op, g, tracker, config))
    assert results
    for _, a in results:
        if op == "perturb_weights":
            for label in a["arrays"]:
                parts = label.split()
                if parts[0] == "node":
                    assert not g.node(int(parts[1]))["frozen"]
                else:
                    assert not g.edge(*map(int, parts[1].split("->")))["frozen"]
        elif "node" in a:
            assert not g.node(a["node"])["frozen"]
        else:
            assert not g.edge(a["src"], a["dst"])["frozen"]


def test_reset_gates_and_mutate_activation_have_nothing_to_do_on_a_fresh_graft():
    g, tracker, config, _ = _grafted()  # every trainable gate is at gate_init; only the module is hidden
    for op in ("reset_gates", "mutate_activation"):
        with pytest.raises(NotApplicable, match=op):
            MUTATIONS[op](g, np.random.default_rng(0), tracker, config)


def test_prune_closed_removes_a_graft_whose_out_edges_are_closed():
    g, _, _, args = _grafted(n_inputs=5)
    g = g.copy()
    for o in args["nodes"]:
        if g.graph.has_edge(o, 1):
            g.graph.edges[o, 1]["gate"] = np.float32(-8.0)
    pruned, record = prune_closed(g, "hard_concrete")
    assert record is not None and pruned.grafts() == {} and pruned.hidden_nodes() == []
    np.testing.assert_allclose(evaluate(pruned, np.ones((2, 5)), "hard_concrete"),
                               evaluate(g, np.ones((2, 5)), "hard_concrete"))  # fmt: skip


def test_prune_closed_keeps_the_width_of_a_stitch_with_closed_neurons():
    g, _, _, args = _grafted(n_inputs=5)
    g = g.copy()
    g.graph.nodes[args["stitch"]]["gate"][0] = np.float32(-8.0)
    before = _frozen_genes(g)
    pruned, _ = prune_closed(g, "hard_concrete")
    assert pruned.node(args["stitch"])["width"] == 3
    assert _frozen_genes(pruned) == before
    x = np.random.default_rng(0).normal(size=(4, 5))
    np.testing.assert_array_equal(evaluate(pruned, x, "hard_concrete"), evaluate(g, x, "hard_concrete"))


def test_crossover_takes_module_genes_from_the_fitter_parent():
    a, tracker, config, args = _grafted(n_inputs=5)
    b, *_ = _grafted(n_inputs=5, frozen=False)  # the same graft (same ids), trainable
    b = b.copy()
    rng = np.random.default_rng(9)
    for n in args["nodes"] + [args["stitch"]]:
        b.graph.nodes[n]["bias"] = rng.normal(size=b.node(n)["width"]).astype(np.float32)
    for s, d in list(b.graph.edges):
        if b.node(d)["module"] is not None:
            b.graph.edges[s, d]["weight"] = rng.normal(size=b.edge(s, d)["weight"].shape).astype(np.float32)
    for fitter, other in ((a, b), (b, a)):
        for seed in range(10):
            child, record = crossover(fitter, other, np.random.default_rng(seed), config)
            child.validate()
            assert record.args["grafted"] > 0
            for n in args["nodes"] + [args["stitch"]]:
                assert child.node(n)["bias"].tobytes() == fitter.node(n)["bias"].tobytes()
                assert child.node(n)["frozen"] == fitter.node(n)["frozen"]
            for s, d in child.graph.edges:
                if a.edge(s, d)["frozen"]:  # frozen in one parent: never mixed
                    assert child.edge(s, d)["weight"].tobytes() == fitter.edge(s, d)["weight"].tobytes()


def test_distance_counts_graft_genes():
    a, *_ = _grafted(n_inputs=5)
    plain = Genome.minimal(5, 1, np.random.default_rng(2), InnovationTracker())
    assert distance(a, a) == 0.0
    assert np.isfinite(distance(a, plain)) and distance(a, plain) > 0


# ------------------------------------------------------------------ property
_STEPS = sorted(MUTATIONS) + ["crossover", "prune_closed"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    grown=grown_genomes(n_inputs=3, gate=st.sampled_from(["sigmoid", "hard_concrete"]), max_mutations=6),
    seed=st.integers(0, 2**32 - 1),
    steps=st.lists(st.sampled_from(_STEPS), min_size=6, max_size=14),
)
def test_frozen_genes_survive_any_sequence_of_operators(grown: Any, seed: int, steps: list[str]):
    rng = np.random.default_rng(seed)
    tracker, config = grown.tracker, grown.config
    g = grown.genome
    pool = [g]
    for _ in range(2):  # two grafts, so crossover can meet two copies of one
        try:
            g, _ = insert_module(g, rng, tracker, config, _spec(), frozen=bool(rng.integers(2)))
        except NotApplicable:
            break
        pool.append(g)
    before = {}
    for member in pool:
        before.update(_frozen_genes(member))
    for step in steps:
        try:
            if step == "crossover":
                other = pool[int(rng.integers(len(pool)))]
                g, _ = crossover(g, other, rng, config)
            elif step == "prune_closed":
                g, _ = prune_closed(g, config.gate)
            else:
                g, _ = MUTATIONS[step](g, rng, tracker, config)
        except NotApplicable:
            continue
        g.validate()
        _assert_frozen_kept(before, g)
        pool.append(g)
