"""Task losses, data checks and the :class:`Metrics` of a genome: loss, accuracy, size and cost.

Evaluation always uses the deterministic gate values, the ones fitness, lineage
figures and export use; it runs through the population engine
(:func:`hybrid.population.evaluate_population`; one genome is a population of one).
Complexity (active parameters, FLOPs) comes from ``genomes.active_structure``:
only open gates count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from genomes import Genome

from .errors import DataError

if TYPE_CHECKING:
    from .train import TrainConfig

__all__ = [
    "LOSSES",
    "Metrics",
    "check_data",
    "evaluate_genome",
    "task_loss",
]


def _mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output, target)


def _cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target)


#: Task losses by config name; each is the mean over the batch (MSE: over samples and outputs).
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": _cross_entropy,
    "mse": _mse,
}


def task_loss(output: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Return the mean task loss of a batch.

    Args:
        output: network outputs (logits for ``cross_entropy``).
        target: class ids (``cross_entropy``) or values (``mse``).
        loss: a name in ``LOSSES``.

    Shape:
        output: (B, n_outputs); target: (B,) int64 or (B, n_outputs) float -> () scalar.
    """
    return LOSSES[loss](output, target)


@dataclass(frozen=True)
class Metrics:
    """How a genome does on a data split (deterministic gates).

    Attributes:
        loss: mean task loss.
        accuracy: share of correct argmax predictions (classification), else None.
        active_parameters: live weights and biases (``ActiveStructure.n_parameters``).
        flops: floating-point operations per sample (``ActiveStructure.flops``).
    """

    loss: float
    accuracy: float | None
    active_parameters: int
    flops: int


def check_data(
    X: Any, y: Any, n_inputs: int, n_outputs: int, loss: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(X, y)`` as tensors of the dtypes training expects.

    Args:
        X: inputs, float.
        y: class ids (``cross_entropy``) or targets (``mse``).
        n_inputs, n_outputs: the genome's widths.
        loss: a name in ``LOSSES``.

    Returns:
        ``X`` float32 (float64 kept); ``y`` int64 for ``cross_entropy``, else
        ``X``'s dtype. Same device as given.

    Raises:
        DataError: if a shape or a class id does not fit.

    Shape:
        X: (N, n_inputs); y: (N,) for ``cross_entropy``, (N, n_outputs) for ``mse``.
    """
    X = torch.as_tensor(X)
    if not X.is_floating_point() or X.dtype not in (torch.float32, torch.float64):
        X = X.to(torch.float32)
    y = torch.as_tensor(y, device=X.device)
    if X.dim() != 2 or X.shape[1] != n_inputs or X.shape[0] < 1:
        raise DataError(f"inputs should have shape (N >= 1, {n_inputs}), got {tuple(X.shape)}")
    if loss == "cross_entropy":
        if y.shape != (X.shape[0],) or y.is_floating_point():
            raise DataError(
                f"classification targets should be int class ids of shape ({X.shape[0]},), "
                f"got {y.dtype} of shape {tuple(y.shape)}"
            )
        y = y.to(torch.int64)
        if y.min() < 0 or y.max() >= n_outputs:
            raise DataError(f"class ids should lie in [0, {n_outputs}), got [{y.min()}, {y.max()}]")
    elif y.shape != (X.shape[0], n_outputs):
        raise DataError(
            f"regression targets should have shape ({X.shape[0]}, {n_outputs}), got {tuple(y.shape)}"
        )
    else:
        y = y.to(X.dtype)
    return X, y


def evaluate_genome(genome: Genome, X: Any, y: Any, config: TrainConfig) -> Metrics:
    """Return the metrics of ``genome`` on ``(X, y)`` with deterministic gates.

    A population of one through :func:`hybrid.population.evaluate_population`.

    Args:
        genome: a valid genome (not modified).
        X, y: a data split (see :func:`check_data`); evaluated on ``X``'s device.
        config: gives the gate kind and the loss.

    Raises:
        DataError: if the data does not fit the genome or the loss.
    """
    from .population import evaluate_population  # the population package imports this module

    return evaluate_population([genome], X, y, config)[0]
