"""Plan the batched computation: buffer rows, levels, buckets, padded weight offsets.

Neurons of hidden and output nodes get rows of a neuron-major buffer ``[rows, B]``.
Nodes are grouped by *level* (``genome.depths()``: longest enabled path from the
input) and, within a level, by *bucket*: nodes whose non-input fan-in ``K`` (sum of
the widths of their non-input sources) and width are padded to one shape
``(K_pad, wd_pad)``, so one ``bmm`` ``[N, wd_pad, K_pad] @ [N, K_pad, B]`` computes all
of them. Input edges never go through a bucket: the input is shared by every
member, so each group's input-fed rows (a row prefix of the group) come from one
dense ``addmm`` ``[R, n_in] @ [n_in, B]``: no gather, no padding of ``n_in``. Nodes fed
by the input alone form a per-level group with exact widths and no ``bmm``.

Buckets start from sizes rounded up on :func:`ladder` (exact up to 16, then steps
of 1/8 of a power of two: more than 8/9 of a padded dimension is real) and are then
merged greedily while a merge adds fewer padded multiply-adds than ``merge_macs``
(what one bucket's kernel launches cost, in per-sample MACs). A finer ladder means
more buckets; merging puts back together the ones too small to pay for their ops.

Padded weight vector: ``[W_in of every group (R x n_in, row-major) | bucket 1 | ...]``
with bucket ``b`` stored ``[N, wd_pad, K_pad]``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["Group", "Node", "Place", "Plan", "Sizes", "ladder", "plan"]

#: Sizes up to this stay exact (their buckets are small; merging pads them where it pays).
LADDER_EXACT = 16


def ladder(n: int) -> int:
    """Return ``n`` rounded up on the ladder: exact to 16, then steps of 1/8 of a power of two.

    Sizes ``(p, 2p]`` (``p`` a power of two >= 16) round up to a multiple of ``p / 8``:
    18, 20, ..., 32, 36, ..., 64, 72, ...; more than 8/9 of a padded dimension is real.
    """
    if n <= LADDER_EXACT:
        return max(n, 0)
    step = (1 << (int(n - 1).bit_length() - 1)) // 8  # 1/8 of the largest power of two < n
    return -(-n // step) * step


@dataclass(frozen=True)
class Node:
    """A hidden or output node of one member, to place in the buffer."""

    member: int
    node: int
    level: int
    width: int
    act: int
    sources: tuple[tuple[int, int], ...]  # (source node, width) of non-input sources, fan-in order
    has_input: bool


class Place(NamedTuple):
    """Where :func:`plan` put a node: buffer rows ``[row, row + width)``, its group and slot."""

    row: int
    group: int  # index into ``Plan.groups``
    slot: int  # index within its bucket (-1: an input-only group)


@dataclass(frozen=True)
class Group:
    """Nodes of one level computed together: buffer rows ``[row, row + n_rows)``.

    The first ``n_input_rows`` rows receive ``W_in @ x``; their ``W_in`` rows are rows
    ``[in_row, in_row + n_input_rows)`` of the input block. A bucket (``fan_in > 0``)
    also computes ``bmm(W [n, width, fan_in], X [n, fan_in, B])``, ``W`` at
    ``w_offset`` of the padded weights, its column scales (gates) at ``col_offset``, and
    ``X`` gathered from buffer rows ``src`` (padding reads the zero row). ``runs`` are
    ``(activation id, first row, end row)`` covering every row.
    """

    row: int
    n_rows: int
    n_input_rows: int
    in_row: int
    n: int
    fan_in: int
    width: int
    w_offset: int
    col_offset: int
    src: np.ndarray
    runs: tuple[tuple[int, int, int], ...]


class Sizes(NamedTuple):
    """Sizes of a plan: buffer rows (row ``rows`` is the zero row), input-block rows,
    padded weight vector length, bucket columns and executed MACs per sample."""

    rows: int
    input_rows: int
    padded: int
    cols: int
    executed: int


class Plan(NamedTuple):
    """The result of :func:`plan`.

    Attributes:
        levels: the groups of each level, in computation order.
        groups: every group, in buffer-row order (``Place.group`` indexes it).
        places: where each ``(member, node)`` went.
        sizes: the plan's sizes.
    """

    levels: tuple[tuple[Group, ...], ...]
    groups: tuple[Group, ...]
    places: dict[tuple[int, int], Place]
    sizes: Sizes


class _Spec(NamedTuple):
    """A group before its offsets are known."""

    level: int
    nodes: list[Node]
    fan_in: int
    width: int
    row: int
    n_rows: int
    n_input_rows: int
    widths: list[int]


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


def _runs(acts: list[int], widths: list[int], row: int) -> tuple[tuple[int, int, int], ...]:
    runs: list[list[int]] = []
    for act, w in zip(acts, widths, strict=True):
        if runs and runs[-1][0] == act:
            runs[-1][2] += w
        else:
            start = runs[-1][2] if runs else row
            runs.append([act, start, start + w])
    return tuple((a, s, e) for a, s, e in runs)


def _buckets(nodes: list[Node], merge_macs: float) -> list[tuple[list[Node], int, int]]:
    """Return ``(nodes, K_pad, wd_pad)`` buckets of one level's fan-in nodes."""
    keyed: dict[tuple[int, int], list[Node]] = defaultdict(list)
    for nd in nodes:
        keyed[ladder(sum(w for _, w in nd.sources)), ladder(nd.width)].append(nd)
    keys = sorted(keyed)
    out = []
    for idx in _merge([(k, w, len(keyed[k, w])) for k, w in keys], merge_macs):
        members = [nd for i in idx for nd in keyed[keys[i]]]
        # Input-fed nodes first (one addmm over a row prefix); activations sorted
        # up then down so that the runs at the seam can merge.
        members.sort(
            key=lambda nd: (
                not nd.has_input,
                nd.act if nd.has_input else -nd.act,
                nd.member,
                nd.node,
            )
        )
        out.append((members, max(keys[i][0] for i in idx), max(keys[i][1] for i in idx)))
    return out


