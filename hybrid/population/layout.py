"""Pack a population of genomes into padded parameter tensors and a computation plan.

Three trainable tensors hold every member's values (see :mod:`.plan` for the
padded layout):

* ``weights``: the padded weight vector. Real entries sit where the plan computes
  with them; padding entries are zero, are never written, and receive exactly zero
  gradient (their rows/columns meet zero activations or zero output gradients).
* ``biases``: one per buffer row (padding rows zero).
* ``gates``: member-major, each member in :func:`hybrid.gates.gate_layout` order (input
  neurons, hidden neurons in topological order, edges by innovation number): a
  member's gates are one contiguous run, and a one-member population draws exactly
  ``GenomeNet``'s hard-concrete noise.

Gates are applied as scales of weight columns: bucket column ``(node, k)`` belongs to
one source neuron of one edge, so ``W_eff[:, k] = W[:, k] * g(edge) * g(source
neuron)``; an input row ``r`` (of edge ``e``) scales by ``g(e) * g_in``.

Waste factor (executed / useful MACs per sample = 1 / ``padding_efficiency``):
input edges 1 (exact rows and columns, except the rows that pad an input-fed node
of a bucket), input-only nodes 1, bucketed edges ``N * K_pad * wd_pad / real``: at
most (9/8)^2 = 1.27 from the ladder, more where merges trade padding for fewer
launches. It grows when nodes of very different fan-in share a bucket, i.e. when
``merge_macs`` is large next to the nodes' sizes (tiny genomes, where launches cost
more than arithmetic), and with fan-in spread within a level. Measured on
mutation-grown populations (``benchmarks/population_throughput.py``, CPU defaults):
padding efficiency 55-69% for two-spirals-sized genomes (P = 16-256; merges
dominate: compute there is cheaper than launches), 94-95% at digits size. The
activation buffers are padded the same way (rows ``= sum(N * wd_pad)``); nothing is
ever sized P x N x N.

Frozen genes (grafted modules, ``genomes.modules``): a node or edge whose ``frozen``
attribute is set is packed like any other (every engine computes it as an ordinary
node); the layout only flags its entries (``weight_frozen``, ``bias_frozen``,
``gate_frozen``: a frozen edge's weights and gate, a frozen node's biases and gates;
padding is not frozen) so that the optimiser leaves them alone. A sparse edge's
absent connections (``mask`` False: weight exactly 0) are flagged the same way, so
they stay exactly 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from genomes import ACTIVATION_IDS, Genome, GenomeError
from genomes.genome import is_frozen

from ..gates import gate_layout
from .plan import Group, Node, Plan, plan

__all__ = ["Layout", "MemberSlices", "pack"]


@dataclass(frozen=True)
class MemberSlices:
    """Where one member's values live (offsets into ``weight_pos``, ``bias_row``, gates)."""

    edges: tuple[tuple[int, int], ...]  # enabled edges by innovation
    weight: tuple[int, ...]  # start of each edge's entries in weight_pos
    bias_nodes: tuple[int, ...]  # hidden and output nodes, topological order
    bias: tuple[int, ...]  # start of each node's entries in bias_row
    gate_nodes: tuple[int, ...]  # input node, then hidden nodes
    gate: tuple[int, ...]  # start of each node's gates
    edge_gate: int  # start of the edge gates (one per edge)
    gates: tuple[int, int]  # [start, end) of all the member's gates


@dataclass(frozen=True)
class Layout:
    """A population packed for the batched engine (host-side numpy arrays).

    Attributes:
        weights, biases, gates: initial values, float32, of the three tensors.
        weight_member, bias_member, gate_member: member of each entry (padding: P).
        weight_pos: padded position of each real weight, member-major, edges by
            innovation, ``W_e`` raveled row-major.
        bias_row: buffer row of each real bias, member-major, topological order.
        col_edge_gate, col_src_gate: gate indices scaling each bucket column
            (padding: ``n_gates``, a zero gate).
        in_edge_gate, in_member: gate of the edge and member of each input row.
        in_gate: gate index of each member's input neurons ``[P, n_in]``.
        out_rows: buffer rows of the output neurons, member-major ``[P * n_out]``.
        levels: the groups of each level, in computation order.
        n_rows: buffer rows (row ``n_rows`` is the zero row).
        n_input_rows: rows of the input block (its weights start the padded vector).
        useful_macs, executed_macs: multiply-adds per sample of real edges and of
            the plan (padding included).
        members: where each member's values live.
        structure: each genome's ``structure_key()`` at packing time.
        weight_frozen, bias_frozen, gate_frozen: whether each entry of the three
            tensors belongs to a frozen gene, or (weights) is a sparse edge's absent
            connection (padding: False).
    """

    n_members: int
    n_inputs: int
    n_outputs: int
    weights: np.ndarray
    biases: np.ndarray
    gates: np.ndarray
    weight_member: np.ndarray
    bias_member: np.ndarray
    gate_member: np.ndarray
    weight_pos: np.ndarray
    bias_row: np.ndarray
    col_edge_gate: np.ndarray
    col_src_gate: np.ndarray
    in_edge_gate: np.ndarray
    in_member: np.ndarray
    in_gate: np.ndarray
    out_rows: np.ndarray
    levels: tuple[tuple[Group, ...], ...]
    n_rows: int
    n_input_rows: int
    useful_macs: int
    executed_macs: int
    members: tuple[MemberSlices, ...]
    structure: tuple[tuple, ...]
    weight_frozen: np.ndarray
    bias_frozen: np.ndarray
    gate_frozen: np.ndarray

    @property
    def has_frozen(self) -> bool:
        """Whether any entry belongs to a frozen gene."""
        return bool(self.weight_frozen.any() or self.bias_frozen.any() or self.gate_frozen.any())

    @property
    def padding_efficiency(self) -> float:
        """Useful MACs / executed MACs (1.0 = no padding)."""
        return self.useful_macs / max(self.executed_macs, 1)


