"""Frozen genes (grafted modules, issue 18) in the engines, held to numpy and GenomeNet.

A grafted module is inlined into the genome as ordinary hidden nodes and edges marked
``frozen``: every engine computes it like any other node, and nothing trains it. The
test genomes mark a random subset of hidden nodes frozen by the rules (each frozen
node's incoming edges frozen too, gate logits ``OPEN_LOGIT``), setting the attributes
directly on the graph.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import GATE_KINDS, Genome, GenomeError, InnovationTracker, evaluate
from genomes.modules import OPEN_LOGIT
from hybrid.batches import minibatch_indices
from hybrid.bottleneck import BottleneckGrowth, Data, Settings, materialize
from hybrid.growth import ReserveConfig, reserve_rule
from hybrid.net import GenomeNet, fixed_width, has_frozen, write_back
from hybrid.population import (
    BatchedAdamW,
    PopulationEngine,
    RecurrentEngine,
    train_engine,
    train_population,
)
from hybrid.train import TrainConfig, train_genome
from tests.hybrid.oracle import engine_and_oracles, train_net
from tests.strategies import POPULATION_SIZES, mutation_config, populations_strategy, randomise

SEEDS = st.integers(0, 2**16)
SHARES = st.sampled_from([0.0, 0.5, 1.0])


def freeze(genome: Genome, rng: np.random.Generator, share: float) -> Genome:
    """Return a copy with each hidden node frozen with probability ``share`` (by the rules).

    A frozen node gets ``module`` set and gate logits ``OPEN_LOGIT``; every edge into it
    is frozen with gate ``OPEN_LOGIT``. Edges out of it stay trainable. A node with a
    recurrent edge into it (even a disabled one) is never frozen.
    """
    child = genome.copy()
    g = child.graph
    chosen = [n for n in sorted(child.hidden_nodes()) if rng.random() < share]
    chosen = [n for n in chosen if not any(g.edges[s, n]["recurrent"] for s in g.predecessors(n))]
    for n in chosen:
        a = g.nodes[n]
        a["frozen"] = True
        a["module"] = {"name": "m", "hash": "0" * 64, "graft": chosen[0]}
        a["gate"] = np.full(a["width"], OPEN_LOGIT, np.float32)
        for s in g.predecessors(n):
            g.edges[s, n]["frozen"] = True
            g.edges[s, n]["gate"] = np.float32(OPEN_LOGIT)
    return child.validate()


def frozen_arrays(genome: Genome) -> dict[str, np.ndarray]:
    """Every array of the genome's frozen nodes and edges, by label."""
    g = genome.graph
    out = {}
    for n, a in g.nodes(data=True):
        if a.get("frozen", False):
            out[f"node {n} bias"], out[f"node {n} gate"] = a["bias"], a["gate"]
    for s, d, a in g.edges(data=True):
        if a.get("frozen", False):
            out[f"edge {s}->{d} weight"], out[f"edge {s}->{d} gate"] = a["weight"], a["gate"]
    return out


def assert_frozen_bit_identical(before: Genome, after: Genome) -> None:
    a, b = frozen_arrays(before), frozen_arrays(after)
    assert a.keys() == b.keys()
    for label, x in a.items():
        y = np.asarray(b[label])
        assert np.asarray(x).tobytes() == y.tobytes() and np.asarray(x).dtype == y.dtype, label


@st.composite
def frozen_populations(draw, gate="sigmoid", size=POPULATION_SIZES, mixed: bool = False):
    """A population (``populations_strategy``) with hidden nodes frozen member by member.

    ``mixed``: member 0 keeps no frozen gene and member 1 freezes every hidden node.
    """
    pop = draw(populations_strategy(gate=gate, size=size))
    out = []
    for m, genome in enumerate(pop):
        share = draw(SHARES)
        if mixed and m < 2:
            share = float(m)
        out.append(freeze(genome, np.random.default_rng(draw(st.integers(0, 2**32 - 1))), share))
    return out


def _inputs(pop: list[Genome], seed: int, n: int = 6) -> torch.Tensor:
    return torch.randn(n, pop[0].n_inputs, generator=torch.Generator().manual_seed(seed))


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    scale = 1.0 + float(b.abs().max()) if b.numel() else 1.0
    assert float((a - b).abs().max()) <= tol * scale if a.numel() else True


