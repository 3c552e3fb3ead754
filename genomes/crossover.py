"""NEAT crossover: align two genomes gene by gene and mix their values.

Genes are aligned by innovation number (Stanley & Miikkulainen 2002, "Evolving
Neural Networks through Augmenting Topologies"): nodes by id, edges by innovation.
The child has the fitter parent's structure (its nodes, edges, widths and
enabled flags), so it is valid whenever the fitter parent is. Each matching gene
whose arrays have the same shapes in both parents is taken whole from either
parent at random (a node gene: activation, bias and gates; an edge gene: weight
and gate); every other gene comes from the fitter parent.
"""

from __future__ import annotations

import numpy as np

from .config import MutationConfig, MutationRecord
from .genome import Genome

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
    disabling could disconnect the child). The child's ``meta`` is ``fitter``'s.

    Args:
        fitter: the parent with the better fitness (its structure is kept).
        other: the second parent (not modified either).
        rng: draws the parent of each matching gene.
        config: unused for now; passed for a uniform operator signature.

    Returns:
        The child and ``crossover(matched, from_other, shape_mismatch)`` where
        ``matched`` counts matching node and edge genes, ``from_other`` those taken
        from ``other`` and ``shape_mismatch`` those kept from ``fitter`` because
        their shapes differ.
    """
    child = fitter.copy()
    cg, og = child.graph, other.graph
    matched = from_other = mismatch = 0
    for n, a in sorted(cg.nodes(data=True)):
        if n not in og or og.nodes[n]["role"] != a["role"]:
            continue
        b = og.nodes[n]
        matched += 1
        if b["width"] != a["width"]:
            mismatch += 1
        elif rng.random() < 0.5:
            from_other += 1
            a["activation"] = b["activation"]
            a["bias"] = b["bias"].copy()
            a["gate"] = b["gate"].copy()
    by_innovation = {a["innovation"]: (s, d) for s, d, a in og.edges(data=True)}
    for s, d, a in sorted(cg.edges(data=True), key=lambda t: t[2]["innovation"]):
        if by_innovation.get(a["innovation"]) != (s, d):
            continue
        b = og.edges[s, d]
        matched += 1
        if b["weight"].shape != a["weight"].shape:
            mismatch += 1
        elif rng.random() < 0.5:
            from_other += 1
            a["weight"] = b["weight"].copy()
            a["gate"] = np.float32(b["gate"])
    record = MutationRecord(
        "crossover", {"matched": matched, "from_other": from_other, "shape_mismatch": mismatch}
    )
    return child, record
