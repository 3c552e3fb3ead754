"""Budget orders: one trained network, many costs (issue 17).

Every hidden node carries an **order** of its neurons (node attribute ``order``: an int
array, a permutation of ``range(width)``, most important first; absent means the
identity), and may carry a **drop rank** (node attribute ``drop``: an int, or absent /
None for a node that is never dropped whole). The hidden nodes with a drop rank,
sorted by (rank, id), are the genome's *drop order*.

A **budget chain** is the sequence of sub-networks obtained by removing skip edges,
then hidden neurons, one at a time from the live network
(:func:`genomes.active_structure`):

0. skip edges go first, one at a time, largest FLOPs first (ties: topological position
   of the destination, then of the source): a *skip edge* is an enabled edge with an
   open gate, live in the current sub-network, that *bypasses* other nodes (its
   destination is still reached from its source through live edges without it) and
   whose removal leaves the output reached from the input and every node that still
   feeds the output reached from the input (the check of step 2, applied to an edge);
   an edge that fails either test when its turn comes is kept. A bypassed edge's
   removal leaves every live node live (its source still feeds its destination), so
   step 0 never takes a node out: only the shortcut's block of FLOPs;
1. widths shrink together: at every step the neuron removed is the last kept one of
   the node whose kept share ``kept / live width`` is largest (ties: droppable nodes
   first in drop order, then the other nodes by id), never a node's first neuron;
2. then droppable nodes go whole, in drop order: a node's last neuron is removed only
   if, afterwards, the output is still reached from the input and every node that
   still feeds the output is reached from the input (a drop never leaves a node
   computing a constant); a node that fails the check is kept (at one neuron).

Step 0 exists because evolved networks often keep a direct ``input -> output`` edge
(a linear path): without it the smallest sub-network would still pay for that edge.
The bypass test keeps step 0 to shortcuts: without it, any edge whose loss the check
allows would qualify, e.g. a hidden node's only edge into the output while another
path reaches it, or a 128x128 layer-to-layer edge whose destination also reads the
input, so step 0 would tear whole branches and layers out, largest first, before any
width shrinks (and leave step 2's drop order nothing to do).
The chain's removals are ``("edge", src, dst)`` and ``("neuron", node, index)``.

A removed neuron computes 0: ``h_j = mask_j * g(gate_j) * a_j``, and a removed edge
contributes nothing (``BudgetLevel.edges_off``). Removing neurons or edges never adds
FLOPs, so ``flops(level)`` is non-increasing along the chain. ``budget`` in
(0, 1] selects the level with the fewest removals whose FLOPs are at most ``budget x``
the full network's; a budget below the smallest level's share selects the smallest
level (``BudgetChain.min_budget`` says where that is). A larger budget therefore never
removes more: its sub-network contains every smaller budget's.

:func:`sub_genome` builds the selected sub-network as a genome with the removed
neurons, and the nodes and edges that no longer feed the output, cut out: it computes
exactly what the masked genome computes (the oracle for every engine's budgeted
forward). Recurrent genomes are refused (budgets are for feed-forward genomes).

:func:`assign_orders` fills in orders and drop ranks from what a trained genome
holds: a neuron's importance is the open probability of its gate times the L2 norm
of its outgoing weight columns (each enabled outgoing edge's columns scaled by that
edge's deterministic gate value); orders sort neurons by importance, and drop ranks
go to the live hidden nodes whose removal alone the chain would allow, least
important node first. Frozen (grafted) nodes keep their order and never get a drop
rank: a graft is one unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx
import numpy as np

from ._errors import GenomeError
from .adaptive import is_adaptive
from .complexity import ActiveStructure, active_structure, sparse_masks
from .gates import gate_value, open_probability
from .genome import Genome, is_frozen, set_order
from .mutations._neurons import keep_neurons

__all__ = [
    "BudgetChain",
    "BudgetLevel",
    "assign_orders",
    "budget_chain",
    "budget_masks",
    "check_budget",
    "check_budgets",
    "drop_order",
    "drop_rank",
    "level_genome",
    "neuron_importance",
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
        removed: removals (edges and neurons) applied to the full live network (0:
            the full network).
        flops: FLOPs per sample of the sub-network (``ActiveStructure.flops``).
        structure: the sub-network's live structure (its ``neurons`` masks are the
            kept neurons of every live node; its ``edges`` exclude ``edges_off``).
        masks: for every node of the genome, a bool mask [width] of the neurons it
            keeps (input and output: all True; a hidden node that is not live: all
            False). Engines multiply hidden activations by these masks.
        edges_off: the ``(src, dst)`` edges the chain has dropped by this level
            (step 0): each contributes nothing. Engines multiply their edge gates by 0.
    """

    removed: int
    flops: int
    structure: ActiveStructure
    masks: dict[int, np.ndarray] = field(repr=False)
    edges_off: frozenset[tuple[int, int]] = frozenset()

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
        removals: in removal order, ``("edge", src, dst)`` (a skip edge dropped, step
            0) or ``("neuron", node, index)`` (a hidden neuron removed, steps 1-2).
    """

    genome: Genome
    gate: str
    removals: tuple[tuple[str, int, int], ...]

    @cached_property
    def full(self) -> BudgetLevel:
        """The full network (nothing removed)."""
        return self.level(0)

    @cached_property
    def _base(self) -> tuple[dict[int, np.ndarray], dict[int, int], list[tuple[int, int]]]:
        """The full network's kept neurons, topological positions and open enabled edges."""
        return (
            _live_kept(self.genome, self.gate),
            _positions(self.genome),
            _open_edges(self.genome, self.gate),
        )

    @cached_property
    def _flops(self) -> np.ndarray:
        return np.array(
            [self.level(k).flops for k in range(len(self.removals) + 1)], dtype=np.int64
        )

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
        base, position, open_edges = self._base
        kept = {n: m.copy() for n, m in base.items()}
        off = set()
        for kind, a, b in self.removals[:removed]:
            if kind == "edge":
                off.add((a, b))
            else:
                kept[a][b] = False
        if off:
            open_edges = [e for e in open_edges if e not in off]
        structure = _structure(self.genome, kept, self.gate, position, open_edges)
        masks = {}
        for n, a in g.nodes(data=True):
            if a["role"] != "hidden":
                masks[n] = np.ones(int(a["width"]), bool)
            elif n in structure.neurons:
                masks[n] = structure.neurons[n].copy()
            else:
                masks[n] = np.zeros(int(a["width"]), bool)
        return BudgetLevel(
            removed=removed,
            flops=structure.flops,
            structure=structure,
            masks=masks,
            edges_off=frozenset(off),
        )

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


