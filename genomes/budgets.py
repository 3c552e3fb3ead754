"""Budget orders: one trained network, many costs (issue 17).

Every hidden node carries an **order** of its neurons (node attribute ``order``: an int
array, a permutation of ``range(width)``, most important first; absent means the
identity), and may carry a **drop rank** (node attribute ``drop``: an int, or absent /
None for a node that is never dropped whole). The hidden nodes with a drop rank,
sorted by (rank, id), are the genome's *drop order*.

A **budget chain** is the sequence of sub-networks obtained by removing hidden neurons
one at a time from the live network (:func:`genomes.active_structure`):

1. widths shrink together: at every step the neuron removed is the last kept one of
   the node whose kept share ``kept / live width`` is largest (ties: droppable nodes
   first in drop order, then the other nodes by id), never a node's first neuron;
2. then droppable nodes go whole, in drop order: a node's last neuron is removed only
   if, afterwards, the output is still reached from the input and every node that
   still feeds the output is reached from the input (a drop never leaves a node
   computing a constant); a node that fails the check is kept (at one neuron).

A removed neuron computes 0: ``h_j = mask_j * g(gate_j) * a_j``. Removing neurons
never adds FLOPs, so ``flops(level)`` is non-increasing along the chain. ``budget`` in
(0, 1] selects the level with the fewest removals whose FLOPs are at most ``budget x``
the full network's; a budget below the smallest level's share selects the smallest
level (``BudgetChain.min_budget`` says where that is). A larger budget therefore never
removes more: its sub-network contains every smaller budget's.

:func:`sub_genome` builds the selected sub-network as a genome with the removed
neurons, and the nodes and edges that no longer feed the output, cut out: it computes
exactly what the masked genome computes (the oracle for every engine's budgeted
forward). Recurrent genomes are refused (budgets are for feed-forward genomes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx
import numpy as np

from ._errors import GenomeError
from .complexity import ActiveStructure, active_structure
from .gates import gate_value
from .genome import Genome

__all__ = [
    "BudgetChain",
    "BudgetLevel",
    "budget_chain",
    "budget_masks",
    "check_budget",
    "check_budgets",
    "drop_order",
    "drop_rank",
    "neuron_order",
    "sub_genome",
]


def neuron_order(attrs: dict) -> np.ndarray:
    """Return a node's neuron order (int64 permutation of ``range(width)``; identity if absent)."""
    order = attrs.get("order")
    if order is None:
        return np.arange(int(attrs["width"]), dtype=np.int64)
    return np.asarray(order, dtype=np.int64)


def drop_rank(attrs: dict) -> int | None:
    """Return a node's drop rank (None: never dropped whole)."""
    r = attrs.get("drop")
    return None if r is None else int(r)


def drop_order(genome: Genome) -> list[int]:
    """Return the hidden nodes that may be dropped whole, in the order they go."""
    g = genome.graph
    ranked = [(drop_rank(g.nodes[n]), n) for n in genome.hidden_nodes()]
    return [n for r, n in sorted((r, n) for r, n in ranked if r is not None)]


