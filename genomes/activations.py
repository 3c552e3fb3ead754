"""The activation registry shared by every engine.

Names are the contract: a genome stores an activation *name*; ``ACTIVATION_IDS``
gives each a stable small integer for engines that pack populations into tensors.
Engines implement the same formulas (tests hold them to these numpy versions).
``gelu`` is the tanh approximation (``torch.nn.functional.gelu(x, approximate="tanh")``)
so that the numpy reference needs nothing beyond numpy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["ACTIVATIONS", "ACTIVATION_IDS", "activate"]

_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so that exp never overflows.
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "gelu": _gelu,
    "sin": np.sin,
    "gauss": lambda x: np.exp(-(x**2)),
    "softplus": lambda x: np.logaddexp(0.0, x),
}

ACTIVATION_IDS: dict[str, int] = {name: i for i, name in enumerate(ACTIVATIONS)}


def activate(name: str, x: np.ndarray) -> np.ndarray:
    """Apply the activation called ``name`` elementwise to ``x``."""
    return ACTIVATIONS[name](x)
