"""Budgets in the engines (issue 17): masked gates held to GenomeNet and a numpy reference.

A budget ``b`` runs the sub-network ``genomes.budgets.budget_chain(genome).select(b)``
picks: a removed neuron computes 0, a dropped skip edge adds nothing. The numpy
reference is ``genomes.evaluate`` on a copy of the genome whose removed neurons'
outgoing weight columns, and dropped edges' weights, are zero (a neuron that outputs
0 and a neuron nobody reads compute the same function). About half the members get a
direct input -> output edge, so the chain's step 0 (skip edges) runs.
"""

from __future__ import annotations

import inspect

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import genomes.budgets as genome_budgets
from genomes import (
    GATE_KINDS,
    MUTATIONS,
    Genome,
    GenomeError,
    InnovationTracker,
    NotApplicable,
    evaluate,
)
from genomes.budgets import BudgetLevel, budget_chain
from genomes.genome import edge_attrs
from hybrid.net import GenomeNet, write_back
from hybrid.population import PopulationEngine
from tests.hybrid.oracle import grads_as_genomes
from tests.strategies import mutation_config, populations_strategy

SEEDS = st.integers(0, 2**16)
#: ``genomes.evaluate(..., budget=)`` and ``sub_genome`` (the genomes helper's part of issue
#: 17) are checked against too where this tree has them.
HAS_BUDGETED_EVALUATE = "budget" in inspect.signature(evaluate).parameters
BUDGETS = st.floats(0.01, 1.0)


def _ordered(pop: list[Genome], seed: int) -> list[Genome]:
    """Copies with random neuron orders, random drop ranks on some hidden nodes, and
    (half of them) a direct input -> output edge."""
    rng = np.random.default_rng(seed)
    out = []
    for genome in pop:
        g = genome.copy()
        i, o = g.input_id, g.output_id
        if rng.random() < 0.5 and not g.graph.has_edge(i, o):
            w = rng.normal(size=(g.graph.nodes[o]["width"], g.graph.nodes[i]["width"]))
            top = max((a["innovation"] for _, _, a in g.graph.edges(data=True)), default=0)
            g.graph.add_edge(i, o, **edge_attrs(top + 1, w, 2.0))
        for n in g.hidden_nodes():
            a = g.graph.nodes[n]
            a["order"] = rng.permutation(int(a["width"])).astype(np.int64)
            a["drop"] = int(rng.integers(0, 5)) if rng.random() < 0.6 else None
        try:
            budget_chain(g, "sigmoid")
        except nx.NetworkXError:  # genomes.budgets._drop_allowed: input left without live edges
            for n in g.hidden_nodes():
                g.graph.nodes[n]["drop"] = None
        out.append(g)
    return out


def _reference(genome: Genome, level: BudgetLevel) -> Genome:
    """The genome with every removed hidden neuron's outgoing columns, and dropped edge, zeroed."""
    g = genome.copy()
    for s, d in g.active_graph().edges:
        w = np.array(g.graph.edges[s, d]["weight"], copy=True)
        if (s, d) in level.edges_off:
            w[:] = 0.0
        elif g.graph.nodes[s]["role"] == "hidden":
            w[:, ~level.masks[s]] = 0.0
        g.graph.edges[s, d]["weight"] = w
    return g


def _inputs(pop: list[Genome], seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(
        5, pop[0].n_inputs, generator=torch.Generator().manual_seed(seed), dtype=dtype
    )


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    a, b = a.detach(), b.detach()
    scale = 1.0 + float(b.abs().max()) if b.numel() else 1.0
    assert float((a - b).abs().max()) <= tol * scale


@settings(max_examples=12)
@given(
    populations_strategy(gate=st.sampled_from(GATE_KINDS), size=st.integers(1, 4)),
    st.sampled_from(GATE_KINDS),
    st.lists(BUDGETS, min_size=4, max_size=4),
    SEEDS,
)
def test_budgeted_forward_equals_genomenet_and_numpy_for_every_member(pop, gate, budgets, seed):
    pop = _ordered(pop, seed)
    budgets = budgets[: len(pop)]
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-10)):
        engine = PopulationEngine(pop, gate, dtype=dtype)
        x = _inputs(pop, seed, dtype)
        out = engine(x, scale=engine.budget_scale(budgets))
        for m, (genome, b) in enumerate(zip(pop, budgets, strict=True)):
            level = budget_chain(genome, gate).select(b)
            net = GenomeNet(genome, gate).eval().to(dtype)
            _close(out[m], net(x, budget=b).detach(), tol)
            _close(out[m], net(x, masks=level.masks, edges_off=level.edges_off).detach(), tol)
            ref = evaluate(_reference(genome, level), x.double().numpy(), gate)
            _close(out[m].double(), torch.from_numpy(ref), tol)
            if HAS_BUDGETED_EVALUATE:  # the genomes helper's oracle, once it is in the tree
                ref = evaluate(genome, x.double().numpy(), gate, budget=b)
                _close(out[m].double(), torch.from_numpy(ref), tol)
                sub = genome_budgets.sub_genome(genome, b, gate)
                _close(
                    out[m].double(), torch.from_numpy(evaluate(sub, x.double().numpy(), gate)), tol
                )


