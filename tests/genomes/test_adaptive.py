"""The adaptive-compute contract (``genomes.adaptive``) and the operators on adaptive genomes.

Exit heads and per-input skip gates: the stages and per-sample FLOPs of the
reference, threshold fitting, JSON v4, validation, and every operator keeping an
adaptive genome valid (and function preserving where it was).
"""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import (
    MUTATIONS,
    Genome,
    GenomeError,
    InnovationTracker,
    MutationConfig,
    NotApplicable,
    active_structure,
    assign_orders,
    budget_chain,
    crossover,
    distance,
    evaluate,
    from_dict,
    harvest,
    load,
    save,
    to_dict,
    to_graphml,
)
from genomes.adaptive import (
    EXIT,
    SKIP_INIT,
    _full_path,
    adaptive_plan,
    check_threshold,
    confidence,
    evaluate_adaptive,
    exit_nodes,
    fit_threshold,
    is_adaptive,
    skip_logit,
    skip_nodes,
    threshold_for_flops,
    with_thresholds,
)
from genomes.genome import edge_attrs, node_attrs
from genomes.mutations import add_exit, add_skip
from genomes.prune import prune_closed
from tests.adaptive_cases import adaptive_genome
from tests.adaptive_cases import randomise as randomise_adaptive
from tests.strategies import genomes_strategy

SEEDS = st.integers(0, 2**32 - 1)
#: Skip logits closer to 0 than this may flip under float rounding: such samples are
#: left out of function-preservation checks (the rule is a hard threshold).
MARGIN = 1e-3


def _x(genome: Genome, seed: int, n: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, genome.n_inputs))


def _safe(genome: Genome, x: np.ndarray, gate: str = "sigmoid") -> np.ndarray:
    """Return a mask of the samples whose every skip logit is at least MARGIN from 0."""
    values, _ = _full_path(genome, x, gate, np.float64)
    ok = np.ones(x.shape[0], bool)
    for n in skip_nodes(genome):
        ok &= np.abs(skip_logit(genome, n, values, gate, np.float64)) >= MARGIN
    return ok


def _hand(seed: int = 0) -> tuple[Genome, InnovationTracker]:
    """Return input(4) -> h1(3) -> h2(2) -> output(3), an exit on h1, a skip gate on h2."""
    rng = np.random.default_rng(seed)
    t = InnovationTracker()
    g = Genome.minimal(4, 3, rng, t, hidden=(3, 2))
    t.next_id = max(t.next_id, 51)  # node 50 is the exit
    h1, h2 = g.hidden_nodes()
    g.graph.add_node(50, **node_attrs(EXIT, 3, "identity", threshold=0.8))
    g.graph.add_edge(h1, 50, **edge_attrs(t.edge(h1, 50), rng.normal(size=(3, 3))))
    g.graph.nodes[h2]["skip"] = np.array([0.1], np.float32)
    g.graph.edges[h1, h2]["skip"] = rng.normal(size=3).astype(np.float32)
    return g.validate(), t


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


# ------------------------------------------------------------------ the plan
@settings(max_examples=25)
@given(seed=SEEDS, exits=st.integers(0, 3), skips=st.integers(0, 3))
def test_plan_stages_cover_the_live_hidden_nodes_once_in_topological_order(seed, exits, skips):
    g = adaptive_genome(seed, grow=5, exits=exits, skips=skips)
    plan = adaptive_plan(g)
    live = active_structure(g)
    hidden = {n for n in live.neurons if g.graph.nodes[n]["role"] == "hidden"}
    flat = [n for st_ in plan.stages for n in st_.nodes]
    assert sorted(flat) == sorted(hidden) and len(flat) == len(set(flat))
    pos = {n: i for i, n in enumerate(flat)}
    for s, d in live.edges:
        if s in pos and d in pos:
            assert pos[s] < pos[d]
    assert (
        plan.exits == tuple(st_.exit for st_ in plan.stages[:-1]) and plan.stages[-1].exit is None
    )
    assert sorted(plan.exits) == sorted(e for e in exit_nodes(g) if e in live.neurons)
    # Exits in order of reach cost (ancestors' nodes and gates, then the head), ties by id.
    h = nx.DiGraph(live.edges)
    reach = [
        (
            sum(plan.node_flops.get(a, 0) + plan.skip_flops.get(a, 0) for a in nx.ancestors(h, e))
            + plan.node_flops[e],
            e,
        )
        for e in plan.exits
    ]
    assert reach == sorted(reach)
    assert plan.full_flops == live.flops
    assert (
        int(plan.stage_base().sum())
        + sum(plan.node_flops[n] for n in plan.skip_flops)
        + plan.node_flops[g.output_id]
        == plan.full_flops
    )


