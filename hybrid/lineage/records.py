"""Immutable records read back from the lineage store.

A :class:`GenomeRecord` is one evaluated genome (no arrays); a :class:`Structure`
is its graph without weights; a :class:`GenerationRecord` is one generation's
summary. They are what :class:`hybrid.lineage.Lineage` hands out: plain frozen
dataclasses, safe to keep after the store is closed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EdgeInfo",
    "GenerationRecord",
    "GenomeRecord",
    "NodeInfo",
    "Operator",
    "Structure",
]

#: Operator name of an elite: the parent copied unchanged into the next generation.
ELITE = "elite"
#: Lists longer than this print as a count (``perturb_weights(arrays=[7 items])``).
_MAX_LIST = 3


def _short(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list | tuple) and len(v) > _MAX_LIST:
        return f"[{len(v)} items]"
    return str(v)


@dataclass(frozen=True)
class Operator:
    """One operator that helped make a genome: its name and arguments.

    ``str(op)`` reads like a call, leaving out empty and False arguments and
    counting long lists: ``widen(node=7, added=4)``,
    ``perturb_weights(arrays=[7 items], std=0.1)``; with no arguments left, just
    the name (``elite``).
    """

    op: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        shown = [(k, v) for k, v in self.args.items() if v not in ([], {}, (), None) and v is not False]
        if not shown:
            return self.op
        return f"{self.op}({', '.join(f'{k}={_short(v)}' for k, v in shown)})"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Operator:
        """Rebuild from the store's ``{"op": ..., "args": {...}}``."""
        return cls(str(d["op"]), dict(d.get("args") or {}))


@dataclass(frozen=True)
class GenomeRecord:
    """One evaluated genome as the store keeps it (metrics, no arrays).

    Attributes:
        id: the genome's id (unique in the run).
        generation: the generation it was evaluated in (elites get a new id each
            generation, so this is also the generation it was born in).
        parents: parent ids, the fitter (first) parent first; empty in generation 0.
        operators: what made it from its parents, in order (``elite`` for a copy).
        species: species id after speciation (None if unassigned).
        status: ``ok``, ``failed`` (NaN/inf loss) or ``pruned`` (its species was
            dropped for stagnation).
        train_loss, val_loss, val_metric: after this generation's training; the
            metric is the selection fitness of ``task.metric`` (its value; negated for a
            lower-is-better metric: log_loss, mae, mse), None if failed.
        active_params, flops: live parameters and FLOPs per sample.
        n_parameters: every parameter the genome holds, live or not.
        has_weights: whether the store kept its full weights.
    """

    id: int
    generation: int
    parents: tuple[int, ...]
    operators: tuple[Operator, ...]
    species: int | None
    status: str
    train_loss: float | None
    val_loss: float | None
    val_metric: float | None
    active_params: int | None
    flops: int | None
    n_parameters: int | None
    has_weights: bool

    @property
    def is_elite(self) -> bool:
        """Whether it is an unchanged copy of its parent (retrained, same structure)."""
        return len(self.operators) == 1 and self.operators[0].op == ELITE

    @property
    def operator_text(self) -> str:
        """Its operators as one line (``copy`` when none were applied)."""
        if not self.parents:
            return "initial"
        return ", ".join(str(o) for o in self.operators) if self.operators else "copy"


@dataclass(frozen=True)
class GenerationRecord:
    """One generation's summary (the search's per-generation stats)."""

    generation: int
    champion: int
    best_metric: float | None
    mean_metric: float | None
    n_species: int
    threshold: float
    elapsed_s: float
    stats: Mapping[str, Any]


@dataclass(frozen=True)
class NodeInfo:
    """A node of a stored structure."""

    id: int
    role: str
    width: int
    activation: str


@dataclass(frozen=True)
class EdgeInfo:
    """An edge of a stored structure (``connections``: a sparse edge's count, None when dense)."""

    src: int
    dst: int
    innovation: int
    enabled: bool
    recurrent: bool
    connections: int | None = None


@dataclass(frozen=True)
class Structure:
    """A genome's graph without arrays: node ids, widths, activations, edges."""

    nodes: tuple[NodeInfo, ...]
    edges: tuple[EdgeInfo, ...]

    @classmethod
    def from_json(cls, text: str) -> Structure:
        """Parse the store's ``structure`` column."""
        d = json.loads(text)
        return cls(
            nodes=tuple(
                NodeInfo(int(n["id"]), n["role"], int(n["width"]), n["activation"]) for n in d["nodes"]
            ),
            edges=tuple(
                EdgeInfo(
                    int(e["src"]),
                    int(e["dst"]),
                    int(e["innovation"]),
                    bool(e["enabled"]),
                    bool(e["recurrent"]),
                    None if e.get("connections") is None else int(e["connections"]),
                )
                for e in d["edges"]
            ),
        )

    @property
    def hidden_neurons(self) -> int:
        """Total width of the hidden nodes."""
        return sum(n.width for n in self.nodes if n.role == "hidden")

    @property
    def n_hidden(self) -> int:
        """Number of hidden nodes."""
        return sum(1 for n in self.nodes if n.role == "hidden")

    @property
    def n_enabled_edges(self) -> int:
        """Number of enabled edges."""
        return sum(1 for e in self.edges if e.enabled)

    def summary(self) -> str:
        """Return ``"3 hidden nodes (24 neurons), 7/8 edges enabled"``."""
        n = self.n_hidden
        return (
            f"{n} hidden node{'s' if n != 1 else ''} ({self.hidden_neurons} neurons), "
            f"{self.n_enabled_edges}/{len(self.edges)} edges enabled"
        )