@settings(max_examples=10)
@given(populations_strategy(gate=st.sampled_from(GATE_KINDS), size=st.integers(1, 4)), SEEDS)
def test_budget_one_is_the_unbudgeted_network_bit_for_bit(pop, seed):
    pop = _ordered(pop, seed)
    gate = "sigmoid"
    engine = PopulationEngine(pop, gate)
    x = _inputs(pop, seed)
    assert torch.equal(engine(x, scale=engine.budget_scale([1.0] * len(pop))), engine(x))
    for genome in pop:
        net = GenomeNet(genome, gate).eval()
        assert torch.equal(net(x, budget=1.0), net(x))


@settings(max_examples=10)
@given(
    populations_strategy(size=st.integers(1, 4)),
    st.lists(BUDGETS, min_size=4, max_size=4),
    SEEDS,
)
def test_budgeted_gradients_equal_genomenet_for_every_member(pop, budgets, seed):
    pop = _ordered(pop, seed)
    budgets = budgets[: len(pop)]
    x = _inputs(pop, seed, torch.float64)
    proj = torch.randn(
        len(pop),
        x.shape[0],
        pop[0].n_outputs,
        generator=torch.Generator().manual_seed(seed + 1),
        dtype=torch.float64,
    )
    engine = PopulationEngine(pop, "sigmoid", dtype=torch.float64)
    for p in engine.params:
        p.requires_grad_(True)
    loss = (engine(x, scale=engine.budget_scale(budgets)) * proj).sum()
    grads = grads_as_genomes(engine, torch.autograd.grad(loss, engine.params))
    for m, (genome, b) in enumerate(zip(pop, budgets, strict=True)):
        net = GenomeNet(genome, "sigmoid").to(torch.float64)
        (net(x, budget=b) * proj[m]).sum().backward()
        for p in net.parameters():
            p.data.copy_(p.grad if p.grad is not None else torch.zeros_like(p))
        ref = write_back(genome, net)
        for (label, a), (_, r) in zip(grads[m].iter_arrays(), ref.iter_arrays(), strict=True):
            assert np.allclose(a, r, rtol=1e-6, atol=1e-7), label


def _chain_genome(seed: int = 0) -> Genome:
    rng = np.random.default_rng(seed)
    g = Genome.minimal(3, 2, rng, InnovationTracker(), hidden=[4, 3], activation="tanh")
    for k, n in enumerate(g.hidden_nodes()):
        g.graph.nodes[n]["order"] = rng.permutation(g.graph.nodes[n]["width"]).astype(np.int64)
        g.graph.nodes[n]["drop"] = k if k else None  # a chain: dropping either node cuts it
    return g


def test_budget_table_entries_are_what_select_picks():
    genome = _chain_genome()
    engine = PopulationEngine([genome, genome], "sigmoid")
    chain = budget_chain(genome, "sigmoid")
    table = engine.budget_table
    assert float(table.min_budget[0]) == pytest.approx(chain.min_budget)
    for b in np.linspace(0.01, 1.0, 41):
        scale = engine.budget_scale([b, 1.0])
        masks = chain.select(float(b)).masks
        start = engine.layout.members[0].gates[0]
        for n, first in zip(
            engine.layout.members[0].gate_nodes, engine.layout.members[0].gate, strict=True
        ):
            width = genome.graph.nodes[n]["width"]
            got = scale[first : first + width].numpy().astype(bool)
            assert (got == masks[n]).all(), (b, n)
        second = engine.layout.members[1].gates
        assert bool((scale[second[0] : second[1]] == 1).all())
        assert start == 0
    smallest = engine.smallest_scale()
    assert torch.equal(smallest, engine.budget_scale([chain.min_budget / 2, chain.min_budget / 2]))