def check_budget(budget: object, where: str = "budget") -> float:
    """Return ``budget`` as a float if it lies in (0, 1]; else raise ``GenomeError`` (one line)."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)):
        raise GenomeError(f"{where} should be a number in (0, 1], got {budget!r}")
    b = float(budget)
    if not 0.0 < b <= 1.0:  # NaN fails too
        raise GenomeError(f"{where} should be in (0, 1], got {budget!r}")
    return b


def check_budgets(budgets: object, where: str = "budgets") -> tuple[float, ...]:
    """Return a non-empty, strictly increasing sequence of budgets in (0, 1]; else ``GenomeError``."""
    if isinstance(budgets, (str, bytes)) or not hasattr(budgets, "__iter__"):
        raise GenomeError(f"{where} should be a list of numbers in (0, 1], got {budgets!r}")
    out = tuple(check_budget(b, where) for b in budgets)  # type: ignore[union-attr]
    if not out:
        raise GenomeError(f"{where} should name at least one budget, got none")
    if any(b >= c for b, c in zip(out[:-1], out[1:], strict=True)):
        raise GenomeError(f"{where} should be strictly increasing, got {list(out)}")
    return out


@dataclass(frozen=True)
class BudgetLevel:
    """One sub-network of a chain.

    Attributes:
        removed: neurons removed from the full live network (0: the full network).
        flops: FLOPs per sample of the sub-network (``ActiveStructure.flops``).
        structure: the sub-network's live structure (its ``neurons`` masks are the
            kept neurons of every live node).
        masks: for every node of the genome, a bool mask [width] of the neurons it
            keeps (input and output: all True; a hidden node that is not live: all
            False). Engines multiply hidden activations by these masks.
    """

    removed: int
    flops: int
    structure: ActiveStructure
    masks: dict[int, np.ndarray] = field(repr=False)

    @property
    def n_parameters(self) -> int:
        """Parameters of the sub-network (what its export keeps)."""
        return self.structure.n_parameters


@dataclass(frozen=True)
class BudgetChain:
    """Every sub-network a budget can select, from the full network down.

    Attributes:
        genome: the genome the chain was built for.
        gate: the gate kind its deterministic gates were read under.
        removals: ``(node, neuron index)`` in removal order.
    """

    genome: Genome
    gate: str
    removals: tuple[tuple[int, int], ...]

    @cached_property
    def full(self) -> BudgetLevel:
        """The full network (no neuron removed)."""
        return self.level(0)

    @cached_property
    def _flops(self) -> np.ndarray:
        return np.array([self.level(k).flops for k in range(len(self.removals) + 1)], dtype=np.int64)

    @property
    def min_budget(self) -> float:
        """The smallest level's FLOPs as a share of the full network's (1.0 if it has none)."""
        full = int(self._flops[0])
        return 1.0 if full == 0 else float(self._flops[-1]) / full

    def level(self, removed: int) -> BudgetLevel:
        """Return the sub-network after the first ``removed`` removals."""
        if not 0 <= removed <= len(self.removals):
            raise GenomeError(f"removed should be in [0, {len(self.removals)}], got {removed}")
        g = self.genome.graph
        kept = _live_kept(self.genome, self.gate)
        for n, i in self.removals[:removed]:
            kept[n][i] = False
        structure = _structure(self.genome, kept, self.gate)
        masks = {}
        for n, a in g.nodes(data=True):
            if a["role"] != "hidden":
                masks[n] = np.ones(int(a["width"]), bool)
            elif n in structure.neurons:
                masks[n] = structure.neurons[n].copy()
            else:
                masks[n] = np.zeros(int(a["width"]), bool)
        return BudgetLevel(removed=removed, flops=structure.flops, structure=structure, masks=masks)

    def select(self, budget: float) -> BudgetLevel:
        """Return the level with the fewest removals within ``budget x`` the full FLOPs.

        Raises:
            GenomeError: if ``budget`` is not in (0, 1].
        """
        b = check_budget(budget)
        flops = self._flops
        limit = b * float(flops[0])
        within = np.flatnonzero(flops <= limit + 1e-9 * max(1.0, limit))
        return self.level(int(within[0]) if len(within) else len(self.removals))

    def levels(self) -> list[BudgetLevel]:
        """Return one level per distinct FLOPs count, full network first."""
        flops = self._flops
        firsts = [k for k in range(len(flops)) if k == 0 or flops[k] != flops[k - 1]]
        return [self.level(k) for k in firsts]


def _live_kept(genome: Genome, gate: str) -> dict[int, np.ndarray]:
    """Kept neurons of every node in the full network: open gates (output: all)."""
    kept = {}
    for n, a in genome.graph.nodes(data=True):
        if a["role"] == "output":
            kept[n] = np.ones(int(a["width"]), bool)
        else:
            kept[n] = gate_value(a["gate"], gate, np.float32) != 0
    structure = active_structure(genome, gate)
    for n in genome.hidden_nodes():
        if n not in structure.neurons:
            kept[n][:] = False
    return kept


def _structure(genome: Genome, kept: dict[int, np.ndarray], gate: str) -> ActiveStructure:
    """The live structure when only ``kept`` neurons compute (``active_structure``'s rules)."""
    g = genome.graph
    inp, out = genome.input_id, genome.output_id
    candidates = nx.DiGraph()
    candidates.add_nodes_from(g.nodes)
    for s, d in genome.gated_edges():
        if gate_value(g.edges[s, d]["gate"], gate, np.float32) != 0 and kept[s].any() and kept[d].any():
            candidates.add_edge(s, d)
    live = nx.ancestors(candidates, out) | {out}
    order = {n: i for i, n in enumerate(genome.topological_order())}
    edges = sorted(((s, d) for s, d in candidates.edges if d in live), key=lambda e: (order[e[1]], order[e[0]]))
    neurons = {n: kept[n].copy() for n in live}
    if inp not in neurons:
        neurons[inp] = kept[inp].copy()
    return ActiveStructure(neurons=neurons, edges=edges, input=inp, output=out)


def _drop_allowed(genome: Genome, kept: dict[int, np.ndarray], node: int, gate: str) -> bool:
    """True if removing ``node``'s last neuron leaves every live node reached from the input."""
    trial = dict(kept)
    trial[node] = np.zeros_like(kept[node])
    s = _structure(genome, trial, gate)
    reach = nx.descendants(nx.DiGraph(s.edges), s.input) if s.edges else set()
    return s.output in reach and all(n in reach for n in s.neurons if n not in (s.input,))


def budget_chain(genome: Genome, gate: str = "sigmoid") -> BudgetChain:
    """Return the budget chain of a feed-forward genome under the gate kind ``gate``.

    Raises:
        GenomeError: for a recurrent genome, or a node whose ``order`` is not a
            permutation of its neurons.
    """
    if genome.is_recurrent:
        raise GenomeError("budgets are for feed-forward genomes; this genome has recurrent edges")
    g = genome.graph
    kept = _live_kept(genome, gate)
    ranks = {n: drop_rank(g.nodes[n]) for n in genome.hidden_nodes()}
    live_order: dict[int, list[int]] = {}
    for n in genome.hidden_nodes():
        order = neuron_order(g.nodes[n])
        if sorted(order.tolist()) != list(range(int(g.nodes[n]["width"]))):
            raise GenomeError(f"node {n}: order should be a permutation of range({g.nodes[n]['width']})")
        live = [int(i) for i in order if kept[n][i]]
        if live:
            live_order[n] = live

    def tie(n: int) -> tuple:
        r = ranks[n]
        return (0, r, n) if r is not None else (1, 0, n)

    removals: list[tuple[int, int]] = []
    count = {n: len(v) for n, v in live_order.items()}
    # 1. widths shrink together, never below one neuron
    while True:
        shrinkable = [n for n, c in count.items() if c > 1]
        if not shrinkable:
            break
        n = min(shrinkable, key=lambda m: (-count[m] / len(live_order[m]), tie(m)))
        count[n] -= 1
        i = live_order[n][count[n]]
        kept[n][i] = False
        removals.append((n, i))
    # 2. droppable nodes go whole, in drop order, where the graph allows
    for n in sorted((m for m in live_order if ranks[m] is not None), key=tie):
        if not kept[n].any() or not _drop_allowed(genome, kept, n, gate):
            continue
        i = live_order[n][0]
        kept[n][i] = False
        removals.append((n, i))
    return BudgetChain(genome=genome, gate=gate, removals=tuple(removals))


def budget_masks(genome: Genome, budget: float, gate: str = "sigmoid") -> dict[int, np.ndarray]:
    """Return every node's kept-neuron mask at ``budget`` (``BudgetChain.select(budget).masks``)."""
    return budget_chain(genome, gate).select(budget).masks


def sub_genome(genome: Genome, budget: float, gate: str = "sigmoid") -> Genome:
    """Return the sub-network ``budget`` selects as a genome of its own.

    Removed neurons are cut from their nodes; hidden nodes and edges that no longer
    feed the output (or keep no neuron) are removed. The result computes exactly
    what ``genome`` computes with the budget's masks applied (``genomes.evaluate``
    with ``budget=``). Orders and drop ranks of the kept nodes are kept.
    """
    raise NotImplementedError("genomes helper: implement")
