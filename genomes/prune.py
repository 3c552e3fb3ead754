"""Gate-driven pruning: cut away everything whose gate is closed.

A hard-concrete gate whose deterministic value is exactly 0 (Louizos et al. 2018)
contributes nothing at evaluation, so removing it keeps the function. ``prune_closed``
removes closed neurons, closed edges and the nodes that no longer reach the output,
and folds *constant* nodes (live, but cut off from the input) into the biases
downstream, so the result is again a valid genome with the same deterministic
function (up to float32 rounding of the folded biases). Budget orders of the nodes
that lose neurons keep the kept neurons' relative order; drop ranks stay. The input node keeps its
width (features are fixed); its closed gates stay closed.

Grafted modules (``genomes.modules``): their gates are open, so a graft is removed
only as a whole, when its out-edges are closed (then nothing of it reaches the
output) or its input is (then it is a constant, folded into its consumer). The
node that feeds a graft (its host or stitch) keeps its closed neurons, so every
frozen weight matrix that stays is unchanged.

Adaptive genes (``genomes.adaptive``): an exit keeps its source live, so a node
dies only when neither the output nor an exit reads it through open gates; an exit
goes when its source dies or is folded (a constant node's head could never learn),
or when its edge is closed (its logits would be a constant). A constant node's
contribution to a skip gate is folded into that gate's bias, and a folded node's
own skip gate (constant too) into its value. A node live only through an exit (its
every path to the output closed) is removed with its exits, since the genome must
keep each hidden node on a path to the output. A closed edge into a skip-gated node
contributes nothing to the gate, and closed neurons nothing to any ``skip``
vector, so their entries go with them: the output's function, per-input skip
decisions included, is kept, and so are the surviving exits' logits.

Recurrent edges: a node whose only live link to the output (or from the input) is a
recurrent edge is live, but a valid genome needs every hidden node on an enabled
feed-forward path; when the pruned genome would break that, nothing is pruned (the
closed feed-forward path stays, and so does the function).
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from .activations import activate
from .complexity import active_structure
from .config import MutationRecord
from .gates import gate_value
from .genome import Genome, set_order
from .mutations._neurons import restrict_order

__all__ = ["prune_closed"]


def prune_closed(genome: Genome, gate: str) -> tuple[Genome, MutationRecord | None]:
    """Return ``genome`` without its closed neurons, closed edges and dead nodes.

    Args:
        genome: a valid genome (not modified).
        gate: the gate kind whose deterministic values decide what is closed.

    Returns:
        ``(pruned, record)``; ``record`` is None when nothing was closed (then
        ``pruned`` is a copy of ``genome``).
    """
    live = active_structure(genome, gate)
    inp, out = live.input, live.output
    live_edges = set(live.edges)
    live_graph = nx.DiGraph(list(live_edges))
    live_graph.add_node(inp)
    reach = nx.descendants(live_graph, inp)
    if out not in reach:
        # Every path is closed: the network is a constant. Leave it to selection.
        return genome.copy(), None
    child = genome.copy()
    h = child.graph
    order = genome.topological_order()
    removed_nodes: list[int] = []
    folded: list[int] = []
    # Fold constant nodes (live but unreachable from the input) into downstream biases.
    for n in order:
        if n == inp or n not in live.neurons or n in reach or h.nodes[n]["role"] == "exit":
            continue
        a = h.nodes[n]
        value = activate(a["activation"], a["bias"].astype(np.float64))
        value = value * gate_value(a["gate"], gate)
        if a.get("skip") is not None and float(a["skip"][0]) < 0:
            value = value * 0.0  # its gate's logit is a constant too: closed
        for s, d in live_edges:
            if s == n:
                e = h.edges[s, d]
                contrib = gate_value(e["gate"], gate) * (e["weight"].astype(np.float64) @ value)
                h.nodes[d]["bias"] = (h.nodes[d]["bias"] + contrib).astype(np.float32)
                if e.get("skip") is not None:
                    c = float(gate_value(e["gate"], gate)) * float(
                        e["skip"].astype(np.float64) @ value
                    )
                    h.nodes[d]["skip"] = (h.nodes[d]["skip"] + c).astype(np.float32)
        folded.append(n)
    feeds = nx.ancestors(live_graph, out)  # live only through an exit: goes (with the exit)
    keep_nodes = (set(live.neurons) & (reach | {inp}) & feeds) | {inp, out}
    for s, d in live_edges:  # an exit stays with its source (not if its edge is closed)
        if h.nodes[d]["role"] == "exit" and s in keep_nodes:
            keep_nodes.add(d)
    for n in list(h.nodes):
        if n not in keep_nodes:
            h.remove_node(n)
            if n not in folded:
                removed_nodes.append(n)
    removed_edges = 0
    for s, d in list(h.edges):
        e = h.edges[s, d]
        if e["enabled"] and not e["recurrent"] and (s, d) not in live_edges:
            h.remove_edge(s, d)
            removed_edges += 1
    removed_neurons = 0
    for n in list(h.nodes):
        a = h.nodes[n]
        if a["role"] != "hidden" or child.feeds_frozen(n):
            continue  # a graft's host or stitch keeps its closed neurons: frozen columns stay
        mask = live.neurons[n]
        if mask.all():
            continue
        removed_neurons += int((~mask).sum())
        order = a.get("order")
        a["width"] = int(mask.sum())
        if order is not None:
            set_order(a, restrict_order(order, np.flatnonzero(mask)))
        a["bias"] = a["bias"][mask].copy()
        a["gate"] = a["gate"][mask].copy()
        for s in h.predecessors(n):
            h.edges[s, n]["weight"] = h.edges[s, n]["weight"][mask, :].copy()
            if h.edges[s, n].get("mask") is not None:
                h.edges[s, n]["mask"] = h.edges[s, n]["mask"][mask, :].copy()
        for d in h.successors(n):
            h.edges[n, d]["weight"] = h.edges[n, d]["weight"][:, mask].copy()
            if h.edges[n, d].get("mask") is not None:
                h.edges[n, d]["mask"] = h.edges[n, d]["mask"][:, mask].copy()
            if h.edges[n, d].get("skip") is not None:
                h.edges[n, d]["skip"] = h.edges[n, d]["skip"][mask].copy()
    if not (removed_nodes or folded or removed_edges or removed_neurons):
        return child, None
    if child.path_problem() is not None:
        # A live node that hears the input, or reaches the output, only through a
        # recurrent edge lost the closed feed-forward path that kept the genome valid
        # (each hidden node on an enabled non-recurrent path from input to output).
        # Its closed genes stay: leave it to selection.
        return genome.copy(), None
    record = MutationRecord(
        "prune_closed",
        {
            "neurons": removed_neurons,
            "edges": removed_edges,
            "nodes": sorted(removed_nodes),
            "folded": sorted(folded),
        },
    )
    return child.validate(), record