def test_a_dropped_skip_edge_gets_a_zero_edge_gate_in_the_engine_and_the_net():
    # digits-like shapes, small: input (8) -> h (3) -> output (4) plus a direct 8 -> 4 edge
    rng = np.random.default_rng(2)
    g = Genome.minimal(8, 4, rng, InnovationTracker(), hidden=[3], activation="tanh")
    g.graph.add_edge(0, 1, **edge_attrs(99, rng.normal(size=(4, 8)), 2.0))
    chain = budget_chain(g.validate(), "sigmoid")
    assert chain.removals[0] == ("edge", 0, 1)
    engine = PopulationEngine([g], "sigmoid")
    mem = engine.layout.members[0]
    k = mem.edges.index((0, 1))
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    net = GenomeNet(g).eval()
    for b in (1.0, 0.9, 0.25):
        level = chain.select(b)
        scale = engine.budget_scale([b])
        assert float(scale[mem.edge_gate + k]) == (0.0 if (0, 1) in level.edges_off else 1.0)
        want = torch.from_numpy(evaluate(g, x.double().numpy(), budget=b))
        _close(engine(x, scale=scale)[0].double(), want, 1e-5)
        _close(net(x, budget=b).double(), want, 1e-5)
    assert chain.select(0.25).flops <= 0.25 * chain.full.flops
    with pytest.raises(ValueError, match=r"edges_off names \(1, 0\)"):
        net(x, masks={}, edges_off=[(1, 0)])


def test_no_scale_is_todays_path_and_a_one_scale_changes_nothing():
    genome = _chain_genome(1)
    engine = PopulationEngine([genome], "sigmoid")
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    assert engine._budget_table is None  # nothing is built unless a budget is asked for
    before = engine(x)
    assert engine._budget_table is None
    assert torch.equal(engine(x, scale=torch.ones(engine.n_gates)), before)


def test_bad_budgets_are_refused_in_one_line():
    genome = _chain_genome()
    engine = PopulationEngine([genome, genome], "sigmoid")
    for bad, word in (
        ([0.0, 1.0], "budgets[0]"),
        ([0.5, 1.5], "budgets[1]"),
        ([0.5], "one budget per member"),
    ):
        with pytest.raises(GenomeError, match=word.replace("[", r"\[").replace("]", r"\]")) as info:
            engine.budget_scale(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(GenomeError, match=r"\(0, 1\]"):
        engine.budget_scale(torch.tensor([0.5, 2.0]))
    net = GenomeNet(genome)
    with pytest.raises(GenomeError, match="budget"):
        net(torch.zeros(2, 3), budget=0.0)
    with pytest.raises(ValueError, match="budget or masks"):
        net(torch.zeros(2, 3), budget=0.5, masks={})


def test_a_recurrent_genome_is_refused_a_budget():
    rng = np.random.default_rng(0)
    tracker = InnovationTracker()
    g = Genome.minimal(2, 2, rng, tracker, hidden=[3])
    for _ in range(50):
        try:
            g, _ = MUTATIONS["add_recurrent_edge"](g, rng, tracker, mutation_config())
        except NotApplicable:
            continue
        if g.is_recurrent:
            break
    assert g.is_recurrent
    with pytest.raises(GenomeError, match="feed-forward"):
        GenomeNet(g)(torch.zeros(2, 2), budget=0.5)


@settings(max_examples=6)
@given(populations_strategy(n_inputs=3, n_outputs=2, size=st.integers(1, 3)), SEEDS)
def test_budget_scores_are_each_sub_networks_metric_and_flops(pop, seed):
    from hybrid.budgets import budget_scores
    from hybrid.train import TrainConfig

    pop = _ordered(pop, seed)
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(30, 3, generator=gen)
    budgets = (0.05, 0.3, 0.6, 1.0)
    for loss, y in (
        ("cross_entropy", torch.randint(0, 2, (30,), generator=gen)),
        ("mse", torch.randn(30, 2, generator=gen)),
    ):
        metric = "accuracy" if loss == "cross_entropy" else "mse"
        got = budget_scores(pop, X, y, TrainConfig(loss=loss, metric=metric), budgets, threads=1)
        for genome, scores in zip(pop, got, strict=True):
            chain = budget_chain(genome, "sigmoid")
            net = GenomeNet(genome).eval()
            assert scores.budgets == budgets
            assert scores.flops == tuple(chain.select(b).flops for b in budgets)
            want = []
            for b in budgets:
                out = net(X, budget=b).detach()
                want.append(
                    float((out.argmax(-1) == y).float().mean())
                    if loss == "cross_entropy"
                    else float(((out - y) ** 2).mean())
                )
            assert np.allclose(scores.scores, want, rtol=1e-5, atol=1e-6)
            worst = 0.0 if metric == "accuracy" else np.inf  # mse: lower is better
            fits = [
                worst if b < chain.min_budget else s
                for b, s in zip(budgets, scores.scores, strict=True)
            ]
            assert scores.auc == pytest.approx(sum(fits) / len(fits))


def test_budget_scores_refuse_bad_budgets_in_one_line():
    from hybrid.budgets import budget_scores
    from hybrid.train import TrainConfig

    genome = _chain_genome()
    for bad in ([0.5, 0.2], [], [0.0, 1.0]):
        with pytest.raises(GenomeError) as info:
            budget_scores(
                [genome], torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), TrainConfig(), bad
            )
        assert "budgets" in str(info.value) and "\n" not in str(info.value)