def _data(pop: list[Genome], seed: int, n: int = 24, loss: str = "cross_entropy"):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, pop[0].n_inputs, generator=g)
    if loss == "mse":
        return X, torch.randn(n, pop[0].n_outputs, generator=g)
    return X, torch.randint(0, pop[0].n_outputs, (n,), generator=g)


def _member_arrays(engine: PopulationEngine, m: int, tensors) -> dict[str, np.ndarray]:
    """Member ``m``'s entries of flat ``(weights, biases, gates)``, keyed as GenomeNet's."""
    lay, sl, graph = engine.layout, engine.layout.members[m], engine.genomes[m].graph
    w, b, g = (t.detach().to(torch.float32).numpy() for t in tensors)
    w, b = w[lay.weight_pos], b[lay.bias_row]
    out = {}
    for k, (s, d) in enumerate(sl.edges):
        shape = graph.edges[s, d]["weight"].shape
        out[f"edges.e{s}_{d}_weight"] = w[
            sl.weight[k] : sl.weight[k] + shape[0] * shape[1]
        ].reshape(shape)
        out[f"edges.e{s}_{d}_gate"] = g[sl.edge_gate + k]
    for n, start in zip(sl.bias_nodes, sl.bias, strict=True):
        out[f"nodes.n{n}_bias"] = b[start : start + graph.nodes[n]["width"]]
    for n, start in zip(sl.gate_nodes, sl.gate, strict=True):
        out[f"nodes.n{n}_gate"] = g[start : start + graph.nodes[n]["width"]]
    return out


# ------------------------------------------------------------------ (a) function, gradients
@settings(max_examples=40, deadline=None)
@given(frozen_populations(gate=st.sampled_from(GATE_KINDS)), st.sampled_from(GATE_KINDS), SEEDS)
def test_numpy_genomenet_and_engine_agree_on_genomes_with_frozen_genes(pop, gate, seed):
    x = _inputs(pop, seed)
    out = PopulationEngine(pop, gate)(x)
    for m, genome in enumerate(pop):
        _close(out[m], GenomeNet(genome, gate).eval()(x).detach())
        ref = torch.from_numpy(evaluate(genome, x.numpy().astype(np.float64), gate)).float()
        _close(out[m], ref)


@settings(max_examples=20, deadline=None)
@given(frozen_populations(gate="hard_concrete"), SEEDS)
def test_training_mode_hard_concrete_engine_equals_genomenet_with_frozen_genes(pop, seed):
    engine = PopulationEngine(pop, "hard_concrete")
    x = _inputs(pop, seed)
    noise = torch.rand(engine.n_gates, generator=torch.Generator().manual_seed(seed))
    out = engine(x, noise, training=True)
    for m, genome in enumerate(pop):
        start, end = engine.layout.members[m].gates
        _close(out[m], GenomeNet(genome, "hard_concrete").train()(x, noise[start:end]).detach())


def test_open_logit_is_exactly_one_for_both_gate_kinds_and_every_training_sample():
    from hybrid.gates import gate_values

    logits = torch.full((4096,), OPEN_LOGIT)
    for gate in GATE_KINDS:
        assert bool((gate_values(logits, gate) == 1.0).all()), gate
    noise = torch.rand(4096, generator=torch.Generator().manual_seed(0))
    noise[:2] = torch.tensor([torch.finfo(torch.float32).tiny, 1 - 2**-24])
    assert bool((gate_values(logits, "hard_concrete", noise, training=True) == 1.0).all())


@settings(max_examples=30, deadline=None)
@given(frozen_populations(), SEEDS)
def test_layout_flags_exactly_the_frozen_genes_entries(pop, seed):
    engine = PopulationEngine(pop, "sigmoid")
    lay = engine.layout
    if not any(has_frozen(g) for g in pop):
        assert engine.frozen is None
        return
    assert engine.frozen is not None
    flags = [f.numpy() for f in engine.frozen]
    for f, member in zip(flags, (lay.weight_member, lay.bias_member, lay.gate_member), strict=True):
        assert not f[member == len(pop)].any()  # padding is not frozen
    for m, genome in enumerate(pop):
        graph = genome.graph
        got = _member_arrays(engine, m, [torch.from_numpy(f.astype(np.float32)) for f in flags])
        for key, value in got.items():
            name = key.split(".")[1]
            if name.startswith("e"):
                s, d = (int(i) for i in name[1:].rsplit("_", 1)[0].split("_"))
                want = bool(graph.edges[s, d].get("frozen", False))
            else:
                want = bool(graph.nodes[int(name[1:].split("_")[0])].get("frozen", False))
            assert (np.asarray(value) == float(want)).all(), key