@settings(max_examples=20)
@given(genome=genomes_strategy(max_mutations=6), seed=SEEDS)
def test_a_plain_genome_costs_its_active_flops_for_every_sample(genome, seed):
    r = evaluate_adaptive(genome, _x(genome, seed))
    assert not is_adaptive(genome)
    assert (r.flops == active_structure(genome).flops).all()
    np.testing.assert_array_equal(r.outputs, r.output)


@settings(max_examples=25)
@given(seed=SEEDS)
def test_with_threshold_one_every_sample_runs_the_full_path_with_its_skip_decisions(seed):
    g = (
        with_thresholds(adaptive_genome(seed, exits=3, skips=3), 1.0)
        if exit_nodes(adaptive_genome(seed, exits=3, skips=3))
        else adaptive_genome(seed, exits=3, skips=3)
    )
    x = _x(g, seed)
    r = evaluate_adaptive(g, x)
    assert (confidence(r.heads) < 1.0).all()  # small random logits never saturate
    plan = r.plan
    assert (r.exit == len(plan.exits)).all()
    np.testing.assert_array_equal(r.outputs, r.output)
    skipped = sum((~r.runs[n]).astype(np.int64) * plan.node_flops[n] for n in r.runs)
    np.testing.assert_array_equal(r.flops, plan.full_flops - skipped)


@settings(max_examples=25)
@given(
    seed=SEEDS, q=st.lists(st.sampled_from([0.34, 0.4, 0.5, 0.6, 0.8, 1.0]), min_size=2, max_size=2)
)
def test_lowering_thresholds_never_raises_any_samples_flops(seed, q):
    g = adaptive_genome(seed, exits=3, skips=2, threshold=max(q))
    x = _x(g, seed)
    hi = evaluate_adaptive(g, x)
    lo = evaluate_adaptive(g, x, thresholds=np.full(len(hi.plan.exits), min(q)))
    assert (lo.flops <= hi.flops).all()
    assert (lo.exit <= hi.exit).all()
    assert (np.diff(hi.stage_flops, axis=0) >= 0).all()


@settings(max_examples=25)
@given(seed=SEEDS, gate=st.sampled_from(["sigmoid", "hard_concrete"]))
def test_the_full_path_output_is_genomes_evaluate(seed, gate):
    g = adaptive_genome(seed, exits=2, skips=3)
    x = _x(g, seed)
    r = evaluate_adaptive(g, x, gate)
    np.testing.assert_allclose(r.output, evaluate(g, x, gate), rtol=1e-12, atol=1e-12)
    stopped = r.exit < len(r.plan.exits)
    np.testing.assert_array_equal(r.outputs[~stopped], r.output[~stopped])
    for k in range(len(r.plan.exits)):
        np.testing.assert_array_equal(r.outputs[r.exit == k], r.heads[k][r.exit == k])


def test_a_skipped_node_contributes_zero_and_costs_only_its_gate():
    g, _ = _hand()
    h1, h2 = g.hidden_nodes()
    x = _x(g, 1, 64)
    closed = g.copy()
    closed.graph.nodes[h2]["skip"] = np.array([-1e6], np.float32)
    r = evaluate_adaptive(with_thresholds(closed, 1.0), x)
    assert not r.runs[h2].any()
    np.testing.assert_allclose(
        r.output, np.broadcast_to(g.graph.nodes[g.output_id]["bias"], r.output.shape)
    )
    # in -> h1 (4x3), h1 -> exit (3x3), h1's 3 skip weights; h2 and output cost nothing but the output's edge
    assert (r.flops == 2 * (4 * 3 + 3 * 3 + 3 + 2 * 3)).all()


# ------------------------------------------------------------- fit_threshold
def _conf_logits(conf: list[float]) -> np.ndarray:
    """Two-class logits [0, a] with max softmax ``conf`` (class 1)."""
    a = np.log(np.asarray(conf) / (1 - np.asarray(conf)))
    return np.stack([np.zeros_like(a), a], axis=-1)


def test_fit_threshold_picks_the_cheapest_grid_value_within_tolerance():
    heads = _conf_logits([0.55, 0.72, 0.97, 0.9995])[None]  # the head says class 1 for all
    y = np.array([1, 0, 1, 1])
    output = np.eye(2)[y] * 5.0  # the full path is always right
    stage_flops = np.array([[10] * 4, [100] * 4])
    grid = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
    # q = 0.5: all exit (acc 3/4, 10); 0.6-0.7: acc 3/4, 32.5; 0.8-0.95: acc 1, 55; 0.99: 77.5; 1.0: 100
    assert fit_threshold(heads, output, y, stage_flops, 0.0, grid) == (0.95, 1.0, 55.0)
    assert fit_threshold(heads, output, y, stage_flops, 0.25, grid) == (0.5, 0.75, 10.0)
    assert fit_threshold(heads, output, y, stage_flops, 0.0, (0.6, 0.99)) == (0.99, 1.0, 77.5)
    # No grid value keeps the accuracy: never exit.
    assert fit_threshold(heads, output, y, stage_flops, 0.0, (0.5, 0.7)) == (1.0, 1.0, 100.0)


