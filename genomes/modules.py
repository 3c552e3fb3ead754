"""Trained modules: sub-networks that a genome can carry as grafted, frozen blocks.

A :class:`ModuleSpec` is a feed-forward sub-network cut out of a trained genome
(``harvest``), its gates folded into its weights, with one input (``in_width``
values: the genome's standardised features or a hidden node's activations) and
``outputs``: the activations, before any gate, of some of its nodes. The library
of ``hybrid.library`` stores specs on disk; :func:`insert_module` grafts one into a
genome as a zero-initialised residual branch, so the child computes exactly what
its parent computed.

Local ids: ``0`` is the module's input; its nodes are ``1 .. len(nodes)`` in
topological order.

A grafted module is no opaque block: :func:`insert_module` inlines it into the
genome as ordinary hidden nodes and edges, tagged ``frozen`` (nodes and edges) and
``module`` (nodes: ``{"name", "hash", "graft"}``), so every engine computes it as it
computes any node and only has to leave frozen genes alone. Its gates are
:data:`OPEN_LOGIT`, exactly 1, so its nodes compute the folded weights exactly.

The content hash (:meth:`ModuleSpec.content_hash`) covers the structure, every
array and the standardisation, and nothing else (not the name): a library entry
whose files changed no longer matches the hash recorded beside it or in genomes
that grafted it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from ._errors import GenomeError, NotApplicable
from .activations import ACTIVATIONS, activate
from .config import MutationConfig, MutationRecord
from .gates import gate_value
from .genome import Genome, edge_attrs, is_frozen, node_attrs
from .innovation import InnovationTracker
from .mutations._neurons import lecun_normal

__all__ = [
    "OPEN_LOGIT",
    "ModuleEdge",
    "ModuleNode",
    "ModuleSpec",
    "harvest",
    "insert_module",
    "module_forward",
]

#: The gate logit of a grafted module's nodes and edges: its deterministic value is
#: exactly 1.0 in float32 for both gate kinds (``sigmoid(20)`` rounds to 1; the hard
#: concrete gate clips at 1), and so is every training-time hard-concrete sample
#: (float32 logistic noise is above -17.3).
OPEN_LOGIT = 20.0


@dataclass(frozen=True)
class ModuleNode:
    """One node of a module: ``local`` in ``1 .. n``, its width, activation and bias."""

    local: int
    width: int
    activation: str
    bias: np.ndarray  # float32 [width]


@dataclass(frozen=True)
class ModuleEdge:
    """One edge of a module: ``src`` (0 = the module input) to ``dst``, gate folded in."""

    src: int
    dst: int
    weight: np.ndarray  # float32 [width(dst), width(src)]


@dataclass(frozen=True)
class ModuleSpec:
    """A trained feed-forward sub-network, ready to be grafted.

    Args:
        name: the library's name for it (not part of the hash).
        in_width: width of its input.
        nodes: its nodes in topological order, ``local`` = 1, 2, ...
        edges: its edges, sorted by ``(dst, src)``.
        outputs: local ids whose activations (concatenated in this order) are its output.
        mean: float64 ``[in_width]``, the feature means it was trained with (``x_std =
            (x_raw - mean) / scale``), or None when its input was a hidden node.
        scale: float64 ``[in_width]``, the matching scales, or None.

    Raises:
        GenomeError: when the parts do not fit together (see :meth:`check`).
    """

    name: str
    in_width: int
    nodes: tuple[ModuleNode, ...]
    edges: tuple[ModuleEdge, ...]
    outputs: tuple[int, ...]
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.check()

    # ------------------------------------------------------------------ queries
    def width(self, local: int) -> int:
        """Return the width of local node ``local`` (``0``: the input)."""
        return self.in_width if local == 0 else self.nodes[local - 1].width

    @property
    def out_width(self) -> int:
        """Width of the module's output (its output nodes' widths summed)."""
        return sum(self.width(o) for o in self.outputs)

    @property
    def n_parameters(self) -> int:
        """Weights and biases of the module."""
        return sum(e.weight.size for e in self.edges) + sum(n.width for n in self.nodes)

    # ------------------------------------------------------------------ checks
    def check(self) -> ModuleSpec:
        """Check that ids, widths, shapes and dtypes fit; return ``self``.

        Raises:
            GenomeError: naming the node or edge and what was expected.
        """
        where = f"module {self.name!r}"
        if not isinstance(self.in_width, int) or self.in_width < 1:
            raise GenomeError(f"{where}: in_width should be an int >= 1, got {self.in_width!r}")
        if not self.nodes:
            raise GenomeError(f"{where}: has no nodes")
        for k, n in enumerate(self.nodes, start=1):
            if n.local != k:
                raise GenomeError(f"{where}: node {k} has local id {n.local}; nodes should be 1..n in order")
            if n.activation not in ACTIVATIONS:
                raise GenomeError(f"{where}: node {k} activation {n.activation!r} is unknown")
            _check_array(n.bias, (n.width,), f"{where}: node {k} bias")
        seen: set[tuple[int, int]] = set()
        fed: set[int] = set()
        for e in self.edges:
            if not (0 <= e.src < e.dst <= len(self.nodes)):
                raise GenomeError(
                    f"{where}: edge {e.src}->{e.dst} should go from a lower to a higher local id "
                    f"in 0..{len(self.nodes)}"
                )
            if (e.src, e.dst) in seen:
                raise GenomeError(f"{where}: edge {e.src}->{e.dst} appears twice")
            seen.add((e.src, e.dst))
            fed.add(e.dst)
            _check_array(e.weight, (self.width(e.dst), self.width(e.src)), f"{where}: edge {e.src}->{e.dst} weight")
        for k in range(1, len(self.nodes) + 1):
            if k not in fed:
                raise GenomeError(f"{where}: node {k} has no incoming edge")
        if not self.outputs or any(not 1 <= o <= len(self.nodes) for o in self.outputs):
            raise GenomeError(f"{where}: outputs should be local ids in 1..{len(self.nodes)}, got {self.outputs}")
        if len(set(self.outputs)) != len(self.outputs):
            raise GenomeError(f"{where}: outputs {self.outputs} repeat a node")
        useful = set(self.outputs)
        for e in sorted(self.edges, key=lambda e: -e.src):  # descending src: dst is known first
            if e.dst in useful:
                useful.add(e.src)
        idle = [k for k in range(1, len(self.nodes) + 1) if k not in useful]
        if idle:
            raise GenomeError(f"{where}: node {idle[0]} reaches no output (outputs {self.outputs})")
        if (self.mean is None) != (self.scale is None):
            raise GenomeError(f"{where}: mean and scale should be given together")
        if self.mean is not None:
            for key, arr in (("mean", self.mean), ("scale", self.scale)):
                if not isinstance(arr, np.ndarray) or arr.dtype != np.float64 or arr.shape != (self.in_width,):
                    raise GenomeError(f"{where}: {key} should be a float64 array of shape ({self.in_width},)")
                if not np.all(np.isfinite(arr)):
                    raise GenomeError(f"{where}: {key} should be finite")
            if np.any(self.scale <= 0):
                raise GenomeError(f"{where}: scale should be > 0")
        return self

    # ------------------------------------------------------------------ hashing
    def structure(self) -> dict[str, Any]:
        """Return the JSON-ready structure (no arrays): what the hash and the library store."""
        return {
            "in_width": self.in_width,
            "nodes": [{"local": n.local, "width": n.width, "activation": n.activation} for n in self.nodes],
            "edges": [[e.src, e.dst] for e in self.edges],
            "outputs": list(self.outputs),
            "standardised": self.mean is not None,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Return every array by a stable name (``node.K.bias``, ``edge.S.D.weight``, ``input.mean``)."""
        out: dict[str, np.ndarray] = {}
        for n in self.nodes:
            out[f"node.{n.local}.bias"] = n.bias
        for e in self.edges:
            out[f"edge.{e.src}.{e.dst}.weight"] = e.weight
        if self.mean is not None:
            out["input.mean"] = self.mean
            out["input.scale"] = self.scale
        return out

    def content_hash(self) -> str:
        """Return the sha256 (hex) of the structure and the bytes of every array, name excluded."""
        h = hashlib.sha256()
        h.update(json.dumps(self.structure(), sort_keys=True, separators=(",", ":")).encode())
        for key, arr in sorted(self.arrays().items()):
            a = np.ascontiguousarray(arr)
            h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()


