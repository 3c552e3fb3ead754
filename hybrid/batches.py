"""Minibatch index schedules, shared by every training engine.

The single-genome trainer and the population engine both call
:func:`minibatch_indices` with the same generator state, so they see identical
minibatches and can be held to each other step by step.
"""

from __future__ import annotations

import torch

__all__ = ["minibatch_indices"]


def minibatch_indices(
    n_samples: int, batch_size: int, steps: int, generator: torch.Generator
) -> torch.Tensor:
    """Return the sample indices of every training step.

    Epochs of ``torch.randperm(n_samples, generator=generator)`` are concatenated
    and cut into consecutive batches (a batch may straddle two epochs), so every
    sample is seen once per epoch. When ``batch_size >= n_samples`` each step is
    the full batch ``arange(n_samples)``, no shuffle, and the generator is not
    touched.

    Args:
        n_samples: number of training samples (>= 1).
        batch_size: samples per step (>= 1).
        steps: number of steps (>= 0).
        generator: the source of the shuffles; indices live on its device.

    Returns:
        int64 indices. In the full-batch case a read-only broadcast view of
        ``arange(n_samples)``.

    Raises:
        ValueError: if a count is out of range.

    Shape:
        (steps, min(batch_size, n_samples))

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> minibatch_indices(5, 2, 3, g).shape
        torch.Size([3, 2])
    """
    if n_samples < 1 or batch_size < 1 or steps < 0:
        raise ValueError(
            "n_samples and batch_size should be >= 1 and steps >= 0, got "
            f"n_samples={n_samples}, batch_size={batch_size}, steps={steps}"
        )
    device = generator.device
    if batch_size >= n_samples:
        return torch.arange(n_samples, device=device).expand(steps, n_samples)
    needed = steps * batch_size
    epochs = -(-needed // n_samples)
    perms = [torch.randperm(n_samples, generator=generator, device=device) for _ in range(epochs)]
    flat = torch.cat(perms) if perms else torch.empty(0, dtype=torch.long, device=device)
    return flat[:needed].view(steps, batch_size)
