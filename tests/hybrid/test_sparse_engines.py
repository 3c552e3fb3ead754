"""Sparse edges (``mutation.sparsify``) in every engine and export, held to numpy.

A sparse edge's absent connections hold exactly 0, so every engine computes the
function unchanged; what the engines add is that training never moves them: the
population and adaptive engines freeze those entries in ``BatchedAdamW`` and
``GenomeNet`` uses ``W * mask``. The oracles: values and gradients against
``genomes.evaluate`` and ``GenomeNet``, training against ``GenomeNet`` + AdamW, and
the exports' outputs, parameters and per-input FLOPs against the genome's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import (
    GATE_KINDS,
    Genome,
    GenomeError,
    InnovationTracker,
    MutationConfig,
    NotApplicable,
    active_structure,
    evaluate,
)
from genomes.adaptive import adaptive_plan, evaluate_adaptive
from genomes.budgets import budget_chain, sub_genome
from genomes.mutations import sparsify
from hybrid.batches import minibatch_indices
from hybrid.config import loads_config
from hybrid.errors import ConfigError
from hybrid.export import export_genome, to_module
from hybrid.export.budgets import plan_budgets
from hybrid.net import GenomeNet, write_back
from hybrid.population import AdaptiveEngine, PopulationEngine, RecurrentEngine, train_adaptive
from hybrid.train import TrainConfig
from tests.adaptive_cases import adaptive_genome
from tests.hybrid.oracle import engine_and_oracles
from tests.hybrid.test_export_module import import_file
from tests.strategies import populations_strategy, without_masks

SEEDS = st.integers(0, 2**16)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def absent(genome: Genome) -> dict[tuple[int, int], np.ndarray]:
    """Each sparse edge's absent connections (``~mask``)."""
    return {(s, d): ~a["mask"] for s, d, a in genome.graph.edges(data=True) if a.get("mask") is not None}


def sparse_population(pop: list[Genome], seed: int, times: int = 3) -> list[Genome]:
    """Each member with ``times`` sparsify steps applied (where any applies)."""
    rng = np.random.default_rng(seed)
    config = MutationConfig(sparsify_fraction=0.5)
    out = []
    for genome in pop:
        for _ in range(times):
            try:
                genome, _ = sparsify(genome, rng, InnovationTracker(), config)
            except NotApplicable:  # nothing left to remove
                break
        out.append(genome.validate())
    return out


def sparse_adaptive(seed: int) -> Genome:
    g = adaptive_genome(seed)
    return sparse_population([g], seed, times=4)[0]


def _x(genome: Genome, seed: int, n: int = 9) -> torch.Tensor:
    return torch.randn(n, genome.n_inputs, generator=torch.Generator().manual_seed(seed))


def _close(a, b, tol: float = 1e-5) -> None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * (1.0 + np.abs(b).max(initial=0.0)))


@settings(max_examples=30, deadline=None)
@given(populations_strategy(gate=st.sampled_from(GATE_KINDS), sparse=True), st.sampled_from(GATE_KINDS), SEEDS)
def test_numpy_genomenet_and_both_engines_agree_on_sparse_genomes(pop, gate, seed):
    pop = sparse_population(pop, seed)
    x = _x(pop[0], seed)
    plain = PopulationEngine(pop, gate)(x).detach()
    adaptive = AdaptiveEngine(pop, gate)(x).detach()
    for m, genome in enumerate(pop):
        ref = evaluate(genome, x.numpy().astype(np.float64), gate)
        _close(plain[m], ref)
        _close(adaptive[m], ref)
        _close(GenomeNet(genome, gate).eval()(x).detach(), ref)