def _check_array(a: Any, shape: tuple[int, ...], where: str) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.shape != shape:
        got = f"{a.dtype} array of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise GenomeError(f"{where}: should be a float32 array of shape {shape}, got {got}")
    if not np.all(np.isfinite(a)):
        raise GenomeError(f"{where}: should be finite")


# ---------------------------------------------------------------------- function
def module_forward(spec: ModuleSpec, x: np.ndarray) -> np.ndarray:
    """Return the module's output for a batch of inputs, in float64 (the numpy reference).

    ``a_0 = x``; ``a_k = act_k(bias_k + sum over edges e = (i -> k) of W_e @ a_i)``
    (gates are folded into the weights); the output is the ``a`` of ``spec.outputs``
    concatenated in that order.

    Args:
        spec: the module.
        x: inputs of shape ``(B, in_width)``.

    Returns:
        ``(B, out_width)`` float64.

    Raises:
        GenomeError: if ``x`` is not of shape ``(B, in_width)``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != spec.in_width:
        raise GenomeError(f"module {spec.name!r}: inputs should have shape (B, {spec.in_width}), got {x.shape}")
    values = {0: x}
    into: dict[int, list[ModuleEdge]] = {}
    for e in spec.edges:
        into.setdefault(e.dst, []).append(e)
    for n in spec.nodes:
        pre = np.broadcast_to(n.bias.astype(np.float64), (x.shape[0], n.width)).copy()
        for e in into.get(n.local, ()):
            pre += values[e.src] @ e.weight.astype(np.float64).T
        values[n.local] = activate(n.activation, pre)
    return np.concatenate([values[o] for o in spec.outputs], axis=1)


# ---------------------------------------------------------------------- harvest
def harvest(
    genome: Genome,
    nodes: list[int] | tuple[int, ...] | None,
    gate: str,
    *,
    name: str,
    mean: np.ndarray | None = None,
    scale: np.ndarray | None = None,
) -> ModuleSpec:
    """Cut a trained sub-network out of ``genome`` as a :class:`ModuleSpec`.

    The module's input is the one node outside the set that feeds it (its
    activation ``a``, before that node's gates); its outputs are the set's nodes with
    an enabled edge leaving the set, and the output node if it is in the set, in
    topological order. The deterministic gates are folded into the weights: an
    edge ``i -> j`` becomes ``g(gate_e) * W_e @ diag(g(gate_i))`` (the output node
    has no gates); biases are kept; disabled edges are ignored. So
    ``module_forward(spec, a_source)`` is the activations of the output nodes.

    Args:
        genome: a valid genome (not modified).
        nodes: hidden (or output) node ids, or None for the whole genome (every
            hidden node and the output node; the input node is the source).
        gate: the gate kind whose deterministic values are folded in.
        name: the module's name.
        mean: the feature means the genome was trained with (float64
            ``[n_inputs]``); only when the source is the input node.
        scale: the matching feature scales.

    Returns:
        The module spec (checked).

    Raises:
        GenomeError: one line naming the nodes, when an id is unknown or the input
            node, the set holds an exit node or a skip-gated node
            (``genomes.adaptive``), the set is not connected by enabled feed-forward edges, it is fed
            by more than one outside node (or none), a recurrent edge touches it,
            a node is not reachable from the source, or ``mean``/``scale`` are given
            for a source that is not the input node.
    """
    g = genome.graph
    inp, out = genome.input_id, genome.output_id
    chosen = sorted(genome.hidden_nodes() + [out]) if nodes is None else sorted({int(n) for n in nodes})
    where = f"harvest: nodes {chosen}"
    if not chosen:
        raise GenomeError("harvest: nodes should name at least one hidden or output node, got none")
    bad = [n for n in chosen if n not in g or n == inp]
    if bad:
        raise GenomeError(f"{where}: node {bad[0]} is {'the input node' if bad[0] == inp else 'not in the genome'}")
    adaptive = [n for n in chosen if g.nodes[n]["role"] == "exit" or g.nodes[n].get("skip") is not None]
    if adaptive:
        n = adaptive[0]
        what = "an exit node" if g.nodes[n]["role"] == "exit" else "skip-gated (a module has no skip gates)"
        raise GenomeError(f"{where}: node {n} is {what}")
    members = set(chosen)
    source = _harvest_source(genome, members, where)
    order = [n for n in genome.topological_order() if n in members]
    local = {source: 0, **{n: k for k, n in enumerate(order, start=1)}}
    mod_nodes = tuple(
        ModuleNode(local[n], int(g.nodes[n]["width"]), g.nodes[n]["activation"], g.nodes[n]["bias"].copy())
        for n in order
    )
    edges = []
    for s, d in genome.enabled_edges():
        if d in members and (s in members or s == source):
            edges.append(_folded_edge(genome, s, d, local, gate))
    edges.sort(key=lambda e: (e.dst, e.src))
    leaving = {s for s, d in genome.gated_edges() if s in members and d not in members}
    outputs = tuple(local[n] for n in order if n in leaving or n == out)
    mean, scale = _standardisation(genome, source, mean, scale, where)
    return ModuleSpec(
        name=name,
        in_width=int(g.nodes[source]["width"]),
        nodes=mod_nodes,
        edges=tuple(edges),
        outputs=outputs,
        mean=mean,
        scale=scale,
    )


def _harvest_source(genome: Genome, members: set[int], where: str) -> int:
    """Check the set's shape (see :func:`harvest`) and return the one node that feeds it."""
    touching = sorted(
        (s, d) for s, d in genome.recurrent_edges() if s in members or d in members
    )
    if touching:
        raise GenomeError(f"{where}: recurrent edge {touching[0][0]}->{touching[0][1]} touches the set")
    active = genome.active_graph()
    inner = nx.DiGraph(active.subgraph(members))
    if not nx.is_weakly_connected(inner):
        parts = sorted(sorted(c) for c in nx.weakly_connected_components(inner))
        raise GenomeError(
            f"{where} are not a connected sub-graph: enabled edges split them into {parts}"
        )
    sources = sorted({s for s, d in active.edges if d in members and s not in members})
    if len(sources) != 1:
        raise GenomeError(
            f"{where}: enabled edges should enter the set from exactly one node (the module input), "
            f"found {sources or 'none'}"
        )
    source = sources[0]
    inner.add_edges_from((s, d) for s, d in active.edges if s == source and d in members)
    unreached = sorted(members - nx.descendants(inner, source))
    if unreached:
        raise GenomeError(f"{where}: node {unreached[0]} is not reachable from the module input {source}")
    return source