def test_fit_threshold_without_exits_is_the_full_path():
    y = np.array([0, 1, 1])
    output = np.eye(2)[[0, 1, 0]]
    q, acc, cost = fit_threshold(np.zeros((0, 3, 2)), output, y, np.array([[7, 7, 9]]), 0.01)
    assert (q, cost) == (1.0, 23 / 3) and acc == pytest.approx(2 / 3)


def test_threshold_for_flops_spends_the_cost():
    heads = _conf_logits([0.55, 0.72, 0.97, 0.9995])[None]
    y = np.array([1, 0, 1, 1])
    output = np.eye(2)[y] * 5.0
    stage_flops = np.array([[10] * 4, [100] * 4])
    # 0.72 < q <= 0.97 exits samples 2, 3 (acc 1, cost 55): q midway, 0.845
    q60, acc, cost = threshold_for_flops(heads, output, y, stage_flops, 60.0)
    assert (acc, cost) == (1.0, 55.0) and q60 == pytest.approx((0.72 + 0.97) / 2)
    # within 50: q <= 0.72 (acc 3/4, 32.5) or q <= 0.55 (acc 3/4, 10): the costlier, midway
    # between 0.55 and 0.72
    q, acc, cost = threshold_for_flops(heads, output, y, stage_flops, 50.0)
    assert (acc, cost) == (0.75, 32.5) and q == pytest.approx((0.55 + 0.72) / 2)
    # the whole budget: nobody exits (q = 1), though q60 is as accurate for less
    assert threshold_for_flops(heads, output, y, stage_flops, 100.0) == (1.0, 1.0, 100.0)
    # 0.97 < q <= 0.9995 exits sample 3 only (77.5): the largest cost within 99.9
    q, acc, cost = threshold_for_flops(heads, output, y, stage_flops, 99.9)
    assert (acc, cost) == (1.0, 77.5) and q == pytest.approx((0.97 + 0.9995) / 2)
    assert threshold_for_flops(heads, output, y, stage_flops, 9.9) is None
    assert threshold_for_flops(np.zeros((0, 4, 2)), output, y, stage_flops[1:], 1e9) is None


@settings(max_examples=40)
@given(seed=SEEDS, exits=st.integers(1, 3), share=st.floats(0.05, 1.0))
def test_threshold_for_flops_no_threshold_spends_more(seed, exits, share):
    rng = np.random.default_rng(seed)
    b = 24
    heads = rng.normal(size=(exits, b, 3)) * 3
    output = rng.normal(size=(b, 3)) * 3
    y = rng.integers(0, 3, b)
    stage_flops = np.cumsum(rng.integers(1, 50, size=(exits + 1, b)), 0).astype(np.float64)
    limit = share * stage_flops[-1].mean()
    got = threshold_for_flops(heads, output, y, stage_flops, limit)
    conf = confidence(heads)
    right = np.concatenate([heads.argmax(-1), output.argmax(-1)[None]]) == y[None]
    best = None  # (cost, q, accuracy) of the costliest setting within the limit, then the largest q
    for q in np.linspace(1e-6, 1.0, 2001).tolist() + conf.reshape(-1).tolist():
        stop = np.where((conf >= q).any(0), (conf >= q).argmax(0), exits)
        cost = stage_flops[stop, np.arange(b)].mean()
        if cost <= limit:
            here = (cost, q, right[stop, np.arange(b)].mean())
            best = here if best is None or here[:2] > best[:2] else best
    if best is None:
        assert got is None
    else:
        q, acc, cost = got
        assert cost == pytest.approx(best[0]) and acc == pytest.approx(best[2]) and cost <= limit
        stop = np.where((conf >= q).any(0), (conf >= q).argmax(0), exits)
        assert cost == pytest.approx(stage_flops[stop, np.arange(b)].mean())


# ---------------------------------------------------------------- thresholds
@pytest.mark.parametrize(
    "bad", [0, 0.0, -0.5, 1.0001, 2, True, False, float("nan"), float("inf"), "0.5", None]
)
def test_check_threshold_refuses_what_is_not_in_zero_one(bad):
    with pytest.raises(GenomeError) as exc:
        check_threshold(bad, "threshold of exit 7")
    assert "threshold of exit 7" in _one_line(exc)


def test_with_thresholds_sets_one_or_each_and_refuses_bad_ones():
    g, _ = _hand()
    assert check_threshold(np.float32(0.5)) == 0.5 and check_threshold(1) == 1.0
    h = with_thresholds(g, 0.9)
    assert h.graph.nodes[50]["threshold"] == 0.9 and g.graph.nodes[50]["threshold"] == 0.8
    assert with_thresholds(g, {50: 0.3}).graph.nodes[50]["threshold"] == 0.3
    with pytest.raises(GenomeError) as exc:
        with_thresholds(g, {g.hidden_nodes()[0]: 0.5})
    assert "not an exit" in _one_line(exc)
    for bad in (0.0, float("nan"), True):
        with pytest.raises(GenomeError):
            with_thresholds(g, bad)
    with pytest.raises(GenomeError) as exc:
        evaluate_adaptive(g, _x(g, 0), thresholds=[0.5, 0.5])
    assert "one per exit" in _one_line(exc)