@settings(max_examples=25, deadline=None)
@given(populations_strategy(sparse=True), SEEDS)
def test_engine_gradients_equal_genomenet_and_are_zero_on_absent_connections(pop, seed):
    pop = sparse_population(pop, seed)
    x = _x(pop[0], seed)
    proj = torch.randn(len(pop), x.shape[0], pop[0].n_outputs, generator=torch.Generator().manual_seed(seed + 1))
    engine = PopulationEngine(pop, "sigmoid")
    for p in engine.params:
        p.requires_grad_(True)
    grads = torch.autograd.grad((engine(x) * proj).sum(), engine.params)
    from tests.hybrid.oracle import grads_as_genomes

    as_genomes = grads_as_genomes(engine, grads)
    for m, genome in enumerate(pop):
        net = GenomeNet(genome, "sigmoid")
        (net(x) * proj[m]).sum().backward()
        for (s, d), off in absent(genome).items():
            if not genome.graph.edges[s, d]["enabled"]:
                continue
            g = net.edges[f"e{s}_{d}_weight"].grad
            assert g is not None and (g.numpy()[off] == 0).all()  # W * mask: nothing flows to them
            ours = as_genomes[m].graph.edges[s, d]["weight"]
            keep = ~off
            _close(ours[keep], g.numpy()[keep], 1e-4)


@settings(max_examples=12, deadline=None)
@given(populations_strategy(sparse=True, size=st.integers(1, 3)), SEEDS)
def test_training_keeps_absent_connections_at_zero_and_matches_the_oracle(pop, seed):
    pop = sparse_population(pop, seed)
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(32, pop[0].n_inputs, generator=gen)
    y = torch.randint(0, pop[0].n_outputs, (32,), generator=gen)
    config = TrainConfig(steps=12, batch_size=8, lr=0.05, weight_decay=0.1)
    _, _, trained, oracles = engine_and_oracles(pop, X, y, config, seed)
    for genome, ours, (_, oracle) in zip(pop, trained, oracles, strict=True):
        ours.validate()  # weight exactly 0 wherever the mask says no connection
        oracle.validate()
        for (s, d), off in absent(genome).items():
            assert (ours.graph.edges[s, d]["weight"][off] == 0).all()
            np.testing.assert_array_equal(ours.graph.edges[s, d]["mask"], genome.graph.edges[s, d]["mask"])
        for s, d, a in ours.graph.edges(data=True):
            _close(a["weight"], oracle.graph.edges[s, d]["weight"], 1e-3)


def test_adaptive_training_keeps_absent_connections_at_zero():
    pop = [sparse_adaptive(seed) for seed in (0, 2, 3)]
    assert all(absent(g) for g in pop)
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(64, 4, generator=gen)
    y = torch.randint(0, 3, (64,), generator=gen)
    engine = AdaptiveEngine(pop, "sigmoid")
    assert engine.frozen is not None
    config = TrainConfig(steps=15, batch_size=16, lr=0.05, weight_decay=0.1)
    batches = minibatch_indices(64, 16, 15, torch.Generator().manual_seed(1))
    train_adaptive(engine, X, y, config, batches, skip_generator=torch.Generator().manual_seed(2))
    trained = engine.write_back()
    for before, after in zip(pop, trained, strict=True):
        after.validate()
        moved = False
        for (s, d), off in absent(before).items():
            assert (after.graph.edges[s, d]["weight"][off] == 0).all()
            moved |= not np.array_equal(after.graph.edges[s, d]["weight"], before.graph.edges[s, d]["weight"])
        assert moved  # the connections that exist did train


def test_a_population_without_sparse_edges_takes_the_old_path():
    assert AdaptiveEngine([adaptive_genome(0), adaptive_genome(2)]).frozen is None
    plain = [Genome.minimal(3, 2, np.random.default_rng(k), InnovationTracker(), hidden=[4]) for k in range(2)]
    assert PopulationEngine(plain).frozen is None
    assert PopulationEngine(sparse_population(plain, 0)).frozen is not None


