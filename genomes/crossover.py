"""NEAT crossover: align two genomes gene by gene and mix their values.

Genes are aligned by innovation number (Stanley & Miikkulainen 2002, "Evolving
Neural Networks through Augmenting Topologies"): nodes by id, edges by innovation.
The child has the fitter parent's structure (its nodes, edges, widths and
enabled flags), so it is valid whenever the fitter parent is. Each matching gene
whose arrays have the same shapes in both parents is taken whole from either
parent at random (a node gene: activation, bias and gates; an edge gene: weight
and gate); every other gene comes from the fitter parent.

A node gene carries its budget ``order`` and ``drop`` rank (``genomes.budgets``)
with its other values. Drop ranks must stay unique: when the mix makes two nodes
share one, the child's ranks are renumbered 0, 1, ... in their (rank, id) order,
which keeps the drop order they define.

Adaptive genes (``genomes.adaptive``) travel with their node and edge genes: an
exit node's ``threshold`` with its node gene (exits match exits by id), a node's
``skip`` bias with its node gene and an edge's ``skip`` vector with its edge gene.
The fitter parent decides which nodes are skip-gated, so a matching gene whose
``skip`` is present in one parent only (or of another shape) counts as a shape
mismatch and comes from ``fitter``. Budget attributes and adaptive genes never mix:
a node gene taken from ``other`` into an adaptive child leaves its ``order`` and
``drop`` behind.

Genes of grafted modules (a node carrying ``module``, a ``frozen`` edge, in either
parent) always come from the fitter parent: a frozen copy and a trainable copy of
one module gene never mix, and a frozen gene is passed on bit for bit.
"""

from __future__ import annotations

import numpy as np

from .adaptive import is_adaptive
from .config import MutationConfig, MutationRecord
from .genome import Genome, is_frozen, module_of, set_order

__all__ = ["crossover"]


def crossover(
    fitter: Genome, other: Genome, rng: np.random.Generator, config: MutationConfig
) -> tuple[Genome, MutationRecord]:
    """Return a child with ``fitter``'s structure and genes mixed from both parents.

    A node matches when ``other`` has a node of the same id and role; an edge when
    ``other`` has an edge with the same innovation number between the same nodes.
    A matching gene whose shapes agree comes from either parent with probability
    1/2; disjoint and excess genes, and matching genes whose shapes differ, come
    from ``fitter``. Enabled flags always come from ``fitter`` (NEAT's random
    disabling could disconnect the child). Grafted-module genes (a node with
    ``module`` or an edge that is ``frozen`` in either parent) match but always come
    from ``fitter``. The child's ``meta`` is ``fitter``'s.

    Args:
        fitter: the parent with the better fitness (its structure is kept).
        other: the second parent (not modified either).
        rng: draws the parent of each matching gene.
        config: unused for now; passed for a uniform operator signature.

    Returns:
        The child and ``crossover(matched, from_other, shape_mismatch)`` where
        ``matched`` counts matching node and edge genes, ``from_other`` those taken
        from ``other`` and ``shape_mismatch`` those kept from ``fitter`` because
        their shapes differ (plus ``grafted``, the matching module genes kept from
        ``fitter``, when there are any).
    """
    child = fitter.copy()
    cg, og = child.graph, other.graph
    matched = from_other = mismatch = grafted = 0
    adaptive = is_adaptive(fitter)
    for n, a in sorted(cg.nodes(data=True)):
        if n not in og or og.nodes[n]["role"] != a["role"]:
            continue
        b = og.nodes[n]
        matched += 1
        if module_of(a) is not None or module_of(b) is not None:
            grafted += 1
        elif b["width"] != a["width"] or not _same_shape(a.get("skip"), b.get("skip")):
            mismatch += 1
        elif rng.random() < 0.5:
            from_other += 1
            a["activation"] = b["activation"]
            a["bias"] = b["bias"].copy()
            a["gate"] = b["gate"].copy()
            if b.get("skip") is not None:
                a["skip"] = b["skip"].copy()
            if a["role"] == "exit":
                a["threshold"] = float(b["threshold"])
            if not adaptive:  # an adaptive child takes no budget attributes
                set_order(a, None if b.get("order") is None else np.array(b["order"], np.int64))
                a.pop("drop", None)
                if b.get("drop") is not None:
                    a["drop"] = int(b["drop"])
    _unique_drop_ranks(child)
    by_innovation = {a["innovation"]: (s, d) for s, d, a in og.edges(data=True)}
    for s, d, a in sorted(cg.edges(data=True), key=lambda t: t[2]["innovation"]):
        if by_innovation.get(a["innovation"]) != (s, d):
            continue
        b = og.edges[s, d]
        matched += 1
        if is_frozen(a) or is_frozen(b):
            grafted += 1
        elif b["weight"].shape != a["weight"].shape or not _same_shape(
            a.get("skip"), b.get("skip")
        ):
            mismatch += 1
        elif rng.random() < 0.5:
            from_other += 1
            a["weight"] = b["weight"].copy()
            a["gate"] = np.float32(b["gate"])
            if b.get("mask") is not None:  # the weights come with their connections
                a["mask"] = b["mask"].copy()
            else:
                a.pop("mask", None)
            if b.get("skip") is not None:
                a["skip"] = b["skip"].copy()
    args = {"matched": matched, "from_other": from_other, "shape_mismatch": mismatch}
    if grafted:
        args["grafted"] = grafted
    record = MutationRecord("crossover", args)
    return child, record


def _same_shape(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Return whether two optional arrays are both absent or both present with one shape."""
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape


def _unique_drop_ranks(genome: Genome) -> None:
    """Renumber drop ranks 0, 1, ... in (rank, id) order, in place, if any two nodes share one."""
    g = genome.graph
    ranked = sorted((int(a["drop"]), n) for n, a in g.nodes(data=True) if a.get("drop") is not None)
    if len({r for r, _ in ranked}) == len(ranked):
        return
    for k, (_, n) in enumerate(ranked):
        g.nodes[n]["drop"] = k
