"""Trained modules: sub-networks that a genome can carry as grafted, frozen blocks.

A :class:`ModuleSpec` is a feed-forward sub-network cut out of a trained genome
(``harvest``), its gates folded into its weights, with one input (``in_width``
values: the genome's standardised features or a hidden node's activations) and
``outputs``: the activations, before any gate, of some of its nodes. The library
of ``hybrid.modules`` stores specs on disk; :func:`insert_module` grafts one into a
genome as a zero-initialised residual branch, so the child computes exactly what
its parent computed.

Local ids: ``0`` is the module's input; its nodes are ``1 .. len(nodes)`` in
topological order.

The content hash (:meth:`ModuleSpec.content_hash`) covers the structure, every
array and the standardisation, and nothing else (not the name): a library entry
whose files changed no longer matches the hash recorded beside it or in genomes
that grafted it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import GenomeError
from .activations import ACTIVATIONS

__all__ = ["OPEN_LOGIT", "ModuleEdge", "ModuleNode", "ModuleSpec"]

#: The gate logit of a grafted module's nodes and edges: its deterministic value is
#: exactly 1.0 in float32 for both gate kinds (``sigmoid(20)`` rounds to 1; the hard
#: concrete gate clips at 1), and so is every training-time hard-concrete sample
#: (float32 logistic noise is above -17.3).
OPEN_LOGIT = 20.0


@dataclass(frozen=True)
class ModuleNode:
    """One node of a module: ``local`` in ``1 .. n``, its width, activation and bias."""

    local: int
    width: int
    activation: str
    bias: np.ndarray  # float32 [width]


@dataclass(frozen=True)
class ModuleEdge:
    """One edge of a module: ``src`` (0 = the module input) to ``dst``, gate folded in."""

    src: int
    dst: int
    weight: np.ndarray  # float32 [width(dst), width(src)]


@dataclass(frozen=True)
class ModuleSpec:
    """A trained feed-forward sub-network, ready to be grafted.

    Args:
        name: the library's name for it (not part of the hash).
        in_width: width of its input.
        nodes: its nodes in topological order, ``local`` = 1, 2, ...
        edges: its edges, sorted by ``(dst, src)``.
        outputs: local ids whose activations (concatenated in this order) are its output.
        mean: float64 ``[in_width]``, the feature means it was trained with (``x_std =
            (x_raw - mean) / scale``), or None when its input was a hidden node.
        scale: float64 ``[in_width]``, the matching scales, or None.

    Raises:
        GenomeError: when the parts do not fit together (see :meth:`check`).
    """

    name: str
    in_width: int
    nodes: tuple[ModuleNode, ...]
    edges: tuple[ModuleEdge, ...]
    outputs: tuple[int, ...]
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.check()

    # ------------------------------------------------------------------ queries
    def width(self, local: int) -> int:
        """Return the width of local node ``local`` (``0``: the input)."""
        return self.in_width if local == 0 else self.nodes[local - 1].width

    @property
    def out_width(self) -> int:
        """Width of the module's output (its output nodes' widths summed)."""
        return sum(self.width(o) for o in self.outputs)

    @property
    def n_parameters(self) -> int:
        """Weights and biases of the module."""
        return sum(e.weight.size for e in self.edges) + sum(n.width for n in self.nodes)

    # ------------------------------------------------------------------ checks
    def check(self) -> ModuleSpec:
        """Check that ids, widths, shapes and dtypes fit; return ``self``.

        Raises:
            GenomeError: naming the node or edge and what was expected.
        """
        where = f"module {self.name!r}"
        if not isinstance(self.in_width, int) or self.in_width < 1:
            raise GenomeError(f"{where}: in_width should be an int >= 1, got {self.in_width!r}")
        if not self.nodes:
            raise GenomeError(f"{where}: has no nodes")
        for k, n in enumerate(self.nodes, start=1):
            if n.local != k:
                raise GenomeError(f"{where}: node {k} has local id {n.local}; nodes should be 1..n in order")
            if n.activation not in ACTIVATIONS:
                raise GenomeError(f"{where}: node {k} activation {n.activation!r} is unknown")
            _check_array(n.bias, (n.width,), f"{where}: node {k} bias")
        seen: set[tuple[int, int]] = set()
        fed: set[int] = set()
        for e in self.edges:
            if not (0 <= e.src < e.dst <= len(self.nodes)):
                raise GenomeError(
                    f"{where}: edge {e.src}->{e.dst} should go from a lower to a higher local id "
                    f"in 0..{len(self.nodes)}"
                )
            if (e.src, e.dst) in seen:
                raise GenomeError(f"{where}: edge {e.src}->{e.dst} appears twice")
            seen.add((e.src, e.dst))
            fed.add(e.dst)
            _check_array(e.weight, (self.width(e.dst), self.width(e.src)), f"{where}: edge {e.src}->{e.dst} weight")
        for k in range(1, len(self.nodes) + 1):
            if k not in fed:
                raise GenomeError(f"{where}: node {k} has no incoming edge")
        if not self.outputs or any(not 1 <= o <= len(self.nodes) for o in self.outputs):
            raise GenomeError(f"{where}: outputs should be local ids in 1..{len(self.nodes)}, got {self.outputs}")
        if len(set(self.outputs)) != len(self.outputs):
            raise GenomeError(f"{where}: outputs {self.outputs} repeat a node")
        if (self.mean is None) != (self.scale is None):
            raise GenomeError(f"{where}: mean and scale should be given together")
        if self.mean is not None:
            for key, arr in (("mean", self.mean), ("scale", self.scale)):
                if not isinstance(arr, np.ndarray) or arr.dtype != np.float64 or arr.shape != (self.in_width,):
                    raise GenomeError(f"{where}: {key} should be a float64 array of shape ({self.in_width},)")
                if not np.all(np.isfinite(arr)):
                    raise GenomeError(f"{where}: {key} should be finite")
            if np.any(self.scale <= 0):
                raise GenomeError(f"{where}: scale should be > 0")
        return self

    # ------------------------------------------------------------------ hashing
    def structure(self) -> dict[str, Any]:
        """Return the JSON-ready structure (no arrays): what the hash and the library store."""
        return {
            "in_width": self.in_width,
            "nodes": [{"local": n.local, "width": n.width, "activation": n.activation} for n in self.nodes],
            "edges": [[e.src, e.dst] for e in self.edges],
            "outputs": list(self.outputs),
            "standardised": self.mean is not None,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Return every array by a stable name (``node.K.bias``, ``edge.S.D.weight``, ``input.mean``)."""
        out: dict[str, np.ndarray] = {}
        for n in self.nodes:
            out[f"node.{n.local}.bias"] = n.bias
        for e in self.edges:
            out[f"edge.{e.src}.{e.dst}.weight"] = e.weight
        if self.mean is not None:
            out["input.mean"] = self.mean
            out["input.scale"] = self.scale
        return out

    def content_hash(self) -> str:
        """Return the sha256 (hex) of the structure and the bytes of every array, name excluded."""
        h = hashlib.sha256()
        h.update(json.dumps(self.structure(), sort_keys=True, separators=(",", ":")).encode())
        for key, arr in sorted(self.arrays().items()):
            a = np.ascontiguousarray(arr)
            h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()


def _check_array(a: Any, shape: tuple[int, ...], where: str) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.shape != shape:
        got = f"{a.dtype} array of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise GenomeError(f"{where}: should be a float32 array of shape {shape}, got {got}")
    if not np.all(np.isfinite(a)):
        raise GenomeError(f"{where}: should be finite")