def _folded_edge(genome: Genome, s: int, d: int, local: dict[int, int], gate: str) -> ModuleEdge:
    """Return edge ``s -> d`` with its gate and its source's neuron gates folded in."""
    g = genome.graph
    e = g.edges[s, d]
    src = g.nodes[s]
    cols = np.ones(int(src["width"])) if src["role"] == "output" else gate_value(src["gate"], gate)
    w = float(gate_value(e["gate"], gate)) * e["weight"].astype(np.float64) * cols[None, :]
    return ModuleEdge(local[s], local[d], w.astype(np.float32))


def _standardisation(
    genome: Genome, source: int, mean: Any, scale: Any, where: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Return ``mean``/``scale`` as float64 arrays, refused unless the source is the input node."""
    if mean is None and scale is None:
        return None, None
    if source != genome.input_id:
        raise GenomeError(
            f"{where}: mean/scale describe the input features, but the module input is node {source}, "
            f"not the input node {genome.input_id}"
        )
    return _as_standardisation(mean, scale, genome.n_inputs, where)


def _as_standardisation(mean: Any, scale: Any, width: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    if mean is None or scale is None:
        raise GenomeError(f"{where}: mean and scale should be given together")
    out = []
    for key, v in (("mean", mean), ("scale", scale)):
        try:
            arr = np.array(v, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise GenomeError(f"{where}: {key} should be {width} finite numbers") from None
        if arr.shape != (width,) or not np.all(np.isfinite(arr)):
            raise GenomeError(f"{where}: {key} should be {width} finite numbers, got shape {arr.shape}")
        out.append(arr)
    if np.any(out[1] <= 0):
        raise GenomeError(f"{where}: scale should be > 0")
    return out[0], out[1]


# ---------------------------------------------------------------------- insert
def insert_module(
    genome: Genome,
    rng: np.random.Generator,
    tracker: InnovationTracker,
    config: MutationConfig,
    spec: ModuleSpec,
    *,
    frozen: bool = True,
    mean: np.ndarray | None = None,
    scale: np.ndarray | None = None,
) -> tuple[Genome, MutationRecord]:
    """Graft ``spec`` into ``genome`` as a zero-initialised residual branch (function kept).

    A host (the input node or a hidden node that is not frozen) and a consumer (not
    the input, not frozen, not the host or one of its ancestors) are drawn among the
    pairs still free. The module's nodes and edges are inlined as ordinary genes with
    gate logits :data:`OPEN_LOGIT` (exactly 1), frozen unless ``frozen=False``, each
    node tagged ``module = {"name", "hash", "graft"}`` (``graft``: the id of the
    module's first node). The module reads the host's value ``h`` directly when the
    widths agree, else through a trainable identity "stitch" node of width
    ``in_width`` (LeCun normal weights from the host, zero bias, ``config.gate_init``
    gates; it belongs to the graft but is never frozen). Each module output feeds the
    consumer by a trainable zero-weight edge (gate ``config.gate_init``), so the child
    computes what the parent did.

    When the host is the input node and the spec's and the target's standardisations
    are all known, the difference is folded into the first layer (``x_spec = (x *
    s_t + m_t - m_s) / s_s``: ``W' = W diag(s_t / s_s)``, ``b' = b + W (m_t - m_s) /
    s_s``, float64 then float32; exact, and bit-identical for equal standardisations).

    Node ids are run-wide: ``tracker.named_node("module <hash[:16]> <host>-><consumer>
    <local>")`` (and ``... stitch``), so the same graft in two genomes aligns in
    crossover; a pair whose ids the genome already holds is not free.

    Args:
        genome: a valid genome (not modified).
        rng: draws the pair and the stitch weights.
        tracker: node ids and edge innovations.
        config: ``gate_init`` of the trainable genes.
        spec: the module to graft.
        frozen: freeze the module's nodes and internal edges (the default).
        mean: the target's feature means (float64 ``[n_inputs]``) or None.
        scale: the target's feature scales, or None.

    Returns:
        The child and ``insert_module(module, hash, host, consumer, nodes, stitch,
        frozen, adapted)`` (``nodes``: the module's node ids by local id).

    Raises:
        NotApplicable: no free (host, consumer) pair, or the genome has exit nodes
            or skip gates (``genomes.adaptive``).
        GenomeError: ``mean``/``scale`` of the wrong shape, or not given together.
    """
    g = genome.graph
    where = f"insert_module {spec.name!r}"
    if any(a["role"] == "exit" or a.get("skip") is not None for _, a in g.nodes(data=True)):
        raise NotApplicable(f"{where}: grafted modules cannot be mixed with exit nodes or skip gates")
    if mean is not None or scale is not None:
        mean, scale = _as_standardisation(mean, scale, genome.n_inputs, where)
    digest = spec.content_hash()
    pairs = _graft_pairs(genome)
    for idx in rng.permutation(len(pairs)):
        host, consumer = pairs[int(idx)]
        ids = _graft_ids(tracker, digest, host, consumer, spec, int(g.nodes[host]["width"]))
        if not any(n in g for n in ids):
            break
    else:
        raise NotApplicable(f"{where}: no free (host, consumer) pair of nodes to graft between")
    *module_ids, stitch = ids if len(ids) > len(spec.nodes) else (*ids, None)
    adapted = host == genome.input_id and stitch is None and spec.mean is not None and mean is not None
    child = genome.copy()
    tag = {"name": spec.name, "hash": digest, "graft": int(module_ids[0])}
    source = host if stitch is None else stitch
    if stitch is not None:
        _add_stitch(child, rng, tracker, config, host, stitch, spec.in_width, tag)
    _add_module(child, tracker, spec, module_ids, source, frozen, tag, (mean, scale) if adapted else None)
    cg = child.graph
    w_c = int(cg.nodes[consumer]["width"])
    for o in spec.outputs:
        n = module_ids[o - 1]
        zeros = np.zeros((w_c, spec.width(o)), np.float32)
        cg.add_edge(n, consumer, **edge_attrs(tracker.edge(n, consumer), zeros, config.gate_init))
    record = MutationRecord(
        "insert_module",
        {
            "module": spec.name,
            "hash": digest,
            "host": int(host),
            "consumer": int(consumer),
            "nodes": [int(n) for n in module_ids],
            "stitch": None if stitch is None else int(stitch),
            "frozen": bool(frozen),
            "adapted": bool(adapted),
        },
    )
    return child.validate(), record


def _graft_pairs(genome: Genome) -> list[tuple[int, int]]:
    """Return the ``(host, consumer)`` pairs a graft may join, sorted."""
    g = genome.graph
    ff = genome.feedforward_graph()
    hosts = [genome.input_id] + [n for n in genome.hidden_nodes() if not is_frozen(g.nodes[n])]
    consumers = sorted(n for n, a in g.nodes(data=True) if a["role"] != "input" and not is_frozen(a))
    pairs = []
    for h in sorted(hosts):
        blocked = nx.ancestors(ff, h) | {h}
        pairs.extend((h, c) for c in consumers if c not in blocked)
    return pairs


def _graft_ids(
    tracker: InnovationTracker, digest: str, host: int, consumer: int, spec: ModuleSpec, host_width: int
) -> list[int]:
    """Return the run-wide ids of a graft's nodes (local order), then its stitch if it needs one."""
    stem = f"module {digest[:16]} {host}->{consumer}"
    ids = [tracker.named_node(f"{stem} {n.local}") for n in spec.nodes]
    if host_width != spec.in_width:
        ids.append(tracker.named_node(f"{stem} stitch"))
    return ids


def _add_stitch(
    child: Genome,
    rng: np.random.Generator,
    tracker: InnovationTracker,
    config: MutationConfig,
    host: int,
    stitch: int,
    width: int,
    tag: dict[str, Any],
) -> None:
    """Add the trainable identity node that maps the host's width to the module's input."""
    cg = child.graph
    cg.add_node(stitch, **node_attrs("hidden", width, "identity", gate_init=config.gate_init, module=tag))
    w = lecun_normal(rng, (width, int(cg.nodes[host]["width"])))
    cg.add_edge(host, stitch, **edge_attrs(tracker.edge(host, stitch), w, config.gate_init))


def _add_module(
    child: Genome,
    tracker: InnovationTracker,
    spec: ModuleSpec,
    ids: list[int],
    source: int,
    frozen: bool,
    tag: dict[str, Any],
    adapt: tuple[np.ndarray, np.ndarray] | None,
) -> None:
    """Inline the module's nodes and edges (``adapt``: the target's mean and scale to fold)."""
    cg = child.graph
    biases = {n.local: n.bias for n in spec.nodes}
    weights = {(e.src, e.dst): e.weight for e in spec.edges}
    if adapt is not None:
        biases, weights = _adapt_first_layer(spec, biases, weights, *adapt)
    for n in spec.nodes:
        gates = np.full(n.width, OPEN_LOGIT, np.float32)
        attrs = node_attrs("hidden", n.width, n.activation, biases[n.local].copy(), gates, frozen=frozen, module=tag)
        cg.add_node(ids[n.local - 1], **attrs)
    node_id = {0: source, **{n.local: ids[n.local - 1] for n in spec.nodes}}
    for e in spec.edges:
        s, d = node_id[e.src], node_id[e.dst]
        w = weights[e.src, e.dst].copy()
        cg.add_edge(s, d, **edge_attrs(tracker.edge(s, d), w, OPEN_LOGIT, frozen=frozen))


def _adapt_first_layer(
    spec: ModuleSpec,
    biases: dict[int, np.ndarray],
    weights: dict[tuple[int, int], np.ndarray],
    mean: np.ndarray,
    scale: np.ndarray,
) -> tuple[dict[int, np.ndarray], dict[tuple[int, int], np.ndarray]]:
    """Fold the change of standardisation into the edges leaving the module input."""
    ratio = scale / spec.scale
    shift = (mean - spec.mean) / spec.scale
    biases, weights = dict(biases), dict(weights)
    for (s, d), w in list(weights.items()):
        if s != 0:
            continue
        w64 = w.astype(np.float64)
        weights[s, d] = (w64 * ratio[None, :]).astype(np.float32)
        biases[d] = (biases[d].astype(np.float64) + w64 @ shift).astype(np.float32)
    return biases, weights