@settings(max_examples=30, deadline=None)
@given(frozen_populations(), SEEDS)
def test_gradients_of_trainable_parameters_equal_genomenet(pop, seed):
    x = _inputs(pop, seed)
    proj = torch.randn(
        len(pop), x.shape[0], pop[0].n_outputs, generator=torch.Generator().manual_seed(seed + 1)
    )
    engine = PopulationEngine(pop, "sigmoid")
    for p in engine.params:
        p.requires_grad_(True)
    loss = (engine(x) * proj).sum() + engine.penalty().sum()
    grads = torch.autograd.grad(loss, engine.params)
    for m, genome in enumerate(pop):
        net = GenomeNet(genome, "sigmoid")
        ((net(x) * proj[m]).sum() + net.penalty()).backward()
        ours = _member_arrays(engine, m, grads)
        for key, p in net.named_parameters():
            if not p.requires_grad:
                assert p.grad is None, key
                continue
            assert np.allclose(ours[key], p.grad.numpy(), rtol=1e-4, atol=1e-5), key


@settings(max_examples=20, deadline=None)
@given(frozen_populations(size=1))
def test_genomenet_frozen_parameters_need_no_gradient_and_keep_their_keys(pop):
    genome = pop[0]
    net = GenomeNet(genome, "sigmoid")
    plain = GenomeNet(_unfrozen(genome), "sigmoid")
    assert list(net.state_dict()) == list(plain.state_dict())
    graph = genome.graph
    for key, p in net.named_parameters():
        name = key.split(".")[1]
        if name.startswith("e"):
            s, d = (int(i) for i in name[1:].rsplit("_", 1)[0].split("_"))
            frozen = bool(graph.edges[s, d].get("frozen", False))
        else:
            frozen = bool(graph.nodes[int(name[1:].split("_")[0])].get("frozen", False))
        assert p.requires_grad is not frozen, key
    with torch.no_grad():  # whatever happens to the net, the write-back keeps frozen arrays
        for p in net.parameters():
            p.add_(1.0)
    child = write_back(genome, net)
    assert_frozen_bit_identical(genome, child)
    assert child != genome  # the trainable arrays (an output bias at least) did change


def _unfrozen(genome: Genome) -> Genome:
    child = genome.copy()
    for _, a in child.graph.nodes(data=True):
        a.pop("frozen", None)
        a.pop("module", None)
    for _, _, a in child.graph.edges(data=True):
        a.pop("frozen", None)
    return child


# -------------------------------------------------------------------------- the optimiser
def _adam_case(seed: int, n: int = 40, p: int = 3):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(n, generator=g)
    member = torch.randint(0, p + 1, (n,), generator=g)  # p: padding
    frozen = (torch.rand(n, generator=g) < 0.4) & (member < p)
    grads = [torch.randn(n, generator=g) for _ in range(5)]
    return theta, member, frozen, grads


@pytest.mark.parametrize("path", ["fast", "active", "lrs"])
def test_batched_adamw_never_moves_frozen_entries_and_moves_the_rest_as_without_masks(path):
    theta, member, frozen, grads = _adam_case(1)
    lrs = torch.tensor([0.1, 0.05, 0.2]) if path == "lrs" else torch.full((3,), 0.1)
    active = torch.tensor([True, False, True]) if path == "active" else None
    plain_t, masked_t = theta.clone(), theta.clone()
    plain = BatchedAdamW([plain_t], [member], lrs, (True,), weight_decay=0.3)
    masked = BatchedAdamW([masked_t], [member], lrs, (True,), weight_decay=0.3, frozen=[frozen])
    for g in grads:
        g[0] = float("nan") if frozen[0] else g[0]  # a frozen entry's gradient is ignored, NaN too
        plain.step([torch.where(frozen, 0.0, g)], active)
        masked.step([g], active)
    assert masked_t[frozen].numpy().tobytes() == theta[frozen].numpy().tobytes()
    assert masked_t[~frozen].numpy().tobytes() == plain_t[~frozen].numpy().tobytes()
    assert float(masked.exp_avg[0][frozen].abs().max()) == 0.0
    assert float(masked.exp_avg_sq[0][frozen].abs().max()) == 0.0


