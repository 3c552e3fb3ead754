"""Frozen gates (``train_gates = False``, the final fit) train at their deterministic values.

The final fit trains weights and biases only; a hard-concrete gate that cannot learn is
used at the value the fitted network is evaluated and exported with, not sampled from
the noise (sampling it would fit the weights to a noisy copy of the network that is
kept). Held to ``GenomeNet`` with deterministic gates and torch's AdamW on weights and
biases; in every training loop (plain, adaptive, recurrent) the result then does not
depend on the noise, while with ``train_gates`` True it does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import Genome
from hybrid.batches import minibatch_indices
from hybrid.metrics import task_loss
from hybrid.net import GenomeNet, write_back
from hybrid.population import PopulationEngine, RecurrentEngine, train_engine
from hybrid.population.adaptive import AdaptiveEngine
from hybrid.population.sequence import train_sequence_engine
from hybrid.population.train import train_adaptive
from hybrid.train import TrainConfig
from tests.adaptive_cases import adaptive_genome
from tests.hybrid.oracle import optimizer
from tests.strategies import populations_strategy

SEEDS = st.integers(0, 2**16)


def _config(train_gates: bool = False, **kw) -> TrainConfig:
    return TrainConfig(
        steps=6, batch_size=10, lr=0.02, weight_decay=0.05, penalty=0.01, gate="hard_concrete",
        train_gates=train_gates, **kw,
    )  # fmt: skip


def _data(genome: Genome, seed: int, n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, genome.n_inputs, generator=g, dtype=torch.float64)
    return X, torch.randint(0, genome.n_outputs, (n,), generator=g)


def _arrays(genomes: list[Genome]) -> list[list[tuple[str, np.ndarray]]]:
    return [[(label, np.array(a)) for label, a in g.iter_arrays()] for g in genomes]


def _same(a: list[Genome], b: list[Genome]) -> bool:
    return all(
        la == lb and x.tobytes() == y.tobytes()
        for ga, gb in zip(_arrays(a), _arrays(b), strict=True)
        for (la, x), (lb, y) in zip(ga, gb, strict=True)
    )


@settings(max_examples=15, deadline=None)
@given(populations_strategy(gate="hard_concrete"), SEEDS)
def test_frozen_gates_train_at_their_deterministic_values_as_genomenet_does(pop, seed):
    X, y = _data(pop[0], seed)
    config = _config()
    gen = torch.Generator().manual_seed(seed)
    batches = minibatch_indices(X.shape[0], config.batch_size, config.steps, gen)
    engine = PopulationEngine(pop, "hard_concrete", dtype=torch.float64)
    noise = torch.rand(config.steps, engine.n_gates, generator=gen, dtype=torch.float64)
    train_engine(engine, X, y, config, batches, noise=noise)
    assert engine.sample_gates  # set back after training
    trained = engine.write_back()
    for m, genome in enumerate(pop):
        net = GenomeNet(genome, "hard_concrete").double()
        for name, p in net.named_parameters():
            p.requires_grad_(not name.endswith("_gate"))
        opt = optimizer(net, config)
        net.eval()  # deterministic gates
        for t in range(config.steps):
            idx = batches[t]
            loss = task_loss(net(X[idx]), y[idx], config.loss) + config.penalty * net.penalty()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        ref = write_back(genome, net)
        for (label, a), (_, b) in zip(trained[m].iter_arrays(), ref.iter_arrays(), strict=True):
            assert np.allclose(a, b, rtol=1e-5, atol=1e-6), (label, np.abs(a - b).max())
        for (label, a), (_, b) in zip(trained[m].iter_arrays(), genome.iter_arrays(), strict=True):
            if label.endswith("gate"):
                assert np.array_equal(a, b), label  # the gates stay as they were


KINDS = ("adaptive", "plain", "recurrent")


def _trained(
    kind: str, pop: list[Genome], X, y, config: TrainConfig, batches, noise_seed: int
) -> list[Genome]:
    """``pop`` trained by the ``kind`` loop, its hard-concrete noise from ``noise_seed``.

    The adaptive loop's skip decisions get the same noise in every call: only the
    gates' noise differs between two calls with other ``noise_seed``.
    """
    noise_gen = torch.Generator().manual_seed(noise_seed)
    if kind == "recurrent":
        engine = RecurrentEngine(pop, "hard_concrete", dtype=torch.float64)
        seq_X = X.view(X.shape[0], 1, -1).expand(-1, 3, -1)  # three time steps of each row
        seq_y = y.view(-1, 1).expand(-1, 3)
        train_sequence_engine(engine, seq_X, seq_y, None, config, batches, noise_gen)
    else:
        cls = AdaptiveEngine if kind == "adaptive" else PopulationEngine
        engine = cls(pop, "hard_concrete", dtype=torch.float64)
        noise = torch.rand(config.steps, engine.n_gates, generator=noise_gen).double()
        if kind == "adaptive":
            skips = torch.Generator().manual_seed(7)
            train_adaptive(engine, X, y, config, batches, noise=noise, skip_generator=skips)
        else:
            train_engine(engine, X, y, config, batches, noise=noise)
    assert engine.sample_gates  # set back after training
    return engine.write_back()


@settings(max_examples=10, deadline=None)
@given(st.sampled_from(KINDS), SEEDS, st.data())
def test_with_frozen_gates_the_gate_noise_changes_nothing_in_every_engine(kind, seed, data):
    if kind == "adaptive":
        pop = [adaptive_genome(seed), adaptive_genome(seed + 1)]
    else:
        pop = data.draw(populations_strategy(gate="hard_concrete", recurrent=kind == "recurrent"))
    X, y = _data(pop[0], seed)
    config = _config()
    batches = minibatch_indices(
        X.shape[0], config.batch_size, config.steps, torch.Generator().manual_seed(seed)
    )
    assert _same(
        _trained(kind, pop, X, y, config, batches, 1), _trained(kind, pop, X, y, config, batches, 2)
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_with_gates_training_the_gate_noise_matters(kind, seed):
    # the witness that the test above can fail: gates trained, other noise, other weights
    exits = 2 if kind == "adaptive" else 0
    pop = [
        adaptive_genome(seed, exits=exits, skips=exits),
        adaptive_genome(seed + 1, exits=exits, skips=exits),
    ]
    X, y = _data(pop[0], seed)
    config = _config(train_gates=True)
    batches = minibatch_indices(
        X.shape[0], config.batch_size, config.steps, torch.Generator().manual_seed(seed)
    )
    assert not _same(
        _trained(kind, pop, X, y, config, batches, 1), _trained(kind, pop, X, y, config, batches, 2)
    )
