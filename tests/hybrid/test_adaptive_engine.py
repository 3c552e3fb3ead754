"""The batched engine of adaptive genomes (issue 16) held to the numpy references.

``AdaptiveEngine`` runs exit heads and per-input skip gates for a whole population:
its output must be ``genomes.evaluate``, its heads, exit-rule outputs, stages and
FLOPs ``genomes.adaptive.evaluate_adaptive``, member by member, for random adaptive
genomes (``tests/adaptive_cases.py``) mixed with plain ones. Gradients are held to a
per-genome float64 autograd reference written here (straight-through hard Gumbel
skip gates), and to a one-member engine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from genomes import Genome, InnovationTracker, active_structure, evaluate
from genomes.adaptive import evaluate_adaptive, exit_nodes, fit_threshold, is_adaptive, skip_nodes
from hybrid.activations import torch_activate
from hybrid.errors import ConfigError
from hybrid.gates import NOISE_EPS, gate_layout, gate_values
from hybrid.population import (
    AdaptiveEngine,
    PopulationEngine,
    adaptive_losses,
    evaluate_population,
    train_population,
)
from hybrid.train import TrainConfig
from tests.adaptive_cases import adaptive_genome
from tests.hybrid.oracle import grads_as_genomes

GATES = ("sigmoid", "hard_concrete")


def _plain(seed: int, n_inputs: int = 4, n_outputs: int = 3) -> Genome:
    rng = np.random.default_rng(seed)
    return Genome.minimal(n_inputs, n_outputs, rng, InnovationTracker(), hidden=(3,))


def _population(seed: int, size: int = 4) -> list[Genome]:
    """Random adaptive genomes and one plain genome, in a seed-dependent order."""
    pop = [adaptive_genome(seed * 7 + k) for k in range(size - 1)] + [_plain(seed)]
    order = np.random.default_rng(seed).permutation(len(pop))
    return [pop[i] for i in order]


def _x(seed: int, b: int = 40, n: int = 4) -> np.ndarray:
    return np.random.default_rng(seed + 1000).normal(size=(b, n))


# ------------------------------------------------------------------ function
@settings(max_examples=6)
@given(seed=st.integers(0, 2**16), gate=st.sampled_from(GATES))
def test_forward_equals_evaluate(seed: int, gate: str) -> None:
    pop, x = _population(seed), _x(seed)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        engine = AdaptiveEngine(pop, gate, dtype=dtype)
        out = engine.forward(torch.tensor(x))
        assert out.shape == (len(pop), x.shape[0], 3) and out.dtype == dtype
        for m, genome in enumerate(pop):
            ref = evaluate(genome, x, gate)
            np.testing.assert_allclose(out[m].double().numpy(), ref, rtol=tol, atol=tol)


@settings(max_examples=6)
@given(seed=st.integers(0, 2**16), gate=st.sampled_from(GATES))
@example(seed=6750, gate="hard_concrete")  # a dead skip node (found by the dev profile)
def test_heads_and_exit_rule_equal_evaluate_adaptive(seed: int, gate: str) -> None:
    pop, x = _population(seed), _x(seed, 60)
    engine = AdaptiveEngine(pop, gate, dtype=torch.float64)
    xt = torch.tensor(x)
    run = engine.heads(xt)
    outputs, flops, stage = engine.infer(xt)
    assert flops.dtype == torch.float64 and stage.dtype == torch.int64
    for m, genome in enumerate(pop):
        ref = evaluate_adaptive(genome, x, gate)
        e = len(ref.plan.exits)
        assert run.head_mask[m].tolist() == [True] * e + [False] * (run.heads.shape[1] - e)
        np.testing.assert_allclose(run.heads[m, :e].numpy(), ref.heads, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(run.output[m].numpy(), ref.output, rtol=1e-10, atol=1e-10)
        assert (run.heads[m, e:] == 0).all()
        np.testing.assert_array_equal(stage[m].numpy(), ref.exit)
        np.testing.assert_array_equal(flops[m].numpy(), ref.flops.astype(np.float64))
        np.testing.assert_allclose(outputs[m].numpy(), ref.outputs, rtol=1e-10, atol=1e-10)
        skips = skip_nodes(genome)
        assert run.skip_mask[m].sum() == len(skips)
        # the reference reports the live skip nodes; a dead one (every out-edge closed or
        # disabled) changes no output or FLOPs, whatever the engine's z says for it
        live = active_structure(genome, gate).neurons
        assert set(ref.runs) == {n for n in skips if n in live}
        for k, n in enumerate(skips):
            if n in ref.runs:
                np.testing.assert_array_equal(run.z[m, k].numpy(), ref.runs[n].astype(np.float64))


@settings(max_examples=4)
@given(seed=st.integers(0, 2**16))
def test_infer_with_given_thresholds(seed: int) -> None:
    pop, x = _population(seed), _x(seed, 60)
    engine = AdaptiveEngine(pop, "sigmoid", dtype=torch.float64)
    rng = np.random.default_rng(seed)
    n_e = engine.heads(torch.tensor(x[:1])).heads.shape[1]
    thr = rng.uniform(0.4, 1.0, size=(len(pop), max(n_e, 1)))
    outputs, flops, stage = engine.infer(torch.tensor(x), thresholds=thr)
    for m, genome in enumerate(pop):
        ref = evaluate_adaptive(genome, x, "sigmoid", thresholds=thr[m, : len(exit_nodes(genome))])
        np.testing.assert_array_equal(stage[m].numpy(), ref.exit)
        np.testing.assert_array_equal(flops[m].numpy(), ref.flops.astype(np.float64))
        np.testing.assert_allclose(outputs[m].numpy(), ref.outputs, rtol=1e-10, atol=1e-10)


def test_plain_population_matches_population_engine_with_noise() -> None:
    """Gate noise in ``gate_layout`` order: the hard-concrete samples PopulationEngine draws."""
    pop = [_plain(s) for s in range(3)]
    x = torch.tensor(_x(0), dtype=torch.float64)
    ref_engine = PopulationEngine(pop, "hard_concrete", dtype=torch.float64)
    engine = AdaptiveEngine(pop, "hard_concrete", dtype=torch.float64)
    noise = torch.rand(engine.n_gates, generator=torch.Generator().manual_seed(0))
    assert engine.n_gates == ref_engine.n_gates
    got = engine.forward(x, noise, training=True)
    want = ref_engine.forward(x, noise, training=True)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(engine.penalty(), ref_engine.penalty(), rtol=1e-12, atol=1e-12)
    assert engine.n_skips == 0 and engine.heads(x).heads.shape[1] == 0


# ---------------------------------------------------------------- gradients
def _reference_loss(
    genome: Genome,
    x: torch.Tensor,
    y: torch.Tensor,
    gate: str,
    noise: torch.Tensor,
    skip_u: torch.Tensor,
    config: TrainConfig,
) -> tuple[torch.Tensor, dict]:
    """One genome's training loss in float64 autograd, node by node; returns (loss, leaves)."""
    g = genome.graph
    leaves: dict = {}

    def leaf(key: tuple, value: np.ndarray) -> torch.Tensor:
        t = torch.tensor(np.asarray(value, np.float64), requires_grad=True)
        leaves[key] = t
        return t

    gv: dict = {}
    at = 0
    for run in gate_layout(genome):
        a = g.nodes[run.key] if isinstance(run.key, int) else g.edges[run.key]
        logits = leaf(("gate", run.key), np.asarray(a["gate"]).reshape(-1))
        gv[run.key] = gate_values(logits, gate, noise[at : at + run.size], True)
        at += run.size
    active = genome.active_graph()
    h: dict = {}
    z_of: dict = {}
    skips = skip_nodes(genome)
    for n in genome.topological_order():
        a = g.nodes[n]
        if a["role"] == "input":
            h[n] = x * gv[n]
            continue
        pre = leaf(("bias", n), a["bias"]).expand(x.shape[0], -1)
        s = leaf(("skip", n), a["skip"]) if a.get("skip") is not None else None
        for src in sorted(active.predecessors(n)):
            e = g.edges[src, n]
            w = leaf(("weight", (src, n)), e["weight"])
            pre = pre + gv[(src, n)] * (h[src] @ w.T)
            if s is not None:
                s = s + gv[(src, n)] * (h[src] @ leaf(("eskip", (src, n)), e["skip"]))
        out = torch_activate(a["activation"], pre)
        if a["role"] == "hidden":
            out = out * gv[n]
            if s is not None:
                u = skip_u[skips.index(n)].clamp(NOISE_EPS, 1 - NOISE_EPS)
                t = s + torch.log(u) - torch.log1p(-u)
                soft = torch.sigmoid(t)
                z = (t >= 0).double() + (soft - soft.detach())
                z_of[n] = z
                out = out * z[:, None]
        h[n] = out
    ce = torch.nn.functional.cross_entropy
    loss = ce(h[genome.output_id], y)
    target = torch.softmax(h[genome.output_id].detach(), -1)
    a = config.exit_distill
    for e in exit_nodes(genome):
        soft = -(target * torch.log_softmax(h[e], -1)).sum(-1).mean()
        loss = loss + config.exit_weight * ((1 - a) * ce(h[e], y) + a * soft)
    if z_of:
        loss = (
            loss
            + config.skip_penalty
            * torch.stack([(config.skip_target - z.mean()) ** 2 for z in z_of.values()]).mean()
        )
    return loss, leaves


