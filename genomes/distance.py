"""NEAT compatibility distance between two genomes (for speciation).

Stanley & Miikkulainen (2002)::

    delta = c1 * E / N + c2 * D / N + c3 * Wbar + c_w * sum |width_a - width_b| / N

Genes are hidden nodes (by id) and edges (by innovation number); node ids and
edge innovations come from one counter, so they share one numbering. A gene of one
genome is *excess* if its number is above the other genome's highest, else
*disjoint* when unmatched. ``N`` is the larger genome's gene count (1 below
``normalise_above``). ``Wbar`` is the mean over matching edges of the mean
``|dW|`` per entry. The input and output nodes always match and count only
through their widths.

Adaptive genes (``genomes.adaptive``): an exit node is a node gene like a hidden
one (its edge an edge gene), and a skip gate is a gene of its own, numbered by its
node's id (``("skip", id)``): present in one genome only, it is disjoint or excess.
Skip vectors do not enter ``Wbar`` (it compares weights only). A genome without
adaptive genes has the genes it always had.

Matching genes of different shapes (one parent widened or pruned a node) still
match: the width term charges the size difference, and the weight term compares
the overlapping top-left block of the two matrices (``widen`` appends neurons, so
that block is the part both share). Non-finite differences (NaN weights) are
skipped, so ``distance(a, a) == 0`` holds for every genome.
"""

from __future__ import annotations

import numpy as np

from .config import DistanceConfig
from .genome import Genome

__all__ = ["distance"]


def _genes(genome: Genome) -> dict[tuple[str, int], object]:
    """Return ``{("node", id) | ("edge", innovation): key}`` for the aligned genes."""
    g = genome.graph
    genes: dict[tuple[str, int], object] = {
        ("node", n): n for n, r in g.nodes(data="role") if r in ("hidden", "exit")
    }
    for n, a in g.nodes(data=True):
        if a.get("skip") is not None:
            genes[("skip", n)] = n
    for s, d, inv in g.edges(data="innovation"):
        genes[("edge", int(inv))] = (s, d)
    return genes


def distance(a: Genome, b: Genome, config: DistanceConfig | None = None) -> float:
    """Return NEAT's compatibility distance between ``a`` and ``b`` (symmetric, >= 0).

    Args:
        a: a genome.
        b: another genome (of the same run, so numbers align).
        config: the coefficients (``DistanceConfig()`` if None).

    Returns:
        The distance; 0 for genomes with the same genes, widths and weights.
    """
    config = config or DistanceConfig()
    ga, gb = _genes(a), _genes(b)
    max_a = max((k[1] for k in ga), default=-1)
    max_b = max((k[1] for k in gb), default=-1)
    excess = disjoint = 0
    for mine, theirs, their_max in ((ga, gb, max_b), (gb, ga, max_a)):
        for k in mine:
            if k not in theirs:
                if k[1] > their_max:
                    excess += 1
                else:
                    disjoint += 1
    n = max(len(ga), len(gb))
    if n < config.normalise_above:
        n = 1

    diffs = []
    for k in sorted(ga.keys() & gb.keys()):  # sorted: the same sum order both ways round
        key = ga[k]
        if k[0] != "edge" or gb[k] != key:
            continue
        wa, wb = a.graph.edges[key]["weight"], b.graph.edges[key]["weight"]
        r, c = min(wa.shape[0], wb.shape[0]), min(wa.shape[1], wb.shape[1])
        d = np.abs(wa[:r, :c].astype(np.float64) - wb[:r, :c].astype(np.float64))
        d = d[np.isfinite(d)]
        if d.size:
            diffs.append(float(d.mean()))
    weight = float(np.mean(diffs)) if diffs else 0.0

    width = 0
    for node in set(a.graph.nodes) & set(b.graph.nodes):
        na, nb = a.graph.nodes[node], b.graph.nodes[node]
        if na["role"] == nb["role"]:
            width += abs(int(na["width"]) - int(nb["width"]))

    return (
        config.excess * excess / n
        + config.disjoint * disjoint / n
        + config.weight * weight
        + config.width * width / n
    )