def _check(genomes: Sequence[Genome]) -> tuple[int, int]:
    if not genomes:
        raise GenomeError("population should have at least one genome, got none")
    n_in, n_out = genomes[0].n_inputs, genomes[0].n_outputs
    for i, g in enumerate(genomes):
        if (g.n_inputs, g.n_outputs) != (n_in, n_out):
            raise GenomeError(
                f"every member should have n_inputs={n_in}, n_outputs={n_out}; member {i} "
                f"has {g.n_inputs}, {g.n_outputs}"
            )
    return n_in, n_out


class _Member(NamedTuple):
    """One genome described for packing (gate offsets are population-wide)."""

    edges: tuple[tuple[int, int], ...]  # enabled edges by innovation
    bias_nodes: tuple[int, ...]  # hidden and output nodes, topological order
    gate_nodes: tuple[int, ...]  # input node, then hidden nodes (gate_layout order)
    first_gate: dict[int, int]  # first gate of each gate node
    edge_gate: int  # first edge gate
    gates: tuple[int, int]  # [start, end) of the member's gates
    nodes: tuple[Node, ...]  # its hidden and output nodes, to place
    gate_values: tuple[np.ndarray, ...]  # its gate logits, in gate_layout order
    gate_frozen: np.ndarray  # whether each of its gates belongs to a frozen gene


def _describe(genome: Genome, m: int, gate0: int) -> _Member:
    """Describe member ``m`` whose gates start at ``gate0`` of the population's gate vector."""
    g, inp = genome.graph, genome.input_id
    active, order = genome.active_predecessors(), genome.topological_order()
    depth = genome.depths(order=order, preds=active)
    runs = gate_layout(genome, order)
    edges = tuple(k for k, _ in runs if not isinstance(k, int))
    gate_nodes = tuple(k for k, _ in runs if isinstance(k, int))
    first_gate, off = {}, gate0
    for n in gate_nodes:
        first_gate[n] = off
        off += g.nodes[n]["width"]
    frozen = [np.full(g.nodes[n]["width"], is_frozen(g.nodes[n])) for n in gate_nodes]
    frozen.append(np.array([is_frozen(g.edges[e]) for e in edges], bool))
    inv = {e: g.edges[e]["innovation"] for e in edges}
    bias_nodes = tuple(n for n in order if n != inp)
    nodes = []
    for n in bias_nodes:
        a = g.nodes[n]
        preds = sorted(active[n], key=lambda s, n=n: inv[s, n])
        sources = tuple((s, g.nodes[s]["width"]) for s in preds if s != inp)
        nodes.append(
            Node(m, n, depth[n], a["width"], ACTIVATION_IDS[a["activation"]], sources, inp in preds)
        )
    return _Member(
        edges=edges,
        bias_nodes=bias_nodes,
        gate_nodes=gate_nodes,
        first_gate=first_gate,
        edge_gate=off,
        gates=(gate0, off + len(edges)),
        nodes=tuple(nodes),
        gate_values=_gate_values(genome, gate_nodes, edges),
        gate_frozen=np.concatenate(frozen).astype(bool, copy=False),
    )


def _gate_values(
    genome: Genome, gate_nodes: Sequence[int], edges: Sequence[tuple[int, int]]
) -> tuple[np.ndarray, ...]:
    """``genome``'s gate logits in gate order: each gate node's, then one array of edge gates."""
    g = genome.graph
    values = [g.nodes[n]["gate"] for n in gate_nodes]
    values.append(np.array([g.edges[e]["gate"] for e in edges], np.float32))
    return tuple(values)