def _positions(genome: Genome) -> dict[int, int]:
    """Each node's place in ``genome.topological_order()``."""
    return {n: i for i, n in enumerate(genome.topological_order())}


def _open_edges(genome: Genome, gate: str) -> list[tuple[int, int]]:
    """The enabled edges whose deterministic gate is open (in float32), in innovation order."""
    g = genome.graph
    return [
        e for e in genome.gated_edges() if gate_value(g.edges[e]["gate"], gate, np.float32) != 0
    ]


def _structure(
    genome: Genome,
    kept: dict[int, np.ndarray],
    gate: str,
    position: dict[int, int] | None = None,
    open_edges: list[tuple[int, int]] | None = None,
) -> ActiveStructure:
    """The live structure when only ``kept`` neurons compute (``active_structure``'s rules).

    ``position`` and ``open_edges`` (``_positions``, ``_open_edges``) may be passed
    when known, to save recomputing them.
    """
    inp, out = genome.input_id, genome.output_id
    candidates = nx.DiGraph()
    candidates.add_nodes_from(genome.graph.nodes)
    any_kept = {n: bool(m.any()) for n, m in kept.items()}
    for s, d in _open_edges(genome, gate) if open_edges is None else open_edges:
        if any_kept[s] and any_kept[d]:
            candidates.add_edge(s, d)
    live = nx.ancestors(candidates, out) | {out}
    order = _positions(genome) if position is None else position
    edges = sorted(
        ((s, d) for s, d in candidates.edges if d in live), key=lambda e: (order[e[1]], order[e[0]])
    )
    neurons = {n: kept[n].copy() for n in live}
    if inp not in neurons:
        neurons[inp] = kept[inp].copy()
    return ActiveStructure(
        neurons=neurons, edges=edges, input=inp, output=out, sparse=sparse_masks(genome, edges)
    )


