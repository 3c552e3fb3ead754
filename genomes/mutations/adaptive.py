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

__all__ = ["add_exit", "add_skip", "with_exit"]


def add_exit(
    genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, config: MutationConfig
) -> tuple[Genome, MutationRecord]:
    """Attach an exit head (zero weights, threshold 1) to a live hidden node that has none.

    Only nodes live under the deterministic gates of ``config.gate`` (some neuron
    open, a path of open gates to the output) are sources: a head on a dead node
    would read a constant and could never learn.

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
    src = choose(rng, sources)
    child, head, innovation = with_exit(genome, src, tracker, config.gate_init)
    return child, MutationRecord("add_exit", {"src": int(src), "exit": int(head), "innovation": innovation})


def with_exit(genome: Genome, src: int, tracker: InnovationTracker, gate_init: float) -> tuple[Genome, int, int]:
    """Return ``(copy with an exit head on hidden node src, the head's id, its edge's innovation)``.

    The head has zero weights and threshold 1 (function preserving, as :func:`add_exit`
    adds it); its id is ``tracker.named_node(f"exit_of_{src}")``, so the same head
    aligns in crossover whoever adds it. The caller checks that ``src`` may carry one.
    """
    child = genome.copy()
    head = tracker.named_node(f"exit_of_{src}")
    n_out, width = genome.n_outputs, int(genome.graph.nodes[src]["width"])
    child.graph.add_node(head, **node_attrs(EXIT, n_out, "identity", threshold=1.0))
    innovation = tracker.edge(src, head)
    child.graph.add_edge(src, head, **edge_attrs(innovation, np.zeros((n_out, width), np.float32), gate_init))
    return child, head, innovation


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
