"""Pack a population of genomes into one flat parameter vector and a level/bucket plan.

Parameters (``theta``), one float vector for the whole population, no padding::

    theta = [ weights | biases | gates ]

each part member-major. Weights: every enabled non-recurrent edge by innovation
number, ``W_e`` raveled row-major. Biases: hidden and output nodes in topological
order. Gates: per member in ``GenomeNet.gate_layout`` order (input neurons, hidden
neurons in topological order, edges by innovation), so a member's gates are one
contiguous run and a one-member population draws exactly ``GenomeNet``'s noise.

Plan (how the function is computed; see :mod:`hybrid.population.program`). Neurons
of hidden and output nodes get rows of a neuron-major activation buffer ``[rows, B]``.
Nodes are grouped by *level* (``genome.depths()``: longest enabled path from the
input) and, within a level, by *bucket*: nodes whose non-input fan-in ``K`` (sum of
the widths of their non-input sources) and width are padded to one shape
``(K_pad, wd_pad)``, so one ``bmm`` ``[N, wd_pad, K_pad] @ [N, K_pad, B]`` computes all
of them. Input edges never go through a bucket: the input is shared by all members,
so each group's input-fed rows come from one dense ``addmm`` ``[R, n_in] @ [n_in, B]``
(no gather, no padding of ``n_in``). Nodes fed by the input alone form a per-level
group with exact widths and no ``bmm``.

Buckets start from sizes rounded up on the ladder 1, 2, 3, 4, 6, 8, 12, 16, ...
(powers of two and their halfway points: at worst 2/3 of a padded dimension is
real) and are then merged greedily while a merge costs fewer padded multiply-adds
than ``merge_macs`` (the cost of one bucket's kernel launches, in per-sample MACs).

Waste factor (executed / useful MACs per sample = 1 / ``padding_efficiency``):
input edges 1 (exact), input-only nodes 1, bucketed edges
``N * K_pad * wd_pad / sum(real weights)``: at most 1.5 * 1.5 = 2.25 from the
ladder, more where merges trade padding for fewer launches (tiny genomes, where
compute is negligible next to launches). It grows when nodes of very different
fan-in share a bucket, i.e. when ``merge_macs`` is large next to the nodes' sizes.
Padded entries are not parameters: they are never written, so they stay exactly
zero and their gradients are never read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genomes import ACTIVATION_IDS, Genome, GenomeError

__all__ = ["Group", "Layout", "MemberSlices", "ladder", "pack"]


def ladder(n: int) -> int:
    """Return the smallest size on the ladder 1, 2, 3, 4, 6, 8, 12, 16, ... that is >= ``n``."""
    if n <= 2:
        return max(n, 0)
    p = 1 << (int(n - 1).bit_length() - 1)  # largest power of two < n
    return p + p // 2 if n <= p + p // 2 else 2 * p


@dataclass(frozen=True)
class Group:
    """Nodes of one level computed together; rows ``[row, row + n_rows)`` of the buffer.

    The first ``n_input_rows`` rows receive ``W_in @ x`` with ``W_in`` at
    ``[win_offset, win_offset + n_input_rows * n_in)`` of the padded weights. A bucket
    (``fan_in > 0``) also computes ``bmm(W [n, width, fan_in], X [n, fan_in, B])`` with
    ``W`` at ``[w_offset, w_offset + n * width * fan_in)`` and ``X`` gathered from buffer
    rows ``src`` (padding points at the zero row). ``runs`` are ``(activation id,
    first row, end row)`` covering every row.
    """

    row: int
    n_rows: int
    n_input_rows: int
    win_offset: int
    n: int
    fan_in: int
    width: int
    w_offset: int
    src: np.ndarray
    runs: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class MemberSlices:
    """Where one member's values live in ``theta`` (absolute offsets)."""

    edges: tuple[tuple[int, int], ...]  # enabled edges by innovation
    weight: tuple[int, ...]  # start of each edge's weights
    bias_nodes: tuple[int, ...]  # hidden and output nodes, topological order
    bias: tuple[int, ...]
    gate_nodes: tuple[int, ...]  # input node, then hidden nodes
    gate: tuple[int, ...]
    edge_gate: int  # start of the edge gates (one per edge)
    gates: tuple[int, int]  # [start, end) of all the member's gates


