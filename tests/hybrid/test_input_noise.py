"""``training.input_noise``: Gaussian noise on each training minibatch's inputs.

Held to the oracle (``GenomeNet`` + ``torch.optim.AdamW``) trained on the same noisy
minibatches: the schedule, then the gate noise, then one seed for the input-noise
stream, all from the run's generator; one ``(B, n_inputs)`` standard-normal draw per
step, shared by every member like the minibatch itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import Genome, InnovationTracker
from hybrid.batches import minibatch_indices
from hybrid.errors import ConfigError
from hybrid.gates import draw_gate_noise
from hybrid.net import GenomeNet, write_back
from hybrid.population import PopulationEngine, train_engine, train_population
from hybrid.train import TrainConfig, train_genome
from tests.hybrid.oracle import train_net
from tests.strategies import populations_strategy

SEEDS = st.integers(0, 2**16)
SIGMAS = st.sampled_from([0.05, 0.5, 3.0])


def _data(genome: Genome, seed: int, n: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, genome.n_inputs, generator=g)
    return X, torch.randint(0, genome.n_outputs, (n,), generator=g)


def _noisy_inputs(X: torch.Tensor, batches: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """The inputs each step trains on: one seed from ``generator``, then a normal draw per step."""
    stream = _stream(generator)
    return torch.stack([X[idx] + sigma * torch.randn((len(idx), X.shape[1]), generator=stream) for idx in batches])


def _assert_close(a: Genome, b: Genome, tol: float = 1e-4) -> None:
    assert a.structure_key() == b.structure_key()
    for (label, x), (_, y) in zip(a.iter_arrays(), b.iter_arrays(), strict=True):
        assert np.allclose(x, y, rtol=tol, atol=tol), (label, np.abs(x - y).max())


@settings(max_examples=12)
@given(populations_strategy(size=1, gate="hard_concrete"), SEEDS, SIGMAS)
def test_train_genome_with_input_noise_is_genomenet_trained_on_the_same_noisy_minibatches(pop, seed, sigma):
    genome = pop[0]
    X, y = _data(genome, seed)
    for gate in ("sigmoid", "hard_concrete"):
        config = TrainConfig(steps=5, batch_size=8, lr=0.02, penalty=0.01, gate=gate, input_noise=sigma)
        child, result = train_genome(genome, X, y, config, torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)
        batches = minibatch_indices(X.shape[0], config.batch_size, config.steps, g)
        net = GenomeNet(genome, gate)
        noise = draw_gate_noise(net.n_gates, config.steps, g) if gate == "hard_concrete" else None
        inputs = _noisy_inputs(X, batches, sigma, g)
        ref_loss = train_net(net, X, y, config, batches, noise, inputs=inputs)
        assert result.status == "ok" and result.steps == config.steps
        assert np.isclose(result.train_loss, ref_loss, rtol=1e-4, atol=1e-5)
        _assert_close(child, write_back(genome, net))


@settings(max_examples=10)
@given(populations_strategy(size=st.integers(2, 5)), SEEDS, SIGMAS)
def test_every_member_trains_on_the_same_noisy_minibatch(pop, seed, sigma):
    X, y = _data(pop[0], seed)
    config = TrainConfig(steps=4, batch_size=7, lr=0.02, weight_decay=0.01, input_noise=sigma)
    g = torch.Generator().manual_seed(seed)
    batches = minibatch_indices(X.shape[0], config.batch_size, config.steps, g)
    engine = PopulationEngine(pop, "sigmoid")
    state = g.get_state()
    train_engine(engine, X, y, config, batches, input_generator=_stream(g))
    trained = engine.write_back()
    g.set_state(state)
    inputs = _noisy_inputs(X, batches, sigma, g)
    for m, genome in enumerate(pop):
        net = GenomeNet(genome)
        train_net(net, X, y, config, batches, inputs=inputs)
        _assert_close(trained[m], write_back(genome, net))


def _genomes(n: int, n_inputs: int, n_outputs: int, hidden: tuple[int, ...]) -> list[Genome]:
    rng, tracker = np.random.default_rng(0), InnovationTracker()
    return [Genome.minimal(n_inputs, n_outputs, rng, tracker, hidden=hidden) for _ in range(n)]


def _stream(generator: torch.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))


def test_noise_changes_training_reproducibly_and_zero_is_the_noiseless_run():
    pop = _genomes(3, 6, 3, (5,))
    X, y = _data(pop[0], 7, n=40)

    def run(sigma: float, seed: int = 3) -> list[Genome]:
        config = TrainConfig(steps=20, batch_size=16, lr=0.02, input_noise=sigma)
        return train_population(pop, X, y, config, torch.Generator().manual_seed(seed)).genomes

    clean, noisy = run(0.0), run(0.5)
    assert run(0.5) == noisy  # same seed, same draws: bit-identical
    assert all(a != b for a, b in zip(clean, noisy, strict=True))  # the noise reached every member
    assert run(0.5, seed=4) != noisy


def test_training_metrics_and_validation_see_clean_inputs():
    # The noise is a training-time regulariser: the metrics a member is ranked by are
    # those of its trained genome on the clean rows.
    from hybrid.metrics import evaluate_genome

    pop = _genomes(1, 4, 2, (3,))
    X, y = _data(pop[0], 1, n=30)
    config = TrainConfig(steps=10, batch_size=10, lr=0.02, input_noise=2.0)
    out = train_population(pop, X, y, config, torch.Generator().manual_seed(0), X_val=X, y_val=y)
    clean = evaluate_genome(out.genomes[0], X, y, config)
    assert np.isclose(out.validation[0].loss, clean.loss, rtol=1e-5, atol=1e-6)
    assert np.isclose(out.results[0].metrics.loss, clean.loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), 101.0, True, "0.5"])
def test_bad_input_noise_is_one_config_error(bad):
    with pytest.raises(ConfigError, match=r"train\.input_noise should be a number in \[0, 100\]"):
        TrainConfig(input_noise=bad)


def test_the_engine_refuses_noise_without_its_stream():
    pop = _genomes(1, 3, 2, ())
    X, y = _data(pop[0], 0)
    config = TrainConfig(steps=2, batch_size=4, input_noise=0.1)
    batches = minibatch_indices(X.shape[0], 4, 2, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="input_noise = 0.1 needs an input_generator"):
        train_engine(PopulationEngine(pop, "sigmoid"), X, y, config, batches)


def test_adaptive_populations_train_on_noisy_inputs_reproducibly():
    from tests.adaptive_cases import adaptive_genome

    pop = [adaptive_genome(5, exits=1, skips=1), adaptive_genome(6, exits=1, skips=0)]
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, pop[0].n_inputs)).astype(np.float32)
    y = rng.integers(0, pop[0].n_outputs, 60)

    def run(sigma: float) -> tuple[list[Genome], int]:
        gen = torch.Generator().manual_seed(5)
        config = TrainConfig(steps=8, batch_size=16, input_noise=sigma)
        out = train_population(pop, X, y, config, gen)
        return out.genomes, int(torch.randint(0, 2**30, (1,), generator=gen))

    (clean, after_clean), (noisy, after_noisy) = run(0.0), run(0.7)
    assert run(0.7)[0] == noisy
    assert all(a != b for a, b in zip(clean, noisy, strict=True))
    assert after_clean != after_noisy  # the noise stream's seed is one more draw, made only when on
