"""Settings of the genome operators (mutations, crossover, distance).

Frozen dataclasses: ``hybrid`` validates user config and builds these; the
operators only read them. Each default says why it is what it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .genome import DEFAULT_GATE_INIT

__all__ = ["DistanceConfig", "MutationConfig", "MutationRecord"]


@dataclass(frozen=True)
class MutationConfig:
    """What the mutation operators may do."""

    gate: str = "sigmoid"  # gate kind the engines use: function preservation depends on it
    gate_init: float = DEFAULT_GATE_INIT  # new gates start open (sigmoid 0.95, L0 exactly 1)
    activations: tuple[str, ...] = ("relu", "tanh", "sigmoid", "gelu", "sin", "gauss", "softplus", "identity")
    new_node_activation: str = "relu"  # relu splits exactly (x = relu(x) - relu(-x))
    max_new_node_width: int = 16  # cap on a split node's width; beyond it the split is a truncated SVD
    widen_max: int = 4  # widen adds 1..widen_max neurons (TINY-style small steps)
    max_node_width: int = 256  # no node grows past this
    perturb_std: float = 0.1  # relative weight noise of perturb_weights
    perturb_fraction: float = 0.5  # share of arrays perturb_weights touches
    prune_weakest: int = 1  # neurons prune_neurons removes when none is closed
    sparsify_fraction: float = 0.5  # share of an edge's removable connections sparsify removes


@dataclass(frozen=True)
class DistanceConfig:
    """Coefficients of NEAT's compatibility distance (Stanley & Miikkulainen 2002)."""

    excess: float = 1.0  # c1: genes beyond the other genome's highest innovation
    disjoint: float = 1.0  # c2: unmatched genes within the other's range
    weight: float = 0.5  # c3: mean |delta| of matching genes' weights (per entry)
    width: float = 0.1  # difference in neurons of matching nodes, per neuron
    normalise_above: int = 20  # N = 1 for genomes smaller than this (NEAT's rule)


@dataclass(frozen=True)
class MutationRecord:
    """What an operator did: its name and JSON-ready arguments (for the lineage).

    ``str(record)`` reads like a call: ``widen(node=7, added=4)``.
    """

    op: str
    args: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in self.args.items())
        return f"{self.op}({inner})"

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"op": ..., "args": {...}}``."""
        return {"op": self.op, "args": dict(self.args)}