@dataclass(frozen=True)
class Layout:
    """A population packed for the batched engine (host-side numpy arrays).

    Attributes:
        theta: initial parameters, float32 ``[n_weights + n_biases + n_gates]``.
        n_weights, n_biases, n_gates: sizes of the three parts of ``theta``.
        member: member index of every entry of ``theta``.
        weight_pos: position of each weight in the padded weight vector.
        weight_edge_gate, weight_src_gate: index (into the gate part) of the gate of
            each weight's edge and of its source neuron.
        bias_row: buffer row of each bias.
        out_rows: buffer rows of the output neurons, member-major ``[P * n_out]``.
        levels: the groups of each level, in computation order.
        n_rows: rows of the buffer (the zero row is row ``n_rows``).
        n_padded: length of the padded weight vector.
        useful_macs, executed_macs: multiply-adds per sample of real edges and of
            the plan (padding included).
        members: where each member's values live in ``theta``.
    """

    n_members: int
    n_inputs: int
    n_outputs: int
    theta: np.ndarray
    n_weights: int
    n_biases: int
    n_gates: int
    member: np.ndarray
    weight_pos: np.ndarray
    weight_edge_gate: np.ndarray
    weight_src_gate: np.ndarray
    bias_row: np.ndarray
    out_rows: np.ndarray
    levels: tuple[tuple[Group, ...], ...]
    n_rows: int
    n_padded: int
    useful_macs: int
    executed_macs: int
    members: tuple[MemberSlices, ...]
    structure: tuple[tuple, ...]

    @property
    def padding_efficiency(self) -> float:
        """Useful MACs / executed MACs (1.0 = no padding)."""
        return self.useful_macs / max(self.executed_macs, 1)


@dataclass
class _Node:
    member: int
    node: int
    level: int
    width: int
    act: int
    sources: list[tuple[int, int]]  # (source node, source width), non-input, fan-in order
    has_input: bool
    row: int = -1


def _merge(keys: list[tuple[int, int, int]], merge_macs: float) -> list[list[int]]:
    """Greedily merge buckets ``(K, wd, N)`` while a merge saves cost; return index groups."""
    groups = [[i] for i in range(len(keys))]
    shapes = [list(k) for k in keys]
    while len(groups) > 1:
        s = np.array(shapes, dtype=np.float64)
        k = np.maximum(s[:, None, 0], s[None, :, 0])
        w = np.maximum(s[:, None, 1], s[None, :, 1])
        n = s[:, None, 2] + s[None, :, 2]
        own = s[:, 0] * s[:, 1] * s[:, 2]
        delta = k * w * n - own[:, None] - own[None, :] - merge_macs
        np.fill_diagonal(delta, np.inf)
        i, j = np.unravel_index(np.argmin(delta), delta.shape)
        if delta[i, j] >= 0:
            break
        i, j = min(i, j), max(i, j)
        shapes[i] = [k[i, j], w[i, j], n[i, j]]
        groups[i] += groups.pop(j)
        shapes.pop(j)
    return groups


