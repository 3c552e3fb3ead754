"""Batched training held to the single-genome trainer, member by member.

Oracle equality of training uses sigmoid gates, or hard-concrete gates with the
noise passed explicitly: the engines lay out their noise draws differently (only a
one-member population is what ``train_genome`` trains). The oracle is
``tests/hybrid/oracle.py``: ``GenomeNet`` and ``torch.optim.AdamW`` step by step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hybrid.population.train as population_train
from genomes import GATE_KINDS, Genome, InnovationTracker
from hybrid.backends import evaluate_members, train_members
from hybrid.batches import minibatch_indices
from hybrid.gates import draw_gate_noise
from hybrid.metrics import evaluate_genome
from hybrid.net import GenomeNet, write_back
from hybrid.population import (
    BatchedAdamW,
    PopulationEngine,
    evaluate_population,
    train_engine,
    train_population,
)
from hybrid.train import TrainConfig, train_genome
from tests.hybrid.oracle import engine_and_oracles, train_net
from tests.strategies import populations_strategy

SEEDS = st.integers(0, 2**16)


def _data(pop: list[Genome], seed: int, n: int = 24, loss: str = "cross_entropy"):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, pop[0].n_inputs, generator=g)
    if loss == "mse":
        return X, torch.randn(n, pop[0].n_outputs, generator=g)
    return X, torch.randint(0, pop[0].n_outputs, (n,), generator=g)


def _assert_genomes_close(a: Genome, b: Genome, tol: float) -> None:
    assert a.structure_key() == b.structure_key()
    for (label, x), (_, y) in zip(a.iter_arrays(), b.iter_arrays(), strict=True):
        assert np.allclose(x, y, rtol=tol, atol=tol), (label, np.abs(x - y).max())


def _assert_bit_identical(a: Genome, b: Genome) -> None:
    assert a == b, "arrays differ bitwise"


@settings(max_examples=25)
@given(populations_strategy(), SEEDS, st.sampled_from(["cross_entropy", "mse"]))
def test_k_steps_equal_the_single_genome_trainer_for_every_member(pop, seed, loss):
    X, y = _data(pop, seed, loss=loss)
    config = TrainConfig(
        steps=6, batch_size=10, lr=0.02, weight_decay=0.05, penalty=0.01, loss=loss
    )
    _, results, trained, oracles = engine_and_oracles(pop, X, y, config, seed)
    for m, (ref_loss, ref) in enumerate(oracles):
        assert results[m].status == "ok"
        assert results[m].steps == config.steps
        assert np.isclose(results[m].train_loss, ref_loss, rtol=1e-4, atol=1e-5)
        _assert_genomes_close(trained[m], ref, 1e-4)


@settings(max_examples=15)
@given(populations_strategy(gate="hard_concrete"), SEEDS)
def test_hard_concrete_training_equals_single_genome_steps_given_the_same_noise(pop, seed):
    X, y = _data(pop, seed)
    config = TrainConfig(steps=4, batch_size=12, lr=0.02, penalty=0.05, gate="hard_concrete")
    gen = torch.Generator().manual_seed(seed)
    batches = minibatch_indices(X.shape[0], config.batch_size, config.steps, gen)
    engine = PopulationEngine(pop, "hard_concrete")
    noise = torch.rand(config.steps, engine.n_gates, generator=gen)
    train_engine(engine, X, y, config, batches, noise=noise)
    trained = engine.write_back()
    for m, genome in enumerate(pop):
        start, end = engine.layout.members[m].gates
        net = GenomeNet(genome, "hard_concrete")
        train_net(net, X, y, config, batches, noise[:, start:end])
        _assert_genomes_close(trained[m], write_back(genome, net), 1e-4)


@settings(max_examples=10)
@given(populations_strategy(size=1, gate="hard_concrete"), SEEDS)
def test_train_genome_is_genomenet_trained_on_the_same_draws(pop, seed):
    # train_genome (a population of one) draws the schedule, then the noise, from
    # one generator; GenomeNet trained by the oracle on those draws gives the same genome.
    X, y = _data(pop, seed)
    config = TrainConfig(steps=5, batch_size=8, lr=0.02, penalty=0.01, gate="hard_concrete")
    child, result = train_genome(pop[0], X, y, config, torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    batches = minibatch_indices(X.shape[0], config.batch_size, config.steps, g)
    net = GenomeNet(pop[0], "hard_concrete")
    noise = draw_gate_noise(net.n_gates, config.steps, g)
    ref_loss = train_net(net, X, y, config, batches, noise)
    assert result.status == "ok" and result.steps == config.steps
    assert np.isclose(result.train_loss, ref_loss, rtol=1e-4, atol=1e-5)
    ref_child = write_back(pop[0], net)
    _assert_genomes_close(child, ref_child, 1e-4)
    ref = evaluate_genome(ref_child, X, y, config)
    assert np.isclose(result.metrics.loss, ref.loss, rtol=1e-4, atol=1e-5)
    assert (result.metrics.active_parameters, result.metrics.flops) == (
        ref.active_parameters,
        ref.flops,
    )


@settings(max_examples=15)
@given(populations_strategy(size=st.integers(3, 6)), SEEDS, st.data())
def test_a_nan_member_fails_alone_and_the_others_stay_bit_identical(pop, seed, data):
    X, y = _data(pop, seed)
    config = TrainConfig(steps=5, batch_size=8, lr=0.05, weight_decay=0.1, penalty=0.01)
    victim = data.draw(st.integers(0, len(pop) - 1))
    broken = list(pop)
    broken[victim] = pop[victim].copy()
    s, d = broken[victim].enabled_edges()[0]
    broken[victim].graph.edges[s, d]["weight"][0, 0] = np.nan
    clean_genomes, clean, _ = train_population(pop, X, y, config, torch.Generator().manual_seed(seed))
    genomes, results, val = train_population(
        broken, X, y, config, torch.Generator().manual_seed(seed), X_val=X[:9], y_val=y[:9]
    )
    # Validation metrics are those of the returned genomes: the victim's own NaN
    # genome, the others' trained ones, bit for bit as packed again.
    assert np.isnan(val[victim].loss)
    again = evaluate_population(genomes, X[:9], y[:9], config)
    assert [v for m, v in enumerate(val) if m != victim] == [v for m, v in enumerate(again) if m != victim]
    assert results[victim].status == "failed" and results[victim].steps == 0
    assert genomes[victim] is broken[victim]
    for m in range(len(pop)):
        if m != victim:
            assert results[m] == clean[m]
            _assert_bit_identical(genomes[m], clean_genomes[m])


def test_a_member_that_diverges_mid_training_is_frozen_before_the_failing_step():
    rng, tracker = np.random.default_rng(0), InnovationTracker()
    pop = [Genome.minimal(3, 2, rng, tracker, hidden=[4], activation="identity") for _ in range(3)]
    X, y = _data(pop, 0)
    config = TrainConfig(steps=8, batch_size=24, lr=0.05)
    batches = minibatch_indices(24, 24, 8, torch.Generator())
    lrs = [0.05, 1e30, 0.05]  # member 1 overflows after a step or two
    engine = PopulationEngine(pop)
    results = train_engine(engine, X, y, config, batches, lrs=lrs)
    done = results[1].steps
    assert results[1].status == "failed" and 0 < done < 8
    shorter = PopulationEngine(pop)
    train_engine(shorter, X, y, config, batches[:done], lrs=lrs)
    _assert_bit_identical(engine.write_back()[1], shorter.write_back()[1])
    clean = PopulationEngine(pop)
    clean_results = train_engine(clean, X, y, config, batches)
    for m in (0, 2):
        assert results[m] == clean_results[m]
        _assert_bit_identical(engine.write_back()[m], clean.write_back()[m])


@settings(max_examples=10)
@given(populations_strategy(size=st.integers(2, 5)), SEEDS, st.data())
def test_per_member_learning_rates_equal_single_runs_at_those_rates(pop, seed, data):
    X, y = _data(pop, seed)
    lrs = data.draw(
        st.lists(st.sampled_from([0.001, 0.01, 0.1]), min_size=len(pop), max_size=len(pop))
    )
    config = TrainConfig(steps=4, batch_size=8, weight_decay=0.1)
    batches = minibatch_indices(X.shape[0], 8, 4, torch.Generator().manual_seed(seed))
    engine = PopulationEngine(pop)
    train_engine(engine, X, y, config, batches, lrs=lrs)
    for m, genome in enumerate(pop):
        net = GenomeNet(genome)
        train_net(net, X, y, TrainConfig(steps=4, batch_size=8, weight_decay=0.1, lr=lrs[m]), batches)
        _assert_genomes_close(engine.write_back()[m], write_back(genome, net), 1e-4)


def test_batched_adamw_is_torch_adamw_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    decayed, other = torch.randn(50, generator=g), torch.randn(30, generator=g)
    members = [torch.arange(50) % 3, torch.arange(30) % 3]
    scale = torch.tensor([1.0, 0.0, 1e-20, 1e-30, 1e-5]).repeat(10)  # zeros, subnormal v
    grads = [[torch.randn(50, generator=g) * scale, torch.randn(30, generator=g)] for _ in range(5)]
    for active in (None, torch.ones(3, dtype=torch.bool)):  # fast path, general path
        ref = [decayed.clone().requires_grad_(), other.clone().requires_grad_()]
        opt = torch.optim.AdamW(
            [{"params": [ref[0]], "weight_decay": 0.1}, {"params": [ref[1]], "weight_decay": 0.0}],
            lr=0.01,
            foreach=False,
        )
        ours = [decayed.clone(), other.clone()]
        batched = BatchedAdamW(
            ours,
            members,
            torch.full((3,), 0.01, dtype=torch.float64),
            (True, False),
            weight_decay=0.1,
        )
        for step in grads:
            for p, gr in zip(ref, step, strict=True):
                p.grad = gr.clone()
            opt.step()
            batched.step(step, active)
        for a, b in zip(ours, ref, strict=True):
            assert torch.equal(a, b.detach())


def test_inactive_members_keep_parameters_and_moments():
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(12, generator=g)
    member = torch.arange(12) % 4
    opt = BatchedAdamW([theta], [member], torch.full((4,), 0.1), (True,), weight_decay=0.1)
    opt.step([torch.randn(12, generator=g)], None)
    before = (theta.clone(), opt.exp_avg[0].clone(), opt.exp_avg_sq[0].clone())
    active = torch.tensor([True, False, True, False])
    opt.step([torch.full((12,), float("nan"))], active)
    frozen = ~active[member]
    for now, then in zip((theta, opt.exp_avg[0], opt.exp_avg_sq[0]), before, strict=True):
        assert torch.equal(now[frozen], then[frozen])
        assert now[~frozen].isnan().all()


def test_padding_stays_exactly_zero_through_training():
    rng, tracker = np.random.default_rng(0), InnovationTracker()
    pop = [Genome.minimal(4, 3, rng, tracker, hidden=[w, 5 - w]) for w in (1, 2, 3, 4)]
    engine = PopulationEngine(pop, merge_macs=1e9)  # one big bucket: lots of padding
    assert engine.padding_efficiency < 1
    X, y = _data(pop, 0)
    config = TrainConfig(steps=5, batch_size=8, weight_decay=0.1)
    train_engine(engine, X, y, config, minibatch_indices(24, 8, 5, torch.Generator()))
    for values, member in zip(engine.params, engine.members, strict=True):
        assert torch.count_nonzero(values[member == len(pop)]) == 0


@settings(max_examples=10)
@given(populations_strategy(gate="hard_concrete"), st.sampled_from(GATE_KINDS), SEEDS)
def test_evaluate_population_equals_evaluate_genome(pop, gate, seed):
    X, y = _data(pop, seed)
    config = TrainConfig(gate=gate)
    for got, genome in zip(evaluate_population(pop, X, y, config), pop, strict=True):
        ref = evaluate_genome(genome, X, y, config)
        assert np.isclose(got.loss, ref.loss, rtol=1e-5, atol=1e-6)
        assert got.accuracy == ref.accuracy
        assert (got.active_parameters, got.flops) == (ref.active_parameters, ref.flops)


def test_evaluation_in_chunks_equals_one_pass(monkeypatch):
    rng, tracker = np.random.default_rng(0), InnovationTracker()
    pop = [Genome.minimal(3, 4, rng, tracker, hidden=[w]) for w in (1, 3, 5)]
    X, y = _data(pop, 0, n=50)
    engine = PopulationEngine(pop)
    whole = population_train.evaluate_engine(engine, X, y, "cross_entropy")
    monkeypatch.setattr(population_train, "EVAL_CHUNK", 7)
    chunked = population_train.evaluate_engine(engine, X, y, "cross_entropy")
    assert np.allclose(whole[0], chunked[0], rtol=1e-6) and whole[1] == chunked[1]


@pytest.mark.parametrize("engine", ["batched", "loop"])
@pytest.mark.parametrize("gate", GATE_KINDS)
def test_train_members_validation_equals_evaluating_the_trained_genomes(engine, gate):
    # The search's one call: train, then validation metrics from the engine that trained.
    rng, tracker = np.random.default_rng(3), InnovationTracker()
    pop = [Genome.minimal(3, 2, rng, tracker, hidden=[w]) for w in (1, 2, 4)]
    X, y = (a.numpy() for a in _data(pop, 3, n=30))
    config = TrainConfig(steps=6, batch_size=8, lr=0.05, gate=gate, penalty=0.01)
    old = train_members(pop, X, y, config, 11, engine=engine)
    out = train_members(pop, X, y, config, 11, engine=engine, X_val=X[:10], y_val=y[:10])
    assert old.validation is None  # no split given: nothing scored
    assert out.genomes == old.genomes and out.results == old.results
    assert out.validation == evaluate_members(out.genomes, X[:10], y[:10], config, engine=engine)


DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    ),
]


@pytest.mark.parametrize("device", DEVICES)
def test_accuracy_is_the_correctly_rounded_float32_share_on_every_device(device: str) -> None:
    # CUDA divides by a Python number as a multiply by its reciprocal: 26 / 30 came out
    # an ulp above float32's quotient (the exported module's and sklearn's accuracy)
    n = np.arange(1, 400)
    k = np.concatenate([np.arange(m + 1) for m in n])
    totals = np.repeat(n, n + 1)
    expected = (k.astype(np.float32) / totals.astype(np.float32)).tolist()
    got = population_train.shares(torch.tensor(k, device=device), torch.tensor(totals, device=device))
    assert got == expected
    # the counts over one total, as the evaluation passes use it
    assert population_train.shares(torch.arange(31, device=device), 30) == (
        np.arange(31, dtype=np.float32) / np.float32(30)
    ).tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_accuracy_on_cuda_is_the_float32_share_of_its_right_answers():
    rng, tracker = np.random.default_rng(0), InnovationTracker()
    pop = [Genome.minimal(3, 4, rng, tracker, hidden=[w]) for w in (1, 3, 5)]
    engine = PopulationEngine(pop, device="cuda")
    for n in (30, 97, 360):  # 26/30 was an ulp high on CUDA
        X, y = _data(pop, n, n=n)
        X, y = X.cuda(), y.cuda()
        got = population_train.evaluate_engine(engine, X, y, "cross_entropy")[1]
        with torch.no_grad():
            right = (engine.forward(X).argmax(-1) == y).sum(1).cpu().numpy()
        assert got == (right.astype(np.float32) / np.float32(n)).tolist()