@pytest.mark.parametrize("seed", (0, 2, 3, 7, 8))
def test_python_torchscript_and_memory_exports_compute_the_sparse_adaptive_genome(tmp_path, seed):
    g = sparse_adaptive(seed)
    x = np.random.default_rng(seed).normal(size=(40, 4)).astype(np.float32)
    r = evaluate_adaptive(g, x.astype(np.float64), "sigmoid")
    py = export_genome(g, tmp_path / "m.py", "python")
    ts = torch.jit.load(export_genome(g, tmp_path / "m.pt", "torchscript").path)
    model = import_file(py.path, f"sparse_adaptive_{seed}").load()
    for net in (model, ts, to_module(g)):
        with torch.no_grad():
            out, flops = net.forward_flops(torch.from_numpy(x))
        _close(out.numpy(), r.outputs)
        np.testing.assert_array_equal(flops.numpy(), r.flops)  # connections only, exactly
    live = active_structure(g)
    assert py.sidecar["n_parameters"] == live.n_parameters
    assert py.sidecar["adaptive"]["full_flops"] == adaptive_plan(g).full_flops == live.flops
    stored = sum(p.numel() for p in to_module(g).parameters())
    info = py.sidecar["sparse"]
    assert stored - info["absent_connections"] == live.n_parameters
    assert info["absent_connections"] == sum(
        int(off[live.neurons[d]][:, live.neurons[s]].sum()) for (s, d), off in absent(g).items() if (s, d) in live.edges
    )


@settings(max_examples=15, deadline=None)
@given(populations_strategy(size=1, sparse=True, gate=st.sampled_from(GATE_KINDS)), st.sampled_from(GATE_KINDS), SEEDS)
def test_plain_and_budgeted_exports_compute_the_sparse_genome_and_count_its_connections(pop, gate, seed):
    genome = sparse_population(pop, seed)[0]
    x = np.random.default_rng(seed).normal(size=(7, genome.n_inputs)).astype(np.float32)
    ref = evaluate(genome, x.astype(np.float64), gate)
    with torch.no_grad():
        _close(to_module(genome, gate)(torch.from_numpy(x)).numpy(), ref)
        bp = plan_budgets(genome, gate)  # its own check: every level's connections give the chain's FLOPs
        assert bp.level_flops[0] == active_structure(genome, gate).flops
        net = to_module(genome, gate, budgets=True)
        _close(net(torch.from_numpy(x), 1.0).numpy(), ref)
        chain = budget_chain(genome, gate)
        for k in range(len(chain.removals) + 1):  # every level: the sub-genome's function and FLOPs
            level = chain.level(k)
            if not level.flops:
                continue
            b = level.flops / chain.full.flops
            sub = sub_genome(genome, b, gate)
            assert active_structure(sub, gate).flops == chain.select(b).flops
            _close(net(torch.from_numpy(x), b).numpy(), evaluate(sub, x.astype(np.float64), gate))


def test_the_recurrent_engine_refuses_sparse_edges():
    plain = sparse_population([Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), hidden=[4])], 0)[0]
    assert absent(plain)
    RecurrentEngine([without_masks(plain)])  # the same genome without masks runs
    with pytest.raises(GenomeError, match="sparse edges .*feed-forward"):
        RecurrentEngine([plain])


def test_config_refuses_sparsify_for_recurrent_networks():
    text = '[task]\nname = "spirals"\n'
    with pytest.raises(ConfigError, match="mutation.sparsify"):
        loads_config(text, overrides={"mutation.sparsify": 0.1, "mutation.add_recurrent_edge": 0.1})
    with pytest.raises(ConfigError, match="sparsify_fraction"):
        loads_config(text, overrides={"mutation.sparsify_fraction": 0.0})
    cfg = loads_config(text, overrides={"mutation.sparsify": 0.1, "mutation.sparsify_fraction": 0.25})
    assert cfg.mutation_config().sparsify_fraction == 0.25


def test_genomenet_write_back_is_the_function_the_net_computes():
    g = sparse_adaptive(3)
    net = GenomeNet(g).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5)  # even values an optimiser could not have produced (absent entries moved)
    x = _x(g, 0)
    out = net(x).detach()
    child = write_back(g, net).validate()  # W * mask: absent connections written as 0
    _close(GenomeNet(child).eval()(x).detach(), out)
    for (s, d), off in absent(g).items():
        assert (child.graph.edges[s, d]["weight"][off] == 0).all()


