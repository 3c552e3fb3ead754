"""Random adaptive genomes (exit heads and skip gates) for the oracle tests of every engine.

``adaptive_genome(seed)`` grows a small feed-forward classifier with the genome
operators, adds exit heads and skip gates with ``add_exit``/``add_skip``, then draws
every value at random (so skip gates open for some samples and close for others,
and exits are sure for some samples and not for others).
"""

from __future__ import annotations

import numpy as np

from genomes import Genome, InnovationTracker, MutationConfig, NotApplicable
from genomes.adaptive import EXIT, with_thresholds
from genomes.mutations import add_edge, add_exit, add_node, add_skip, widen

__all__ = ["adaptive_genome", "randomise"]


def randomise(genome: Genome, rng: np.random.Generator, scale: float = 1.0) -> Genome:
    """Return a copy with every weight, bias, gate and skip array drawn at random."""
    child = genome.copy()
    for _, a in child.graph.nodes(data=True):
        if a["role"] != "input":
            a["bias"] = (scale * rng.normal(size=a["width"])).astype(np.float32)
        if a["role"] in ("input", "hidden"):
            a["gate"] = rng.normal(1.0, 1.5, size=a["width"]).astype(np.float32)
        if a.get("skip") is not None:
            a["skip"] = rng.normal(0.0, 0.5, size=1).astype(np.float32)
    for _, _, a in child.graph.edges(data=True):
        a["weight"] = (
            scale * rng.normal(size=a["weight"].shape) / np.sqrt(a["weight"].shape[1])
        ).astype(np.float32)
        a["gate"] = np.float32(rng.normal(1.0, 1.5))
        if a.get("skip") is not None:
            a["skip"] = rng.normal(size=a["skip"].shape).astype(np.float32)
    return child.validate()


def adaptive_genome(
    seed: int,
    n_inputs: int = 4,
    n_outputs: int = 3,
    grow: int = 4,
    exits: int = 2,
    skips: int = 2,
    threshold: float = 0.6,
) -> Genome:
    """Return a random valid adaptive genome (as many exits/skips as the graph allows)."""
    rng = np.random.default_rng(seed)
    tracker = InnovationTracker()
    config = MutationConfig()
    g = Genome.minimal(n_inputs, n_outputs, rng, tracker, hidden=(int(rng.integers(2, 6)),))
    for _ in range(grow):
        op = (add_node, add_edge, widen)[int(rng.integers(3))]
        try:
            g, _ = op(g, rng, tracker, config)
        except NotApplicable:
            pass
    for op, count in ((add_exit, exits), (add_skip, skips)):
        for _ in range(count):
            try:
                g, _ = op(g, rng, tracker, config)
            except NotApplicable:
                break
    g = randomise(g, rng)
    if any(r == EXIT for _, r in g.graph.nodes(data="role")):
        g = with_thresholds(g, threshold)
    return g