def _engine_grads(engine: AdaptiveEngine, *args) -> tuple[torch.Tensor, list[Genome]]:
    for p in engine.params:
        p.requires_grad_(True)
    loss, _ = adaptive_losses(engine, *args)
    grads = torch.autograd.grad(loss.sum(), engine.params, allow_unused=True)
    grads = tuple(
        torch.zeros_like(p) if gr is None else gr
        for p, gr in zip(engine.params, grads, strict=True)
    )
    for p in engine.params:
        p.requires_grad_(False)
    return loss.detach(), grads_as_genomes(engine, grads)


@settings(max_examples=4)
@given(
    seed=st.integers(0, 2**16),
    gate=st.sampled_from(GATES),
    distill=st.sampled_from([0.0, 0.4, 1.0]),
)
def test_gradients_equal_reference_and_one_member_engines(seed: int, gate: str, distill: float) -> None:
    pop = _population(seed, 3)
    config = TrainConfig(
        gate=gate, exit_weight=0.7, exit_distill=distill, skip_target=0.6, skip_penalty=2.0
    )
    x = torch.tensor(_x(seed, 24), dtype=torch.float64)
    y = torch.as_tensor(np.random.default_rng(seed).integers(0, 3, 24))
    engine = AdaptiveEngine(pop, gate, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(engine.n_gates, generator=gen, dtype=torch.float64)
    skip_u = torch.rand(len(pop), max(engine.n_skips, 1), 24, generator=gen, dtype=torch.float64)
    skip_u = skip_u[:, : engine.n_skips]
    loss, grads = _engine_grads(engine, x, y, config, noise, None, skip_u)
    at = 0
    for m, genome in enumerate(pop):
        size = sum(r.size for r in gate_layout(genome))
        ns = len(skip_nodes(genome))
        ref_loss, leaves = _reference_loss(
            genome, x, y, gate, noise[at : at + size], skip_u[m, :ns], config
        )
        torch.testing.assert_close(loss[m], ref_loss.detach(), rtol=1e-10, atol=1e-10)
        ref = dict(zip(leaves, torch.autograd.grad(ref_loss, list(leaves.values())), strict=True))
        gg = grads[m].graph
        for (what, key), want in ref.items():
            attrs = gg.nodes[key] if isinstance(key, int) else gg.edges[key]
            name = {"eskip": "skip"}.get(what, what)
            got = np.asarray(attrs[name], np.float64).reshape(want.shape)
            np.testing.assert_allclose(
                got, want.numpy(), rtol=1e-5, atol=1e-6, err_msg=f"{what} {key}"
            )
        # alone, with its slice of the noise: the same loss and gradients (members independent)
        one = AdaptiveEngine([genome], gate, dtype=torch.float64)
        one_loss, one_grads = _engine_grads(
            one, x, y, config, noise[at : at + size], None, skip_u[m : m + 1, :ns]
        )
        torch.testing.assert_close(one_loss[0], loss[m], rtol=1e-12, atol=1e-12)
        for (s, d), attrs in gg.edges.items():
            if attrs["enabled"]:
                np.testing.assert_array_equal(
                    one_grads[0].graph.edges[s, d]["weight"], attrs["weight"]
                )
        at += size


def test_straight_through_gradient_reaches_skip_parameters() -> None:
    genome = adaptive_genome(3, exits=0, skips=2)
    assert skip_nodes(genome)
    engine = AdaptiveEngine([genome], dtype=torch.float64)
    x = torch.tensor(_x(3, 64), dtype=torch.float64)
    y = torch.as_tensor(np.random.default_rng(3).integers(0, 3, 64))
    u = torch.rand(
        1, engine.n_skips, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    _, grads = _engine_grads(engine, x, y, TrainConfig(), None, None, u)
    g = grads[0].graph
    for n in skip_nodes(genome):
        assert np.abs(g.nodes[n]["skip"]).sum() > 0
        assert any(np.abs(g.edges[s, n]["skip"]).sum() > 0 for s in genome.graph.predecessors(n))
    run = engine.heads(x, training=True, skip_noise=u)
    assert set(run.z[0].unique().tolist()) <= {0.0, 1.0}  # hard forward


def test_training_mode_without_skip_noise_is_refused() -> None:
    engine = AdaptiveEngine([adaptive_genome(3, exits=0, skips=2)])
    with pytest.raises(ValueError, match="skip_noise"):
        engine.forward(torch.zeros(2, 4), training=True)
    engine.skip_generator = torch.Generator().manual_seed(0)
    assert engine.forward(torch.zeros(2, 4), training=True).shape == (1, 2, 3)


# ------------------------------------------------------- write back, training
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_write_back_of_an_untrained_engine_is_bit_exact(dtype: torch.dtype) -> None:
    pop = _population(5, 5)
    for genome, back in zip(pop, AdaptiveEngine(pop, dtype=dtype).write_back(), strict=True):
        assert back is not genome and back.structure_key() == genome.structure_key()
        for n, a in genome.graph.nodes(data=True):
            for key, value in a.items():
                if isinstance(value, np.ndarray):
                    b = back.graph.nodes[n][key]
                    assert b.dtype == value.dtype and b.tobytes() == value.tobytes(), (n, key)
                else:
                    assert back.graph.nodes[n][key] == value, (n, key)
        for s, d, a in genome.graph.edges(data=True):
            for key, value in a.items():
                b = back.graph.edges[s, d][key]
                assert np.asarray(b).tobytes() == np.asarray(value).tobytes(), (s, d, key)


def _task(seed: int, n: int = 240) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = ((X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)).astype(np.int64)
    return X, y


@pytest.mark.parametrize("gate", GATES)
def test_training_lowers_the_loss_and_fits_thresholds(gate: str) -> None:
    pop = _population(11, 4)
    X, y = _task(0)
    config = TrainConfig(steps=60, batch_size=64, gate=gate, penalty=1e-3)
    before = evaluate_population(pop, X[:160], y[:160], config)
    out = train_population(
        pop,
        X[:160],
        y[:160],
        config,
        torch.Generator().manual_seed(0),
        X_val=X[160:],
        y_val=y[160:],
    )
    assert out.validation is not None
    for m, (genome, r, v) in enumerate(zip(out.genomes, out.results, out.validation, strict=True)):
        assert r.status == "ok" and r.steps == 60
        assert r.metrics.loss < before[m].loss  # type: ignore[union-attr]
        assert v.average_flops is not None and 0 < v.average_flops <= v.flops
        # the validation metrics are those of the returned genome under the exit rule
        ref = evaluate_adaptive(genome, X[160:], gate, np.float32)
        assert v.average_flops == pytest.approx(ref.flops.mean(), rel=1e-12)
        assert v.accuracy == pytest.approx((ref.outputs.argmax(1) == y[160:]).mean(), abs=1e-6)
        again = evaluate_population([genome], X[160:], y[160:], config)[0]
        assert again.loss == pytest.approx(v.loss, rel=1e-6)
        if is_adaptive(genome):
            assert again.average_flops == pytest.approx(v.average_flops)
        else:  # a plain genome alone runs the plain engine: no average
            assert again.average_flops is None and v.average_flops == v.flops
        if exit_nodes(genome):  # the fitted threshold, written into every exit
            q, _, cost = fit_threshold(
                ref.heads, ref.output, y[160:], ref.stage_flops, config.threshold_tolerance
            )
            assert {genome.graph.nodes[e]["threshold"] for e in exit_nodes(genome)} == {q}
            assert cost == pytest.approx(v.average_flops)


def test_fit_thresholds_is_fit_threshold_per_member() -> None:
    pop = _population(2, 4)
    X, y = _task(2, 120)
    engine = AdaptiveEngine(pop, dtype=torch.float64)
    fits = engine.fit_thresholds(torch.tensor(X, dtype=torch.float64), torch.as_tensor(y), 0.02)
    for genome, fit, back in zip(pop, fits, engine.write_back(), strict=True):
        ref = evaluate_adaptive(genome, X, "sigmoid")
        want = fit_threshold(ref.heads, ref.output, y, ref.stage_flops, 0.02)
        assert (
            fit[0] == want[0]
            and fit[1] == pytest.approx(want[1])
            and fit[2] == pytest.approx(want[2])
        )
        for e in exit_nodes(genome):
            assert back.graph.nodes[e]["threshold"] == want[0]
        if exit_nodes(genome):  # infer uses the fitted thresholds now
            _, flops, _ = engine.infer(torch.tensor(X, dtype=torch.float64))
            assert float(flops[pop.index(genome)].mean()) == pytest.approx(want[2])


def test_plain_population_keeps_the_old_path() -> None:
    pop = [_plain(s) for s in range(3)]
    X, y = _task(1, 120)
    out = train_population(
        pop,
        X[:80],
        y[:80],
        TrainConfig(steps=5),
        torch.Generator().manual_seed(0),
        X_val=X[80:],
        y_val=y[80:],
    )
    assert all(v.average_flops is None for v in out.validation or [])


def test_refusals() -> None:
    pop = _population(1, 3)
    X, y = _task(1, 60)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ConfigError, match="K-fold"):
        train_population(pop, X, y, TrainConfig(steps=1), gen, folds=(np.arange(60) % 2, [0, 1, 0]))
    with pytest.raises(ConfigError, match="budgets"):
        train_population(pop, X, y, TrainConfig(steps=1, budgets="sandwich"), gen)
    with_exits = [g for g in pop if exit_nodes(g)]
    assert with_exits
    with pytest.raises(ConfigError, match="exit heads need classes"):
        evaluate_population(with_exits, X, np.zeros((60, 3), np.float32), TrainConfig(loss="mse"))
    with pytest.raises(ValueError, match="inputs should have shape"):
        AdaptiveEngine(pop).forward(torch.zeros(2, 5))
    with pytest.raises(Exception, match="inputs"):
        AdaptiveEngine([pop[0], _plain(0, n_inputs=5)])
    with pytest.raises(ConfigError, match="skip_target"):
        TrainConfig(skip_target=1.5)


def test_training_reproduces_and_draws_skip_noise_last() -> None:
    X, y = _task(4, 120)
    config = TrainConfig(steps=8, batch_size=32)
    skips = [adaptive_genome(4, exits=0, skips=2), _plain(4)]
    exits = [adaptive_genome(4, exits=2, skips=0), _plain(4)]
    runs = []
    for pop in (skips, skips, exits, [_plain(4)]):
        gen = torch.Generator().manual_seed(3)
        out = train_population(pop, X, y, config, gen)
        runs.append((out, int(torch.randint(0, 2**30, (1,), generator=gen))))
    for a, b in zip(runs[0][0].genomes, runs[1][0].genomes, strict=True):
        for (s, d, wa), (_, _, wb) in zip(
            a.graph.edges(data="weight"), b.graph.edges(data="weight"), strict=True
        ):
            assert wa.tobytes() == wb.tobytes(), (s, d)
    # without skip gates nothing more is drawn than for a plain population
    assert runs[2][1] == runs[3][1] != runs[0][1]


def test_skip_penalty_pulls_the_run_rate_to_the_target() -> None:
    X, y = _task(5, 200)
    genome = adaptive_genome(5, exits=0, skips=2)
    rates = {}
    for target in (0.1, 0.9):
        config = TrainConfig(
            steps=80, batch_size=64, lr=0.05, skip_target=target, skip_penalty=10.0
        )
        out = train_population([genome], X, y, config, torch.Generator().manual_seed(0))
        engine = AdaptiveEngine(out.genomes)
        run = engine.heads(torch.as_tensor(X))
        rates[target] = float(engine.skip_rates(run.z).sum() / run.skip_mask.sum())
    assert rates[0.1] < 0.3 and rates[0.9] > 0.7


def test_a_failing_member_is_isolated() -> None:
    X, y = _task(6, 100)
    bad = adaptive_genome(6)
    out_id = bad.output_id
    bad.graph.nodes[out_id]["bias"] = np.full(3, np.inf, np.float32)
    pop = [adaptive_genome(7), bad]
    out = train_population(
        pop,
        X[:60],
        y[:60],
        TrainConfig(steps=5, batch_size=30),
        torch.Generator().manual_seed(0),
        X_val=X[60:],
        y_val=y[60:],
    )
    assert [r.status for r in out.results] == ["ok", "failed"]
    assert out.genomes[1] is bad and out.results[1].steps == 0
    assert out.validation is not None and np.isfinite(out.validation[0].loss)
