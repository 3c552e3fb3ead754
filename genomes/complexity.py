"""Complexity figures read off the genome: what a network really costs to run.

Only the *live* structure counts: neurons whose deterministic gate is open (not
exactly 0), the connections of a sparse edge (its ``mask``, see
``genomes.genome.edge_entries``), enabled edges (feed-forward or recurrent) whose gate is open, and nodes
that still have such a path to the output or to an exit head (``genomes.adaptive``; a
recurrent edge counts as a path: its source feeds the output one step later). FLOPs are per sample and time step. That is exactly the structure an exported module
keeps, so ``ActiveStructure.n_parameters`` equals the exported parameter count.
With ``sigmoid`` gates nothing is ever exactly closed, so everything enabled counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from .gates import gate_value
from .genome import Genome, is_sparse

__all__ = ["ActiveStructure", "active_structure"]


@dataclass(frozen=True)
class ActiveStructure:
    """The live part of a genome under a gate kind.

    Attributes:
        neurons: for every live node (and the input node), a bool mask [width] of
            its kept neurons (input: open input gates; output: all; hidden: open
            neuron gates).
        edges: live edges ``(src, dst)``: the feed-forward ones sorted by the
            topological position of ``dst`` then ``src``, then the recurrent ones
            in the same order.
        input: id of the input node.
        output: id of the output node.
        skips: live nodes with a skip gate (``genomes.adaptive``), sorted.
        sparse: every live sparse edge's connection ``mask`` (``mutation.sparsify``);
            dense edges are absent.
    """

    neurons: dict[int, np.ndarray]
    edges: list[tuple[int, int]]
    input: int
    output: int
    skips: tuple[int, ...] = ()
    sparse: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)

    def entries(self, s: int, d: int) -> int:
        """Live weights of edge ``s -> d``: kept rows x kept columns, only the connections of a sparse edge."""
        rows, cols = self.neurons[d], self.neurons[s]
        mask = self.sparse.get((s, d))
        if mask is None:
            return int(rows.sum()) * int(cols.sum())
        return int(np.count_nonzero(mask[rows][:, cols]))

    @property
    def n_weights(self) -> int:
        """Entries of the live weight matrices (kept rows x kept columns; a sparse edge's connections)."""
        return sum(self.entries(s, d) for s, d in self.edges)

    @property
    def n_skip(self) -> int:
        """Parameters of the live skip gates: a bias each and one weight per live source neuron."""
        return sum(1 + sum(int(self.neurons[s].sum()) for s, d in self.edges if d == n) for n in self.skips)

    @property
    def n_parameters(self) -> int:
        """Live weights, the biases of live hidden, output and exit neurons, and live skip gates."""
        biases = sum(int(m.sum()) for n, m in self.neurons.items() if n != self.input)
        return self.n_weights + biases + self.n_skip

    @property
    def flops(self) -> int:
        """Floating-point operations per sample: 2 per multiply-add of live weights and skip gates.

        With skip gates (``genomes.adaptive``) this is the cost of running every node
        and every gate: ``AdaptivePlan.full_flops``.
        """
        return 2 * self.n_weights + 2 * (self.n_skip - len(self.skips))


def active_structure(genome: Genome, gate: str = "sigmoid") -> ActiveStructure:
    """Return the live structure of ``genome`` under the deterministic gates of kind ``gate``."""
    g = genome.graph
    inp, out = genome.input_id, genome.output_id
    kept: dict[int, np.ndarray] = {}
    for n, a in g.nodes(data=True):
        if a["role"] in ("output", "exit"):
            kept[n] = np.ones(a["width"], bool)
        else:
            kept[n] = gate_value(a["gate"], gate, np.float32) != 0
    candidates = nx.DiGraph()
    candidates.add_nodes_from(g.nodes)
    for s, d in genome.gated_edges():
        if gate_value(g.edges[s, d]["gate"], gate, np.float32) != 0 and kept[s].any() and kept[d].any():
            candidates.add_edge(s, d)
    live = nx.ancestors(candidates, out) | {out}
    for n, a in g.nodes(data=True):  # exit heads (genomes.adaptive) are sinks like the output
        if a["role"] == "exit" and candidates.in_degree(n):
            live |= nx.ancestors(candidates, n) | {n}
    order = {n: i for i, n in enumerate(genome.topological_order())}
    recurrent = {(s, d) for s, d, r in g.edges(data="recurrent") if r}
    edges = sorted(
        ((s, d) for s, d in candidates.edges if d in live),
        key=lambda e: (e in recurrent, order[e[1]], order[e[0]]),
    )
    neurons = {n: kept[n] for n in live}
    if inp not in neurons:
        neurons[inp] = kept[inp]
    skips = tuple(sorted(n for n in live if g.nodes[n].get("skip") is not None))
    return ActiveStructure(
        neurons=neurons, edges=edges, input=inp, output=out, skips=skips, sparse=sparse_masks(genome, edges)
    )


def sparse_masks(genome: Genome, edges: list[tuple[int, int]]) -> dict[tuple[int, int], np.ndarray]:
    """The connection ``mask`` of every sparse edge among ``edges`` (``ActiveStructure.sparse``)."""
    g = genome.graph
    return {(s, d): g.edges[s, d]["mask"] for s, d in edges if is_sparse(g.edges[s, d])}