# ---------------------------------------------------------------- JSON v4
@settings(max_examples=15)
@given(seed=SEEDS)
def test_json_round_trip_of_an_adaptive_genome_is_bit_exact(seed):
    g = adaptive_genome(seed, exits=2, skips=2)
    d = to_dict(g)
    assert d["version"] == 4
    back = from_dict(json.loads(json.dumps(d)))
    assert back == g and to_dict(back) == d
    assert [back.graph.nodes[e]["threshold"] for e in exit_nodes(back)] == [
        g.graph.nodes[e]["threshold"] for e in exit_nodes(g)
    ]


def test_an_adaptive_genome_file_loads_back_equal(tmp_path):
    g, _ = _hand()
    save(g, tmp_path / "g.json")
    back = load(tmp_path / "g.json")
    assert back == g and back.graph.nodes[50]["threshold"] == 0.8
    assert json.loads((tmp_path / "g.json").read_text())["version"] == 4


def test_plain_and_budget_genomes_keep_their_versions():
    rng = np.random.default_rng(0)
    g = Genome.minimal(3, 2, rng, InnovationTracker(), hidden=(3,))
    assert to_dict(g)["version"] == 2
    b = g.copy()
    b.graph.nodes[g.hidden_nodes()[0]]["drop"] = 0
    assert to_dict(b.validate())["version"] == 3


# ---------------------------------------------------------------- validation
def _break_two_in_edges(g, t):
    h1, h2 = g.hidden_nodes()
    g.graph.add_edge(h2, 50, **edge_attrs(t.edge(h2, 50), np.zeros((3, 2))))


def _break_input_edge(g, t):
    h1, _ = g.hidden_nodes()
    g.graph.remove_edge(h1, 50)
    g.graph.add_edge(g.input_id, 50, **edge_attrs(t.edge(g.input_id, 50), np.zeros((3, 4))))


def _break_width(g, t):
    h1, _ = g.hidden_nodes()
    g.graph.nodes[50].update(node_attrs(EXIT, 4, "identity", threshold=0.5))
    g.graph.edges[h1, 50]["weight"] = np.zeros((4, 3), np.float32)


def _break_output_skip(g, t):
    g.graph.nodes[g.output_id]["skip"] = np.array([1.0], np.float32)


def _break_edge_skip(g, t):
    h1, h2 = g.hidden_nodes()
    del g.graph.edges[h1, h2]["skip"]


def _break_recurrent(g, t):
    _, h2 = g.hidden_nodes()
    g.graph.add_edge(
        h2, h2, **edge_attrs(t.edge(h2, h2, recurrent=True), np.zeros((2, 2)), recurrent=True)
    )


def _break_budget(g, t):
    g.graph.nodes[g.hidden_nodes()[1]]["drop"] = 0


def _break_order(g, t):
    g.graph.nodes[g.hidden_nodes()[0]]["order"] = np.array([2, 0, 1])


def _break_threshold(g, t):
    g.graph.nodes[50]["threshold"] = 1.5


def _break_exit_out_edge(g, t):
    _, h2 = g.hidden_nodes()
    g.graph.add_edge(50, h2, **edge_attrs(t.edge(50, h2), np.zeros((2, 3))))
    g.graph.edges[50, h2]["skip"] = np.zeros(3, np.float32)


