"""Torch gate functions, mirroring ``genomes.gates``.

Two kinds (``genomes.GATE_KINDS``):

* ``sigmoid``: ``g = sigmoid(logit)``, deterministic while training and at evaluation.
* ``hard_concrete``: the L0 gate of Louizos, Welling & Kingma (2018), "Learning
  Sparse Neural Networks through L0 Regularization" (ICLR). While training, one
  stretched and clipped binary-concrete sample per gate::

      u ~ U(0, 1)
      s = sigmoid((log u - log(1 - u) + logit) / BETA)
      g = clip(s * (ZETA - GAMMA) + GAMMA, 0, 1)

  At evaluation the deterministic value ``clip(sigmoid(logit) * (ZETA - GAMMA) +
  GAMMA, 0, 1)``. The structure penalty is ``P(g != 0) = sigmoid(logit - BETA *
  log(-GAMMA / ZETA))``.

The uniform noise ``u`` is an argument, never drawn here: callers draw it from an
explicit ``torch.Generator`` (see :func:`draw_gate_noise`), so two engines fed the
same noise compute the same gates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch

from genomes.gates import BETA, GAMMA, GATE_KINDS, ZETA

if TYPE_CHECKING:
    from genomes import Genome

__all__ = [
    "NOISE_EPS",
    "GateRun",
    "check_gate_kind",
    "draw_gate_noise",
    "gate_layout",
    "gate_value",
    "gate_values",
    "hard_concrete_sample",
    "n_gates",
    "open_probability",
]

#: Uniform noise is clamped to ``[NOISE_EPS, 1 - NOISE_EPS]`` so its logit stays finite.
NOISE_EPS = 1e-6

_LOG_RATIO = BETA * math.log(-GAMMA / ZETA)


def check_gate_kind(kind: str) -> str:
    """Return ``kind`` if it is a gate kind.

    Raises:
        ValueError: if ``kind`` is not one of ``genomes.GATE_KINDS``.
    """
    if kind not in GATE_KINDS:
        raise ValueError(f"gate kind should be one of {GATE_KINDS}, got {kind!r}")
    return kind


def gate_value(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Return the deterministic (evaluation-time) gate values.

    Shape:
        logits: any shape; the output has the same shape.
    """
    s = torch.sigmoid(logits)
    if kind == "sigmoid":
        return s
    check_gate_kind(kind)
    return torch.clamp(s * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def hard_concrete_sample(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Return a hard-concrete gate sample for uniform noise ``u``.

    Args:
        logits: gate logits.
        u: uniform noise in [0, 1), same shape as ``logits`` (clamped to
            ``[NOISE_EPS, 1 - NOISE_EPS]``).

    Shape:
        logits, u: any shape, equal; the output has the same shape.
    """
    u = torch.clamp(u, NOISE_EPS, 1.0 - NOISE_EPS)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + logits) / BETA)
    return torch.clamp(s * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def gate_values(
    logits: torch.Tensor, kind: str, noise: torch.Tensor | None = None, training: bool = False
) -> torch.Tensor:
    """Return the gate values a forward pass uses (``GenomeNet`` and the population engine).

    Deterministic (:func:`gate_value`) at evaluation and always for sigmoid gates;
    a hard-concrete sample from uniform ``noise`` when training hard-concrete gates.

    Raises:
        ValueError: for training-mode hard-concrete gates without noise.

    Shape:
        logits, noise: any shape, equal; the output has the same shape.
    """
    if training and kind == "hard_concrete":
        if noise is None:
            raise ValueError("hard_concrete gates in training need uniform noise, got None")
        return hard_concrete_sample(logits, noise.to(logits.device, logits.dtype))
    return gate_value(logits, kind)


class GateRun(NamedTuple):
    """One run of consecutive gates in a genome's gate layout.

    Attributes:
        key: a node id (its neuron gates) or an edge ``(source, destination)`` (one gate).
        size: how many gates (the node's width, or 1 for an edge).
    """

    key: int | tuple[int, int]
    size: int


def gate_layout(genome: Genome, order: Sequence[int] | None = None) -> tuple[GateRun, ...]:
    """Return the order of a genome's gates: noise columns, logit vectors, member slices.

    The input node's neuron gates, then each hidden node's neuron gates in
    ``genome.topological_order()``, then one gate per enabled edge, feed-forward and
    recurrent, by innovation number (``genome.gated_edges()``). The output node has
    no gate.
    ``GenomeNet``, the population engine (each member one contiguous run, member
    after member) and the Dask shards all use this order, so one noise row feeds
    the same gate in every engine.

    Args:
        genome: a valid genome.
        order: ``genome.topological_order()`` if the caller has it already (it is
            the costly part, and packing a population needs it anyway).
    """
    g = genome.graph
    order = genome.topological_order() if order is None else order
    hidden = [n for n in order if g.nodes[n]["role"] == "hidden"]
    nodes = [GateRun(n, int(g.nodes[n]["width"])) for n in [genome.input_id, *hidden]]
    return (*nodes, *(GateRun(e, 1) for e in genome.gated_edges()))


def n_gates(genome: Genome) -> int:
    """Return how many gates ``genome`` has (the width of its noise row)."""
    return sum(run.size for run in gate_layout(genome))


def open_probability(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Return each gate's contribution to the structure penalty.

    ``hard_concrete``: P(gate != 0), the expected L0 norm; ``sigmoid``: the gate value.

    Shape:
        logits: any shape; the output has the same shape.
    """
    if kind == "sigmoid":
        return torch.sigmoid(logits)
    check_gate_kind(kind)
    return torch.sigmoid(logits - _LOG_RATIO)


def draw_gate_noise(
    n_gates: int, steps: int, generator: torch.Generator, device: torch.device | str | None = None
) -> torch.Tensor:
    """Draw the uniform noise for ``steps`` forward passes of ``n_gates`` gates.

    One ``torch.rand`` call on the generator's device, then moved to ``device``, so
    the draw depends on the generator alone (not on where the network runs).

    Returns:
        Float32 noise in [0, 1): row ``t`` feeds the gates of step ``t``.

    Shape:
        (steps, n_gates)
    """
    u = torch.rand((steps, n_gates), generator=generator, device=generator.device)
    return u if device is None else u.to(device)