def _like(seen: _Member, genome: Genome, m: int, gate0: int) -> _Member:
    """Describe member ``m``, whose structure is ``seen``'s, from ``seen``: only its gate values are read."""
    shift = gate0 - seen.gates[0]
    return seen._replace(
        first_gate={n: k + shift for n, k in seen.first_gate.items()},
        edge_gate=seen.edge_gate + shift,
        gates=(seen.gates[0] + shift, seen.gates[1] + shift),
        nodes=tuple(replace(nd, member=m) for nd in seen.nodes),
        gate_values=_gate_values(genome, seen.gate_nodes, seen.edges),
    )


def _describe_all(genomes: Sequence[Genome], keys: Sequence[tuple]) -> list[_Member]:
    """Describe every member, gate runs laid end to end member after member.

    Members of one structure (``keys``: their ``structure_key()``; the K fold copies of
    a member under K-fold fitness, say) are described once: the others only read
    their gate values.
    """
    out: list[_Member] = []
    seen: dict[tuple, _Member] = {}
    gate0 = 0
    for m, (genome, key) in enumerate(zip(genomes, keys, strict=True)):
        first = seen.get(key)
        mem = _describe(genome, m, gate0) if first is None else _like(first, genome, m, gate0)
        seen.setdefault(key, mem)
        out.append(mem)
        gate0 = mem.gates[1]
    return out


class _Weights(NamedTuple):
    """The padded weight vector and what indexes it (see :class:`Layout`)."""

    values: np.ndarray
    member: np.ndarray
    pos: np.ndarray
    starts: tuple[tuple[int, ...], ...]  # per member, start of each edge's entries in ``pos``
    col_edge_gate: np.ndarray
    col_src_gate: np.ndarray
    in_edge_gate: np.ndarray
    in_member: np.ndarray
    frozen: np.ndarray


def _place_weights(
    genomes: Sequence[Genome], members: list[_Member], pl: Plan, n_in: int, n_gates: int
) -> _Weights:
    """Scatter every enabled edge's weights into the padded vector; record their gate columns."""
    sizes, p = pl.sizes, len(genomes)
    w = np.zeros(sizes.padded, np.float32)
    w_member = np.full(sizes.padded, p, np.int64)
    w_frozen = np.zeros(sizes.padded, bool)
    col_edge = np.full(sizes.cols, n_gates, np.int64)
    col_src = np.full(sizes.cols, n_gates, np.int64)
    in_edge = np.full(sizes.input_rows, n_gates, np.int64)
    in_member = np.zeros(sizes.input_rows, np.int64)
    weight_pos, starts, n_w = [], [], 0
    for m, mem in enumerate(members):
        graph, inp = genomes[m].graph, genomes[m].input_id
        offsets = _fan_in_offsets(mem.nodes)
        starts_m = []
        for k, (s, d) in enumerate(mem.edges):
            dst = pl.places[m, d]
            grp, values = pl.groups[dst.group], graph.edges[s, d]["weight"]
            width, ws = values.shape
            c = np.arange(ws)[None, :]
            if s == inp:
                rows = grp.in_row + dst.row - grp.row + np.arange(width)
                pos = rows[:, None] * n_in + c
                in_edge[rows] = mem.edge_gate + k
                in_member[rows] = m
            else:
                koff = offsets[d][s]
                kk, wd, i = grp.fan_in, grp.width, dst.slot
                pos = grp.w_offset + (i * wd + np.arange(width)[:, None]) * kk + koff + c
                cols = grp.col_offset + i * kk + koff + np.arange(ws)
                col_edge[cols] = mem.edge_gate + k
                col_src[cols] = mem.first_gate[s] + np.arange(ws)
            pos = pos.reshape(-1)
            w[pos] = values.reshape(-1)
            w_member[pos] = m
            mask = graph.edges[s, d].get("mask")
            # a sparse edge's absent connections never train: frozen at exactly 0
            w_frozen[pos] = is_frozen(graph.edges[s, d]) if mask is None else ~mask.reshape(-1)
            weight_pos.append(pos)
            starts_m.append(n_w)
            n_w += pos.size
        starts.append(tuple(starts_m))
    return _Weights(
        values=w,
        member=w_member,
        pos=np.concatenate(weight_pos).astype(np.int64) if weight_pos else np.zeros(0, np.int64),
        starts=tuple(starts),
        col_edge_gate=col_edge,
        col_src_gate=col_src,
        in_edge_gate=in_edge,
        in_member=in_member,
        frozen=w_frozen,
    )


