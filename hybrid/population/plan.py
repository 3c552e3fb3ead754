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

import numpy as np

__all__ = ["Group", "Node", "ladder", "plan"]

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


@dataclass
class Node:
    """A hidden or output node to place (``row`` and ``slot`` are set by :func:`plan`)."""

    member: int
    node: int
    level: int
    width: int
    act: int
    sources: list[tuple[int, int]]  # (source node, width) of non-input sources, fan-in order
    has_input: bool
    row: int = -1
    slot: int = -1  # index within its bucket (-1: input-only group)


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


def plan(
    nodes: list[Node], n_in: int, merge_macs: float
) -> tuple[tuple[tuple[Group, ...], ...], dict]:
    """Place ``nodes`` (setting ``row``/``slot``) and return the levels and sizes.

    Returns:
        ``(levels, sizes)``; ``sizes`` has ``rows``, ``input_rows``, ``padded`` (weight
        vector length), ``cols`` (bucket columns) and ``executed`` (MACs per sample).
    """
    by_level: dict[int, list[Node]] = defaultdict(list)
    for nd in nodes:
        by_level[nd.level].append(nd)
    specs = []  # (level index, nodes, K, wd, row, n_rows, n_input_rows, widths)
    row = 0
    for li, lvl in enumerate(sorted(by_level)):
        fed = [nd for nd in by_level[lvl] if nd.sources]
        solo = sorted(
            (nd for nd in by_level[lvl] if not nd.sources),
            key=lambda nd: (nd.act, nd.member, nd.node),
        )
        for members, k, wd in _buckets(fed, merge_macs):
            for i, nd in enumerate(members):
                nd.row, nd.slot = row + i * wd, i
            n_fed = sum(nd.has_input for nd in members)
            specs.append(
                (li, members, k, wd, row, len(members) * wd, n_fed * wd, [wd] * len(members))
            )
            row += len(members) * wd
        if solo:
            start = row
            for nd in solo:
                nd.row, nd.slot = row, -1
                row += nd.width
            specs.append(
                (li, solo, 0, 0, start, row - start, row - start, [nd.width for nd in solo])
            )
    input_rows = sum(s[6] for s in specs)
    levels: list[list[Group]] = [[] for _ in by_level]
    in_row, w_off, col = 0, input_rows * n_in, 0
    for li, members, k, wd, start, n_rows, n_inp, widths in specs:
        n = len(members) if k else 0
        levels[li].append(
            Group(
                row=start,
                n_rows=n_rows,
                n_input_rows=n_inp,
                in_row=in_row,
                n=n,
                fan_in=k,
                width=wd,
                w_offset=w_off,
                col_offset=col,
                src=np.full(n * k, -1, np.int64),
                runs=_runs([nd.act for nd in members], widths, start),
            )
        )
        in_row += n_inp
        w_off += n * wd * k
        col += n * k
    sizes = {
        "rows": row,
        "input_rows": input_rows,
        "padded": w_off,
        "cols": col,
        "executed": input_rows * n_in + sum(g.n * g.width * g.fan_in for lv in levels for g in lv),
    }
    return tuple(tuple(lv) for lv in levels), sizes