# ------------------------------------------------------------------ in the search
@pytest.mark.parametrize("adaptive", [False, True])
def test_a_sparsify_run_grows_sparse_members_and_resumes_byte_identical(tmp_path, adaptive):
    import hybrid.lineage
    from genomes import load
    from hybrid.search import Search
    from tests.hybrid.tiny import resume_cut_back, tiny_toml

    over = {"mutation.sparsify": 0.9, "evolution.generations": 4}
    if adaptive:
        over |= {"mutation.add_exit": 0.5, "selection.method": "nsga2", "selection.cost": "average_flops"}
    config = loads_config(tiny_toml(tmp_path, steps=10), source="t.toml", overrides={"run.name": "ref", **over})
    result = Search.start(config).run()
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    with hybrid.lineage.open(ref) as lin:
        records = list(lin.records())
    sparsified = [r for r in records if any(o.op == "sparsify" for o in r.operators)]
    assert sparsified, "no member was sparsified"
    resumed = resume_cut_back(ref, cut)
    assert (ref / "stats.jsonl").read_text() == (cut / "stats.jsonl").read_text()
    assert resumed.champion_id == result.champion_id and resumed.test_metric == result.test_metric
    best = load(cut / "best" / "genome.json")
    assert best == load(ref / "best" / "genome.json")
    live = active_structure(best, config.training.gate)
    assert result.flops == live.flops  # what the run reports counts connections


def test_bottleneck_growth_on_a_sparse_genome_keeps_the_masks_and_connects_new_neurons():
    from dataclasses import replace as dc_replace

    from hybrid.bottleneck import BottleneckGrowth, Data, Settings, materialize
    from tests.strategies import mutation_config

    rng = np.random.default_rng(0)
    tracker = InnovationTracker()
    genome = Genome.minimal(4, 3, rng, tracker, hidden=[3, 3])
    genome = sparse_population([genome], 0, times=4)[0]
    before = absent(genome)
    assert before
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    growth = BottleneckGrowth(Data(x, y, x, y, x[:8], y[:8], "cross_entropy"), Settings(max_new=3), "sigmoid")
    config = dc_replace(mutation_config("sigmoid"), max_node_width=16)
    stats, cands = growth.candidates(genome)
    grown = 0
    for kind in ("widen", "node", "edge"):
        for cand in cands[kind][:3]:
            try:
                child = materialize(genome, cand, 0.5, tracker, config, stats).validate()
            except NotApplicable:
                continue
            grown += 1
            for (s, d), off in before.items():  # old absent connections stay absent, new ones exist
                mask = child.graph.edges[s, d]["mask"]
                r, c = off.shape
                np.testing.assert_array_equal(~mask[:r, :c], off)
                assert mask[r:].all() and mask[:, c:].all()
    assert grown


def test_the_lineage_structure_records_connections_and_the_diff_shows_them():
    import json as _json

    from hybrid.lineage import Structure, structure_dict
    from hybrid.lineage.diff import structure_diff

    parent = Genome.minimal(6, 3, np.random.default_rng(0), InnovationTracker(), hidden=[4])
    child, record = sparsify(parent, np.random.default_rng(1), InnovationTracker(), MutationConfig())
    s, d = record.args["edge"]
    before = Structure.from_json(_json.dumps(structure_dict(parent)))
    after = Structure.from_json(_json.dumps(structure_dict(child)))
    assert all(e.connections is None for e in before.edges)  # dense: no key, old stores unchanged
    assert "connections" not in _json.dumps(structure_dict(parent))
    full = parent.graph.edges[s, d]["weight"].size
    diff = structure_diff(before, after)
    assert diff.connections == ((s, d, full, record.args["connections"]),)
    assert f"edge {s}->{d} connections {full}->{record.args['connections']}" in str(diff)
    assert structure_diff(after, after).empty