def _plan(
    nodes: list[_Node], n_in: int, merge_macs: float
) -> tuple[tuple[tuple[Group, ...], ...], int, int, dict]:
    """Assign buffer rows and padded weight offsets; return levels, rows, padded size, node map."""
    by_level: dict[int, list[_Node]] = defaultdict(list)
    for nd in nodes:
        by_level[nd.level].append(nd)
    levels, row, w_off, node_at = [], 0, 0, {}
    for lvl in sorted(by_level):
        keyed: dict[tuple[int, int], list[_Node]] = defaultdict(list)
        solo = []
        for nd in by_level[lvl]:
            if nd.sources:
                keyed[ladder(sum(w for _, w in nd.sources)), ladder(nd.width)].append(nd)
            else:
                solo.append(nd)
        keys = sorted(keyed)
        groups = []
        for idx in _merge([(k, w, len(keyed[k, w])) for k, w in keys], merge_macs):
            members = [nd for i in idx for nd in keyed[keys[i]]]
            k = max(keys[i][0] for i in idx)
            wd = max(keys[i][1] for i in idx)
            # Input-fed nodes first (one addmm over a row prefix); activations sorted
            # up then down so that the run at the seam can merge.
            members.sort(
                key=lambda nd: (not nd.has_input, nd.act if nd.has_input else -nd.act, nd.member, nd.node)
            )
            n, n_fed = len(members), sum(nd.has_input for nd in members)
            group = Group(
                row=row,
                n_rows=n * wd,
                n_input_rows=n_fed * wd,
                win_offset=w_off,
                n=n,
                fan_in=k,
                width=wd,
                w_offset=w_off + n_fed * wd * n_in,
                src=np.full(n * k, -1, np.int64),
                runs=_runs([nd.act for nd in members], [wd] * n, row),
            )
            for i, nd in enumerate(members):
                nd.row = row + i * wd
                node_at[nd.member, nd.node] = (nd, group, i)
            groups.append(group)
            row += n * wd
            w_off += n_fed * wd * n_in + n * wd * k
        if solo:
            solo.sort(key=lambda nd: (nd.act, nd.member, nd.node))
            n_rows = sum(nd.width for nd in solo)
            group = Group(
                row=row,
                n_rows=n_rows,
                n_input_rows=n_rows,
                win_offset=w_off,
                n=0,
                fan_in=0,
                width=0,
                w_offset=w_off + n_rows * n_in,
                src=np.zeros(0, np.int64),
                runs=_runs([nd.act for nd in solo], [nd.width for nd in solo], row),
            )
            for nd in solo:
                nd.row = row
                node_at[nd.member, nd.node] = (nd, group, -1)
                row += nd.width
            groups.append(group)
            w_off += n_rows * n_in
        levels.append(tuple(groups))
    return tuple(levels), row, w_off, node_at


def _runs(acts: list[int], widths: list[int], row: int) -> tuple[tuple[int, int, int], ...]:
    runs: list[list[int]] = []
    for act, w in zip(acts, widths, strict=True):
        if runs and runs[-1][0] == act:
            runs[-1][2] += w
        else:
            start = runs[-1][2] if runs else row
            runs.append([act, start, start + w])
    return tuple((a, s, e) for a, s, e in runs)