def _drop_allowed(
    genome: Genome,
    kept: dict[int, np.ndarray],
    node: int | None,
    gate: str,
    open_edges: list[tuple[int, int]] | None = None,
) -> bool:
    """True if removing ``node``'s last neuron leaves every live node reached from the input.

    ``open_edges``: the edges that may carry values (default: every open enabled
    edge); ``node`` None checks the sub-network as ``kept`` and ``open_edges`` give it
    (an edge drop: pass the open edges without it).
    """
    trial = dict(kept)
    if node is not None:
        trial[node] = np.zeros_like(kept[node])
    s = _structure(genome, trial, gate, open_edges=open_edges)
    live = nx.DiGraph(s.edges)
    live.add_node(s.input)  # the input may have no live edge (its gates all closed)
    reach = nx.descendants(live, s.input)
    return s.output in reach and all(n in reach for n in s.neurons if n not in (s.input,))


def budget_chain(genome: Genome, gate: str = "sigmoid") -> BudgetChain:
    """Return the budget chain of a feed-forward genome under the gate kind ``gate``.

    Raises:
        GenomeError: for a recurrent genome, an adaptive one (exit nodes or skip
            gates, ``genomes.adaptive``), or a node whose ``order`` is not a
            permutation of its neurons.
    """
    if genome.is_recurrent:
        raise GenomeError("budgets are for feed-forward genomes; this genome has recurrent edges")
    if is_adaptive(genome):
        raise GenomeError(
            "budgets cannot be mixed with exit nodes or skip gates; this genome has them"
        )
    g = genome.graph
    kept = _live_kept(genome, gate)
    ranks = {n: drop_rank(g.nodes[n]) for n in genome.hidden_nodes()}
    live_order: dict[int, list[int]] = {}
    for n in genome.hidden_nodes():
        order = neuron_order(g.nodes[n])
        if sorted(order.tolist()) != list(range(int(g.nodes[n]["width"]))):
            raise GenomeError(
                f"node {n}: order should be a permutation of range({g.nodes[n]['width']})"
            )
        live = [int(i) for i in order if kept[n][i]]
        if live:
            live_order[n] = live

    def tie(n: int) -> tuple:
        r = ranks[n]
        return (0, r, n) if r is not None else (1, 0, n)

    removals: list[tuple[str, int, int]] = []
    # 0. skip edges go first, largest FLOPs first: an edge that bypasses other nodes
    #    (its dst still reached from its src without it), where the graph allows
    open_edges = _open_edges(genome, gate)
    position = _positions(genome)
    full = _structure(genome, kept, gate, position, open_edges)
    width = {n: int(m.sum()) for n, m in full.neurons.items()}
    current = nx.DiGraph(full.edges)
    for s, d in sorted(
        full.edges, key=lambda e: (-width[e[0]] * width[e[1]], position[e[1]], position[e[0]])
    ):
        if not current.has_edge(s, d):  # defensive: a bypassed drop keeps the others live
            continue
        current.remove_edge(s, d)
        trial = [e for e in open_edges if e != (s, d)]
        if nx.has_path(current, s, d) and _drop_allowed(genome, kept, None, gate, trial):
            open_edges = trial
            removals.append(("edge", s, d))
            current = nx.DiGraph(_structure(genome, kept, gate, position, open_edges).edges)
        else:
            current.add_edge(s, d)
    # (a bypassed edge's removal leaves every live node live: live_order stands)
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
        removals.append(("neuron", n, i))
    # 2. droppable nodes go whole, in drop order, where the graph allows
    for n in sorted((m for m in live_order if ranks[m] is not None), key=tie):
        if not kept[n].any() or not _drop_allowed(genome, kept, n, gate, open_edges):
            continue
        i = live_order[n][0]
        kept[n][i] = False
        removals.append(("neuron", n, i))
    return BudgetChain(genome=genome, gate=gate, removals=tuple(removals))


