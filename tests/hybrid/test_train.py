"""train_genome fits real tasks, fails softly on NaN, and is reproducible step by step."""

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from genomes import (
    Genome,
    InnovationTracker,
    MutationConfig,
    NotApplicable,
    active_structure,
    evaluate,
    gate_value,
)
from genomes.gates import GATE_KINDS
from genomes.mutations import GROWTH, MUTATIONS, add_edge, add_node, widen
from hybrid.batches import minibatch_indices
from hybrid.errors import ConfigError, DataError
from hybrid.gates import draw_gate_noise
from hybrid.metrics import evaluate_genome
from hybrid.net import GenomeNet, write_back
from hybrid.train import TrainConfig, train_genome
from tests.hybrid.oracle import train_net
from tests.strategies import grown_genomes


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def two_spirals() -> tuple[torch.Tensor, torch.Tensor]:
    """Return the classic 2 x 97 two-spirals points (Lang & Witbrock 1988), scaled to [-1, 1]."""
    i = np.arange(97)
    angle, radius = i * np.pi / 16, 6.5 * (104 - i) / 104
    p = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1) / 6.5
    X = torch.tensor(np.concatenate([p, -p]), dtype=torch.float32)
    return X, torch.tensor(np.repeat([0, 1], 97))


def grown(n_in: int, n_out: int, seed: int, ops, config: MutationConfig) -> Genome:
    """Return Genome.minimal(n_in, n_out) after the growth mutations ``ops``."""
    rng, tracker = np.random.default_rng(seed), InnovationTracker()
    genome = Genome.minimal(n_in, n_out, rng, tracker)
    for op in ops:
        genome, _ = op(genome, rng, tracker, config)
    return genome


def random_regression(genome: Genome, seed: int, n: int = 32):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, genome.n_inputs)).astype(np.float32)
    return X, rng.normal(size=(n, genome.n_outputs)).astype(np.float32)


# ----------------------------------------------------------------- real tasks
def test_grown_genome_fits_xor():
    X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 1, 0])
    genome = grown(2, 2, 0, [add_node, widen], MutationConfig())
    trained, result = train_genome(genome, X, y, TrainConfig(steps=300, lr=0.05), gen(0))
    assert result.status == "ok" and result.metrics.accuracy == 1.0


def test_grown_genome_fits_two_spirals():
    X, y = two_spirals()
    config = MutationConfig(widen_max=16, max_node_width=32)
    genome = grown(2, 2, 0, [add_node, add_node, widen, widen, widen, widen, add_edge], config)
    trained, result = train_genome(genome, X, y, TrainConfig(steps=1000, lr=0.02), gen(0))
    assert result.status == "ok" and result.metrics.accuracy >= 0.95
    logits = evaluate(trained, X.numpy(), "sigmoid")
    # Accuracy is a float32 mean of 0/1 values: equal to the float64 one to float32 precision.
    assert (logits.argmax(axis=1) == y.numpy()).mean() == pytest.approx(result.metrics.accuracy, rel=1e-6)


def test_l0_penalty_closes_the_gates_of_noise_inputs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1024, 8)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] - X[:, 2] + X[:, 3] > 0).astype(np.int64)  # inputs 4..7 are noise
    genome = Genome.minimal(8, 2, np.random.default_rng(0), InnovationTracker(), hidden=[8])
    config = TrainConfig(steps=300, batch_size=128, lr=0.05, gate="hard_concrete", penalty=0.02)
    trained, result = train_genome(genome, X, y, config, gen(0))
    gates = gate_value(trained.node(trained.input_id)["gate"], "hard_concrete")
    assert result.status == "ok" and result.metrics.accuracy >= 0.95
    assert (gates[4:] == 0).sum() >= 3 and (gates[:4] > 0).all()
    assert result.metrics.active_parameters < active_structure(genome, "hard_concrete").n_parameters


def test_mse_training_lowers_the_loss():
    genome = Genome.minimal(3, 2, np.random.default_rng(1), InnovationTracker(), hidden=[8])
    X = np.random.default_rng(2).normal(size=(64, 3)).astype(np.float32)
    y = np.stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2]], axis=1).astype(np.float32)
    config = TrainConfig(steps=200, batch_size=16, loss="mse")
    before = evaluate_genome(genome, X, y, config)
    _, result = train_genome(genome, X, y, config, gen(0))
    assert result.metrics.loss < 0.5 * before.loss and result.metrics.accuracy is None