def test_batched_adamw_refuses_masks_that_do_not_fit():
    theta, member, frozen, _ = _adam_case(2)
    with pytest.raises(ValueError, match="frozen"):
        BatchedAdamW([theta], [member], torch.full((3,), 0.1), (True,), frozen=[frozen[:-1]])
    with pytest.raises(ValueError, match="frozen"):
        BatchedAdamW([theta], [member], torch.full((3,), 0.1), (True,), frozen=[])


# ---------------------------------------------------------------- (b) training, write-back
def _config(loss: str = "cross_entropy", **kw) -> TrainConfig:
    return TrainConfig(
        steps=6, batch_size=10, lr=0.02, weight_decay=0.05, penalty=0.01, loss=loss, **kw
    )


@settings(max_examples=25, deadline=None)
@given(frozen_populations(), SEEDS, st.sampled_from(["cross_entropy", "mse"]))
def test_training_keeps_frozen_genes_bit_identical_and_the_rest_equals_torch_adamw(pop, seed, loss):
    X, y = _data(pop, seed, loss=loss)
    engine, results, trained, oracles = engine_and_oracles(pop, X, y, _config(loss), seed)
    for m, (genome, (ref_loss, ref)) in enumerate(zip(pop, oracles, strict=True)):
        assert results[m].status == "ok"
        assert np.isclose(results[m].train_loss, ref_loss, rtol=1e-4, atol=1e-5)
        assert_frozen_bit_identical(genome, trained[m])
        assert_frozen_bit_identical(genome, ref)
        for (label, a), (_, b) in zip(trained[m].iter_arrays(), ref.iter_arrays(), strict=True):
            assert np.allclose(a, b, rtol=1e-4, atol=1e-4), (label, np.abs(a - b).max())
    # the engine's own tensors: frozen entries never moved
    packed = PopulationEngine(pop, "sigmoid")
    if packed.frozen is not None:
        for now, before, f in zip(engine.params, packed.params, packed.frozen, strict=True):
            assert now[f].numpy().tobytes() == before[f].numpy().tobytes()


@settings(max_examples=15, deadline=None)
@given(frozen_populations(gate="hard_concrete"), SEEDS)
def test_hard_concrete_training_keeps_frozen_genes_and_equals_genomenet_given_the_noise(pop, seed):
    # float64: Adam turns a gradient of ~1e-10 (float32 rounding where a sampled gate sits
    # at its clip) into a step of lr * |g| / (|g| + eps), which one engine may take and the
    # other not; in float64 the rounding is 1e-16 and both take the same steps
    X, y = _data(pop, seed)
    X = X.double()
    config = _config(gate="hard_concrete", train_gates=True)
    gen = torch.Generator().manual_seed(seed)
    batches = minibatch_indices(X.shape[0], config.batch_size, config.steps, gen)
    engine = PopulationEngine(pop, "hard_concrete", dtype=torch.float64)
    noise = torch.rand(config.steps, engine.n_gates, generator=gen, dtype=torch.float64)
    train_engine(engine, X, y, config, batches, noise=noise)
    trained = engine.write_back()
    for m, genome in enumerate(pop):
        start, end = engine.layout.members[m].gates
        net = GenomeNet(genome, "hard_concrete").double()
        train_net(net, X, y, config, batches, noise[:, start:end])
        assert_frozen_bit_identical(genome, trained[m])
        for (label, a), (_, b) in zip(
            trained[m].iter_arrays(), write_back(genome, net).iter_arrays(), strict=True
        ):
            assert np.allclose(a, b, rtol=1e-4, atol=1e-4), label


@settings(max_examples=10, deadline=None)
@given(frozen_populations(), SEEDS)
def test_train_population_and_train_genome_keep_frozen_genes_bit_identical(pop, seed):
    X, y = _data(pop, seed)
    config = replace(_config(), weight_decay=0.5, lr=0.1)
    out = train_population(pop, X, y, config, torch.Generator().manual_seed(seed), X_val=X, y_val=y)
    for genome, child in zip(pop, out.genomes, strict=True):
        assert_frozen_bit_identical(genome, child)
    child, result = train_genome(pop[0], X, y, config, torch.Generator().manual_seed(seed))
    assert result.status == "ok"
    assert_frozen_bit_identical(pop[0], child)