def budget_masks(genome: Genome, budget: float, gate: str = "sigmoid") -> dict[int, np.ndarray]:
    """Return every node's kept-neuron mask at ``budget`` (``BudgetChain.select(budget).masks``)."""
    return budget_chain(genome, gate).select(budget).masks


def sub_genome(genome: Genome, budget: float, gate: str = "sigmoid") -> Genome:
    """Return the sub-network ``budget`` selects as a genome of its own.

    Removed neurons are cut from their nodes and dropped skip edges are removed;
    hidden nodes and edges that no longer feed the output (or keep no neuron) are
    removed. The result computes exactly what ``genome`` computes with the budget's
    masks applied and its dropped edges skipped (``genomes.evaluate`` with
    ``budget=``). Orders and drop ranks of the kept nodes are kept.

    Every kept hidden node keeps exactly its masked neurons (the closed ones go
    too), and every disabled, closed or dead edge goes, so the result's
    ``active_structure`` is the level's (same FLOPs and parameters). One exception
    keeps the result valid: a live node that no input path reaches through live
    edges (it computes a constant, e.g. behind a closed edge or a node whose gates
    are all closed) keeps one enabled path of the genome from a reached node; that
    path's edge into a live node is closed or leaves a closed node, so it adds
    exactly 0 and no FLOPs.

    Args:
        genome: a valid feed-forward genome (not modified).
        budget: a budget in (0, 1].
        gate: the gate kind (deterministic values decide what is closed).

    Returns:
        A new valid genome (``meta`` copied).

    Raises:
        GenomeError: for a budget outside (0, 1] or a recurrent genome.
    """
    chain = budget_chain(genome, gate)
    return level_genome(chain, chain.select(budget))


def level_genome(chain: BudgetChain, level: BudgetLevel) -> Genome:
    """Return one level of ``chain`` as a genome of its own (see :func:`sub_genome`)."""
    genome = chain.genome
    g = genome.graph
    inp, out = genome.input_id, genome.output_id
    kept = {
        n for n in level.structure.neurons if g.nodes[n]["role"] != "hidden" or level.masks[n].any()
    }
    kept |= {inp, out}
    removed_by_budget = {n for kind, n, _ in chain.removals[: level.removed] if kind == "neuron"}
    dropped = {n for n in removed_by_budget if not level.masks[n].any()}
    keep_edges = {(s, d) for s, d in level.structure.edges if s in kept and d in kept}
    current = nx.DiGraph()
    current.add_nodes_from(kept)
    current.add_edges_from(keep_edges)
    active = genome.active_graph()
    if level.edges_off:  # a dropped edge never comes back as a path's edge
        active = active.copy()
        active.remove_edges_from(level.edges_off)
    for n in genome.topological_order():
        if n not in kept or n == inp:
            continue
        reach = nx.descendants(current, inp) | {inp}
        if n in reach:
            continue
        path = _path_from(active, reach, n, dropped)
        current.add_nodes_from(path)
        current.add_edges_from(zip(path[:-1], path[1:], strict=True))
    child = genome.copy()
    cg = child.graph
    cg.remove_nodes_from([n for n in list(cg.nodes) if n not in current])
    cg.remove_edges_from([e for e in list(cg.edges) if not current.has_edge(*e)])
    for n in kept:
        if g.nodes[n]["role"] == "hidden" and not level.masks[n].all():
            keep_neurons(child, n, np.flatnonzero(level.masks[n]))
    return child