# ------------------------------------------------------------ preservation
@settings(max_examples=20)
@given(grown_genomes(gate=st.sampled_from(GATE_KINDS)), st.sampled_from(GROWTH), st.integers(0, 99))
def test_growth_after_training_preserves_the_function(drawn, op, seed):
    kind = drawn.config.gate
    X, y = random_regression(drawn.genome, seed)
    parent, result = train_genome(drawn.genome, X, y, TrainConfig(steps=5, loss="mse", gate=kind), gen(seed))
    assume(result.status == "ok")
    try:
        child, record = MUTATIONS[op](parent, np.random.default_rng(seed), drawn.tracker, drawn.config)
    except NotApplicable:
        assume(False)
    assume(not record.args.get("truncated"))  # a split capped below the edge's rank is approximate by design
    x = torch.tensor(np.random.default_rng(seed + 1).normal(size=(16, parent.n_inputs)), dtype=torch.float32)
    want = GenomeNet(parent, kind).eval()(x)
    torch.testing.assert_close(GenomeNet(child, kind).eval()(x), want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------ reproducibility
@pytest.mark.parametrize("kind", GATE_KINDS)
def test_train_genome_is_the_genomenet_oracle_on_the_same_draws(kind):
    genome = Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), hidden=[5])
    X, y = random_regression(genome, 0, n=40)
    config = TrainConfig(steps=25, batch_size=8, loss="mse", gate=kind, penalty=0.01, weight_decay=0.1)
    trained, result = train_genome(genome, X, y, config, gen(3))
    g = gen(3)
    net = GenomeNet(genome, kind)
    batches = minibatch_indices(40, config.batch_size, config.steps, g)
    noise = draw_gate_noise(net.n_gates, config.steps, g) if kind == "hard_concrete" else None
    loss = train_net(net, torch.tensor(X), torch.tensor(y), config, batches, noise)
    ref = write_back(genome, net)
    for (label, a), (_, b) in zip(trained.iter_arrays(), ref.iter_arrays(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=label)
    assert result.train_loss == pytest.approx(loss, rel=1e-5)
    # the training split's metrics carry no task.metric score (only validation/test do)
    assert result.metrics == dataclasses.replace(evaluate_genome(trained, X, y, config), metric=None, score=None)


def test_same_seed_same_genome_and_the_input_is_untouched():
    genome = Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), hidden=[5])
    before = genome.copy()
    X, y = random_regression(genome, 1)
    config = TrainConfig(steps=20, batch_size=8, loss="mse", gate="hard_concrete")
    a, ra = train_genome(genome, X, y, config, gen(1))
    b, rb = train_genome(genome, X, y, config, gen(1))
    c, _ = train_genome(genome, X, y, config, gen(2))
    assert a == b and ra == rb and a != c and genome == before


# ------------------------------------------------------------------ failure
def test_nan_weight_fails_softly():
    genome = Genome.minimal(2, 2, np.random.default_rng(0), InnovationTracker(), hidden=[3]).copy()
    src, dst = genome.enabled_edges()[0]
    genome.graph.edges[src, dst]["weight"][0, 0] = np.nan
    X, y = torch.randn(8, 2, generator=gen(0)), torch.tensor([0, 1] * 4)
    trained, result = train_genome(genome, X, y, TrainConfig(steps=10), gen(0))
    assert result.status == "failed" and result.steps == 0 and np.isnan(result.train_loss)
    assert trained is genome and result.metrics is None


def test_loss_turning_nan_mid_training_stops_at_that_step():
    genome = Genome.minimal(2, 1, np.random.default_rng(0), InnovationTracker())
    X, y = random_regression(genome, 0, n=20)
    X[13, 0] = np.inf
    config = TrainConfig(steps=30, batch_size=4, loss="mse")
    trained, result = train_genome(genome, X, y, config, gen(5))
    first_bad = next(t for t, b in enumerate(minibatch_indices(20, 4, 30, gen(5))) if 13 in b)
    assert result.status == "failed" and result.steps == first_bad and trained is genome


# ------------------------------------------------------------ evaluation
def test_evaluate_genome_matches_the_numpy_oracle():
    rng = np.random.default_rng(4)
    genome = Genome.minimal(3, 4, rng, InnovationTracker(), hidden=[6]).copy()
    genome.graph.nodes[genome.hidden_nodes()[0]]["gate"][:2] = -5.0  # two closed neurons
    X, y = rng.normal(size=(50, 3)), rng.integers(0, 4, 50)
    config = TrainConfig(gate="hard_concrete")
    metrics = evaluate_genome(genome, X, y, config)
    logits = evaluate(genome, X, "hard_concrete")
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert metrics.loss == pytest.approx(-log_p[np.arange(50), y].mean(), rel=1e-5)
    assert metrics.accuracy == pytest.approx((logits.argmax(axis=1) == y).mean())
    live = active_structure(genome, "hard_concrete")
    assert (metrics.active_parameters, metrics.flops) == (live.n_parameters, live.flops)
    assert metrics.active_parameters == 3 * 4 + 4 * 4 + 4 + 4


@pytest.mark.parametrize(
    ("X", "y", "loss", "match"),
    [
        (np.zeros((4, 2)), np.zeros(4, np.int64), "cross_entropy", "inputs should have shape"),
        (np.zeros((4, 3)), np.zeros(4, np.float32), "cross_entropy", "int class ids"),
        (np.zeros((4, 3)), np.array([0, 1, 2, 3]), "cross_entropy", "class ids should lie"),
        (np.zeros((4, 3)), np.zeros(4, np.float32), "mse", "regression targets"),
    ],
)
def test_data_that_does_not_fit_is_a_data_error(X, y, loss, match):
    genome = Genome.minimal(3, 3, np.random.default_rng(0), InnovationTracker())
    with pytest.raises(DataError, match=match):
        train_genome(genome, X, y, TrainConfig(loss=loss), gen(0))


# ----------------------------------------------------------------- config
@pytest.mark.parametrize(
    "changes",
    [{"steps": -1}, {"batch_size": 0}, {"lr": 0.0}, {"penalty": -1.0}, {"gate": "step"}, {"loss": "l1"}],
)
def test_bad_train_config_is_a_config_error(changes):
    with pytest.raises(ConfigError):
        TrainConfig(**changes)


def test_train_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().steps = 5  # type: ignore[misc]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", GATE_KINDS)
def test_cuda_training_matches_cpu(kind):
    genome = Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), hidden=[5])
    X, y = random_regression(genome, 0, n=40)
    config = TrainConfig(steps=20, batch_size=8, loss="mse", gate=kind, penalty=0.01)
    on_cpu, _ = train_genome(genome, X, y, config, gen(3))
    on_gpu, result = train_genome(genome, torch.tensor(X).cuda(), torch.tensor(y).cuda(), config, gen(3))
    assert result.status == "ok"
    for (label, a), (_, b) in zip(on_cpu.iter_arrays(), on_gpu.iter_arrays(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=label)