# ------------------------------------------------------------------ (c) mixed populations
@settings(max_examples=15, deadline=None)
@given(frozen_populations(size=st.integers(2, 5), mixed=True), SEEDS)
def test_a_population_mixing_frozen_and_plain_members_trains_each_as_if_alone(pop, seed):
    X, y = _data(pop, seed)
    config = _config()
    batches = minibatch_indices(
        X.shape[0], config.batch_size, config.steps, torch.Generator().manual_seed(seed)
    )
    engine = PopulationEngine(pop, "sigmoid")
    results = train_engine(engine, X, y, config, batches)
    together = engine.write_back()
    for m, genome in enumerate(pop):
        alone = PopulationEngine([genome], "sigmoid")
        assert (alone.frozen is None) == (not has_frozen(genome))
        result = train_engine(alone, X, y, config, batches)[0]
        child = alone.write_back()[0]
        assert np.isclose(results[m].train_loss, result.train_loss, rtol=1e-5, atol=1e-6)
        assert_frozen_bit_identical(genome, together[m])
        for (label, a), (_, b) in zip(together[m].iter_arrays(), child.iter_arrays(), strict=True):
            assert np.allclose(a, b, rtol=1e-5, atol=1e-5), label


# ------------------------------------------------------------- recurrent engines refuse
def test_recurrent_engine_refuses_frozen_genes_in_one_line():
    rng = np.random.default_rng(0)
    plain = Genome.minimal(3, 2, rng, InnovationTracker(), hidden=[4])
    frozen = freeze(plain, rng, 1.0)
    RecurrentEngine([plain])
    with pytest.raises(
        GenomeError, match=r"^member 1 has frozen \(grafted\) genes: modules are feed-forward only$"
    ):
        RecurrentEngine([plain, frozen])


# --------------------------------------------------------------------------- growth
def _graft_problem(seed: int):
    """A genome with a frozen chain input -> 5 -> 6 feeding the output, and free node 3, 4."""
    from genomes.genome import edge_attrs, node_attrs

    rng = np.random.default_rng(seed)
    tracker = InnovationTracker()
    genome = randomise(Genome.minimal(4, 3, rng, tracker, hidden=[3, 2]), rng, closed_share=0.0)
    g = genome.graph
    module = {"name": "m", "hash": "ab" * 32, "graft": 100}
    for n, width in ((100, 3), (101, 2)):
        g.add_node(
            n,
            **node_attrs(
                "hidden",
                width,
                "tanh",
                bias=rng.normal(0, 0.5, width),
                gate_init=OPEN_LOGIT,
                frozen=True,
                module=module,
            ),
        )
    hosts = [n for n in genome.hidden_nodes() if n < 100]
    for s, d in ((0, 100), (100, 101)):
        shape = (g.nodes[d]["width"], g.nodes[s]["width"])
        g.add_edge(
            s,
            d,
            **edge_attrs(tracker.edge(s, d), rng.normal(0, 0.8, shape), OPEN_LOGIT, frozen=True),
        )
    g.add_edge(
        hosts[0],
        101,
        **edge_attrs(
            tracker.edge(hosts[0], 101),
            rng.normal(0, 0.5, (2, g.nodes[hosts[0]]["width"])),
            OPEN_LOGIT,
            frozen=True,
        ),
    )
    g.add_edge(
        101,
        genome.output_id,
        **edge_attrs(tracker.edge(101, genome.output_id), rng.normal(0, 0.5, (3, 2))),
    )
    return genome.validate(), tracker, hosts


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_bottleneck_growth_never_resizes_or_feeds_a_frozen_node(seed):
    genome, tracker, hosts = _graft_problem(seed)
    rng = np.random.default_rng(seed)
    n = 64
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    growth = BottleneckGrowth(
        Data(x, y, x, y, x[:8], y[:8], "cross_entropy"), Settings(max_new=3), "sigmoid"
    )
    config = replace(mutation_config("sigmoid"), max_node_width=16)
    stats, cands = growth.candidates(genome)
    frozen = {100, 101}
    for cand in cands["widen"]:
        assert cand.src not in frozen and not fixed_width(genome, cand.src)
        assert cand.src != hosts[0]  # it feeds the frozen node 101
    for kind in ("node", "edge"):
        for cand in cands[kind]:
            assert cand.dst not in frozen, (kind, cand.src, cand.dst)
    for kind in ("widen", "node", "edge"):
        for cand in cands[kind][:3]:
            try:
                child = materialize(genome, cand, 0.5, tracker, config, stats).validate()
            except Exception as e:  # noqa: BLE001  (NotApplicable: an id already taken)
                assert type(e).__name__ == "NotApplicable"
                continue
            assert_frozen_bit_identical(genome, child)
    for kind, op in growth.operators({"widen": 1.0, "node": 1.0, "edge": 1.0}).items():
        try:
            child, _ = op(genome, rng, tracker, config)
        except Exception as e:  # noqa: BLE001
            assert type(e).__name__ == "NotApplicable", kind
            continue
        assert_frozen_bit_identical(genome, child)