def _specs(nodes: list[Node], merge_macs: float) -> tuple[list[_Spec], dict[tuple[int, int], int]]:
    """Order the groups level by level; return them and each node's first buffer row."""
    by_level: dict[int, list[Node]] = defaultdict(list)
    for nd in nodes:
        by_level[nd.level].append(nd)
    specs: list[_Spec] = []
    rows: dict[tuple[int, int], int] = {}
    row = 0
    for li, lvl in enumerate(sorted(by_level)):
        fed = [nd for nd in by_level[lvl] if nd.sources]
        solo = sorted(
            (nd for nd in by_level[lvl] if not nd.sources),
            key=lambda nd: (nd.act, nd.member, nd.node),
        )
        for members, k, wd in _buckets(fed, merge_macs):
            for i, nd in enumerate(members):
                rows[nd.member, nd.node] = row + i * wd
            n_fed = sum(nd.has_input for nd in members)
            n_rows = len(members) * wd
            specs.append(_Spec(li, members, k, wd, row, n_rows, n_fed * wd, [wd] * len(members)))
            row += n_rows
        if solo:
            start = row
            for nd in solo:
                rows[nd.member, nd.node] = row
                row += nd.width
            widths = [nd.width for nd in solo]
            specs.append(_Spec(li, solo, 0, 0, start, row - start, row - start, widths))
    return specs, rows


def _sources(spec: _Spec, rows: dict[tuple[int, int], int], zero_row: int) -> np.ndarray:
    """Buffer row of every bucket column: each node's sources in fan-in order, then padding."""
    src = np.full(len(spec.nodes) * spec.fan_in if spec.fan_in else 0, zero_row, np.int64)
    for i, nd in enumerate(spec.nodes if spec.fan_in else ()):
        at = i * spec.fan_in
        for s, w in nd.sources:
            src[at : at + w] = rows[nd.member, s] + np.arange(w)
            at += w
    return src


def plan(nodes: list[Node], n_in: int, merge_macs: float) -> Plan:
    """Place ``nodes`` in the buffer and group them into levels and buckets.

    Args:
        nodes: every member's hidden and output nodes.
        n_in: the input width (of the input block's rows).
        merge_macs: see :func:`_merge`.
    """
    specs, rows = _specs(nodes, merge_macs)
    n_rows = sum(sp.n_rows for sp in specs)
    input_rows = sum(sp.n_input_rows for sp in specs)
    levels: list[list[Group]] = [[] for _ in {sp.level for sp in specs}]
    groups: list[Group] = []
    places: dict[tuple[int, int], Place] = {}
    in_row, w_off, col = 0, input_rows * n_in, 0
    for sp in specs:
        n = len(sp.nodes) if sp.fan_in else 0
        grp = Group(
            row=sp.row,
            n_rows=sp.n_rows,
            n_input_rows=sp.n_input_rows,
            in_row=in_row,
            n=n,
            fan_in=sp.fan_in,
            width=sp.width,
            w_offset=w_off,
            col_offset=col,
            src=_sources(sp, rows, n_rows),
            runs=_runs([nd.act for nd in sp.nodes], sp.widths, sp.row),
        )
        for i, nd in enumerate(sp.nodes):
            places[nd.member, nd.node] = Place(rows[nd.member, nd.node], len(groups), i if sp.fan_in else -1)
        levels[sp.level].append(grp)
        groups.append(grp)
        in_row += sp.n_input_rows
        w_off += n * sp.width * sp.fan_in
        col += n * sp.fan_in
    executed = input_rows * n_in + sum(g.n * g.width * g.fan_in for g in groups)
    sizes = Sizes(rows=n_rows, input_rows=input_rows, padded=w_off, cols=col, executed=executed)
    return Plan(tuple(tuple(lv) for lv in levels), tuple(groups), places, sizes)
