"""Torch versions of the activation registry in ``genomes.activations``.

Same names, same formulas (``gelu`` is the tanh approximation); tests hold every
entry to the numpy reference. Module-level functions, not lambdas, so that modules
holding activation names stay picklable.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["TORCH_ACTIVATIONS", "torch_activate"]


def identity(x: torch.Tensor) -> torch.Tensor:
    """Return ``x`` unchanged."""
    return x


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Return the tanh approximation of GELU (the registry's ``gelu``)."""
    return F.gelu(x, approximate="tanh")


def softplus(x: torch.Tensor) -> torch.Tensor:
    """Return ``log(1 + exp(x))`` (``logaddexp``: exact for large ``x``, unlike F.softplus)."""
    return torch.logaddexp(x, torch.zeros_like(x))


def gauss(x: torch.Tensor) -> torch.Tensor:
    """Return ``exp(-x**2)``."""
    return torch.exp(-x * x)


TORCH_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": identity,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": gelu,
    "sin": torch.sin,
    "gauss": gauss,
    "softplus": softplus,
}


def torch_activate(name: str, x: torch.Tensor) -> torch.Tensor:
    """Apply the activation called ``name`` elementwise to ``x``.

    Shape:
        x: any shape; the output has the same shape.
    """
    return TORCH_ACTIVATIONS[name](x)