INVALID = {
    "exit with two in-edges": (_break_two_in_edges, "exactly one incoming edge"),
    "edge input -> exit": (_break_input_edge, "from a hidden node"),
    "exit of the wrong width": (_break_width, "width should be n_outputs"),
    "skip on the output node": (_break_output_skip, "skip gate is for hidden nodes only"),
    "edge into a skip node without skip": (_break_edge_skip, "should carry skip"),
    "adaptive and recurrent": (_break_recurrent, "feed-forward"),
    "adaptive and a drop rank": (_break_budget, "budget attributes cannot be mixed"),
    "adaptive and a neuron order": (_break_order, "budget attributes cannot be mixed"),
    "threshold above 1": (_break_threshold, r"threshold should be in \(0, 1\]"),
    "edge out of an exit": (_break_exit_out_edge, "no edge may leave an exit"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_validation_refuses_broken_adaptive_genes_in_one_line(case):
    g, t = _hand()
    breaker, message = INVALID[case]
    breaker(g, t)
    with pytest.raises(GenomeError, match=message) as exc:
        g.validate()
    _one_line(exc)


# ------------------------------------------------- add_exit and add_skip
@settings(max_examples=25)
@given(
    seed=SEEDS,
    op=st.sampled_from(["add_exit", "add_skip"]),
    gate=st.sampled_from(["sigmoid", "hard_concrete"]),
)
def test_add_exit_and_add_skip_keep_the_function_and_the_exit_decisions(seed, op, gate):
    g = adaptive_genome(seed, exits=1, skips=1)
    rng = np.random.default_rng(seed)
    tracker = _tracker_for(g)
    try:
        child, record = MUTATIONS[op](g, rng, tracker, MutationConfig(gate=gate))
    except NotApplicable:
        return
    child.validate()
    x = _x(g, seed)
    np.testing.assert_array_equal(evaluate(child, x, gate), evaluate(g, x, gate))
    before, after = evaluate_adaptive(g, x, gate), evaluate_adaptive(child, x, gate)
    np.testing.assert_array_equal(
        after.outputs, before.outputs
    )  # a new head (threshold 1) never stops
    np.testing.assert_array_equal(
        after.exit == len(after.plan.exits), before.exit == len(before.plan.exits)
    )
    if op == "add_skip":
        node = record.args["node"]
        # opened with margin: it runs for every input (a node the gates leave dead runs for none)
        assert child.graph.nodes[node]["skip"][0] == SKIP_INIT
        assert node not in active_structure(child, gate).neurons or after.runs[node].all()


def _tracker_for(g: Genome) -> InnovationTracker:
    """Return a tracker whose new ids and innovations are above every one ``g`` uses."""
    top = max([*g.graph.nodes, *(a["innovation"] for *_, a in g.graph.edges(data=True))])
    return InnovationTracker(next_id=top + 1)


def test_add_exit_never_picks_a_dead_node():
    g, t = _hand()
    h1, h2 = g.hidden_nodes()
    g.graph.remove_node(50)
    g.graph.nodes[h2].pop("skip")
    del g.graph.edges[h1, h2]["skip"]
    # A second branch input -> h3 -> output whose neurons are all closed (dead).
    h3 = t.named_node("h3")
    g.graph.add_node(h3, **node_attrs("hidden", 2, "relu", gate=np.full(2, -8.0)))
    g.graph.add_edge(g.input_id, h3, **edge_attrs(t.edge(g.input_id, h3), np.ones((2, 4))))
    g.graph.add_edge(h3, g.output_id, **edge_attrs(t.edge(h3, g.output_id), np.ones((3, 2))))
    g.validate()
    config = MutationConfig(gate="hard_concrete")
    picked = set()
    for seed in range(20):
        try:
            child, rec = add_exit(g, np.random.default_rng(seed), t, config)
        except NotApplicable:
            continue
        picked.add(rec.args["src"])
    assert picked and h3 not in picked
    with_exits = g
    for _ in range(3):
        try:
            with_exits, _ = add_exit(with_exits, np.random.default_rng(0), t, config)
        except NotApplicable:
            break
    assert {next(iter(with_exits.graph.predecessors(e))) for e in exit_nodes(with_exits)} == {
        h1,
        h2,
    }


def test_add_exit_and_add_skip_refuse_what_they_cannot_take():
    rng = np.random.default_rng(0)
    t = InnovationTracker()
    one = Genome.minimal(3, 1, rng, t, hidden=(2,))
    with pytest.raises(NotApplicable):
        add_exit(one, rng, t, MutationConfig())
    bare = Genome.minimal(3, 2, rng, InnovationTracker())
    for op in (add_exit, add_skip):
        with pytest.raises(NotApplicable):
            op(bare, rng, InnovationTracker(), MutationConfig())


# ------------------------------------------ every operator on adaptive genomes
GROWTH_OPS = ("add_node", "widen", "add_edge")


@pytest.mark.parametrize("name", sorted(MUTATIONS))
@settings(max_examples=20)
@given(seed=SEEDS)
def test_every_operator_keeps_an_adaptive_genome_valid(name, seed):
    g = adaptive_genome(seed % 1000, exits=2, skips=3)
    rng = np.random.default_rng(seed)
    tracker = _tracker_for(g)
    config = MutationConfig(max_new_node_width=64)
    try:
        child, record = MUTATIONS[name](g, rng, tracker, config)
    except NotApplicable:
        return
    assert name != "add_recurrent_edge"
    child.validate()
    assert to_dict(g) == to_dict(
        adaptive_genome(seed % 1000, exits=2, skips=3)
    )  # the parent is untouched
    x = _x(g, seed)
    ok = _safe(g, x)
    if name in GROWTH_OPS:
        np.testing.assert_allclose(evaluate(child, x)[ok], evaluate(g, x)[ok], rtol=1e-5, atol=1e-5)
    if name == "add_edge":
        assert EXIT not in (
            g.graph.nodes[record.args["src"]]["role"],
            g.graph.nodes[record.args["dst"]]["role"],
        )
    if name == "prune_edge":
        assert g.graph.nodes[record.args["dst"]]["role"] != EXIT
    if name == "remove_node":
        gone = {
            e for e in exit_nodes(g) if next(iter(g.graph.predecessors(e))) == record.args["node"]
        }
        assert gone == set(record.args.get("exits", [])) and not gone & set(child.graph.nodes)
    if name == "reset_gates":
        assert all(not child.graph.nodes[e]["gate"].any() for e in exit_nodes(child))


def test_add_recurrent_edge_is_not_applicable_to_an_adaptive_genome():
    g, t = _hand()
    with pytest.raises(NotApplicable, match="feed-forward"):
        MUTATIONS["add_recurrent_edge"](g, np.random.default_rng(0), t, MutationConfig())


@settings(max_examples=25)
@given(seed=SEEDS)
def test_add_node_into_a_skip_node_keeps_the_gate_exactly(seed):
    g, t = _hand(seed % 100)
    h1, h2 = g.hidden_nodes()
    rng = np.random.default_rng(seed)
    g = randomise_adaptive(g, rng)
    for other in [e for e in g.enabled_edges() if e != (h1, h2)]:  # leave only h1 -> h2 to split
        g.graph.edges[other]["weight"] = np.full_like(g.graph.edges[other]["weight"], np.nan)
    config = MutationConfig(
        new_node_activation=str(rng.choice(["relu", "identity"])), max_new_node_width=64
    )
    child, record = MUTATIONS["add_node"](g, rng, t, config)
    assert (record.args["src"], record.args["dst"]) == (h1, h2) and record.args["skip_neurons"] >= 1
    child.validate()
    for e in child.enabled_edges():
        if np.isnan(child.graph.edges[e]["weight"]).any():
            child.graph.edges[e]["weight"] = np.zeros_like(child.graph.edges[e]["weight"])
            g.graph.edges[e]["weight"] = np.zeros_like(g.graph.edges[e]["weight"])
    x = _x(g, seed)
    vg, _ = _full_path(g, x, "sigmoid", np.float64)
    vc, _ = _full_path(child, x, "sigmoid", np.float64)
    s_g, s_c = (
        skip_logit(g, h2, vg, "sigmoid", np.float64),
        skip_logit(child, h2, vc, "sigmoid", np.float64),
    )
    np.testing.assert_allclose(s_c, s_g, rtol=1e-5, atol=1e-5)


def test_widen_and_prune_neurons_keep_skip_vectors_and_exit_heads_in_step():
    g, t = _hand()
    h1, h2 = g.hidden_nodes()
    config = MutationConfig(widen_max=3, max_node_width=6, prune_weakest=2)
    for seed in range(30):
        child, rec = MUTATIONS["widen"](g, np.random.default_rng(seed), t, config)
        if rec.args["node"] == h1:
            break
    w = child.graph.nodes[h1]["width"]
    assert (
        child.graph.edges[h1, h2]["skip"].shape == (w,)
        and not child.graph.edges[h1, h2]["skip"][3:].any()
    )
    assert (
        child.graph.edges[h1, 50]["weight"].shape == (3, w)
        and not child.graph.edges[h1, 50]["weight"][:, 3:].any()
    )
    x = _x(g, 0)
    np.testing.assert_array_equal(
        evaluate_adaptive(child, x).outputs, evaluate_adaptive(g, x).outputs
    )
    for seed in range(30):
        pruned, rec = MUTATIONS["prune_neurons"](child, np.random.default_rng(seed), t, config)
        if rec.args["node"] == h1:
            break
    keep = np.setdiff1d(np.arange(w), rec.args["removed"])
    np.testing.assert_array_equal(
        pruned.graph.edges[h1, h2]["skip"], child.graph.edges[h1, h2]["skip"][keep]
    )
    np.testing.assert_array_equal(
        pruned.graph.edges[h1, 50]["weight"], child.graph.edges[h1, 50]["weight"][:, keep]
    )


def test_remove_node_takes_its_exits_and_gives_a_reconnecting_edge_a_skip_vector():
    g, t = _hand()
    h1, h2 = g.hidden_nodes()
    for seed in range(40):
        child, rec = MUTATIONS["remove_node"](g, np.random.default_rng(seed), t, MutationConfig())
        if rec.args["node"] == h1:
            break
    assert rec.args["exits"] == [50] and 50 not in child.graph
    assert [g.input_id, h2] in rec.args["reconnected"]
    assert child.graph.edges[g.input_id, h2]["skip"].shape == (4,)
    child.validate()


@settings(max_examples=20)
@given(seed=SEEDS)
def test_prune_closed_keeps_the_function_and_the_live_exits(seed):
    rng = np.random.default_rng(seed)
    g = adaptive_genome(seed % 1000, exits=3, skips=3)
    for _, a in g.graph.nodes(data=True):  # close some neurons
        if a["role"] == "hidden":
            a["gate"] = np.where(rng.random(a["width"]) < 0.3, -8.0, a["gate"]).astype(np.float32)
    for _, _, a in g.graph.edges(data=True):
        if rng.random() < 0.2:
            a["gate"] = np.float32(-8.0)
    try:
        g.validate()
    except GenomeError:  # pragma: no cover - closing gates keeps validity
        raise
    pruned, record = prune_closed(g, "hard_concrete")
    pruned.validate()
    x = _x(g, seed)
    ok = _safe(g, x, "hard_concrete")
    np.testing.assert_allclose(
        evaluate(pruned, x, "hard_concrete")[ok], evaluate(g, x, "hard_concrete")[ok], atol=1e-5
    )
    before, after = (
        evaluate_adaptive(g, x, "hard_concrete"),
        evaluate_adaptive(pruned, x, "hard_concrete"),
    )
    for k, e in enumerate(after.plan.exits):  # every surviving exit reads what it read
        np.testing.assert_allclose(
            after.heads[k][ok], before.heads[before.plan.exits.index(e)][ok], atol=1e-5
        )


# ------------------------------------------------ crossover, distance and the rest
@settings(max_examples=20)
@given(seed=SEEDS)
def test_crossover_carries_thresholds_and_skip_arrays_with_their_genes(seed):
    g = adaptive_genome(seed % 1000, exits=2, skips=2)
    other = randomise_adaptive(
        with_thresholds(g, 0.9) if exit_nodes(g) else g, np.random.default_rng(seed)
    )
    child, record = crossover(g, other, np.random.default_rng(seed), MutationConfig())
    child.validate()
    for n in child.graph.nodes:
        a, b, c = g.graph.nodes[n], other.graph.nodes[n], child.graph.nodes[n]
        src = (
            b
            if c["bias"].tobytes() == b["bias"].tobytes()
            and a["bias"].tobytes() != b["bias"].tobytes()
            else a
        )
        if c.get("skip") is not None:
            assert c["skip"].tobytes() == src["skip"].tobytes()
        if c["role"] == EXIT:
            assert c["threshold"] == src["threshold"]
    for s, d in child.graph.edges:
        a, b, c = g.graph.edges[s, d], other.graph.edges[s, d], child.graph.edges[s, d]
        src = b if c["weight"].tobytes() == b["weight"].tobytes() else a
        if c.get("skip") is not None:
            assert c["skip"].tobytes() == src["skip"].tobytes()


def test_crossover_keeps_the_fitter_parents_skip_structure():
    g, t = _hand()
    plain = g.copy()
    _, h2 = g.hidden_nodes()
    plain.graph.nodes[h2].pop("skip")
    for s in plain.graph.predecessors(h2):
        plain.graph.edges[s, h2].pop("skip")
    for fitter, other in ((g, plain), (plain, g)):
        for seed in range(5):
            child, record = crossover(fitter, other, np.random.default_rng(seed), MutationConfig())
            child.validate()
            assert skip_nodes(child) == skip_nodes(fitter) and record.args["shape_mismatch"] >= 2


def test_distance_counts_exits_and_skip_gates_as_genes():
    g, t = _hand()
    assert distance(g, g) == 0.0
    _, h2 = g.hidden_nodes()
    plain = g.copy()
    plain.graph.nodes[h2].pop("skip")
    for s in plain.graph.predecessors(h2):
        plain.graph.edges[s, h2].pop("skip")
    no_exit = plain.copy()
    no_exit.graph.remove_node(50)
    assert 0 < distance(g, plain) == distance(plain, g) < distance(g, no_exit)


def test_budgets_and_modules_refuse_adaptive_genomes_in_one_line():
    g, t = _hand()
    for fn in (budget_chain, assign_orders):
        with pytest.raises(GenomeError, match="exit nodes or skip gates") as exc:
            fn(g)
        _one_line(exc)
    h1, h2 = g.hidden_nodes()
    with pytest.raises(GenomeError, match="skip-gated") as exc:
        harvest(g, [h2], "sigmoid", name="m")
    _one_line(exc)
    spec = harvest(g, [h1], "sigmoid", name="m")
    from genomes import insert_module

    with pytest.raises(NotApplicable, match="exit nodes or skip gates"):
        insert_module(g, np.random.default_rng(0), t, MutationConfig(), spec)


def test_graphml_keeps_roles_thresholds_and_skip_gates(tmp_path):
    g, _ = _hand()
    h = to_graphml(g, tmp_path / "g.graphml")
    _, h2 = g.hidden_nodes()
    assert h.nodes[50]["role"] == EXIT and h.nodes[50]["threshold"] == 0.8
    assert h.nodes[h2]["skip"] == pytest.approx(0.1)
    back = nx.read_graphml(tmp_path / "g.graphml")
    assert back.nodes["50"]["role"] == EXIT


@pytest.mark.parametrize("name", ["prune_neurons", "prune_edge", "remove_node"])
@settings(max_examples=20)
@given(seed=SEEDS)
def test_pruning_closed_structure_keeps_an_adaptive_genomes_function(name, seed):
    rng = np.random.default_rng(seed)
    g = adaptive_genome(seed % 1000, exits=2, skips=3)
    for _, a in g.graph.nodes(data=True):
        if a["role"] == "hidden":
            a["gate"] = np.where(rng.random(a["width"]) < 0.4, -8.0, a["gate"]).astype(np.float32)
    for _, _, a in g.graph.edges(data=True):
        if rng.random() < 0.3:
            a["gate"] = np.float32(-8.0)
    config = MutationConfig(gate="hard_concrete")
    try:
        child, record = MUTATIONS[name](g, rng, _tracker_for(g), config)
    except NotApplicable:
        return
    child.validate()
    if not record.args["closed"]:
        return
    x = _x(g, seed)
    ok = _safe(g, x, "hard_concrete")
    np.testing.assert_allclose(
        evaluate(child, x, "hard_concrete")[ok], evaluate(g, x, "hard_concrete")[ok], atol=1e-9
    )


def test_prune_closed_folds_a_constant_node_into_a_skip_gates_bias():
    g, t = _hand()
    h1, h2 = g.hidden_nodes()
    g.graph.add_edge(g.input_id, h2, **edge_attrs(t.edge(g.input_id, h2), np.ones((2, 4))))
    g.graph.edges[g.input_id, h2]["skip"] = np.array([1.0, -1.0, 0.5, 0.0], np.float32)
    g.graph.edges[g.input_id, h1]["gate"] = np.float32(-8.0)  # h1 is now a constant
    g.graph.nodes[h1]["bias"] = np.array([0.5, 1.0, -1.0], np.float32)
    g.graph.nodes[h1]["activation"] = "identity"
    g.validate()
    pruned, record = prune_closed(g, "hard_concrete")
    pruned.validate()
    assert record.args["folded"] == [h1] and h1 not in pruned.graph and 50 not in pruned.graph
    assert pruned.graph.nodes[h2]["skip"][0] != g.graph.nodes[h2]["skip"][0]
    x = _x(g, 3, 64)
    assert (
        0 < evaluate_adaptive(g, x, "hard_concrete").runs[h2].mean() < 1
    )  # the gate decides per input
    np.testing.assert_allclose(
        evaluate(pruned, x, "hard_concrete"), evaluate(g, x, "hard_concrete"), atol=1e-5
    )


def test_perturb_weights_perturbs_skip_arrays_too():
    g, t = _hand()
    h1, h2 = g.hidden_nodes()
    child, record = MUTATIONS["perturb_weights"](
        g, np.random.default_rng(0), t, MutationConfig(perturb_fraction=1.0)
    )
    assert {f"node {h2} skip", f"edge {h1}->{h2} skip"} <= set(record.args["arrays"])
    assert child.graph.nodes[h2]["skip"][0] != g.graph.nodes[h2]["skip"][0]
    assert (child.graph.edges[h1, h2]["skip"] != g.graph.edges[h1, h2]["skip"]).all()
    child.validate()


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_no_operator_shares_an_adaptive_array_with_its_parent(name):
    g, t = _hand()
    g = randomise_adaptive(g, np.random.default_rng(1))
    g.graph.nodes[g.hidden_nodes()[0]]["gate"][0] = -8.0  # something for the pruning operators
    config = MutationConfig(perturb_fraction=1.0, gate="hard_concrete")
    parent = [a for _, a in g.iter_arrays() if isinstance(a, np.ndarray)]
    for seed in range(3):
        try:
            child, _ = MUTATIONS[name](g, np.random.default_rng(seed), t, config)
        except NotApplicable:
            continue
        for label, a in child.iter_arrays():
            assert not any(np.shares_memory(a, p) for p in parent), label


def test_crossover_of_an_adaptive_fitter_with_a_budget_genome_takes_no_budget_attributes():
    g, _ = _hand()
    budget = g.copy()
    budget.graph.remove_node(50)
    _, h2 = budget.hidden_nodes()
    budget.graph.nodes[h2].pop("skip")
    for s in budget.graph.predecessors(h2):
        budget.graph.edges[s, h2].pop("skip")
    for n in budget.hidden_nodes():
        budget.graph.nodes[n]["order"] = np.arange(budget.graph.nodes[n]["width"])[::-1].copy()
        budget.graph.nodes[n]["drop"] = n
    budget.validate()
    for seed in range(5):
        child, record = crossover(g, budget, np.random.default_rng(seed), MutationConfig())
        child.validate()
        assert record.args["from_other"] >= 1
        assert all(
            a.get("order") is None and a.get("drop") is None
            for _, a in child.graph.nodes(data=True)
        )
