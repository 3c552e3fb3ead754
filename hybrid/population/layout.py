"""Pack a population of genomes into padded parameter tensors and a computation plan.

Three trainable tensors hold every member's values (see :mod:`.plan` for the
padded layout):

* ``weights``: the padded weight vector. Real entries sit where the plan computes
  with them; padding entries are zero, are never written, and receive exactly zero
  gradient (their rows/columns meet zero activations or zero output gradients).
* ``biases``: one per buffer row (padding rows zero).
* ``gates``: member-major, each member in ``GenomeNet.gate_layout`` order (input
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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genomes import ACTIVATION_IDS, Genome, GenomeError

from .plan import Group, Node, plan

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


def _describe(genome: Genome, m: int, gate0: int, nodes: list[Node], gates: list) -> tuple:
    """Append ``genome``'s nodes and gates; return its slices and per-edge records."""
    g, inp = genome.graph, genome.input_id
    active, edges, order = genome.active_graph(), genome.enabled_edges(), genome.topological_order()
    depth = genome.depths()
    gate_nodes = [inp] + [n for n in order if g.nodes[n]["role"] == "hidden"]
    first_gate, off = {}, gate0
    for n in gate_nodes:
        first_gate[n] = off
        gates.append(g.nodes[n]["gate"])
        off += g.nodes[n]["width"]
    gates.append(np.array([g.edges[e]["gate"] for e in edges], np.float32))
    inv = {e: g.edges[e]["innovation"] for e in edges}
    bias_nodes = [n for n in order if n != inp]
    for n in bias_nodes:
        a = g.nodes[n]
        preds = sorted(active.predecessors(n), key=lambda s, n=n: inv[s, n])
        sources = [(s, g.nodes[s]["width"]) for s in preds if s != inp]
        nodes.append(
            Node(m, n, depth[n], a["width"], ACTIVATION_IDS[a["activation"]], sources, inp in preds)
        )
    return edges, bias_nodes, gate_nodes, first_gate, off


def pack(genomes: Sequence[Genome], merge_macs: float = 512.0) -> Layout:
    """Pack ``genomes`` into a :class:`Layout`.

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
    nodes: list[Node] = []
    gates: list[np.ndarray] = []
    described, gate0 = [], 0
    for m, genome in enumerate(genomes):
        edges, bias_nodes, gate_nodes, first_gate, edge_gate0 = _describe(
            genome, m, gate0, nodes, gates
        )
        described.append((edges, bias_nodes, gate_nodes, first_gate, edge_gate0, gate0))
        gate0 = edge_gate0 + len(edges)
    n_g = gate0
    levels, sizes = plan(nodes, n_in, merge_macs)
    at = {(nd.member, nd.node): nd for nd in nodes}
    # The group of a node is the last group starting at or before its first row.
    groups = sorted((grp for lvl in levels for grp in lvl), key=lambda grp: grp.row)
    starts = np.array([grp.row for grp in groups])

    def group(nd: Node) -> Group:
        return groups[int(np.searchsorted(starts, nd.row, side="right")) - 1]

    n_padded, n_rows, n_cols, n_inp = (
        sizes["padded"],
        sizes["rows"],
        sizes["cols"],
        sizes["input_rows"],
    )
    w = np.zeros(n_padded, np.float32)
    w_member = np.full(n_padded, p, np.int64)
    col_edge = np.full(n_cols, n_g, np.int64)
    col_src = np.full(n_cols, n_g, np.int64)
    in_edge = np.full(n_inp, n_g, np.int64)
    in_member = np.zeros(n_inp, np.int64)
    weight_pos, slices = [], []
    n_w = 0
    for m, (edges, bias_nodes, gate_nodes, first_gate, edge_gate0, g0) in enumerate(described):
        graph, inp = genomes[m].graph, genomes[m].input_id
        starts_w = []
        for k, (s, d) in enumerate(edges):
            dst, values = at[m, d], graph.edges[s, d]["weight"]
            grp, ws = group(dst), values.shape[1]
            r, c = np.arange(dst.width)[:, None], np.arange(ws)[None, :]
            if s == inp:
                rows = grp.in_row + dst.row - grp.row + np.arange(dst.width)
                pos = rows[:, None] * n_in + c
                in_edge[rows] = edge_gate0 + k
                in_member[rows] = m
            else:
                koff = sum(wd for src, wd in dst.sources[: [x for x, _ in dst.sources].index(s)])
                kk, wd, i = grp.fan_in, grp.width, dst.slot
                pos = grp.w_offset + (i * wd + r) * kk + koff + c
                cols = grp.col_offset + i * kk + koff + np.arange(ws)
                col_edge[cols] = edge_gate0 + k
                col_src[cols] = first_gate[s] + np.arange(ws)
                grp.src[i * kk + koff : i * kk + koff + ws] = at[m, s].row + np.arange(ws)
            pos = pos.reshape(-1)
            w[pos] = values.reshape(-1)
            w_member[pos] = m
            weight_pos.append(pos)
            starts_w.append(n_w)
            n_w += pos.size
        slices.append(
            (tuple(edges), tuple(starts_w), bias_nodes, gate_nodes, first_gate, edge_gate0, g0)
        )
    for lvl in levels:
        for grp in lvl:
            grp.src[grp.src < 0] = n_rows  # padding reads the zero row
    b = np.zeros(n_rows, np.float32)
    b_member = np.full(n_rows, p, np.int64)
    bias_row, members, n_b = [], [], 0
    for m, (edges, starts_w, bias_nodes, gate_nodes, first_gate, edge_gate0, g0) in enumerate(
        slices
    ):
        starts_b = []
        for n in bias_nodes:
            nd = at[m, n]
            rows = nd.row + np.arange(nd.width)
            b[rows] = genomes[m].graph.nodes[n]["bias"]
            b_member[rows] = m
            bias_row.append(rows)
            starts_b.append(n_b)
            n_b += nd.width
        members.append(
            MemberSlices(
                edges=edges,
                weight=starts_w,
                bias_nodes=tuple(bias_nodes),
                bias=tuple(starts_b),
                gate_nodes=tuple(gate_nodes),
                gate=tuple(first_gate[n] for n in gate_nodes),
                edge_gate=edge_gate0,
                gates=(g0, edge_gate0 + len(edges)),
            )
        )
    gate_counts = [s.gates[1] - s.gates[0] for s in members]
    return Layout(
        n_members=p,
        n_inputs=n_in,
        n_outputs=n_out,
        weights=w,
        biases=b,
        gates=np.concatenate(gates).astype(np.float32, copy=False),
        weight_member=w_member,
        bias_member=b_member,
        gate_member=np.repeat(np.arange(p), gate_counts).astype(np.int64),
        weight_pos=np.concatenate(weight_pos).astype(np.int64)
        if weight_pos
        else np.zeros(0, np.int64),
        bias_row=np.concatenate(bias_row).astype(np.int64),
        col_edge_gate=col_edge,
        col_src_gate=col_src,
        in_edge_gate=in_edge,
        in_member=in_member,
        in_gate=np.array([[s.gates[0] + c for c in range(n_in)] for s in members], np.int64),
        out_rows=np.concatenate(
            [at[m, g.output_id].row + np.arange(n_out) for m, g in enumerate(genomes)]
        ),
        levels=levels,
        n_rows=n_rows,
        n_input_rows=n_inp,
        useful_macs=n_w,
        executed_macs=sizes["executed"],
        members=tuple(members),
        structure=tuple(g.structure_key() for g in genomes),
    )
