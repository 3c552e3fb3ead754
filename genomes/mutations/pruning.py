"""Pruning mutations: ``prune_neurons``, ``prune_edge``, ``remove_node``, ``sparsify``.

Closed hard-concrete gates are exact zeros (Louizos, Welling & Kingma 2018), so
removing what they close keeps the function; each operator prefers such
structure and otherwise removes the weakest part it can without breaking the
genome's validity.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from .._errors import NotApplicable
from ..activations import activate
from ..adaptive import EXIT
from ..config import MutationConfig, MutationRecord
from ..gates import gate_value
from ..genome import Genome, edge_attrs, is_frozen, module_of
from ..innovation import InnovationTracker
from ._neurons import choose, gate_scalar, keep_neurons

__all__ = ["prune_edge", "prune_neurons", "remove_node", "sparsify"]


def prune_neurons(
    genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, config: MutationConfig
) -> tuple[Genome, MutationRecord]:
    """Remove neurons of one hidden node: the closed ones, else the weakest.

    A node with neurons whose deterministic gate is exactly 0 is preferred (chosen
    at random among such nodes); all its closed neurons go, which keeps the
    function. If no node has any, ``config.prune_weakest`` neurons with the
    smallest ``gate * ||outgoing weights||`` go from a random node of width > 1
    (this changes the function). A node always keeps at least one neuron. Frozen
    nodes and the nodes feeding them (a graft's host or stitch) are never touched.
    The removed neurons' columns of an exit head and entries of outgoing ``skip``
    vectors (``genomes.adaptive``) go with them.

    Args:
        genome: a valid genome (not modified).
        rng: picks the node.
        tracker: unused.
        config: gate kind, ``prune_weakest``.

    Returns:
        The child and ``prune_neurons(node, removed, closed)`` (removed: old indices).

    Raises:
        NotApplicable: no neuron can be removed (every removable hidden node has
            width 1 and no closed neuron, or there is none).
    """
    g = genome.graph
    closed_choices: list[tuple[int, np.ndarray]] = []
    hidden = [n for n in genome.hidden_nodes() if not is_frozen(g.nodes[n]) and not genome.feeds_frozen(n)]
    for n in hidden:
        closed = np.flatnonzero(gate_value(g.nodes[n]["gate"], config.gate) == 0)
        if len(closed) == g.nodes[n]["width"]:
            closed = closed[1:]  # keep one (closed) neuron: width >= 1
        if len(closed):
            closed_choices.append((n, closed))
    if closed_choices:
        node, drop = closed_choices[int(rng.integers(len(closed_choices)))]
        was_closed = True
    else:
        wide = [n for n in hidden if g.nodes[n]["width"] > 1]
        if not wide or config.prune_weakest < 1:
            raise NotApplicable("prune_neurons: no closed neuron and no hidden node wider than 1")
        node = choose(rng, wide)
        width = int(g.nodes[node]["width"])
        score = _neuron_strength(genome, node, config.gate)
        drop = np.sort(np.argsort(score, kind="stable")[: min(config.prune_weakest, width - 1)])
        was_closed = False
    keep = np.setdiff1d(np.arange(g.nodes[node]["width"]), drop)
    child = genome.copy()
    keep_neurons(child, node, keep)
    record = MutationRecord(
        "prune_neurons", {"node": int(node), "removed": [int(i) for i in drop], "closed": was_closed}
    )
    return child, record


def _neuron_strength(genome: Genome, node: int, kind: str) -> np.ndarray:
    """Return ``g_u * sqrt(sum_e (g_e * ||W_e[:, u]||)^2)`` over enabled outgoing edges."""
    g = genome.graph
    sq = np.zeros(g.nodes[node]["width"])
    for d in genome.active_graph().successors(node):
        e = g.edges[node, d]
        col = np.linalg.norm(e["weight"].astype(np.float64), axis=0)
        sq += (gate_scalar(e["gate"], kind) * col) ** 2
    score = gate_value(g.nodes[node]["gate"], kind) * np.sqrt(sq)
    return np.where(np.isnan(score), np.inf, score)


def _topology(genome: Genome) -> nx.DiGraph:
    """Return a plain copy of the enabled non-recurrent edges (no attributes)."""
    h = nx.DiGraph()
    h.add_nodes_from(genome.graph.nodes)
    h.add_edges_from(genome.active_graph().edges)
    return h


def _connected(h: nx.DiGraph, inp: int, out: int, hidden: list[int]) -> bool:
    """Return whether ``out`` is reachable from ``inp`` and every hidden node lies between."""
    reach = nx.descendants(h, inp)
    if out not in reach:
        return False
    feeds = nx.ancestors(h, out)
    return all(n in reach and n in feeds for n in hidden)


def prune_edge(
    genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, config: MutationConfig
) -> tuple[Genome, MutationRecord]:
    """Remove an enabled edge: a closed one, else the weakest, keeping the genome valid.

    Only edges whose removal leaves every hidden node on an enabled input-output
    path (and the output reachable) are considered. Among them a random one whose
    deterministic gate is exactly 0 is removed (keeps the function); if none is
    closed, the one with the smallest ``gate * ||W||`` (ties: lowest innovation).
    The edge is removed from the graph, not just disabled. Frozen edges (inside a
    grafted module) are never removed. A graft's trainable out-edge may be: when it
    is the graft's last way to the output, the nodes it leaves cut off are removed
    with it, provided they all belong to that graft (its module nodes and stitch);
    this is how a useless graft dies.

    An exit's edge (``genomes.adaptive``) is never removed: a new exit head has zero
    weights, so it would always be the weakest edge and die at once; exits go with
    their source node (``remove_node``, ``prune_closed``). An edge into a skip-gated
    node takes its ``skip`` vector with it.

    Args:
        genome: a valid genome (not modified).
        rng: picks among closed edges.
        tracker: unused.
        config: gate kind.

    Returns:
        The child and ``prune_edge(src, dst, innovation, closed)``, plus
        ``graft_removed=[node ids]`` when a graft went with the edge.

    Raises:
        NotApplicable: no enabled edge can go without breaking validity.
    """
    g = genome.graph
    inp, out, hidden = genome.input_id, genome.output_id, genome.hidden_nodes()
    h = _topology(genome)
    removable = []
    dead_graft: dict[tuple[int, int], list[int]] = {}
    for s, d, a in sorted(g.edges(data=True), key=lambda t: t[2]["innovation"]):
        if not a["enabled"] or is_frozen(a) or g.nodes[d]["role"] == EXIT:
            continue
        if not a["recurrent"]:
            h.remove_edge(s, d)
            ok = _connected(h, inp, out, hidden)
            if not ok and module_of(g.nodes[s]) is not None:
                dead = _cut_off_graft(h, inp, out, hidden, genome, module_of(g.nodes[s])["graft"])
                if dead:
                    dead_graft[s, d], ok = dead, True
            h.add_edge(s, d)
            if not ok:
                continue
        removable.append((s, d))
    if not removable:
        raise NotApplicable("prune_edge: every enabled edge is needed to keep the genome connected")
    closed = [e for e in removable if gate_scalar(g.edges[e]["gate"], config.gate) == 0.0]
    if closed:
        src, dst = choose(rng, closed)
    else:

        def strength(e: tuple[int, int]) -> float:
            v = gate_scalar(g.edges[e]["gate"], config.gate) * float(
                np.linalg.norm(g.edges[e]["weight"].astype(np.float64))
            )
            return np.inf if np.isnan(v) else v

        src, dst = min(removable, key=strength)  # min keeps the first (lowest innovation) tie
    child = genome.copy()
    innovation = int(g.edges[src, dst]["innovation"])
    child.graph.remove_edge(src, dst)
    args = {"src": int(src), "dst": int(dst), "innovation": innovation, "closed": bool(closed)}
    if (src, dst) in dead_graft:
        child.graph.remove_nodes_from(dead_graft[src, dst])
        args["graft_removed"] = [int(n) for n in dead_graft[src, dst]]
    return child, MutationRecord("prune_edge", args)


def _cut_off_graft(
    h: nx.DiGraph, inp: int, out: int, hidden: list[int], genome: Genome, graft: int
) -> list[int]:
    """Return the hidden nodes ``h`` leaves off every input-output path, if all are of ``graft``.

    An empty list when some of them belong elsewhere (or none is cut off), or when a
    recurrent edge leaves one of them for a node that stays (its removal would then
    change more than the graft).
    """
    reach = nx.descendants(h, inp)
    if out not in reach:
        return []
    feeds = nx.ancestors(h, out)
    cut = [n for n in hidden if n not in reach or n not in feeds]
    g = genome.graph
    for n in cut:
        m = module_of(g.nodes[n])
        if m is None or m["graft"] != graft:
            return []
    gone = set(cut)
    if any(d not in gone for n in cut for d in g.successors(n)
           if g.edges[n, d]["recurrent"] and g.edges[n, d]["enabled"]):  # fmt: skip
        return []
    return cut


def _slope_at_zero(activation: str) -> float:
    """Return the activation's central-difference slope at 0 (relu: 0.5)."""
    eps = 1e-4
    x = np.array([-eps, eps])
    y = activate(activation, x)
    return float((y[1] - y[0]) / (2 * eps))


def remove_node(
    genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, config: MutationConfig
) -> tuple[Genome, MutationRecord]:
    """Remove a hidden node and reconnect its neighbours where the graph needs it.

    A node whose neurons are all closed (deterministic gates exactly 0) is
    preferred; otherwise a random hidden node goes. Frozen nodes and the nodes
    with an edge into one (a graft's host or stitch) are never removed. After removal, every enabled
    predecessor ``p`` that no longer reaches the output is connected to every
    enabled successor ``s``, then every successor no longer reachable from the
    input is connected from every predecessor. Such an edge ``p -> s`` gets the
    best linear stand-in for the removed path, the node linearised at 0::

        W_ps = g_ns * W_ns @ diag(g_n * act'(0)) @ W_pn * g_pn / g(gate_init)

    (zero when the node was closed, so removing a closed node keeps the function
    whenever its bias does not matter). A disabled edge ``p -> s`` is re-enabled
    with these values and keeps its innovation; a new one gets ``tracker.edge``.
    Either is dense: a re-enabled gene's ``mask`` (sparse edges) described its old
    weights, not the stand-in, and is dropped. The node's bias is dropped.

    Adaptive genes (``genomes.adaptive``): the node's exit heads are removed with it
    (an exit has no other source). A reconnecting edge into a skip-gated node ``s``
    carries the same linear stand-in for the removed path's part of ``s``'s gate::

        skip_ps = g_ns * (skip_ns * g_n * act'(0)) @ W_pn * g_pn / g(gate_init)

    (zero when the node was closed).

    Args:
        genome: a valid genome (not modified).
        rng: picks the node.
        tracker: innovations of reconnecting edges.
        config: gate kind, ``gate_init``.

    Returns:
        The child and ``remove_node(node, closed, reconnected)`` (closed: all its
        neurons were closed; reconnected: ``[[p, s], ...]``), plus ``exits``, the
        exit heads removed with it, when there were any.

    Raises:
        NotApplicable: no removable hidden node, or reconnection is blocked by recurrent edges.
    """
    g = genome.graph
    hidden = [n for n in genome.hidden_nodes() if not is_frozen(g.nodes[n]) and not genome.feeds_frozen(n)]
    if not hidden:
        raise NotApplicable("remove_node: no unfrozen hidden node that feeds no frozen node")
    closed = [n for n in hidden if not gate_value(g.nodes[n]["gate"], config.gate).any()]
    node = choose(rng, closed or hidden)
    active = genome.active_graph()
    preds = sorted(p for p in active.predecessors(node) if p != node)
    exits = sorted(s for s in g.successors(node) if g.nodes[s]["role"] == EXIT)
    succs = sorted(s for s in active.successors(node) if s != node and s not in exits)
    c = gate_scalar(config.gate_init, config.gate)
    a = g.nodes[node]
    mid = gate_value(a["gate"], config.gate) * _slope_at_zero(a["activation"])

    child = genome.copy()
    cg = child.graph
    cg.remove_node(node)
    cg.remove_nodes_from(exits)
    reconnected: list[list[int]] = []

    def connect(p: int, s: int) -> None:
        old = cg.edges[p, s] if cg.has_edge(p, s) else None
        if old is not None and (old["enabled"] or old["recurrent"]):
            return
        e_in, e_out = g.edges[p, node], g.edges[node, s]
        w = (
            gate_scalar(e_out["gate"], config.gate)
            * gate_scalar(e_in["gate"], config.gate)
            * (e_out["weight"].astype(np.float64) * mid[None, :])
            @ e_in["weight"].astype(np.float64)
        )
        w = w / c if c != 0.0 else np.zeros_like(w)
        if not np.isfinite(w).all():
            w = np.zeros_like(w)
        innovation = old["innovation"] if old is not None else tracker.edge(p, s)
        cg.add_edge(p, s, **edge_attrs(innovation, w.astype(np.float32), config.gate_init))
        cg.edges[p, s].pop("mask", None)  # a re-enabled gene's connections were its old weights'
        if cg.nodes[s].get("skip") is not None:
            v = np.zeros(int(g.nodes[p]["width"]))
            if e_out.get("skip") is not None and c != 0.0:
                v = (
                    gate_scalar(e_out["gate"], config.gate)
                    * gate_scalar(e_in["gate"], config.gate)
                    * (e_out["skip"].astype(np.float64) * mid)
                    @ e_in["weight"].astype(np.float64)
                ) / c
            cg.edges[p, s]["skip"] = np.where(np.isfinite(v), v, 0.0).astype(np.float32)
        reconnected.append([int(p), int(s)])

    inp, out = child.input_id, child.output_id
    live = child.active_graph()  # a view: sees the edges connect() adds
    feeds = nx.ancestors(live, out) | {out}
    for p in preds:
        if p not in feeds:
            for s in succs:
                connect(p, s)
    reach = nx.descendants(live, inp) | {inp}
    for s in succs:
        if s not in reach:
            for p in preds:
                connect(p, s)
    if not _connected(_topology(child), inp, out, child.hidden_nodes()):
        raise NotApplicable(f"remove_node: recurrent edges block reconnecting around node {node}")
    args: dict = {"node": int(node), "closed": node in closed, "reconnected": reconnected}
    if exits:
        args["exits"] = [int(x) for x in exits]
    return child, MutationRecord("remove_node", args)


def sparsify(
    genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, config: MutationConfig
) -> tuple[Genome, MutationRecord]:
    """Remove the weakest connections of one edge: magnitude pruning inside an edge.

    Picks, at random, an enabled feed-forward edge into a hidden or output node
    (never a frozen one, nor an exit head) with a neuron that has more than one
    connection on it, and removes ``ceil(config.sparsify_fraction * removable)`` of
    its connections, smallest ``|weight|`` first (ties: lowest index first), where
    ``removable`` counts the connections above one per destination neuron: each
    neuron keeps at least one. The edge's ``mask`` (created on a dense edge) drops
    them and their weights become 0. This changes the function by what the removed
    weights contributed; an edge's connections are what ``genomes.complexity``
    counts, so the child is cheaper in parameters and FLOPs.

    Args:
        genome: a valid genome (not modified).
        rng: picks the edge.
        tracker: unused.
        config: ``sparsify_fraction``.

    Returns:
        The child and ``sparsify(edge, removed, connections, closed)`` (connections:
        what the edge keeps; closed: every removed weight was exactly 0, so the
        function is unchanged).

    Raises:
        NotApplicable: no edge has a neuron with two connections or more.
    """
    g = genome.graph
    candidates = []
    for s, d, a in sorted(g.edges(data=True)):
        if not a["enabled"] or a["recurrent"] or is_frozen(a) or g.nodes[d]["role"] == EXIT:
            continue
        mask = a.get("mask")
        per_row = mask.sum(axis=1) if mask is not None else np.full(a["weight"].shape[0], a["weight"].shape[1])
        if (per_row > 1).any():
            candidates.append((s, d))
    if not candidates:
        raise NotApplicable("sparsify: no edge has a neuron with two connections or more")
    s, d = choose(rng, candidates)
    child = genome.copy()
    e = child.graph.edges[s, d]
    w = e["weight"]
    mask = e["mask"].copy() if e.get("mask") is not None else np.ones(w.shape, bool)
    removable = int((mask.sum(axis=1) - 1).clip(min=0).sum())
    n_remove = int(np.ceil(config.sparsify_fraction * removable))
    if n_remove:
        # Smallest |w| first, ties by flat index; a row's last connection is never removed.
        flat = np.flatnonzero(mask)
        order = flat[np.lexsort((flat, np.abs(w.reshape(-1)[flat])))]
        left = mask.sum(axis=1)
        removed, gone = 0, []
        for k in order:
            r = k // w.shape[1]
            if left[r] > 1:
                mask.reshape(-1)[k] = False
                gone.append(k)
                left[r] -= 1
                removed += 1
                if removed == n_remove:
                    break
    else:
        gone = []
    closed = bool(gone) and not np.any(w.reshape(-1)[gone])
    e["mask"] = mask
    e["weight"] = np.where(mask, w, np.float32(0.0)).astype(np.float32)
    args = {"edge": [int(s), int(d)], "removed": len(gone), "connections": int(mask.sum()), "closed": closed}
    return child, MutationRecord("sparsify", args)
