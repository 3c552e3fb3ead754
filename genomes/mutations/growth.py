"""Growth and skip mutations: ``add_node``, ``widen``, ``add_edge``.

All three are function preserving under the deterministic gates of
``config.gate``: the child computes what the parent computed until it trains, so
trained weights carry over without a loss spike (Net2Net, Chen, Goodfellow &
Shlens 2016; NEAT's add-node and add-connection, Stanley & Miikkulainen 2002).
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from .._errors import NotApplicable
from ..adaptive import EXIT, is_adaptive
from ..config import MutationConfig, MutationRecord
from ..genome import Genome, edge_attrs, is_frozen, node_attrs
from ..innovation import InnovationTracker
from ._neurons import append_neurons, choose, gate_scalar

__all__ = ["EXACT_SPLITS", "add_edge", "add_node", "widen"]

#: Activations that can carry a linear map exactly, and how many neurons per rank
#: they need: identity(z) = z; relu(z) - relu(-z) = z.
EXACT_SPLITS: dict[str, int] = {"identity": 1, "relu": 2}


def add_node(
    genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, config: MutationConfig
) -> tuple[Genome, MutationRecord]:
    """Split a random enabled edge ``i -> j`` with a new node ``k``, keeping the function.

    The old edge computed ``g(gate_e) * W @ h_i``. ``W`` is factored by SVD,
    ``W ~= B @ A`` with rank ``r``, and ``A``, ``B`` are scaled so that the new gates
    (edges ``i->k``, ``k->j`` and the neurons of ``k``, all at ``config.gate_init``)
    and the old edge gate are compensated exactly. The split is exact when ``r``
    reaches the rank of ``W``; ``r`` is capped so that ``k``'s width stays within
    ``config.max_new_node_width`` (a truncated SVD beyond it, rank at least 1).
    ``k`` gets ``config.new_node_activation`` if it can carry a linear map exactly
    (``identity``: width ``r``; ``relu``: width ``2r`` via ``relu(z) - relu(-z) = z``);
    any other activation falls back to ``relu``. ``k``'s bias is zero; the old edge
    is disabled (kept as a gene, its ``skip`` with it).

    Adaptive genes (``genomes.adaptive``): an exit's edge is never split (an exit
    reads its source directly). When ``j`` has a skip gate, the new edge ``k -> j``
    carries ``skip`` too; if the old edge's ``skip`` vector ``v`` is not zero, ``k``
    gets ``copies`` more neurons that carry ``v . h_i`` (incoming row ``v / c``,
    outgoing weight columns zero, so they feed ``j``'s gate only), and ``k -> j``'s
    ``skip`` reads them with ``g(gate_e) / c^2`` (``[+, -]`` for ``relu``), so ``s_j``
    is unchanged exactly; every other entry of ``k -> j``'s ``skip`` is zero.

    Args:
        genome: a valid genome (not modified).
        rng: picks the edge.
        tracker: ``k = tracker.split_node(i, j)``; new edges ``tracker.edge``.
        config: gate kind, ``gate_init``, ``new_node_activation``, ``max_new_node_width``.

    Returns:
        The child and ``add_node(src, dst, node, width, activation, rank, truncated)``
        (plus ``skip_neurons``, the neurons added for ``j``'s skip gate, when any).

    Raises:
        NotApplicable: no enabled non-recurrent edge with finite weights (frozen
            edges of grafted modules are never split), or every such edge's split
            node already exists in the genome.
        ValueError: if ``config.gate_init`` makes new gates closed (nothing could pass).
    """
    g = genome.graph
    c = gate_scalar(config.gate_init, config.gate)
    if c == 0.0:
        raise ValueError(
            f"add_node: gate_init should open new gates, got {config.gate_init} (closed under {config.gate})"
        )
    candidates = [
        e
        for e in genome.enabled_edges()
        if np.isfinite(g.edges[e]["weight"]).all()
        and not is_frozen(g.edges[e])
        and g.nodes[e[1]]["role"] != EXIT
        and np.isfinite(g.edges[e].get("skip", 0.0)).all()
    ]
    if not candidates:
        raise NotApplicable("add_node: no enabled non-recurrent unfrozen edge with finite weights to split")
    for idx in rng.permutation(len(candidates)):
        src, dst = candidates[int(idx)]
        # Only an edge split earlier this generation maps to an id already in use,
        # so trying edges in turn registers no split that is not made.
        k = tracker.split_node(src, dst)
        if k not in g:
            break
    else:
        raise NotApplicable("add_node: every splittable edge's split node already exists in the genome")

    activation = config.new_node_activation
    if activation not in EXACT_SPLITS:
        activation = "relu"
    copies = EXACT_SPLITS[activation]
    e = g.edges[src, dst]
    w_i, w_j = int(g.nodes[src]["width"]), int(g.nodes[dst]["width"])
    rank = max(1, min(w_i, w_j, config.max_new_node_width // copies))
    try:
        u, s, vt = np.linalg.svd(e["weight"].astype(np.float64), full_matrices=False)
    except np.linalg.LinAlgError as exc:
        raise NotApplicable(f"add_node: SVD of edge {src}->{dst} failed ({exc})") from None
    root = np.sqrt(s[:rank])
    a = root[:, None] * vt[:rank]  # [r, w_i]
    b = u[:, :rank] * root[None, :]  # [w_j, r]
    g_e = gate_scalar(e["gate"], config.gate)
    w_ik = a / c  # undoes the gate of edge i->k
    w_kj = b * (g_e / (c * c))  # undoes k's neuron gates and edge k->j's gate, applies the old gate
    if copies == 2:
        w_ik = np.concatenate([w_ik, -w_ik], axis=0)
        w_kj = np.concatenate([w_kj, -w_kj], axis=1)

    skip_kj = None
    extra = 0
    if g.nodes[dst].get("skip") is not None:
        v = e["skip"].astype(np.float64)
        if v.any():
            rows = v[None, :] / c
            signs = np.array([1.0]) if copies == 1 else np.array([1.0, -1.0])
            w_ik = np.concatenate([w_ik, signs[:, None] * rows], axis=0)
            w_kj = np.concatenate([w_kj, np.zeros((w_j, copies))], axis=1)
            skip_kj = np.concatenate([np.zeros(copies * rank), signs * (g_e / (c * c))])
            extra = copies
        else:
            skip_kj = np.zeros(copies * rank)

    child = genome.copy()
    cg = child.graph
    width = copies * rank + extra
    cg.add_node(k, **node_attrs("hidden", width, activation, gate_init=config.gate_init))
    cg.add_edge(src, k, **edge_attrs(tracker.edge(src, k), w_ik.astype(np.float32), config.gate_init))
    cg.add_edge(k, dst, **edge_attrs(tracker.edge(k, dst), w_kj.astype(np.float32), config.gate_init))
    if skip_kj is not None:
        cg.edges[k, dst]["skip"] = skip_kj.astype(np.float32)
    cg.edges[src, dst]["enabled"] = False
    record = MutationRecord(
        "add_node",
        {
            "src": int(src),
            "dst": int(dst),
            "node": int(k),
            "width": width,
            "activation": activation,
            "rank": rank,
            "truncated": rank < min(w_i, w_j),
        },
    )
    if extra:
        record.args["skip_neurons"] = extra
    return child, record


def widen(
    genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, config: MutationConfig
) -> tuple[Genome, MutationRecord]:
    """Add 1..``config.widen_max`` neurons to a random hidden node, keeping the function.

    New incoming weight rows are LeCun normal, new outgoing columns zero, new biases
    zero and new gate logits ``config.gate_init``; the node stays within
    ``config.max_node_width``. Frozen nodes and the nodes that feed them (a graft's
    host or stitch) are never widened.

    Args:
        genome: a valid genome (not modified).
        rng: picks the node, the count and the new incoming weights.
        tracker: unused (the node keeps its id).
        config: ``widen_max``, ``max_node_width``, ``gate_init``.

    Returns:
        The child and ``widen(node, added)``.

    Raises:
        NotApplicable: no hidden node below ``config.max_node_width`` (or ``widen_max < 1``).
    """
    g = genome.graph
    nodes = [
        n
        for n in genome.hidden_nodes()
        if g.nodes[n]["width"] < config.max_node_width
        and not is_frozen(g.nodes[n])
        and not genome.feeds_frozen(n)
    ]
    if not nodes or config.widen_max < 1:
        raise NotApplicable("widen: no unfrozen hidden node below max_node_width")
    node = choose(rng, nodes)
    room = config.max_node_width - int(g.nodes[node]["width"])
    added = int(rng.integers(1, min(config.widen_max, room) + 1))
    child = genome.copy()
    append_neurons(child, node, added, rng, config.gate_init)
    return child, MutationRecord("widen", {"node": int(node), "added": added})


def add_edge(
    genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, config: MutationConfig
) -> tuple[Genome, MutationRecord]:
    """Connect two unconnected nodes with a zero-weight edge (a skip connection).

    The source is not the output node, the destination neither the input node nor
    a frozen node (a grafted module's inputs are fixed), and no cycle may close through the non-recurrent edges (enabled or not). Pairs that
    already have an edge (a disabled one included) are skipped: re-enabling an old
    edge would change the function. Zero weights keep the function; the gradient
    with respect to them is not zero, so the edge can learn. Exit nodes
    (``genomes.adaptive``) are neither source nor destination (an exit has exactly
    its one edge); an edge into a skip-gated node gets a zero ``skip`` vector.

    Args:
        genome: a valid genome (not modified).
        rng: picks the pair.
        tracker: the new edge's innovation is ``tracker.edge(src, dst)``.
        config: ``gate_init`` for the new edge's gate.

    Returns:
        The child and ``add_edge(src, dst, innovation)``.

    Raises:
        NotApplicable: every allowed pair is already connected.
    """
    g = genome.graph
    ff = genome.feedforward_graph()
    sources = sorted(n for n, r in g.nodes(data="role") if r not in ("output", EXIT))
    dests = sorted(
        n for n, a in g.nodes(data=True) if a["role"] not in ("input", EXIT) and not is_frozen(a)
    )
    pairs = []
    for s in sources:
        blocked = nx.ancestors(ff, s) | {s}  # d -> ... -> s would close a cycle
        pairs.extend((s, d) for d in dests if d not in blocked and not g.has_edge(s, d))
    if not pairs:
        raise NotApplicable("add_edge: every allowed pair of nodes is already connected")
    src, dst = choose(rng, pairs)
    child = genome.copy()
    shape = (int(g.nodes[dst]["width"]), int(g.nodes[src]["width"]))
    innovation = tracker.edge(src, dst)
    child.graph.add_edge(src, dst, **edge_attrs(innovation, np.zeros(shape, np.float32), config.gate_init))
    if g.nodes[dst].get("skip") is not None:
        child.graph.edges[src, dst]["skip"] = np.zeros(shape[1], np.float32)
    return child, MutationRecord("add_edge", {"src": int(src), "dst": int(dst), "innovation": innovation})


def add_recurrent_edge(
    genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, config: MutationConfig
) -> tuple[Genome, MutationRecord]:
    """Connect two nodes with a zero-weight recurrent edge: memory, the function kept.

    The edge ``src -> dst`` reads ``h_src`` of the previous time step. Any node may
    be the source (a self-loop included: ``src == dst``), any node but the input and
    frozen nodes the destination, and no cycle rule applies (recurrent edges may close cycles). A
    pair that already has an edge of either kind is skipped. Zero weights keep the
    function, and their gradient is not zero once the state is, so memory can be
    learned.

    Args:
        genome: a valid genome (not modified).
        rng: picks the pair.
        tracker: the new edge's innovation is ``tracker.edge(src, dst, recurrent=True)``.
        config: ``gate_init`` for the new edge's gate.

    Returns:
        The child and ``add_recurrent_edge(src, dst, innovation)``.

    Raises:
        NotApplicable: every allowed pair is already connected, or the genome has
            exit nodes or skip gates (``genomes.adaptive``: feed-forward only).
    """
    g = genome.graph
    if is_adaptive(genome):
        raise NotApplicable("add_recurrent_edge: exit nodes and skip gates are for feed-forward genomes")
    sources = sorted(g.nodes)
    dests = sorted(n for n, a in g.nodes(data=True) if a["role"] != "input" and not is_frozen(a))
    pairs = [(s, d) for s in sources for d in dests if not g.has_edge(s, d)]
    if not pairs:
        raise NotApplicable("add_recurrent_edge: every pair of nodes is already connected")
    src, dst = choose(rng, pairs)
    child = genome.copy()
    shape = (int(g.nodes[dst]["width"]), int(g.nodes[src]["width"]))
    innovation = tracker.edge(src, dst, recurrent=True)
    attrs = edge_attrs(innovation, np.zeros(shape, np.float32), config.gate_init, recurrent=True)
    child.graph.add_edge(src, dst, **attrs)
    record = {"src": int(src), "dst": int(dst), "innovation": innovation}
    return child, MutationRecord("add_recurrent_edge", record)
