"""Gate functions: turn structure logits into multiplicative gate values.

Two kinds (``GATE_KINDS``):

* ``sigmoid``: a soft gate, ``g = sigmoid(logit)``; never exactly 0 or 1.
* ``hard_concrete``: the L0 gate of Louizos, Welling & Kingma (2018), "Learning
  Sparse Neural Networks through L0 Regularization". While training, a stretched
  and clipped binary-concrete sample; at evaluation the deterministic value
  ``clip(sigmoid(logit) * (ZETA - GAMMA) + GAMMA, 0, 1)``, which is exactly 0 or 1
  for logits beyond about -/+2.4, so a closed gate is a true zero.

This module holds the deterministic values and the expected-open probabilities
(the structure penalty); the stochastic sampling lives with the torch engines.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BETA",
    "GAMMA",
    "GATE_KINDS",
    "ZETA",
    "gate_value",
    "open_probability",
]

GATE_KINDS = ("sigmoid", "hard_concrete")

# Hard-concrete constants from Louizos et al. (2018), section 4.
BETA = 2.0 / 3.0
GAMMA = -0.1
ZETA = 1.1


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _check_kind(kind: str) -> None:
    if kind not in GATE_KINDS:
        raise ValueError(f"gate kind should be one of {GATE_KINDS}, got {kind!r}")


def gate_value(logits: np.ndarray | float, kind: str, dtype=np.float64) -> np.ndarray:
    """Return the deterministic (evaluation-time) gate values for ``logits``."""
    _check_kind(kind)
    x = np.asarray(logits, dtype=dtype)
    s = _sigmoid(x)
    if kind == "sigmoid":
        return s
    return np.clip(s * (ZETA - GAMMA) + GAMMA, 0.0, 1.0).astype(dtype)


def open_probability(logits: np.ndarray | float, kind: str, dtype=np.float64) -> np.ndarray:
    """Return each gate's contribution to the structure penalty.

    For ``hard_concrete`` this is P(gate != 0) (the expected L0 norm); for
    ``sigmoid`` it is the gate value itself.
    """
    _check_kind(kind)
    x = np.asarray(logits, dtype=dtype)
    if kind == "sigmoid":
        return _sigmoid(x)
    return _sigmoid(x - BETA * np.log(-GAMMA / ZETA))
