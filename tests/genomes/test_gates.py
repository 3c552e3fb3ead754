"""Gate values and structure-penalty probabilities; the activation registry."""

from __future__ import annotations

import numpy as np
import pytest

from genomes import ACTIVATION_IDS, ACTIVATIONS, GATE_KINDS, activate, gate_value, open_probability
from genomes.gates import GAMMA, ZETA


def test_hard_concrete_is_exactly_zero_or_one_beyond_its_ends():
    x = np.array([-8.0, -3.0, 3.0, 8.0])
    np.testing.assert_array_equal(gate_value(x, "hard_concrete"), [0.0, 0.0, 1.0, 1.0])
    assert 0.0 < gate_value(0.0, "hard_concrete") < 1.0
    assert gate_value(0.0, "hard_concrete") == pytest.approx(0.5 * (ZETA - GAMMA) + GAMMA)


def test_sigmoid_gate_is_never_exactly_closed():
    v = gate_value(np.array([-30.0, 0.0, 30.0]), "sigmoid")
    assert v[0] > 0.0 and v[1] == 0.5 and v[2] <= 1.0


@pytest.mark.parametrize("kind", GATE_KINDS)
def test_open_probability_is_a_probability_increasing_with_the_logit(kind):
    p = open_probability(np.linspace(-10, 10, 41), kind)
    assert ((p >= 0) & (p <= 1)).all() and (np.diff(p) > 0).all()


def test_unknown_gate_kind_is_refused():
    with pytest.raises(ValueError, match="gate kind should be one of"):
        gate_value(1.0, "step")


def test_activation_ids_are_stable_and_contiguous():
    assert list(ACTIVATION_IDS) == list(ACTIVATIONS)
    assert sorted(ACTIVATION_IDS.values()) == list(range(len(ACTIVATIONS)))
    assert ACTIVATION_IDS["identity"] == 0
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    assert np.array_equal(ACTIVATIONS["identity"](x), x)


def test_activations_match_their_formulas_and_do_not_overflow():
    x = np.array([-1000.0, -1.0, 0.0, 1.0, 1000.0])
    with np.errstate(over="raise"):
        s = activate("sigmoid", x)
        sp = activate("softplus", x)
    np.testing.assert_allclose(s, [0.0, 1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-1)), 1.0])
    np.testing.assert_allclose(sp[1:4], np.log1p(np.exp(x[1:4])))
    np.testing.assert_allclose(activate("gauss", np.array([0.0, 1.0])), [1.0, np.exp(-1)])
    np.testing.assert_allclose(activate("gelu", np.array([1.0])), [0.8411919906082768])  # tanh approximation
