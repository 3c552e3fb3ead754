"""Torch gates mirror genomes.gates; hard-concrete samples follow Louizos et al. (2018)."""

import numpy as np
import pytest
import torch

import genomes
from genomes.gates import GATE_KINDS
from hybrid.gates import (
    draw_gate_noise,
    gate_value,
    gate_values,
    hard_concrete_sample,
    open_probability,
)

LOGITS = np.concatenate([np.linspace(-12.0, 12.0, 97), [-2.5, -2.39, 2.39, 2.5]])


@pytest.mark.parametrize("kind", GATE_KINDS)
def test_deterministic_values_match_genomes(kind):
    got = gate_value(torch.tensor(LOGITS), kind).numpy()
    np.testing.assert_allclose(got, genomes.gate_value(LOGITS, kind), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind", GATE_KINDS)
def test_open_probability_matches_genomes(kind):
    got = open_probability(torch.tensor(LOGITS), kind).numpy()
    np.testing.assert_allclose(got, genomes.open_probability(LOGITS, kind), rtol=1e-12, atol=1e-15)


def test_hard_concrete_is_exactly_zero_or_one_far_from_zero():
    g = gate_value(torch.tensor([-5.0, -2.5, 2.5, 5.0]), "hard_concrete")
    assert g.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_hard_concrete_sample_is_nonzero_with_open_probability():
    logits = torch.tensor([-3.0, -1.0, 0.0, 1.0, 3.0])
    u = draw_gate_noise(5, 40_000, torch.Generator().manual_seed(0))
    samples = hard_concrete_sample(logits.expand(40_000, 5), u)
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    frequency = (samples > 0).double().mean(dim=0)
    expected = open_probability(logits.double(), "hard_concrete")
    torch.testing.assert_close(frequency, expected, atol=0.01, rtol=0.0)


def test_hard_concrete_sample_is_a_function_of_the_noise():
    logits = torch.linspace(-3, 3, 7)
    u = torch.rand(7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(hard_concrete_sample(logits, u), hard_concrete_sample(logits, u.clone()))


def test_extreme_noise_keeps_gradients_finite():
    logits = torch.zeros(3, requires_grad=True)
    hard_concrete_sample(logits, torch.tensor([0.0, 0.5, 1.0])).sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_sigmoid_training_gate_is_deterministic():
    logits = torch.linspace(-3, 3, 7)
    assert torch.equal(gate_values(logits, "sigmoid", None, training=True), gate_value(logits, "sigmoid"))


def test_hard_concrete_training_gate_needs_noise():
    with pytest.raises(ValueError, match="noise"):
        gate_values(torch.zeros(2), "hard_concrete", None, training=True)


def test_unknown_gate_kind_is_rejected():
    with pytest.raises(ValueError, match="gate kind"):
        gate_value(torch.zeros(2), "step")


def test_noise_comes_from_the_generator_not_the_global_rng():
    state = torch.random.get_rng_state()
    a = draw_gate_noise(4, 3, torch.Generator().manual_seed(7))
    b = draw_gate_noise(4, 3, torch.Generator().manual_seed(7))
    assert a.shape == (3, 4) and torch.equal(a, b)
    assert torch.equal(torch.random.get_rng_state(), state)
