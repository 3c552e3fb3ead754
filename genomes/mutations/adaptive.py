"""Mutations that add adaptive genes (``genomes.adaptive``): exit heads and skip gates.

Both are function preserving for the output node under the deterministic gates: a
new exit head has zero weights (uniform softmax: confidence ``1 / n_out``, so it only
stops a sample whose threshold is that low) and reads a node without changing it; a
new skip gate opens with margin (``s = SKIP_INIT >= 0`` for every input, since its
source weights start at zero).
"""

from __future__ import annotations

import numpy as np

from .._errors import NotApplicable
from ..adaptive import EXIT, SKIP_INIT
from ..complexity import active_structure
from ..config import MutationConfig, MutationRecord
from ..genome import Genome, edge_attrs, is_frozen, node_attrs
from ..innovation import InnovationTracker
from ._neurons import choose

__all__ = ["add_exit", "add_skip", "reach_flops"]


def add_exit(
    genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, config: MutationConfig
) -> tuple[Genome, MutationRecord]:
    """Attach an exit head (zero weights, threshold 1) to a live hidden node that has none.

    Only nodes live under the deterministic gates of ``config.gate`` (some neuron
    open, a path of open gates to the output) are sources: a head on a dead node
    would read a constant and could never learn. A source is drawn with probability
    inversely proportional to its *reach*: the FLOPs of its live in-edges and of every
    live ancestor's (:func:`reach_flops`), so heads go where an early exit is cheap,
    as BranchyNet and SDN place them.

    The head node's id is ``tracker.named_node(f"exit_of_{src}")`` and its edge's
    innovation ``tracker.edge(src, head)``: the same head added twice in one
    generation aligns in crossover.

    Raises:
        NotApplicable: for a genome with fewer than 2 outputs, recurrent edges or
            grafted modules, or when every live hidden node already has an exit.
    """
    g = genome.graph
    if genome.n_outputs < 2 or genome.is_recurrent or genome.grafts():
        raise NotApplicable("add_exit: exits need a feed-forward classifier without grafted modules")
    if any(a.get("order") is not None or a.get("drop") is not None for _, a in g.nodes(data=True)):
        raise NotApplicable("add_exit: exits cannot be mixed with budget attributes")
    taken = {next(iter(g.predecessors(n))) for n, r in g.nodes(data="role") if r == EXIT}
    live = active_structure(genome, config.gate).neurons
    sources = [n for n in genome.hidden_nodes() if n not in taken and n in live and live[n].any()]
    if not sources:
        raise NotApplicable("add_exit: every live hidden node already has an exit head")
    reach = reach_flops(genome, config.gate)
    weight = np.array([1.0 / max(reach[n], 1) for n in sources])
    src = sources[int(rng.choice(len(sources), p=weight / weight.sum()))]
    child = genome.copy()
    head = tracker.named_node(f"exit_of_{src}")
    n_out, width = genome.n_outputs, int(g.nodes[src]["width"])
    child.graph.add_node(head, **node_attrs(EXIT, n_out, "identity", threshold=1.0))
    innovation = tracker.edge(src, head)
    child.graph.add_edge(src, head, **edge_attrs(innovation, np.zeros((n_out, width), np.float32), config.gate_init))
    return child, MutationRecord("add_exit", {"src": int(src), "exit": int(head), "innovation": innovation})


def reach_flops(genome: Genome, gate: str) -> dict[int, int]:
    """Return, for each live hidden node, the FLOPs of computing it: its live feed-forward
    in-edges and those of every live hidden ancestor (``ActiveStructure``'s unit, 2 per
    multiply-add of a kept weight)."""
    live = active_structure(genome, gate)
    kept = {n: int(m.sum()) for n, m in live.neurons.items()}
    ff = [(s, d) for s, d in live.edges if not genome.graph.edges[s, d]["recurrent"]]
    own: dict[int, int] = {}
    parents: dict[int, list[int]] = {}
    for s, d in ff:
        own[d] = own.get(d, 0) + 2 * kept[s] * kept[d]
        parents.setdefault(d, []).append(s)
    hidden = [n for n in genome.hidden_nodes() if n in kept]
    out: dict[int, int] = {}
    for n in hidden:
        seen, stack = {n}, [n]
        while stack:
            for p in parents.get(stack.pop(), []):
                if p not in seen and p in own:
                    seen.add(p)
                    stack.append(p)
        out[n] = sum(own.get(a, 0) for a in seen)
    return out


def add_skip(
    genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, config: MutationConfig
) -> tuple[Genome, MutationRecord]:
    """Give a hidden node without one a per-input skip gate, open with margin.

    Raises:
        NotApplicable: for a recurrent genome, one with grafted modules or budget
            attributes, or when every hidden node has a skip gate already.
    """
    g = genome.graph
    if genome.is_recurrent or genome.grafts():
        raise NotApplicable("add_skip: skip gates need a feed-forward genome without grafted modules")
    if any(a.get("order") is not None or a.get("drop") is not None for _, a in g.nodes(data=True)):
        raise NotApplicable("add_skip: skip gates cannot be mixed with budget attributes")
    nodes = [n for n in genome.hidden_nodes() if g.nodes[n].get("skip") is None and not is_frozen(g.nodes[n])]
    if not nodes:
        raise NotApplicable("add_skip: every hidden node has a skip gate already")
    node = choose(rng, nodes)
    child = genome.copy()
    cg = child.graph
    cg.nodes[node]["skip"] = np.array([SKIP_INIT], np.float32)
    for s in cg.predecessors(node):
        if not cg.edges[s, node]["recurrent"]:
            cg.edges[s, node]["skip"] = np.zeros(int(cg.nodes[s]["width"]), np.float32)
    return child, MutationRecord("add_skip", {"node": int(node)})
