"""Growth inside training: the reserve rule of Miconi (2016), for any genome.

"Neural networks with differentiable structure" (arXiv 1606.06216) grows a
recurrent network from one neuron during gradient descent. An L1 penalty pulls
every neuron's outgoing weights toward zero; a neuron whose *size* (the sum of its
outgoing absolute weights) falls under a threshold ``T_D`` is *sub-threshold*, a
neuron in reserve. Each node here keeps exactly ``k`` of them:

* more than ``k``: each extra sub-threshold neuron (the smallest first) is deleted
  with probability ``P_del``;
* fewer than ``k`` (gradient descent has mobilised the reserve): one neuron is added
  with probability ``P_add``, with small random incoming weights and outgoing
  weights scaled so that its size is ``T_D``.

The anchor applies the rule at every step. The batched engine applies it every
``every`` steps (it repacks the population then), with the per-step probabilities
compounded over those steps: ``1 - (1 - p) ** every``. A neuron's size counts every
enabled outgoing edge, feed-forward and recurrent (the anchor's "outgoing and
recurrent weights"), through the deterministic gates: ``g_i * sum_e g_e * |W_e[:, i]|``.

:func:`reserve_rule` acts on genomes (pure, like the mutation operators) and
returns, per member, what it did as :class:`~genomes.MutationRecord` s named
``reserve`` (node, added, removed), which the lineage shows beside the breeding
operators.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genomes import Genome, MutationRecord, gate_value
from genomes.mutations._neurons import append_neurons, keep_neurons

__all__ = ["ReserveConfig", "ReserveEdit", "neuron_sizes", "reserve_rule"]


@dataclass(frozen=True)
class ReserveConfig:
    """The rule's settings; the defaults are the anchor's final ones."""

    k: int = 1  # sub-threshold neurons each node keeps in reserve
    threshold: float = 0.05  # T_D
    p_add: float = 0.01  # per step
    p_delete: float = 0.05  # per step and extra neuron
    l1: float = 1e-4  # A: the L1 penalty on weights leaving hidden neurons
    every: int = 20  # steps between applications (batched engine)

    def chance(self, p: float) -> float:
        """Return the probability of an event of per-step probability ``p`` over ``every`` steps."""
        return 1.0 - (1.0 - p) ** self.every


@dataclass(frozen=True)
class ReserveEdit:
    """What the rule did to one node: neurons kept (old indices) and neurons appended."""

    node: int
    keep: np.ndarray
    added: int


def neuron_sizes(genome: Genome, gate: str) -> dict[int, np.ndarray]:
    """Return each hidden node's neuron sizes ``g_i * sum_e g_e * sum_rows |W_e[:, i]|``.

    Every enabled outgoing edge counts, feed-forward and recurrent (a self-loop too).
    """
    g = genome.graph
    out: dict[int, np.ndarray] = {}
    for n in genome.hidden_nodes():
        size = np.zeros(int(g.nodes[n]["width"]))
        for _, _, a in g.out_edges(n, data=True):
            if a["enabled"]:
                size += float(gate_value(a["gate"], gate)) * np.abs(
                    a["weight"].astype(np.float64)
                ).sum(0)
        out[n] = gate_value(g.nodes[n]["gate"], gate) * size
    return out


def reserve_rule(
    genome: Genome,
    rng: np.random.Generator,
    config: ReserveConfig,
    gate: str,
    gate_init: float,
    max_width: int,
) -> tuple[Genome, list[ReserveEdit], list[MutationRecord]]:
    """Apply the reserve rule once to every hidden node of ``genome``.

    Args:
        genome: a valid genome (not modified).
        rng: the run's seeded generator (draws in node order, then neuron order).
        config: the rule's settings.
        gate: the gate kind (sizes use the deterministic gates).
        gate_init: gate logit of an added neuron.
        max_width: no node grows past this (``mutation.max_node_width``).

    Returns:
        ``(child, edits, records)``: the child (``genome`` itself when nothing
        changed), the per-node edits (to replay on optimiser state) and the lineage
        records, one per node that changed.
    """
    sizes = neuron_sizes(genome, gate)
    p_add, p_delete = config.chance(config.p_add), config.chance(config.p_delete)
    child: Genome | None = None
    edits: list[ReserveEdit] = []
    records: list[MutationRecord] = []
    for n in sorted(sizes):
        size = sizes[n]
        width = len(size)
        sub = np.flatnonzero(size < config.threshold)
        removed: list[int] = []
        added = 0
        if len(sub) > config.k:
            extra = sub[np.argsort(size[sub], kind="stable")][: len(sub) - config.k]
            for i in extra:
                if width - len(removed) > 1 and rng.random() < p_delete:
                    removed.append(int(i))
        elif len(sub) < config.k and width < max_width and rng.random() < p_add:
            added = 1
        if not removed and not added:
            continue
        if child is None:
            child = genome.copy()
        keep = np.setdiff1d(np.arange(width), removed)
        if removed:
            keep_neurons(child, n, keep)
        if added:
            _add_neuron(child, n, rng, config.threshold, gate_init)
        edits.append(ReserveEdit(n, keep, added))
        records.append(
            MutationRecord("reserve", {"node": int(n), "added": added, "removed": sorted(removed)})
        )
    return (genome if child is None else child), edits, records


def _add_neuron(
    genome: Genome, node: int, rng: np.random.Generator, threshold: float, gate_init: float
) -> None:
    """Append one neuron to ``node`` in place: small random inputs, outgoing size ``threshold``."""
    append_neurons(genome, node, 1, rng, gate_init)
    g = genome.graph
    for s, _ in g.in_edges(node):
        w = g.edges[s, node]["weight"]
        w[-1] *= 0.1  # small random inputs (LeCun normal, shrunk)
    outgoing = [d for _, d in g.out_edges(node) if g.edges[node, d]["enabled"]]
    cols = [rng.normal(size=g.edges[node, d]["weight"].shape[0]) for d in outgoing]
    total = sum(float(np.abs(c).sum()) for c in cols)
    for d, c in zip(outgoing, cols, strict=True):
        w = g.edges[node, d]["weight"]
        w[:, -1] = (c * threshold / max(total, 1e-12)).astype(np.float32)