def _fan_in_offsets(nodes: Sequence[Node]) -> dict[int, dict[int, int]]:
    """Each node's column offset of every non-input source within its fan-in."""
    out = {}
    for nd in nodes:
        at, offs = 0, {}
        for s, w in nd.sources:
            offs[s] = at
            at += w
        out[nd.node] = offs
    return out


class _Biases(NamedTuple):
    values: np.ndarray
    member: np.ndarray
    row: np.ndarray  # buffer row of each real bias, member-major, topological order
    starts: tuple[tuple[int, ...], ...]  # per member, start of each node's entries in ``row``
    frozen: np.ndarray


def _place_biases(genomes: Sequence[Genome], members: list[_Member], pl: Plan) -> _Biases:
    """Put every hidden and output node's biases on its buffer rows."""
    n_rows, p = pl.sizes.rows, len(genomes)
    b = np.zeros(n_rows, np.float32)
    b_member = np.full(n_rows, p, np.int64)
    b_frozen = np.zeros(n_rows, bool)
    bias_row, starts, n_b = [], [], 0
    for m, mem in enumerate(members):
        starts_m = []
        for n in mem.bias_nodes:
            width = genomes[m].graph.nodes[n]["width"]
            rows = pl.places[m, n].row + np.arange(width)
            b[rows] = genomes[m].graph.nodes[n]["bias"]
            b_member[rows] = m
            b_frozen[rows] = is_frozen(genomes[m].graph.nodes[n])
            bias_row.append(rows)
            starts_m.append(n_b)
            n_b += width
        starts.append(tuple(starts_m))
    rows = np.concatenate(bias_row).astype(np.int64)
    return _Biases(b, b_member, rows, tuple(starts), b_frozen)


def pack(genomes: Sequence[Genome], merge_macs: float = 512.0) -> Layout:
    """Pack ``genomes`` into a :class:`Layout`.

    Describes each member (:func:`hybrid.gates.gate_layout` order for its gates),
    plans the buffer (:func:`.plan.plan`), then places the weights and the biases.

    Args:
        genomes: valid genomes sharing ``n_inputs`` and ``n_outputs`` (only read).
        merge_macs: per-sample multiply-adds one bucket's launches are worth; merges
            that add fewer padded MACs than this are made (0: ladder buckets only).

    Returns:
        The layout; its arrays hold the genomes' values bit for bit.

    Raises:
        GenomeError: if the population is empty or the widths differ.
    """
    n_in, n_out = _check(genomes)
    p = len(genomes)
    keys = [g.structure_key() for g in genomes]
    members = _describe_all(genomes, keys)
    n_gates = members[-1].gates[1]
    pl = plan([nd for mem in members for nd in mem.nodes], n_in, merge_macs)
    wts = _place_weights(genomes, members, pl, n_in, n_gates)
    bs = _place_biases(genomes, members, pl)
    slices = tuple(
        MemberSlices(
            edges=mem.edges,
            weight=wts.starts[m],
            bias_nodes=mem.bias_nodes,
            bias=bs.starts[m],
            gate_nodes=mem.gate_nodes,
            gate=tuple(mem.first_gate[n] for n in mem.gate_nodes),
            edge_gate=mem.edge_gate,
            gates=mem.gates,
        )
        for m, mem in enumerate(members)
    )
    gate_counts = [end - start for start, end in (mem.gates for mem in members)]
    return Layout(
        n_members=p,
        n_inputs=n_in,
        n_outputs=n_out,
        weights=wts.values,
        biases=bs.values,
        gates=np.concatenate([v for mem in members for v in mem.gate_values]).astype(
            np.float32, copy=False
        ),
        weight_member=wts.member,
        bias_member=bs.member,
        gate_member=np.repeat(np.arange(p), gate_counts).astype(np.int64),
        weight_pos=wts.pos,
        bias_row=bs.row,
        col_edge_gate=wts.col_edge_gate,
        col_src_gate=wts.col_src_gate,
        in_edge_gate=wts.in_edge_gate,
        in_member=wts.in_member,
        in_gate=np.array([[mem.gates[0] + c for c in range(n_in)] for mem in members], np.int64),
        out_rows=np.concatenate(
            [pl.places[m, g.output_id].row + np.arange(n_out) for m, g in enumerate(genomes)]
        ),
        levels=pl.levels,
        n_rows=pl.sizes.rows,
        n_input_rows=pl.sizes.input_rows,
        useful_macs=int(wts.pos.size),
        executed_macs=pl.sizes.executed,
        members=slices,
        structure=tuple(keys),
        weight_frozen=wts.frozen,
        bias_frozen=bs.frozen,
        gate_frozen=np.concatenate([mem.gate_frozen for mem in members]),
    )