def pack(genomes: Sequence[Genome], merge_macs: float = 2048.0) -> Layout:
    """Pack ``genomes`` into a :class:`Layout`.

    Args:
        genomes: valid genomes sharing ``n_inputs`` and ``n_outputs`` (only read).
        merge_macs: per-sample multiply-adds one bucket's launches are worth; merges
            that add fewer padded MACs than this are made (0: ladder buckets only).

    Returns:
        The layout; ``theta`` holds the genomes' values bit for bit.

    Raises:
        GenomeError: if the population is empty or the widths differ.
    """
    if not genomes:
        raise GenomeError("population should have at least one genome, got none")
    n_in, n_out = genomes[0].n_inputs, genomes[0].n_outputs
    for i, g in enumerate(genomes):
        if (g.n_inputs, g.n_outputs) != (n_in, n_out):
            raise GenomeError(
                f"every member should have n_inputs={n_in}, n_outputs={n_out}; member {i} "
                f"has {g.n_inputs}, {g.n_outputs}"
            )
    parts: tuple[list, list, list] = ([], [], [])  # weights, biases, gates
    counts = np.zeros((len(genomes), 3), np.int64)
    offsets = [0, 0, 0]
    nodes: list[_Node] = []
    edge_records = []  # (member, src, dst, weight offset, edge gate index)
    gate_index: list[dict[int, int]] = []  # node -> gate index of its first neuron
    raw = []
    for m, genome in enumerate(genomes):
        g, inp = genome.graph, genome.input_id
        active, edges, order = genome.active_graph(), genome.enabled_edges(), genome.topological_order()
        depth = genome.depths()
        start = list(offsets)
        gate_nodes = [inp] + [n for n in order if g.nodes[n]["role"] == "hidden"]
        first_gate = {}
        for n in gate_nodes:
            first_gate[n] = offsets[2]
            parts[2].append(g.nodes[n]["gate"])
            offsets[2] += g.nodes[n]["width"]
        edge_gate0 = offsets[2]
        parts[2].append(np.array([g.edges[e]["gate"] for e in edges], np.float32))
        offsets[2] += len(edges)
        gate_index.append(first_gate)
        w_starts = []
        for k, (s, d) in enumerate(edges):
            w = g.edges[s, d]["weight"]
            parts[0].append(w.reshape(-1))
            w_starts.append(offsets[0])
            edge_records.append((m, s, d, offsets[0], edge_gate0 + k))
            offsets[0] += w.size
        inv = {e: g.edges[e]["innovation"] for e in edges}
        bias_nodes = [n for n in order if n != inp]
        b_starts = []
        for n in bias_nodes:
            a = g.nodes[n]
            parts[1].append(a["bias"])
            b_starts.append(offsets[1])
            offsets[1] += a["width"]
            preds = sorted(active.predecessors(n), key=lambda s, n=n: inv[s, n])
            sources = [(s, g.nodes[s]["width"]) for s in preds if s != inp]
            act = ACTIVATION_IDS[a["activation"]]
            nodes.append(_Node(m, n, depth[n], a["width"], act, sources, inp in preds))
        counts[m] = [offsets[i] - start[i] for i in range(3)]
        raw.append((edges, w_starts, bias_nodes, b_starts, gate_nodes, first_gate, edge_gate0, start[2]))
    n_w, n_b, n_g = offsets
    levels, n_rows, n_padded, node_at = _plan(nodes, n_in, merge_macs)
    gb = n_w + n_b  # gates start here in theta
    members = tuple(
        MemberSlices(
            edges=tuple(edges),
            weight=tuple(ws),
            bias_nodes=tuple(bn),
            bias=tuple(n_w + b for b in bs),
            gate_nodes=tuple(gn),
            gate=tuple(gb + fg[n] for n in gn),
            edge_gate=gb + eg,
            gates=(gb + g0, gb + eg + len(edges)),
        )
        for edges, ws, bn, bs, gn, fg, eg, g0 in raw
    )
    weight_pos = np.empty(n_w, np.int64)
    weight_edge_gate = np.empty(n_w, np.int64)
    weight_src_gate = np.empty(n_w, np.int64)
    for m, s, d, off, egate in edge_records:
        dst, group, i = node_at[m, d]
        ws = genomes[m].graph.nodes[s]["width"]
        r = np.arange(dst.width)[:, None]
        c = np.arange(ws)[None, :]
        sl = slice(off, off + dst.width * ws)
        weight_edge_gate[sl] = egate
        weight_src_gate[sl] = np.broadcast_to(gate_index[m][s] + c, (dst.width, ws)).reshape(-1)
        if s == genomes[m].input_id:
            weight_pos[sl] = (group.win_offset + (dst.row - group.row + r) * n_in + c).reshape(-1)
            continue
        koff = 0
        for src, w in dst.sources:
            if src == s:
                break
            koff += w
        k, wd = group.fan_in, group.width
        weight_pos[sl] = (group.w_offset + (i * wd + r) * k + koff + c).reshape(-1)
        group.src[i * k + koff : i * k + koff + ws] = node_at[m, s][0].row + np.arange(ws)
    for lvl in levels:
        for group in lvl:
            group.src[group.src < 0] = n_rows  # padding reads the zero row
    executed = sum(grp.n_input_rows * n_in + grp.n * grp.width * grp.fan_in for lvl in levels for grp in lvl)
    bias_row = np.concatenate([np.arange(nd.row, nd.row + nd.width) for nd in nodes]).astype(np.int64)
    out_rows = np.concatenate(
        [node_at[m, g.output_id][0].row + np.arange(n_out) for m, g in enumerate(genomes)]
    ).astype(np.int64)
    index = np.arange(len(genomes))
    member = np.concatenate([np.repeat(index, counts[:, i]) for i in range(3)]).astype(np.int64)
    theta = np.concatenate([np.concatenate(p) if p else np.zeros(0, np.float32) for p in parts])
    return Layout(
        n_members=len(genomes),
        n_inputs=n_in,
        n_outputs=n_out,
        theta=theta.astype(np.float32, copy=False),
        n_weights=n_w,
        n_biases=n_b,
        n_gates=n_g,
        member=member,
        weight_pos=weight_pos,
        weight_edge_gate=weight_edge_gate,
        weight_src_gate=weight_src_gate,
        bias_row=bias_row,
        out_rows=out_rows,
        levels=levels,
        n_rows=n_rows,
        n_padded=n_padded,
        useful_macs=n_w,
        executed_macs=executed,
        members=members,
        structure=tuple(g.structure_key() for g in genomes),
    )