def _path_from(active: nx.DiGraph, reach: set[int], node: int, avoid: set[int]) -> list[int]:
    """Return a shortest enabled path into ``node`` from a node of ``reach`` (avoiding ``avoid``)."""
    parent: dict[int, int | None] = {node: None}
    frontier = [node]
    while frontier:
        nxt = []
        for v in frontier:
            for u in sorted(active.predecessors(v)):
                if u in parent or u in avoid:
                    continue
                parent[u] = v
                if u in reach:
                    path = [u]
                    while parent[path[-1]] is not None:
                        path.append(parent[path[-1]])
                    return path
                nxt.append(u)
        frontier = nxt
    raise GenomeError(f"node {node}: no enabled path from the input survives")  # pragma: no cover


def neuron_importance(genome: Genome, node: int, gate: str = "sigmoid") -> np.ndarray:
    """Return the importance of each neuron of ``node`` (float64 [width]).

    ``open_probability(gate_u) * sqrt(sum_e (g(gate_e) * ||W_e[:, u]||)^2)`` over the
    enabled outgoing edges ``e`` (``g``: the deterministic gate value). NaN reads as
    +inf (never the least important).
    """
    g = genome.graph
    sq = np.zeros(int(g.nodes[node]["width"]))
    for d in genome.active_graph().successors(node):
        e = g.edges[node, d]
        col = np.linalg.norm(e["weight"].astype(np.float64), axis=0)
        sq += (float(gate_value(e["gate"], gate)) * col) ** 2
    score = open_probability(g.nodes[node]["gate"], gate) * np.sqrt(sq)
    return np.where(np.isnan(score), np.inf, score)


def assign_orders(
    genome: Genome, gate: str = "sigmoid", neurons: bool = True, nodes: bool = True
) -> Genome:
    """Return a copy of ``genome`` with neuron orders and drop ranks read off its values.

    Args:
        genome: a valid feed-forward genome (not modified).
        gate: the gate kind (open probabilities and deterministic edge gates).
        neurons: reassign every unfrozen hidden node's ``order``: neurons by
            :func:`neuron_importance`, descending (ties: lower index first).
        nodes: reassign every hidden node's ``drop``: the live unfrozen hidden nodes
            whose removal alone passes the chain's drop check get ranks 0, 1, ...,
            least important first (a node's importance: the sum of its neurons';
            ties by id); every other node gets none.

    Returns:
        The new genome. Orders never change the function without a budget.

    Raises:
        GenomeError: for a recurrent genome, or an adaptive one (exit nodes or skip
            gates, ``genomes.adaptive``).
    """
    if genome.is_recurrent:
        raise GenomeError("budgets are for feed-forward genomes; this genome has recurrent edges")
    if is_adaptive(genome):
        raise GenomeError(
            "budgets cannot be mixed with exit nodes or skip gates; this genome has them"
        )
    child = genome.copy()
    cg = child.graph
    hidden = genome.hidden_nodes()
    importance = {n: neuron_importance(genome, n, gate) for n in hidden}
    if neurons:
        for n in hidden:
            if not is_frozen(cg.nodes[n]):
                set_order(cg.nodes[n], np.argsort(-importance[n], kind="stable"))
    if nodes:
        for n in hidden:
            cg.nodes[n].pop("drop", None)
        kept = _live_kept(genome, gate)
        droppable = [
            n
            for n in hidden
            if kept[n].any() and not is_frozen(cg.nodes[n]) and _drop_allowed(genome, kept, n, gate)
        ]
        for rank, n in enumerate(sorted(droppable, key=lambda m: (float(importance[m].sum()), m))):
            cg.nodes[n]["drop"] = rank
    return child