def test_reserve_rule_never_resizes_a_frozen_node_or_one_feeding_it():
    genome, _, hosts = _graft_problem(0)
    always = ReserveConfig(
        k=0, threshold=1e9, p_add=1.0, p_delete=1.0, every=1
    )  # everything sub-threshold
    child, edits, _ = reserve_rule(genome, np.random.default_rng(0), always, "sigmoid", 3.0, 64)
    touched = {e.node for e in edits}
    assert touched and not touched & {100, 101, hosts[0]}
    assert_frozen_bit_identical(genome, child.validate())
    grow = ReserveConfig(
        k=5, threshold=1e-12, p_add=1.0, p_delete=1.0, every=1
    )  # nothing in reserve
    child, edits, _ = reserve_rule(genome, np.random.default_rng(0), grow, "sigmoid", 3.0, 64)
    assert edits and not {e.node for e in edits} & {100, 101, hosts[0]}
    assert_frozen_bit_identical(genome, child.validate())


# ------------------------------------------- real grafts: genomes.modules.insert_module
@st.composite
def grafted_populations(draw, gate="sigmoid"):
    """A population whose members carry a module harvested from another genome (``insert_module``).

    The module is the whole of a random genome (its input the features); each member
    gets it grafted, frozen or trainable (drawn), where a free host/consumer pair exists.
    """
    from genomes import NotApplicable
    from genomes.modules import harvest, insert_module

    gate = draw(gate) if isinstance(gate, st.SearchStrategy) else gate
    pop = draw(populations_strategy(gate=gate, size=st.integers(1, 4)))
    donor = draw(populations_strategy(gate=gate, size=1, n_inputs=pop[0].n_inputs))[0]
    spec = harvest(donor, None, gate, name="donor")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    used = [n for g in pop for n in g.graph.nodes]
    used += [a["innovation"] for g in pop for _, _, a in g.graph.edges(data=True)]
    tracker, config = InnovationTracker(next_id=1 + max(used)), mutation_config(gate)
    out = []
    for genome in pop:
        tracker.next_generation()
        try:
            child, _ = insert_module(
                genome, rng, tracker, config, spec, frozen=draw(st.integers(0, 3)) > 0
            )
        except NotApplicable:
            child = genome
        out.append(child.validate())
    return pop, out


@settings(max_examples=15, deadline=None)
@given(grafted_populations(gate=st.sampled_from(GATE_KINDS)), st.sampled_from(GATE_KINDS), SEEDS)
def test_insert_module_children_compute_their_parents_function_in_every_engine(pops, gate, seed):
    parents, children = pops
    x = _inputs(children, seed)
    out = PopulationEngine(children, gate)(x)
    for m, (parent, child) in enumerate(zip(parents, children, strict=True)):
        ref = torch.from_numpy(evaluate(child, x.numpy().astype(np.float64), gate)).float()
        _close(out[m], ref)
        _close(out[m], GenomeNet(child, gate).eval()(x).detach())
        _close(ref, torch.from_numpy(evaluate(parent, x.numpy().astype(np.float64), gate)).float())


@settings(max_examples=10, deadline=None)
@given(grafted_populations(), SEEDS)
def test_training_grafted_children_keeps_frozen_modules_and_equals_torch_adamw(pops, seed):
    _, children = pops
    X, y = _data(children, seed)
    config = _config()
    gen = torch.Generator().manual_seed(seed)
    batches = minibatch_indices(X.shape[0], config.batch_size, config.steps, gen)
    engine = PopulationEngine(children, "sigmoid")
    train_engine(engine, X, y, config, batches)
    trained = engine.write_back()
    for m, child in enumerate(children):
        net = GenomeNet(child, "sigmoid")
        train_net(net, X, y, config, batches)
        assert_frozen_bit_identical(child, trained[m])
        ref = write_back(child, net)
        for (label, a), (_, b) in zip(trained[m].iter_arrays(), ref.iter_arrays(), strict=True):
            assert np.allclose(a, b, rtol=1e-4, atol=1e-4), label
