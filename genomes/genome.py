"""The genome: a graph of neuron groups (nodes) joined by gated weight matrices.

See ``docs/design.md`` ("The genome and the function it computes"). Node ids and
edge innovation numbers come from an :class:`~genomes.innovation.InnovationTracker`.
Every node carries ``bias`` and ``gate`` arrays of its width; the input node's bias
and the output node's gate are unused by the function and must stay zero (``validate`` checks), which keeps the
schema uniform for the engines that pack genomes into tensors.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from typing import Any

import networkx as nx
import numpy as np

from ._errors import GenomeError
from .activations import ACTIVATIONS
from .innovation import InnovationTracker

__all__ = ["ROLES", "Genome", "branch_name"]

ROLES = ("input", "hidden", "output", "exit")

#: Gate logit given to new gates: open (sigmoid 0.95; hard-concrete exactly 1 at eval).
DEFAULT_GATE_INIT = 3.0


def _f32(a: Any, shape: tuple[int, ...]) -> np.ndarray:
    return np.array(a, dtype=np.float32).reshape(shape)


def branch_name(k: int, width: int) -> str:
    """The tracker name of :meth:`Genome.minimal`'s branch ``k`` (``width`` wide): one node id in every member."""
    return f"minimal_branch_{k}_{width}"


class Genome:
    """A feed-forward network genome over a ``networkx.DiGraph``.

    Node attributes: ``role`` ("input" | "hidden" | "output"), ``width`` (int >= 1),
    ``activation`` (a name in ``genomes.ACTIVATIONS``), ``bias`` (float32 [width]),
    ``gate`` (float32 [width], logits).
    Edge ``i -> j`` attributes: ``innovation`` (int), ``enabled`` (bool), ``weight``
    (float32 [width_j, width_i]), ``gate`` (float32 scalar logit), ``recurrent`` (bool).

    Grafted modules (``genomes.modules``): nodes also carry ``frozen`` (bool) and
    ``module`` (None, or ``{"name", "hash", "graft"}`` naming the trained module and
    the graft the node belongs to), edges ``frozen`` (bool). A frozen gene is never
    changed by training or by an operator. Both default to "absent" (False / None):
    read them with ``attrs.get(...)`` (see :func:`is_frozen`, :func:`module_of`) so
    genomes built before they existed still work.

    Sparse edges (``mutation.sparsify``): a feed-forward edge may carry ``mask`` (bool
    [width_j, width_i]; absent or None: dense), its connections. ``weight`` is exactly
    0 where ``mask`` is False (``validate`` checks), so the function is the one of a
    dense edge holding those zeros and every engine and export computes it unchanged;
    an absent connection counts in neither parameters nor FLOPs and training never
    moves it (its gradient is masked). Neurons added to a sparse edge's ends are
    connected (new mask entries True). See :func:`is_sparse`, :func:`edge_entries`.

    Budget orders (``genomes.budgets``): a hidden node may carry ``order`` (an int
    array, a permutation of ``range(width)``, most important neuron first; absent
    or None: the identity) and ``drop`` (an int >= 0, unique among the nodes, the
    node's place when whole nodes are dropped; absent or None: never dropped whole).
    They are stored only when set (``node_attrs`` leaves out an identity order and a
    None drop), and ``==`` / ``structure_key`` read absent and identity alike.

    A ``Genome`` is treated as a value: operators return new genomes and never edit
    their arguments. ``meta`` is a free JSON-ready dict carried through
    serialisation (e.g. the id a lineage store gave the genome); it plays no part in
    the function, ``==`` or ``validate``.
    """

    __slots__ = ("graph", "meta")

    def __init__(self, graph: nx.DiGraph, meta: dict[str, Any] | None = None) -> None:
        self.graph = graph
        self.meta = dict(meta or {})

    # ------------------------------------------------------------------ building
    @classmethod
    def minimal(
        cls,
        n_inputs: int,
        n_outputs: int,
        rng: np.random.Generator,
        tracker: InnovationTracker,
        hidden: Sequence[int] = (),
        activation: str = "relu",
        gate_init: float = DEFAULT_GATE_INIT,
        branches: Sequence[int] = (),
    ) -> Genome:
        """Return the smallest genome: input wired to output, through a chain, or through branches.

        Args:
            n_inputs: number of features (the input node's width).
            n_outputs: number of targets/classes (the output node's width).
            rng: source of the initial weights (LeCun normal, std 1/sqrt(fan_in)).
            tracker: hands out the ids (input 0, output 1, hidden by name).
            hidden: widths of hidden nodes chained input -> h1 -> ... -> output.
            activation: activation of the hidden nodes.
            gate_init: initial logit of every gate.
            branches: widths of hidden nodes side by side, each input -> b_k -> output
                (a cheap and a costly path, say); their output blocks are scaled by
                1/sqrt(number of branches), so the output's scale is a chain's.
                Exclusive with ``hidden``.

        Raises:
            GenomeError: for a width below 1, both ``hidden`` and ``branches``, or an
                unknown activation.
        """
        if n_inputs < 1 or n_outputs < 1 or any(w < 1 for w in (*hidden, *branches)):
            raise GenomeError(
                f"widths should be >= 1, got n_inputs={n_inputs}, n_outputs={n_outputs}, "
                f"hidden={list(hidden)}" + (f", branches={list(branches)}" if branches else "")
            )
        if hidden and branches:
            raise GenomeError(
                f"hidden (a chain) or branches (side by side), not both: got hidden={list(hidden)}, "
                f"branches={list(branches)}"
            )
        if activation not in ACTIVATIONS:
            raise GenomeError(
                f"activation should be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        g = nx.DiGraph()
        g.add_node(
            tracker.INPUT, **node_attrs("input", n_inputs, "identity", gate_init=gate_init)
        )
        chain = [tracker.INPUT]
        for k, w in enumerate(hidden):
            nid = tracker.named_node(f"minimal_hidden_{k}_{w}")
            g.add_node(nid, **node_attrs("hidden", w, activation, gate_init=gate_init))
            chain.append(nid)
        g.add_node(tracker.OUTPUT, **node_attrs("output", n_outputs, "identity"))
        chain.append(tracker.OUTPUT)
        # a chain is one path; branches are paths input -> b_k -> output side by side
        paths = [chain] if not branches else []
        for k, w in enumerate(branches):
            nid = tracker.named_node(branch_name(k, w))
            g.add_node(nid, **node_attrs("hidden", w, activation, gate_init=gate_init))
            paths.append([tracker.INPUT, nid, tracker.OUTPUT])
        for path in paths:
            for src, dst in zip(path[:-1], path[1:], strict=True):
                w_src, w_dst = g.nodes[src]["width"], g.nodes[dst]["width"]
                weight = rng.normal(0.0, 1.0 / np.sqrt(w_src), size=(w_dst, w_src))
                if branches and dst == tracker.OUTPUT:
                    weight = weight / np.sqrt(len(branches))
                g.add_edge(src, dst, **edge_attrs(tracker.edge(src, dst), weight, gate_init))
        return cls(g)

    def copy(self) -> Genome:
        """Return a deep copy (arrays and module dicts included)."""
        g = nx.DiGraph()
        for n, a in self.graph.nodes(data=True):
            g.add_node(n, **{k: _copy_value(v) for k, v in a.items()})
        for s, d, a in self.graph.edges(data=True):
            g.add_edge(s, d, **{k: _copy_value(v) for k, v in a.items()})
        return Genome(g, meta=self.meta)

    # ------------------------------------------------------------------ queries
    @property
    def input_id(self) -> int:
        """Id of the input node."""
        return self._role_node("input")

    @property
    def output_id(self) -> int:
        """Id of the output node."""
        return self._role_node("output")

    @property
    def n_inputs(self) -> int:
        """Width of the input node (number of features)."""
        return int(self.graph.nodes[self.input_id]["width"])

    @property
    def n_outputs(self) -> int:
        """Width of the output node (number of targets or classes)."""
        return int(self.graph.nodes[self.output_id]["width"])

    def _role_node(self, role: str) -> int:
        found = [n for n, r in self.graph.nodes(data="role") if r == role]
        if len(found) != 1:
            raise GenomeError(f"genome should have exactly one {role} node, found {len(found)}")
        return found[0]

    def hidden_nodes(self) -> list[int]:
        """Return the hidden node ids, sorted."""
        return sorted(n for n, r in self.graph.nodes(data="role") if r == "hidden")

    def node(self, n: int) -> dict[str, Any]:
        """Return the attribute dict of node ``n`` (a live view: do not edit)."""
        return self.graph.nodes[n]

    def edge(self, src: int, dst: int) -> dict[str, Any]:
        """Return the attribute dict of edge ``src -> dst`` (a live view: do not edit)."""
        return self.graph.edges[src, dst]

    def feedforward_graph(self) -> nx.DiGraph:
        """Return a view with the non-recurrent edges only (enabled or not)."""
        g = self.graph
        return nx.subgraph_view(g, filter_edge=lambda u, v: not g.edges[u, v]["recurrent"])

    def active_graph(self) -> nx.DiGraph:
        """Return a view with the enabled non-recurrent edges only."""
        g = self.graph
        return nx.subgraph_view(
            g, filter_edge=lambda u, v: g.edges[u, v]["enabled"] and not g.edges[u, v]["recurrent"]
        )

    def enabled_edges(self) -> list[tuple[int, int]]:
        """Return the enabled non-recurrent edges, sorted by innovation number."""
        return sorted(self.active_graph().edges, key=lambda e: self.graph.edges[e]["innovation"])

    def recurrent_edges(self) -> list[tuple[int, int]]:
        """Return the enabled recurrent edges, sorted by innovation number."""
        g = self.graph
        edges = [(s, d) for s, d, a in g.edges(data=True) if a["enabled"] and a["recurrent"]]
        return sorted(edges, key=lambda e: g.edges[e]["innovation"])

    def gated_edges(self) -> list[tuple[int, int]]:
        """Return every enabled edge, feed-forward and recurrent, sorted by innovation number.

        This is the order of the edge gates in the gate layout.
        """
        g = self.graph
        return sorted(
            (e for e in g.edges if g.edges[e]["enabled"]), key=lambda e: g.edges[e]["innovation"]
        )

    @property
    def is_recurrent(self) -> bool:
        """Whether any enabled edge is recurrent (the function then has a state)."""
        return any(a["enabled"] and a["recurrent"] for _, _, a in self.graph.edges(data=True))

    def state_layout(self) -> tuple[tuple[int, int], ...]:
        """Return ``(node, width)`` of every node whose ``h`` the next time step reads.

        The sources of enabled recurrent edges, sorted by node id; the state vector
        is their ``h`` values concatenated in this order (empty when feed-forward).
        """
        g = self.graph
        sources = sorted({s for s, _ in self.recurrent_edges()})
        return tuple((n, int(g.nodes[n]["width"])) for n in sources)

    @property
    def state_size(self) -> int:
        """Width of the state vector (0 for a feed-forward genome)."""
        return sum(w for _, w in self.state_layout())

    def topological_order(self) -> list[int]:
        """Return node ids in a deterministic topological order (ties by id).

        The order ``networkx.lexicographical_topological_sort`` gives on
        :meth:`feedforward_graph` (the tests hold it to that), read off the adjacency
        in one pass: through the filtered view, a genome of five nodes took 210 us,
        and packing, pruning and scoring ask for it for every member every generation.

        Raises:
            networkx.NetworkXUnfeasible: the non-recurrent edges form a cycle.
        """
        succ = {
            n: [d for d, a in nbrs.items() if not a["recurrent"]]
            for n, nbrs in self.graph.adj.items()
        }
        indegree = dict.fromkeys(succ, 0)
        for targets in succ.values():
            for d in targets:
                indegree[d] += 1
        ready = [n for n, k in indegree.items() if k == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            n = heapq.heappop(ready)
            order.append(n)
            for d in succ[n]:
                indegree[d] -= 1
                if indegree[d] == 0:
                    heapq.heappush(ready, d)
        if len(order) < len(succ):
            raise nx.NetworkXUnfeasible("Graph contains a cycle or graph changed during iteration")
        return order

    def active_predecessors(self) -> dict[int, list[int]]:
        """Return each node's sources over enabled non-recurrent edges (``active_graph``'s).

        One pass over the edges, for callers that ask every node: each
        ``active_graph().predecessors(n)`` filters the edges through a Python lambda.
        """
        preds: dict[int, list[int]] = {n: [] for n in self.graph}
        for s, d, a in self.graph.edges(data=True):
            if a["enabled"] and not a["recurrent"]:
                preds[d].append(s)
        return preds

    def depths(
        self,
        *,
        order: Sequence[int] | None = None,
        preds: dict[int, list[int]] | None = None,
    ) -> dict[int, int]:
        """Return each node's depth: the longest enabled path from any source to it.

        Args:
            order, preds: :meth:`topological_order` and :meth:`active_predecessors`,
                if the caller has them already (packing a population needs both).
        """
        preds = self.active_predecessors() if preds is None else preds
        depth: dict[int, int] = {}
        for n in self.topological_order() if order is None else order:
            depth[n] = 1 + max(depth[p] for p in preds[n]) if preds[n] else 0
        return depth

    def n_parameters(self) -> int:
        """Return the number of weights and biases (every node and enabled edge), skip gates included."""
        g = self.graph
        total = sum(edge_entries(a) for _, _, a in g.edges(data=True) if a["enabled"])
        total += sum(int(a["width"]) for _, a in g.nodes(data=True) if a["role"] != "input")
        total += sum(1 for _, a in g.nodes(data=True) if a.get("skip") is not None)
        total += sum(int(a["skip"].size) for _, _, a in g.edges(data=True) if a["enabled"] and a.get("skip") is not None)
        return total

    def frozen_nodes(self) -> list[int]:
        """Return the ids of the frozen nodes (grafted module nodes), sorted."""
        return sorted(n for n, a in self.graph.nodes(data=True) if is_frozen(a))

    def frozen_edges(self) -> list[tuple[int, int]]:
        """Return the frozen edges (inside grafted modules), sorted."""
        return sorted((s, d) for s, d, a in self.graph.edges(data=True) if is_frozen(a))

    def feeds_frozen(self, n: int) -> bool:
        """Return whether node ``n`` has an edge into a frozen node (a graft's host or stitch).

        Such a node's width is fixed: adding or removing its neurons would change the
        columns of a frozen weight matrix.
        """
        g = self.graph
        return any(is_frozen(g.nodes[d]) for d in g.successors(n))

    def grafts(self) -> dict[int, list[int]]:
        """Return ``{graft: [node ids]}``: the nodes of each grafted module, by graft id."""
        out: dict[int, list[int]] = {}
        for n, a in sorted(self.graph.nodes(data=True)):
            m = module_of(a)
            if m is not None:
                out.setdefault(int(m["graft"]), []).append(n)
        return out

    def structure_key(self) -> tuple:
        """Return a hashable summary of the structure (ids, widths, activations, edges, grafts).

        Node entries end with the budget order (None when absent or the identity) and
        the drop rank (None when absent), then, on adaptive genes only
        (``genomes.adaptive``), an exit's threshold or ``"skip"`` on a skip-gated node
        (so a genome without them has the key it always had). A sparse edge's entry
        ends with its mask's bytes (absent otherwise, for the same reason).
        """
        nodes = tuple(
            (
                n,
                a["role"],
                a["width"],
                a["activation"],
                is_frozen(a),
                _module_key(module_of(a)),
                order_key(a),
                drop_key(a),
                *_adaptive_key(a),
            )
            for n, a in sorted(self.graph.nodes(data=True))
        )
        edges = tuple(
            (s, d, a["innovation"], a["enabled"], a["recurrent"], is_frozen(a), *_mask_key(a))
            for s, d, a in sorted(self.graph.edges(data=True))
        )
        return nodes, edges

    # ---------------------------------------------------------------- validity
    def validate(self) -> Genome:
        """Check every rule of the genome contract; return ``self`` if all hold.

        Raises:
            GenomeError: naming the node or edge and the rule it breaks.
        """
        g = self.graph
        if not isinstance(g, nx.DiGraph) or g.is_multigraph():
            raise GenomeError("genome graph should be a networkx.DiGraph")
        for role in ("input", "output"):
            self._role_node(role)
        ranks: dict[int, Any] = {}
        for n, a in g.nodes(data=True):
            _check_node(n, a)
            r = a.get("drop")
            if r is not None:
                if int(r) in ranks:
                    raise GenomeError(f"node {n}: drop rank {int(r)} is also used by node {ranks[int(r)]}")
                ranks[int(r)] = n
        innovations: dict[int, tuple[int, int]] = {}
        for s, d, a in g.edges(data=True):
            _check_edge(s, d, a, g.nodes[s], g.nodes[d])
            if a["innovation"] in innovations:
                raise GenomeError(
                    f"edge {s}->{d}: innovation {a['innovation']} is also used by edge "
                    f"{innovations[a['innovation']][0]}->{innovations[a['innovation']][1]}"
                )
            innovations[a["innovation"]] = (s, d)
        ff = self.feedforward_graph()
        if not nx.is_directed_acyclic_graph(ff):
            cycle = nx.find_cycle(ff)
            raise GenomeError(f"non-recurrent edges should form a DAG, found cycle {cycle}")
        _check_adaptive_genome(self)
        problem = self.path_problem()
        if problem is not None:
            raise GenomeError(problem)
        return self

    def path_problem(self) -> str | None:
        """Return what breaks the path rule, or None: the output reachable from the input, and
        every hidden node on a path from input to output, by enabled non-recurrent edges."""
        inp, out = self.input_id, self.output_id
        active = self.active_graph()
        reach = nx.descendants(active, inp)
        if out not in reach:
            return f"output node {out} should be reachable from input node {inp} by enabled edges"
        feeds = nx.ancestors(active, out)
        for n in self.hidden_nodes():
            if n not in reach or n not in feeds:
                return f"hidden node {n} should lie on an enabled path from input {inp} to output {out}"
        return None

    # ------------------------------------------------------------ comparison
    def __eq__(self, other: object) -> bool:
        """Return True if structure and every array are bit-identical (``meta`` ignored)."""
        if not isinstance(other, Genome) or self.structure_key() != other.structure_key():
            return False
        for n, a in self.graph.nodes(data=True):
            b = other.graph.nodes[n]
            if not (_same_bits(a["bias"], b["bias"]) and _same_bits(a["gate"], b["gate"])):
                return False
            if not _same_optional(a.get("skip"), b.get("skip")):
                return False
        for s, d, a in self.graph.edges(data=True):
            b = other.graph.edges[s, d]
            if not (_same_bits(a["weight"], b["weight"]) and _same_bits(a["gate"], b["gate"])):
                return False
            if not _same_optional(a.get("skip"), b.get("skip")):
                return False
        return True  # masks are part of structure_key

    __hash__ = None  # type: ignore[assignment]  # mutable graph inside: not hashable

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        hidden = self.hidden_nodes()
        neurons = sum(self.graph.nodes[n]["width"] for n in hidden)
        n_edges = self.graph.number_of_edges()
        disabled = sum(1 for *_, e in self.graph.edges(data="enabled") if not e)
        grafts = len(self.grafts())
        extra = f", modules={grafts}" if grafts else ""
        return (
            f"Genome(in={self.n_inputs}, out={self.n_outputs}, hidden={len(hidden)} nodes/"
            f"{neurons} neurons, edges={n_edges} ({disabled} disabled), params={self.n_parameters()}"
            f"{extra})"
        )

    def __str__(self) -> str:
        lines = [repr(self)]
        for n in self.topological_order():
            a = self.graph.nodes[n]
            ins = []
            for s in sorted(self.graph.predecessors(n)):
                e = self.graph.edges[s, n]
                mark = "" if e["enabled"] else " off"
                mark += " rec" if e["recurrent"] else ""
                ins.append(f"{s}{mark}")
            src = f" <- {', '.join(ins)}" if ins else ""
            m = module_of(a)
            if m is not None:
                src += f"  [module {m['name']} graft {m['graft']}{' frozen' if is_frozen(a) else ''}]"
            lines.append(f"  {n:>4} {a['role']:<6} x{a['width']:<3} {a['activation']:<8}{src}")
        return "\n".join(lines)

    def iter_arrays(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(label, array)`` for every float array, labels like ``node 3 bias``."""
        for n, a in sorted(self.graph.nodes(data=True)):
            yield f"node {n} bias", a["bias"]
            yield f"node {n} gate", a["gate"]
            if a.get("skip") is not None:
                yield f"node {n} skip", a["skip"]
        for s, d, a in sorted(self.graph.edges(data=True)):
            yield f"edge {s}->{d} weight", a["weight"]
            yield f"edge {s}->{d} gate", a["gate"]
            if a.get("skip") is not None:
                yield f"edge {s}->{d} skip", a["skip"]


# ---------------------------------------------------------------------- helpers
def node_attrs(
    role: str,
    width: int,
    activation: str,
    bias: Any = None,
    gate: Any = None,
    gate_init: float = DEFAULT_GATE_INIT,
    frozen: bool = False,
    module: dict[str, Any] | None = None,
    order: Any = None,
    drop: int | None = None,
    threshold: float = 1.0,
) -> dict[str, Any]:
    """Return a node attribute dict with float32 arrays (zeros / ``gate_init`` by default).

    An ``exit`` node (``genomes.adaptive``) gets zero gates like the output node and
    holds ``threshold``.

    ``frozen`` and ``module`` mark a grafted module's node (see ``genomes.modules``);
    ``module`` is copied. ``order`` (a permutation of ``range(width)``) and ``drop``
    (an int) are the budget attributes (``genomes.budgets``): the dict holds
    ``order`` only when it is not the identity (as an int64 array) and ``drop`` only
    when it is not None, so a node without them is what it always was.
    """
    width = int(width)
    if bias is None or role == "input":
        bias = np.zeros(width, np.float32)
    if gate is None:
        gate = np.full(width, 0.0 if role == "output" else gate_init, np.float32)
    if role in ("output", "exit"):
        gate = np.zeros(width, np.float32)
    out = {
        "role": role,
        "width": width,
        "activation": activation,
        "bias": _f32(bias, (width,)),
        "gate": _f32(gate, (width,)),
        "frozen": bool(frozen),
        "module": None if module is None else dict(module),
    }
    set_order(out, order)
    if drop is not None:
        out["drop"] = int(drop)
    if role == "exit":
        out["threshold"] = float(threshold)
    return out


def edge_attrs(
    innovation: int,
    weight: Any,
    gate: float = DEFAULT_GATE_INIT,
    enabled: bool = True,
    recurrent: bool = False,
    frozen: bool = False,
) -> dict[str, Any]:
    """Return an edge attribute dict with a float32 weight matrix and gate (``frozen``: in a module)."""
    w = np.asarray(weight, dtype=np.float32)
    return {
        "innovation": int(innovation),
        "enabled": bool(enabled),
        "weight": w.copy() if w is weight else w,
        "gate": np.float32(gate),
        "recurrent": bool(recurrent),
        "frozen": bool(frozen),
    }


def is_frozen(attrs: dict[str, Any]) -> bool:
    """Return whether a node or edge attribute dict is frozen (False when the key is absent)."""
    return bool(attrs.get("frozen", False))


def is_sparse(attrs: dict[str, Any]) -> bool:
    """Return whether an edge attribute dict has a connection mask (absent or None: dense)."""
    return attrs.get("mask") is not None


def edge_entries(attrs: dict[str, Any]) -> int:
    """Return the connections of an edge: its weight entries, the mask's on a sparse edge."""
    m = attrs.get("mask")
    return int(attrs["weight"].size if m is None else np.count_nonzero(m))


def _mask_key(a: dict[str, Any]) -> tuple:
    """The sparse part of an edge's structure key: empty unless it has a mask."""
    m = a.get("mask")
    return () if m is None else (np.packbits(m).tobytes(),)


def module_of(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """Return a node's ``module`` dict (``{"name", "hash", "graft"}``) or None when absent."""
    return attrs.get("module")


def set_order(attrs: dict[str, Any], order: Any) -> None:
    """Store ``order`` in a node attribute dict in place: an int64 array, or no key for the identity.

    ``order`` None means the identity. The order is not checked here (``validate`` does).
    """
    if order is None:
        attrs.pop("order", None)
        return
    arr = np.array(order, dtype=np.int64).reshape(-1)
    if arr.shape == (int(attrs["width"]),) and np.array_equal(arr, np.arange(len(arr))):
        attrs.pop("order", None)
    else:
        attrs["order"] = arr


def order_key(attrs: dict[str, Any]) -> tuple[int, ...] | None:
    """Return a node's ``order`` as a tuple, or None when absent or the identity."""
    order = attrs.get("order")
    if order is None:
        return None
    t = tuple(int(i) for i in np.asarray(order).reshape(-1))
    return None if t == tuple(range(int(attrs["width"]))) else t


def drop_key(attrs: dict[str, Any]) -> int | None:
    """Return a node's ``drop`` rank as an int (None when absent)."""
    r = attrs.get("drop")
    return None if r is None else int(r)


def _adaptive_key(a: dict[str, Any]) -> tuple:
    """The adaptive part of a node's structure key: empty unless it is an exit or skip-gated."""
    if a["role"] == "exit":
        return (float(a.get("threshold", 1.0)),)
    return ("skip",) if a.get("skip") is not None else ()


def _same_optional(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return _same_bits(a, b)


def _module_key(m: dict[str, Any] | None) -> tuple | None:
    return None if m is None else (m.get("name"), m.get("hash"), m.get("graft"))


def _copy_value(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.copy()
    return dict(v) if isinstance(v, dict) else v


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _check_node(n: Any, a: dict[str, Any]) -> None:
    where = f"node {n}"
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise GenomeError(f"{where}: id should be a non-negative int")
    for key in ("role", "width", "activation", "bias", "gate"):
        if key not in a:
            raise GenomeError(f"{where}: missing attribute {key!r}")
    if a["role"] not in ROLES:
        raise GenomeError(f"{where}: role should be one of {ROLES}, got {a['role']!r}")
    w = a["width"]
    if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1:
        raise GenomeError(f"{where}: width should be an int >= 1, got {w!r}")
    if a["activation"] not in ACTIVATIONS:
        raise GenomeError(
            f"{where}: activation should be one of {sorted(ACTIVATIONS)}, got {a['activation']!r}"
        )
    if a["role"] != "hidden" and a["activation"] != "identity":
        raise GenomeError(f"{where}: {a['role']} node activation should be 'identity', got {a['activation']!r}")
    for key in ("bias", "gate"):
        arr = a[key]
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or arr.shape != (w,):
            raise GenomeError(f"{where}: {key} should be a float32 array of shape ({w},), got {_describe(arr)}")
    if a["role"] == "input" and np.any(a["bias"] != 0):
        raise GenomeError(f"{where}: input node bias is unused and should be zero")
    if a["role"] in ("output", "exit") and np.any(a["gate"] != 0):
        raise GenomeError(f"{where}: {a['role']} node gate is unused and should be zero")
    _check_graft_attrs(where, a)
    _check_budget_attrs(where, a)
    _check_adaptive_attrs(where, a)


def _check_adaptive_genome(genome: Genome) -> None:
    """Check the genome-wide rules of exits and skip gates (``genomes.adaptive``)."""
    g = genome.graph
    exits = [n for n, r in g.nodes(data="role") if r == "exit"]
    skips = [n for n, a in g.nodes(data=True) if a.get("skip") is not None]
    if not exits and not skips:
        return
    for n in exits:
        if g.in_degree(n) != 1:
            raise GenomeError(f"exit node {n} should have exactly one incoming edge, has {g.in_degree(n)}")
        if g.nodes[n]["width"] != genome.n_outputs:
            raise GenomeError(f"exit node {n}: width should be n_outputs ({genome.n_outputs}), got {g.nodes[n]['width']}")
    if exits and genome.n_outputs < 2:
        raise GenomeError(f"exit nodes need a classifier (n_outputs >= 2), got n_outputs = {genome.n_outputs}")
    if genome.is_recurrent:
        raise GenomeError("exit nodes and skip gates are for feed-forward genomes; this one has recurrent edges")
    for n, a in g.nodes(data=True):
        if a.get("order") is not None or a.get("drop") is not None:
            raise GenomeError(f"node {n}: budget attributes cannot be mixed with exit nodes or skip gates")
        if is_frozen(a) or module_of(a) is not None:
            raise GenomeError(f"node {n}: grafted modules cannot be mixed with exit nodes or skip gates")


def _check_adaptive_attrs(where: str, a: dict[str, Any]) -> None:
    """Check an exit's ``threshold`` and a node's ``skip`` (``genomes.adaptive``)."""
    if a["role"] == "exit":
        t = a.get("threshold")
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, float, np.integer, np.floating)):
            raise GenomeError(f"{where}: exit threshold should be a number in (0, 1], got {t!r:.40}")
        if not 0.0 < float(t) <= 1.0:
            raise GenomeError(f"{where}: exit threshold should be in (0, 1], got {float(t)!r}")
    elif "threshold" in a:
        raise GenomeError(f"{where}: threshold is for exit nodes only, got one on the {a['role']} node")
    skip = a.get("skip")
    if skip is not None:
        if a["role"] != "hidden":
            raise GenomeError(f"{where}: a skip gate is for hidden nodes only, got one on the {a['role']} node")
        if not isinstance(skip, np.ndarray) or skip.dtype != np.float32 or skip.shape != (1,):
            raise GenomeError(f"{where}: skip should be a float32 array of shape (1,), got {_describe(skip)}")


def _check_budget_attrs(where: str, a: dict[str, Any]) -> None:
    """Check a node's ``order`` and ``drop`` attributes (absent or None: identity / never dropped)."""
    order, drop = a.get("order"), a.get("drop")
    if order is not None:
        if a["role"] != "hidden":
            raise GenomeError(f"{where}: order is for hidden nodes only, got one on the {a['role']} node")
        w = int(a["width"])
        ok = isinstance(order, np.ndarray) and order.dtype.kind in "iu"
        ok = ok or (
            isinstance(order, (list, tuple))
            and all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in order)
        )
        if not ok:
            raise GenomeError(f"{where}: order should be an int array, got {_describe(order)}")
        arr = np.asarray(order)
        if arr.shape != (w,) or sorted(arr.tolist()) != list(range(w)):
            raise GenomeError(
                f"{where}: order should be a permutation of range({w}), got {arr.tolist()!r:.80}"
            )
    if drop is not None:
        if a["role"] != "hidden":
            raise GenomeError(f"{where}: drop is for hidden nodes only, got one on the {a['role']} node")
        if isinstance(drop, (bool, np.bool_)) or not isinstance(drop, (int, np.integer)) or drop < 0:
            raise GenomeError(f"{where}: drop should be None or an int >= 0, got {drop!r:.40}")


def _check_graft_attrs(where: str, a: dict[str, Any]) -> None:
    """Check a node's ``frozen`` and ``module`` attributes (absent means False / None)."""
    frozen = a.get("frozen", False)
    if not isinstance(frozen, (bool, np.bool_)):
        raise GenomeError(f"{where}: frozen should be a bool, got {frozen!r:.40}")
    m = a.get("module")
    if m is not None:
        if not isinstance(m, dict) or set(m) != {"name", "hash", "graft"}:
            raise GenomeError(
                f"{where}: module should be None or a dict with keys 'name', 'hash', 'graft', got {m!r:.80}"
            )
        if not isinstance(m["name"], str) or not m["name"]:
            raise GenomeError(f"{where}: module name should be a non-empty str, got {m['name']!r:.40}")
        h = m["hash"]
        if not isinstance(h, str) or len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
            raise GenomeError(f"{where}: module hash should be 64 lowercase hex digits (sha256), got {h!r:.80}")
        gr = m["graft"]
        if isinstance(gr, bool) or not isinstance(gr, (int, np.integer)) or gr < 0:
            raise GenomeError(f"{where}: module graft should be a non-negative int (a node id), got {gr!r:.40}")
    if frozen and a["role"] != "hidden":
        raise GenomeError(f"{where}: a frozen node should be hidden, got role {a['role']!r}")
    if frozen and m is None:
        raise GenomeError(f"{where}: a frozen node should carry its module (module is None)")


def _check_edge(s: Any, d: Any, a: dict[str, Any], ns: dict[str, Any], nd: dict[str, Any]) -> None:
    where = f"edge {s}->{d}"
    for key in ("innovation", "enabled", "weight", "gate", "recurrent"):
        if key not in a:
            raise GenomeError(f"{where}: missing attribute {key!r}")
    inv = a["innovation"]
    if isinstance(inv, bool) or not isinstance(inv, (int, np.integer)) or inv < 0:
        raise GenomeError(f"{where}: innovation should be a non-negative int, got {inv!r}")
    for key in ("enabled", "recurrent"):
        if not isinstance(a[key], (bool, np.bool_)):
            raise GenomeError(f"{where}: {key} should be a bool, got {a[key]!r}")
    shape = (nd["width"], ns["width"])
    wt = a["weight"]
    if not isinstance(wt, np.ndarray) or wt.dtype != np.float32 or wt.shape != shape:
        raise GenomeError(f"{where}: weight should be a float32 array of shape {shape}, got {_describe(wt)}")
    gt = a["gate"]
    if not isinstance(gt, (np.floating, np.ndarray)) or np.asarray(gt).dtype != np.float32 or np.ndim(gt) != 0:
        raise GenomeError(f"{where}: gate should be a float32 scalar, got {_describe(gt)}")
    if not a["recurrent"]:
        if nd["role"] == "input":
            raise GenomeError(f"{where}: no non-recurrent edge may enter the input node")
        if ns["role"] == "output":
            raise GenomeError(f"{where}: no non-recurrent edge may leave the output node")
    if s == d and not a["recurrent"]:
        raise GenomeError(f"{where}: a self-loop should be recurrent")
    frozen = a.get("frozen", False)
    if not isinstance(frozen, (bool, np.bool_)):
        raise GenomeError(f"{where}: frozen should be a bool, got {frozen!r:.40}")
    if nd.get("frozen", False):
        if not frozen:
            raise GenomeError(f"{where}: an edge into frozen node {d} should be frozen")
        if a["recurrent"]:
            raise GenomeError(f"{where}: an edge into frozen node {d} should not be recurrent")
    elif frozen:
        raise GenomeError(f"{where}: a frozen edge should go into a frozen node, node {d} is not frozen")
    mask = a.get("mask")
    if mask is not None:
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != shape:
            raise GenomeError(f"{where}: mask should be a bool array of shape {shape}, got {_describe(mask)}")
        if a["recurrent"] or frozen or nd["role"] == "exit":
            raise GenomeError(f"{where}: only a feed-forward edge into a hidden or output node may have a mask")
        if np.any(wt[~mask] != 0):
            raise GenomeError(f"{where}: weight should be 0 where mask is False (an absent connection)")
    skip = a.get("skip")
    if nd.get("skip") is not None and not a["recurrent"]:
        shape1 = (ns["width"],)
        if not isinstance(skip, np.ndarray) or skip.dtype != np.float32 or skip.shape != shape1:
            raise GenomeError(
                f"{where}: an edge into skip-gated node {d} should carry skip, a float32 array of shape "
                f"{shape1}, got {_describe(skip)}"
            )
    elif skip is not None:
        raise GenomeError(f"{where}: skip is only on feed-forward edges into a skip-gated node")
    if nd["role"] == "exit" and (a["recurrent"] or not a["enabled"] or ns["role"] != "hidden"):
        raise GenomeError(f"{where}: an exit's edge should be enabled, feed-forward and from a hidden node")
    if ns["role"] == "exit":
        raise GenomeError(f"{where}: no edge may leave an exit node")


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.dtype} array of shape {x.shape}"
    return f"{type(x).__name__} {x!r}"
