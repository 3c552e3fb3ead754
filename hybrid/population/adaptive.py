"""The batched engine of adaptive genomes: per-input skip gates and exit heads (issue 16).

:class:`AdaptiveEngine` runs P feed-forward genomes, any mix of adaptive ones
(``genomes.adaptive``: exit heads, per-input skip gates) and plain ones, in one
computation per step. :class:`~hybrid.population.PopulationEngine` folds gates into
its weights under a hand-written backward and cannot multiply a node by a decision
taken per sample; a population without adaptive genes keeps running it (this
engine is only built when some member is adaptive).

Layout. Every node gets a *level*: the input 0, any other node ``1 + max`` of its
enabled feed-forward sources' levels (1 without any), except the output node and the
exit heads (they feed nothing), which all sit in the last level. Members are grouped
by their number of levels (a few deep members then do not pad every shallow member's
blocks); each group is one batched computation. Level ``l`` of every member of a group is
padded to ``R_l`` rows (each node: ``width`` consecutive rows; exits and the output
node are rows too). For each pair of levels ``k < l`` that some member links, a dense
block ``[P, R_k, R_l]`` is gathered from the flat trainable vectors (``weights``,
``biases``, ``gates``, ``skip_weights``, ``skip_biases``: every member's values,
member after member, no padding), so autograd gives every gradient. With
``h`` the (gated, skip-multiplied) values of the rows::

    W_eff = g(gate_e) * W_e                          (per block entry)
    pre_l = b_l + sum_k h_k @ W_eff[k, l]
    a_l   = act(pre_l)                                (per row; mixed activations)
    s_l   = c_l + sum_k h_k @ (g(gate_e) * skip_e)[k, l]   (one column per skip node)
    h_l   = z * g(gate_row) * a_l                     (exit / output rows: a_l)

``z = 1[s >= 0]`` at evaluation; in training the straight-through hard Gumbel of
``genomes.adaptive``: ``z = hard + (soft - soft.detach())`` with ``hard = 1[s + L >= 0]``,
``soft = sigmoid(s + L)``, ``L = log u - log(1 - u)`` for uniform ``u`` (``skip_noise``,
``(P, S, B)`` in each member's ``skip_nodes`` order). Gate logits lie in
:func:`hybrid.gates.gate_layout` order, member after member, so a one-member engine
draws the hard-concrete gates ``GenomeNet`` draws for the same noise row.

Exit rule (:meth:`AdaptiveEngine.infer`): exactly ``genomes.adaptive.evaluate_adaptive``
per member: the plan (stages, costs) of the current values, confidences in float64,
FLOPs as exact integers in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from genomes import Genome, GenomeError
from genomes.adaptive import EXIT, adaptive_plan, check_threshold, fit_threshold, skip_nodes

from ..activations import TORCH_ACTIVATIONS
from ..gates import NOISE_EPS, check_gate_kind, gate_layout, gate_values, open_probability
from ..net import with_values

__all__ = ["FIT_CHUNK", "AdaptiveEngine", "AdaptivePass", "skip_decisions"]

#: Samples per pass when fitting thresholds (bounds the work buffers on large splits).
FIT_CHUNK = 4096


class AdaptivePass(NamedTuple):
    """Everything one pass of :class:`AdaptiveEngine` computes (full path, every member).

    Attributes:
        output: the output node (skip gates applied, exits ignored).
        heads: each member's live exits' logits in its ``adaptive_plan(...).exits``
            order (the plan of the genomes the engine was built from), zero-padded.
        head_mask: which ``heads`` entries are real.
        z: each member's skip decisions in ``genomes.adaptive.skip_nodes`` order
            (straight-through values in training), zero-padded.
        skip_mask: which ``z`` entries are real.

    Shape:
        output (P, B, n_out); heads (P, E, B, n_out); head_mask (P, E); z (P, S, B); skip_mask (P, S)
    """

    output: torch.Tensor
    heads: torch.Tensor
    head_mask: torch.Tensor
    z: torch.Tensor
    skip_mask: torch.Tensor


def skip_decisions(s: torch.Tensor, u: torch.Tensor | None, training: bool) -> torch.Tensor:
    """Return skip decisions from skip logits: ``1[s >= 0]``, or straight-through hard Gumbel.

    Args:
        s: skip logits.
        u: uniform noise of the same shape (training; clamped to ``[NOISE_EPS, 1 - NOISE_EPS]``).
        training: straight-through: forward ``1[s + L >= 0]``, backward the gradient of
            ``sigmoid(s + L)``, ``L = log u - log(1 - u)``.

    Shape:
        s, u: any shape, equal -> the same shape
    """
    if not training:
        return (s >= 0).to(s.dtype)
    assert u is not None
    u = torch.clamp(u.to(s.device, s.dtype), NOISE_EPS, 1.0 - NOISE_EPS)
    t = s + (torch.log(u) - torch.log1p(-u))
    soft = torch.sigmoid(t)
    hard = (t >= 0).to(s.dtype)
    return hard + (soft - soft.detach())  # forward exactly hard: soft - soft is 0


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[index]`` for a 1-D ``values`` (``index_select``: its backward is a plain index_add)."""
    return values.index_select(0, index.reshape(-1)).view(index.shape)


class _Member:
    """Where one member's genes sit in the flat vectors and the level blocks (host side)."""

    def __init__(self, genome: Genome) -> None:
        g = genome.graph
        self.genome = genome
        self.order = genome.topological_order()
        active = genome.active_graph()
        self.preds = {n: sorted(active.predecessors(n)) for n in self.order}
        self.level: dict[int, int] = {}
        for n in self.order:
            if g.nodes[n]["role"] == "input":
                self.level[n] = 0
            else:
                self.level[n] = 1 + max((self.level[p] for p in self.preds[n]), default=0)
        #: The output node and exit heads that feed nothing: placed in the engine's last level.
        self.sinks = [
            n
            for n in self.order
            if g.nodes[n]["role"] in ("output", EXIT)
            and not any(True for _ in active.successors(n))
        ]
        self.n_levels = max(v for n, v in self.level.items() if n not in self.sinks) + 2
        self.gates = gate_layout(genome, self.order)
        self.ff_edges = [e for e in genome.gated_edges() if not g.edges[e]["recurrent"]]
        self.skips = skip_nodes(genome)
        self.exits = sorted(n for n in self.order if g.nodes[n]["role"] == EXIT)

    def place(self, last: int) -> None:
        """Put the sinks in level ``last`` (every member's last level) and number the rows."""
        g = self.genome.graph
        for n in self.sinks:
            assert last >= self.level[n], (last, self.level[n])
            self.level[n] = last
        self.n_levels = last + 1
        self.rows: dict[int, int] = {}  # node -> first row within its level
        used = [0] * self.n_levels
        for n in self.order:
            lv = self.level[n]
            self.rows[n] = used[lv]
            used[lv] += int(g.nodes[n]["width"])
        self.used = used


def _check_members(genomes: Sequence[Genome]) -> tuple[int, int]:
    """Return the population's ``(n_inputs, n_outputs)``; refuse what the adaptive engine cannot run.

    Raises:
        GenomeError: for no genome, members of different widths, a member with
            recurrent edges or with frozen genes (grafted modules).
    """
    if not genomes:
        raise GenomeError("AdaptiveEngine needs at least one genome, got none")
    g0 = genomes[0]
    for i, genome in enumerate(genomes):
        if (genome.n_inputs, genome.n_outputs) != (g0.n_inputs, g0.n_outputs):
            raise GenomeError(
                f"member {i} has {genome.n_inputs} inputs and {genome.n_outputs} outputs, "
                f"expected {g0.n_inputs} and {g0.n_outputs} like member 0"
            )
        if genome.is_recurrent:
            raise GenomeError(f"member {i} has recurrent edges: the adaptive engine is feed-forward only")
        if genome.frozen_nodes() or genome.frozen_edges():
            raise GenomeError(
                f"member {i} has frozen genes (grafted modules): the adaptive engine cannot hold them fixed"
            )
    return g0.n_inputs, g0.n_outputs


class _Part:
    """Members of one depth (their level count), packed into one set of level blocks.

    :class:`AdaptiveEngine` holds one part per depth so that a few deep members do not
    pad every shallow member's blocks. Same arguments; ``genomes`` are already checked.
    """

    sample_gates: bool = True  # as PackedGates.sample_gates

    def __init__(
        self,
        genomes: Sequence[Genome],
        gate: str = "sigmoid",
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.gate = check_gate_kind(gate)
        self.device = torch.device(device if device is not None else "cpu")
        self.dtype = dtype
        self.genomes = tuple(genomes)
        self.skip_generator: torch.Generator | None = None
        self.n_inputs, self.n_outputs = _check_members(self.genomes)
        self._structures = [g.structure_key() for g in self.genomes]
        self._build()
        self._fitted: list[float | None] = [None] * self.n_members
        self._rule_key: tuple | None = None
        self._rule: tuple | None = None

    # ------------------------------------------------------------------ packing
    def _build(self) -> None:
        mems = [_Member(g) for g in self.genomes]
        self._mems = mems
        p = len(mems)
        n_lv = max(m.n_levels for m in mems)
        for mem in mems:
            mem.place(n_lv - 1)
        widths = [self.n_inputs] + [
            max(m.used[lv] if lv < m.n_levels else 0 for m in mems) for lv in range(1, n_lv)
        ]
        self._widths = widths
        w_vals: list[np.ndarray] = []
        b_vals: list[np.ndarray] = []
        g_vals: list[np.ndarray] = []
        sw_vals: list[np.ndarray] = []
        sb_vals: list[float] = []
        w_member, b_member, g_member, sw_member, sb_member = [], [], [], [], []
        w_gate: list[np.ndarray] = []  # the edge gate index of each weight entry
        w_absent: list[np.ndarray] = []  # a sparse edge's absent connections (never trained)
        sw_gate: list[np.ndarray] = []
        # per (k, l) block: lists of (member, row k, row l, flat index)
        blocks: dict[tuple[int, int], list[np.ndarray]] = {}
        sblocks: dict[tuple[int, int], list[np.ndarray]] = {}
        n_skip_lv = [0] * n_lv
        skip_slot: list[dict[int, int]] = []  # per member: skip node -> column within its level
        for mem in mems:
            slots: dict[int, int] = {}
            per_lv = [0] * n_lv
            for n in mem.skips:
                lv = mem.level[n]
                slots[n] = per_lv[lv]
                per_lv[lv] += 1
            skip_slot.append(slots)
            n_skip_lv = [max(a, b) for a, b in zip(n_skip_lv, per_lv, strict=True)]
        self._n_skip_lv = n_skip_lv
        gate_of: list[dict] = []
        w_off = b_off = g_off = sw_off = sb_off = 0
        bias_rows = {lv: [] for lv in range(1, n_lv)}  # (member, row, flat bias index)
        gate_rows = {lv: [] for lv in range(1, n_lv)}  # (member, row, flat gate index) hidden rows
        one_rows = {lv: [] for lv in range(1, n_lv)}  # (member, row) exit / output rows: scale 1
        act_rows = {lv: {} for lv in range(1, n_lv)}  # name -> [(member, first row, width)]
        skip_rows = {lv: [] for lv in range(1, n_lv)}  # (member, row, skip column in level)
        sbias = {lv: [] for lv in range(1, n_lv)}  # (member, skip column, flat skip bias index)
        in_gate = np.zeros((p, self.n_inputs), np.int64)
        out_rows = np.zeros((p, self.n_outputs), np.int64)  # index into the sink levels' rows
        lv_start = np.concatenate([[0], np.cumsum(widths[1:])]).astype(
            np.int64
        )  # row offset of level l >= 1
        first = min(
            mem.level[n] for mem in mems for n in mem.sinks + mem.exits + [mem.genome.output_id]
        )
        self._sink_level = first
        lv_start = lv_start - lv_start[first - 1]  # rows from level ``first`` on
        exit_rows: list[list[np.ndarray]] = []
        skip_cols: list[list[int]] = []  # per member: its skips' columns in the concatenated z
        sk_start = np.concatenate([[0], np.cumsum(n_skip_lv)]).astype(np.int64)
        for m, (genome, mem) in enumerate(zip(self.genomes, mems, strict=True)):
            graph = genome.graph
            gidx: dict = {}
            off = g_off
            for run in mem.gates:
                gidx[run.key] = off
                a = graph.nodes[run.key] if isinstance(run.key, int) else graph.edges[run.key]
                g_vals.append(np.asarray(a["gate"], np.float32).reshape(-1))
                off += run.size
            g_member += [m] * (off - g_off)
            g_off = off
            gate_of.append(gidx)
            in_gate[m] = gidx[genome.input_id] + np.arange(self.n_inputs)
            for n in mem.order:
                a = graph.nodes[n]
                lv, row, width = mem.level[n], mem.rows[n], int(a["width"])
                if lv == 0:
                    continue
                rows = row + np.arange(width)
                bias_rows[lv] += [(m, r, b_off + i) for i, r in enumerate(rows)]
                b_vals.append(np.asarray(a["bias"], np.float32).reshape(-1))
                b_member += [m] * width
                b_off += width
                act_rows[lv].setdefault(a["activation"], []).append((m, row, width))
                if a["role"] == "hidden":
                    gate_rows[lv] += [(m, r, gidx[n] + i) for i, r in enumerate(rows)]
                else:
                    one_rows[lv] += [(m, r) for r in rows]
                if a.get("skip") is not None:
                    col = skip_slot[m][n]
                    skip_rows[lv] += [(m, r, col) for r in rows]
                    sbias[lv].append((m, col, sb_off))
                    sb_vals.append(float(np.asarray(a["skip"], np.float32).reshape(-1)[0]))
                    sb_member.append(m)
                    sb_off += 1
                if a["role"] == "output":
                    out_rows[m] = lv_start[lv - 1] + rows
            exit_rows.append(
                [
                    lv_start[mem.level[e] - 1] + mem.rows[e] + np.arange(self.n_outputs)
                    for e in mem.exits
                ]
            )
            skip_cols.append([int(sk_start[mem.level[n]] + skip_slot[m][n]) for n in mem.skips])
            for s, d in mem.ff_edges:
                a = graph.edges[s, d]
                wt = np.asarray(a["weight"], np.float32)
                rd, cs = wt.shape
                k, lv = mem.level[s], mem.level[d]
                r_idx = mem.rows[d] + np.repeat(np.arange(rd), cs)
                c_idx = mem.rows[s] + np.tile(np.arange(cs), rd)
                flat = w_off + np.arange(rd * cs)
                blocks.setdefault((k, lv), []).append(
                    np.stack([np.full(rd * cs, m), c_idx, r_idx, flat])
                )
                w_vals.append(wt.reshape(-1))
                w_absent.append(
                    np.zeros(rd * cs, bool) if a.get("mask") is None else ~a["mask"].reshape(-1)
                )
                w_member += [m] * (rd * cs)
                w_gate.append(np.full(rd * cs, gidx[(s, d)]))
                w_off += rd * cs
                if a.get("skip") is not None:
                    sk = np.asarray(a["skip"], np.float32).reshape(-1)
                    col = skip_slot[m][d]
                    flat = sw_off + np.arange(cs)
                    sblocks.setdefault((k, lv), []).append(
                        np.stack(
                            [np.full(cs, m), mem.rows[s] + np.arange(cs), np.full(cs, col), flat]
                        )
                    )
                    sw_vals.append(sk)
                    sw_member += [m] * cs
                    sw_gate.append(np.full(cs, gidx[(s, d)]))
                    sw_off += cs
        dev, fl = self.device, {"device": self.device, "dtype": self.dtype}
        idx = {"device": dev, "dtype": torch.long}

        def cat(parts: list, dtype: type = np.float32) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        self.weights = torch.tensor(cat(w_vals), **fl)
        absent = cat(w_absent, bool)
        #: The weights' absent connections (sparse edges: exactly 0, never trained), or None.
        self.weight_absent = torch.as_tensor(absent, device=dev) if absent.any() else None
        self.biases = torch.tensor(cat(b_vals), **fl)
        self.gates = torch.tensor(cat(g_vals), **fl)
        self.skip_weights = torch.tensor(cat(sw_vals), **fl)
        self.skip_biases = torch.tensor(np.asarray(sb_vals, np.float32), **fl)
        self.members = tuple(
            torch.as_tensor(np.asarray(x, np.int64), **idx)
            for x in (w_member, b_member, g_member, sw_member, sb_member)
        )
        self._gate_of = gate_of
        self._w_gate = torch.as_tensor(cat(w_gate, np.int64), **idx)
        self._sw_gate = torch.as_tensor(cat(sw_gate, np.int64), **idx)
        self._in_gate = torch.as_tensor(in_gate, **idx)
        ng = len(self.gates)
        zero_g, one_g = ng, ng + 1  # in the extended gate values [values, 0, 1]
        self._blocks: dict[tuple[int, int], torch.Tensor] = {}
        for (k, lv), parts in sorted(blocks.items()):
            arr = np.concatenate(parts, axis=1)
            table = np.full((p, widths[k], widths[lv]), w_off, np.int64)  # w_off: the appended zero
            table[arr[0], arr[1], arr[2]] = arr[3]
            self._blocks[k, lv] = torch.as_tensor(table, **idx)
        self._sblocks: dict[tuple[int, int], torch.Tensor] = {}
        for (k, lv), parts in sorted(sblocks.items()):
            arr = np.concatenate(parts, axis=1)
            table = np.full((p, widths[k], n_skip_lv[lv]), sw_off, np.int64)
            table[arr[0], arr[1], arr[2]] = arr[3]
            self._sblocks[k, lv] = torch.as_tensor(table, **idx)
        self._bias: list[torch.Tensor] = []
        self._row_gate: list[torch.Tensor] = []
        self._row_skip: list[torch.Tensor] = []
        self._row_keep: list[torch.Tensor] = []
        self._skip_bias: list[torch.Tensor] = []
        self._acts: list[tuple[str, list[tuple[str, torch.Tensor]]]] = []
        for lv in range(1, n_lv):
            r = widths[lv]
            bt = np.full((p, r), b_off, np.int64)
            for m, row, i in bias_rows[lv]:
                bt[m, row] = i
            gt = np.full((p, r), zero_g, np.int64)
            for m, row, i in gate_rows[lv]:
                gt[m, row] = i
            for m, row in one_rows[lv]:
                gt[m, row] = one_g
            st = np.full((p, r), n_skip_lv[lv], np.int64)  # the appended ones column
            for m, row, col in skip_rows[lv]:
                st[m, row] = col
            sbt = np.full((p, n_skip_lv[lv]), sb_off, np.int64)
            for m, col, i in sbias[lv]:
                sbt[m, col] = i
            self._bias.append(torch.as_tensor(bt, **idx))
            self._row_gate.append(torch.as_tensor(gt, **idx))
            onehot = np.zeros((p, n_skip_lv[lv] + 1, r), np.float64)
            onehot[np.arange(p)[:, None], st, np.arange(r)[None, :]] = 1.0
            # z per row = [z, 1] @ onehot: a bmm (its backward is one too, unlike a gather's)
            self._row_skip.append(torch.as_tensor(onehot[:, :-1], **fl))
            self._row_keep.append(torch.as_tensor(onehot[:, -1:], **fl))
            self._skip_bias.append(torch.as_tensor(sbt, **idx))
            counts = {name: sum(w for _, _, w in spans) for name, spans in act_rows[lv].items()}
            base = max(sorted(counts), key=lambda name: counts[name]) if counts else "identity"
            others = []
            for name, spans in sorted(act_rows[lv].items()):
                if name == base:
                    continue
                mask = np.zeros((p, 1, r), bool)
                for m, row, w in spans:
                    mask[m, 0, row : row + w] = True
                others.append((name, torch.as_tensor(mask, device=dev)))
            self._acts.append((base, others))
        self._out_rows = torch.as_tensor(out_rows, **idx)
        # every exit of every member, in the construction plan's order then the dead ones by id
        self._exit_ids: list[list[int]] = []
        self._live_exits: list[int] = []
        self._skip_ids = [list(mem.skips) for mem in mems]
        for genome, mem in zip(self.genomes, mems, strict=True):
            live = list(adaptive_plan(genome, self.gate).exits) if mem.exits else []
            self._exit_ids.append(live + [e for e in mem.exits if e not in live])
            self._live_exits.append(len(live))
        n_exit = max((len(e) for e in self._exit_ids), default=0)
        total_rows = int(sum(widths[first:]))
        er = np.full((p, n_exit, self.n_outputs), total_rows, np.int64)  # total_rows: a zero column
        for m, mem in enumerate(mems):
            pos = {e: i for i, e in enumerate(mem.exits)}
            for j, e in enumerate(self._exit_ids[m]):
                er[m, j] = exit_rows[m][pos[e]]
        self._exit_rows = torch.as_tensor(er, **idx)
        n_live = max(self._live_exits, default=0)
        hm = np.zeros((p, n_live), bool)
        for m, k in enumerate(self._live_exits):
            hm[m, :k] = True
        self._head_mask = torch.as_tensor(hm, device=dev)
        em = np.zeros((p, n_exit), bool)
        for m, ids in enumerate(self._exit_ids):
            em[m, : len(ids)] = True
        self._exit_mask = torch.as_tensor(em, device=dev)
        self._all_live = all(
            k == len(e) for k, e in zip(self._live_exits, self._exit_ids, strict=True)
        )
        n_s = max((len(s) for s in skip_cols), default=0)
        total_s = int(sum(n_skip_lv))
        sc = np.full((p, n_s), total_s, np.int64)  # total_s: a zero column
        sm = np.zeros((p, n_s), bool)
        inv = np.full((p, total_s), n_s, np.int64)  # noise column of each level slot (n_s: u = 1/2)
        for m, cols in enumerate(skip_cols):
            sc[m, : len(cols)] = cols
            sm[m, : len(cols)] = True
            inv[m, cols] = np.arange(len(cols))
        self._skip_cols = torch.as_tensor(sc, **idx)
        self._skip_mask = torch.as_tensor(sm, device=dev)
        self._skip_inv = torch.as_tensor(inv, **idx)
        self.n_skips = n_s
        # penalty: each member's gates gathered into a padded [P, G] table
        starts = np.array([gate_of[m][self.genomes[m].input_id] for m in range(p)])
        sizes = np.bincount(np.asarray(g_member, np.int64), minlength=p)
        width = max(int(sizes.max()), 1)
        table = starts[:, None] + np.arange(width)[None, :]
        table = np.where(np.arange(width)[None, :] < sizes[:, None], table, ng)
        self._gate_table = torch.as_tensor(table, **idx)

    # ------------------------------------------------------------------- sizes
    @property
    def n_members(self) -> int:
        """Number of members P."""
        return len(self.genomes)

    @property
    def n_gates(self) -> int:
        """Number of gates of all members (the width of a hard-concrete noise row)."""
        return int(self.gates.numel())

    @property
    def params(self) -> tuple[torch.Tensor, ...]:
        """The trained tensors ``(weights, biases, gates, skip_weights, skip_biases)``."""
        return self.weights, self.biases, self.gates, self.skip_weights, self.skip_biases

    def __repr__(self) -> str:
        return (
            f"AdaptiveEngine(P={self.n_members}, in={self.n_inputs}, out={self.n_outputs}, gate={self.gate!r}, "
            f"device={self.device}, levels={len(self._widths)}, skips={self.n_skips}, exits={self._head_mask.shape[1]})"
        )

    # ---------------------------------------------------------------- function
    def _run(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None,
        training: bool,
        skip_noise: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(all rows' h (P, B, rows + 1), all exits' logits (P, X, B, n_out), z (P, S, B))``."""
        if x.dim() != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"inputs should have shape (B, {self.n_inputs}), got {tuple(x.shape)}")
        p, b = self.n_members, x.shape[0]
        x = x.to(self.device, self.dtype)
        gv = gate_values(self.gates, self.gate, noise, training and self.sample_gates)
        gext = torch.cat([gv, gv.new_zeros(1), gv.new_ones(1)])
        weff = torch.cat([self.weights * gv.index_select(0, self._w_gate), gv.new_zeros(1)])
        seff = torch.cat([self.skip_weights * gv.index_select(0, self._sw_gate), gv.new_zeros(1)])
        bext = torch.cat([self.biases, gv.new_zeros(1)])
        sbext = torch.cat([self.skip_biases, gv.new_zeros(1)])
        has_skip = self.n_skips > 0
        u_lv: list[torch.Tensor] = []
        if has_skip and training:
            if skip_noise is None:
                if self.skip_generator is None:
                    raise ValueError(
                        "training-mode skip gates need skip_noise or engine.skip_generator, got None"
                    )
                skip_noise = torch.rand(
                    (p, self.n_skips, b),
                    generator=self.skip_generator,
                    device=self.skip_generator.device,
                )
            un = skip_noise.to(self.device, self.dtype)
            if tuple(un.shape) != (p, self.n_skips, b):
                raise ValueError(
                    f"skip_noise should have shape {(p, self.n_skips, b)}, got {tuple(un.shape)}"
                )
            un = torch.cat([un, un.new_full((p, 1, b), 0.5)], 1)
            u_all = un.gather(1, self._skip_inv.unsqueeze(2).expand(-1, -1, b))  # (P, sum S_l, B)
            u_lv = list(torch.split(u_all, self._n_skip_lv, 1))
        hs = [x.unsqueeze(0) * gv[self._in_gate].unsqueeze(1)]  # (P, B, n_in)
        zs: list[torch.Tensor] = []
        for lv in range(1, len(self._widths)):
            i = lv - 1
            pre = _take(bext, self._bias[i]).unsqueeze(1).expand(p, b, -1)
            s = (
                _take(sbext, self._skip_bias[i]).unsqueeze(1).expand(p, b, -1)
                if self._n_skip_lv[lv]
                else None
            )
            for k in range(lv):
                blk = self._blocks.get((k, lv))
                if blk is not None:
                    pre = torch.baddbmm(pre, hs[k], _take(weff, blk))
                sblk = self._sblocks.get((k, lv))
                if sblk is not None:
                    s = torch.baddbmm(s, hs[k], _take(seff, sblk))
            base, others = self._acts[i]
            a = TORCH_ACTIVATIONS[base](pre)
            for name, mask in others:
                a = torch.where(mask, TORCH_ACTIVATIONS[name](pre), a)
            h = a * _take(gext, self._row_gate[i]).unsqueeze(1)
            if s is not None:
                z = skip_decisions(s, u_lv[lv].transpose(1, 2) if training else None, training)
                zs.append(z)
                h = h * torch.baddbmm(self._row_keep[i], z, self._row_skip[i])
            else:
                zs.append(pre.new_zeros(p, b, 0))
            hs.append(h)
        # the levels that hold an output or exit row (usually the last one alone), + a zero column
        rows = torch.cat([*hs[self._sink_level :], hs[0].new_zeros(p, b, 1)], 2)
        ex = self._exit_rows
        if ex.shape[1]:
            heads = rows.gather(2, ex.view(p, 1, -1).expand(-1, b, -1)).view(p, b, ex.shape[1], -1)
            heads = heads.permute(0, 2, 1, 3)
        else:
            heads = rows.new_zeros(p, 0, b, self.n_outputs)
        if has_skip:
            zcat = torch.cat([*zs, rows.new_zeros(p, b, 1)], 2)
            z = zcat.gather(2, self._skip_cols.unsqueeze(1).expand(-1, b, -1)).transpose(1, 2)
        else:
            z = rows.new_zeros(p, 0, b)
        return rows, heads, z

    def forward(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None = None,
        training: bool = False,
        skip_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return every member's output node (skip gates applied, exits ignored): ``genomes.evaluate``.

        Args:
            x: inputs.
            noise: uniform noise for training-mode hard-concrete gates (``gate_layout`` order).
            training: training-mode gates and straight-through skip decisions.
            skip_noise: uniform noise of the skip decisions (training); None: drawn
                from ``skip_generator``.

        Raises:
            ValueError: for inputs of the wrong shape, or training without the noise it needs.

        Shape:
            x: (B, n_inputs); noise: (n_gates,); skip_noise: (P, S, B) -> (P, B, n_outputs)
        """
        return self.heads(x, noise, training, skip_noise).output

    __call__ = forward

    def heads(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None = None,
        training: bool = False,
        skip_noise: torch.Tensor | None = None,
        every_exit: bool = False,
    ) -> AdaptivePass:
        """Return the output, every live exit's logits and the skip decisions (the full path).

        Arguments as :meth:`forward`; ``every_exit``: ``heads`` also hold the exits
        that are not live under the deterministic gates of the genomes the engine was
        built from (after the live ones, by id; ``head_mask`` marks them too):
        training reaches them, since training-mode gates may open their path.
        """
        rows, heads, z = self._run(x, noise, training, skip_noise)
        b = x.shape[0]
        out = rows.gather(2, self._out_rows.unsqueeze(1).expand(-1, b, -1))
        if every_exit:
            return AdaptivePass(out, heads, self._exit_mask, z, self._skip_mask)
        n_live = self._head_mask.shape[1]
        heads = heads[:, :n_live]
        if not bool(self._all_live):  # a dead exit's slot after the live ones: zeros
            heads = heads * self._head_mask.view(*self._head_mask.shape, 1, 1).to(heads.dtype)
        return AdaptivePass(out, heads, self._head_mask, z, self._skip_mask)

    def penalty(self) -> torch.Tensor:
        """Return each member's structure penalty (sum of its gates' open probabilities).

        Shape:
            (P,)
        """
        probs = open_probability(self.gates, self.gate)
        return torch.cat([probs, probs.new_zeros(1)])[self._gate_table].sum(1)

    def skip_rates(self, z: torch.Tensor) -> torch.Tensor:
        """Return the share of samples each skip gate runs (0 on padding).

        Shape:
            z: (P, S, B) -> (P, S)
        """
        return torch.where(self._skip_mask, z.mean(2), z.new_zeros(()))

    # ----------------------------------------------------------- the exit rule
    def _rule_tensors(self) -> tuple:
        """The exit rule of the current values: per member the live exits' slots and the costs."""
        key = tuple(t._version for t in self.params) + tuple(id(t) for t in self.params)
        if self._rule_key == key and self._rule is not None:
            return self._rule
        current = self._current_genomes()
        plans = [adaptive_plan(g, self.gate) for g in current]
        p = self.n_members
        n_e = max((len(pl.exits) for pl in plans), default=0)
        n_s = self.n_skips
        slot = np.zeros((p, max(n_e, 1)), np.int64)
        n_exits = np.zeros(p, np.int64)
        base = np.zeros((p, n_e + 1), np.float64)
        cost = np.zeros((p, n_e + 1, max(n_s, 1)), np.float64)
        thr = np.full((p, max(n_e, 1)), np.inf)
        for m, pl in enumerate(plans):
            e = len(pl.exits)
            n_exits[m] = e
            slot[m, :e] = [self._exit_ids[m].index(x) for x in pl.exits]
            sb = pl.stage_base().astype(np.float64)
            sb[-1] += pl.node_flops[current[m].output_id]
            base[m, :e] = sb[:-1]
            base[m, n_e] = sb[-1]
            col = {n: i for i, n in enumerate(self._skip_ids[m])}
            for k, st in enumerate(pl.stages):
                kk = k if k < e else n_e
                for n in st.nodes:
                    if n in pl.skip_flops:
                        cost[m, kk, col[n]] = pl.node_flops[n]
            q = self._fitted[m]
            thr[m, :e] = [
                q if q is not None else current[m].graph.nodes[x]["threshold"] for x in pl.exits
            ]
        dev = self.device
        f64 = {"device": dev, "dtype": torch.float64}
        rule = (
            torch.as_tensor(slot, device=dev),
            torch.as_tensor(n_exits, device=dev),
            torch.as_tensor(base, **f64),
            torch.as_tensor(cost[:, :, :n_s], **f64),
            torch.as_tensor(thr[:, :n_e], **f64),
            plans,
        )
        self._rule_key, self._rule = key, rule
        return rule

    @torch.no_grad()
    def _stages(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple]:
        """Return ``(heads (P, E, B, n), output (P, B, n), stage_flops (P, E + 1, B), n_exits (P,), rule)``.

        Stage ``E`` (padding included) is the output's; heads are in each member's current plan order.
        """
        rows, all_heads, z = self._run(x, None, False, None)
        b = x.shape[0]
        out = rows.gather(2, self._out_rows.unsqueeze(1).expand(-1, b, -1))
        rule = self._rule_tensors()
        slot, n_exits, base, cost = rule[:4]
        n_e = base.shape[1] - 1
        if n_e:
            heads = all_heads.gather(
                1, slot[:, :n_e].view(self.n_members, n_e, 1, 1).expand(-1, -1, b, self.n_outputs)
            )
        else:
            heads = all_heads.new_zeros(self.n_members, 0, b, self.n_outputs)
        per = base.unsqueeze(2).expand(-1, -1, b)
        if cost.shape[2]:
            per = per + torch.bmm(cost, z.to(torch.float64))
        # a member's unused exit stages cost nothing: cumsum over them keeps its totals
        return heads, out, torch.cumsum(per, 1), n_exits, rule

    @torch.no_grad()
    def infer(
        self, x: torch.Tensor, thresholds: torch.Tensor | np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return every member's outputs, FLOPs and stage under the exit rule (``evaluate_adaptive``).

        Args:
            x: inputs.
            thresholds: one per live exit of each member, in its plan order (padding
                ignored); None: the fitted ones (:meth:`fit_thresholds`), else the genomes'.

        Raises:
            GenomeError: for thresholds of the wrong shape or outside (0, 1].

        Shape:
            x: (B, n_inputs); thresholds: (P, E) -> outputs (P, B, n_out), flops (P, B) float64,
            stage (P, B) int64
        """
        heads, out, stage_flops, n_exits, rule = self._stages(x)
        p, n_e, b = heads.shape[0], heads.shape[1], x.shape[0]
        thr = rule[4]
        if thresholds is not None:
            given = torch.as_tensor(np.asarray(thresholds, np.float64), device=self.device).reshape(
                p, -1
            )
            if given.shape[1] < n_e:
                raise GenomeError(
                    f"thresholds should have shape ({p}, {n_e}), got {tuple(given.shape)}"
                )
            for m in range(p):
                for k in range(int(n_exits[m])):
                    check_threshold(float(given[m, k]), f"thresholds[{m}, {k}]")
            thr = torch.where(
                torch.arange(n_e, device=self.device) < n_exits.view(-1, 1), given[:, :n_e], thr
            )
        if n_e:
            z = heads.to(torch.float64)
            conf = 1.0 / torch.exp(z - z.amax(-1, keepdim=True)).sum(-1)  # (P, E, B)
            sure = conf >= thr.unsqueeze(2)
            stop = torch.where(sure.any(1), sure.to(torch.uint8).argmax(1), n_exits.view(-1, 1))
        else:
            stop = torch.zeros(p, b, dtype=torch.long, device=self.device)
        pick = torch.where(stop == n_exits.view(-1, 1), n_e, stop)  # row in [heads..., output]
        stacked = torch.cat([heads, out.unsqueeze(1)], 1)
        outputs = stacked.gather(
            1, pick.view(p, 1, b, 1).expand(-1, -1, -1, self.n_outputs)
        ).squeeze(1)
        flops = stage_flops.gather(1, pick.unsqueeze(1)).squeeze(1)
        return outputs, flops, stop.to(torch.long)

    def fit_thresholds(
        self, X: torch.Tensor, y: torch.Tensor, tolerance: float
    ) -> list[tuple[float, float, float]]:
        """Fit each member's shared exit threshold on ``(X, y)`` (``genomes.adaptive.fit_threshold``).

        The fitted value is kept for every exit of the member (used by :meth:`infer`
        and :meth:`write_back`); a member without live exits keeps its genome's.

        Returns:
            Per member ``(threshold, accuracy, mean FLOPs)``.

        Shape:
            X: (N, n_inputs); y: (N,) class ids
        """
        parts = [self._stages(X[i : i + FIT_CHUNK]) for i in range(0, X.shape[0], FIT_CHUNK)]
        n_exits = parts[0][3] if parts else torch.zeros(self.n_members, dtype=torch.long)
        h, o, sf = (
            np.concatenate(
                [part[k].to("cpu", torch.float64).numpy() for part in parts],
                axis=-2 if k < 2 else -1,
            )
            for k in range(3)
        )
        y_np = y.detach().cpu().numpy()
        fits = []
        n_e = h.shape[1]
        for m in range(self.n_members):
            e = int(n_exits[m])
            stages = np.concatenate([sf[m, :e], sf[m, n_e:]])
            q, acc, cost = fit_threshold(h[m, :e], o[m], y_np, stages, tolerance)
            fits.append((q, acc, cost))
            self._fitted[m] = q if e else None
        self._rule_key = None
        return fits

    # -------------------------------------------------------------- write back
    def _current_genomes(self) -> list[Genome]:
        return self.write_back()

    def write_back(self) -> list[Genome]:
        """Return new genomes holding each member's current values (and fitted thresholds).

        Disabled edges, ``meta`` and everything the engine does not train come back
        unchanged; untrained values bit for bit.

        Raises:
            GenomeError: if a genome's structure changed since packing.
        """
        w, b, g, sw, sb = (t.detach().to("cpu", torch.float32).numpy() for t in self.params)
        out = []
        w_off = b_off = sw_off = sb_off = 0
        for m, (genome, mem) in enumerate(zip(self.genomes, self._mems, strict=True)):
            if genome.structure_key() != self._structures[m]:
                raise GenomeError("write_back: a genome's structure changed after packing")
            graph = genome.graph
            gidx = self._gate_of[m]
            nodes: dict[int, dict[str, np.ndarray]] = {}
            edges: dict[tuple[int, int], dict[str, object]] = {}
            for n in mem.order:
                a = graph.nodes[n]
                width = int(a["width"])
                vals: dict[str, np.ndarray] = {}
                if a["role"] in ("input", "hidden"):
                    vals["gate"] = g[gidx[n] : gidx[n] + width]
                if a["role"] != "input":
                    vals["bias"] = b[b_off : b_off + width]
                    b_off += width
                if a.get("skip") is not None:
                    vals["skip"] = sb[sb_off : sb_off + 1]
                    sb_off += 1
                nodes[n] = vals
            for s, d in mem.ff_edges:
                a = graph.edges[s, d]
                shape = a["weight"].shape
                size = shape[0] * shape[1]
                vals2: dict[str, object] = {
                    "weight": w[w_off : w_off + size].reshape(shape),
                    "gate": g[gidx[(s, d)]],
                }
                w_off += size
                if a.get("skip") is not None:
                    vals2["skip"] = sw[sw_off : sw_off + shape[1]]
                    sw_off += shape[1]
                edges[s, d] = vals2
            child = with_values(genome, nodes, edges)
            if self._fitted[m] is not None:
                for e in mem.exits:
                    child.graph.nodes[e]["threshold"] = float(self._fitted[m])
            out.append(child)
        return out


class AdaptiveEngine:
    """P feed-forward genomes (adaptive or not) run together, per-sample skip gates and exits.

    Members are grouped by depth (their number of levels); each group is packed into
    its own level blocks (:class:`_Part`) and runs as one batched computation; the
    results come back in member order.

    Args:
        genomes: valid feed-forward genomes sharing ``n_inputs`` and ``n_outputs`` (only read).
        gate: ``"sigmoid"`` or ``"hard_concrete"``.
        device: where to run (default CPU).
        dtype: float dtype of parameters and buffers.

    Raises:
        ValueError: for an unknown gate kind.
        GenomeError: for an empty population, members of different widths, a member
            with recurrent edges or with frozen genes (grafted modules).

    Attributes:
        skip_generator: where training-mode passes draw the skip noise when none is
            given (None: it must be given).
    """

    def __init__(
        self,
        genomes: Sequence[Genome],
        gate: str = "sigmoid",
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.gate = check_gate_kind(gate)
        self.device = torch.device(device if device is not None else "cpu")
        self.dtype = dtype
        self.genomes = tuple(genomes)
        self.skip_generator: torch.Generator | None = None
        self.n_inputs, self.n_outputs = _check_members(self.genomes)
        depth: dict[int, list[int]] = {}
        for m, genome in enumerate(self.genomes):
            depth.setdefault(_Member(genome).n_levels, []).append(m)
        groups = [depth[k] for k in sorted(depth)]
        self._parts = [_Part([self.genomes[m] for m in ids], gate, device, dtype) for ids in groups]
        self._ids = [torch.as_tensor(ids, dtype=torch.long, device=self.device) for ids in groups]
        order = np.concatenate([np.asarray(ids, np.int64) for ids in groups])
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        self._order = [int(m) for m in order]
        self._inverse = torch.as_tensor(inverse, device=self.device)
        sizes = [sum(r.size for r in gate_layout(g)) for g in self.genomes]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._noise_index = [
            torch.as_tensor(
                np.concatenate([np.arange(offsets[m], offsets[m + 1]) for m in ids]),
                dtype=torch.long,
                device=self.device,
            )
            for ids in groups
        ]
        self._n_gates = int(offsets[-1])
        self.n_skips = max(part.n_skips for part in self._parts)
        self._n_exits = max(part._head_mask.shape[1] for part in self._parts)
        self._n_every = max(part._exit_mask.shape[1] for part in self._parts)
        mask = torch.zeros(self.n_members, self.n_skips, dtype=torch.bool, device=self.device)
        for ids, part in zip(self._ids, self._parts, strict=True):
            mask[ids, : part.n_skips] = part._skip_mask
        self._skip_mask = mask

    # ------------------------------------------------------------------- gates
    @property
    def sample_gates(self) -> bool:
        """Whether training-mode hard-concrete gates are sampled (``PackedGates.sample_gates``)."""
        return all(part.sample_gates for part in self._parts)

    @sample_gates.setter
    def sample_gates(self, value: bool) -> None:
        for part in self._parts:
            part.sample_gates = value

    # ------------------------------------------------------------------- sizes
    @property
    def n_members(self) -> int:
        """Number of members P."""
        return len(self.genomes)

    @property
    def n_gates(self) -> int:
        """Number of gates of all members (the width of a hard-concrete noise row)."""
        return self._n_gates

    @property
    def params(self) -> tuple[torch.Tensor, ...]:
        """Every trained tensor: each group's ``(weights, biases, gates, skip_weights, skip_biases)``."""
        return tuple(t for part in self._parts for t in part.params)

    @property
    def frozen(self) -> list[torch.Tensor | None] | None:
        """Per trained tensor (``params`` order), the entries training must not move, or None.

        Those are the absent connections of sparse edges (``mutation.sparsify``): each
        part's weights' ``weight_absent``; None when no member has a sparse edge.
        """
        if all(part.weight_absent is None for part in self._parts):
            return None
        return [
            part.weight_absent if k == 0 else None
            for part in self._parts
            for k in range(len(part.params))
        ]

    def param_groups(self) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """Return ``(kind, tensor, member of each entry)`` of every trained tensor (``params`` order).

        ``kind`` is ``"weights"``, ``"biases"``, ``"gates"``, ``"skip_weights"`` or
        ``"skip_biases"``; member indices are the population's.
        """
        names = ("weights", "biases", "gates", "skip_weights", "skip_biases")
        out = []
        for ids, part in zip(self._ids, self._parts, strict=True):
            for name, t, local in zip(names, part.params, part.members, strict=True):
                out.append((name, t, ids[local] if local.numel() else local))
        return out

    def __repr__(self) -> str:
        return (
            f"AdaptiveEngine(P={self.n_members}, in={self.n_inputs}, out={self.n_outputs}, "
            f"gate={self.gate!r}, device={self.device}, groups={len(self._parts)}, "
            f"skips={self.n_skips}, exits={self._n_exits})"
        )

    # ---------------------------------------------------------------- function
    def _merge(self, parts: list[torch.Tensor], width: int | None = None) -> torch.Tensor:
        """Concatenate the groups' per-member tensors (padding dim 1 to ``width``) in member order."""
        if width is not None:
            parts = [
                t
                if t.shape[1] == width
                else torch.cat([t, t.new_zeros(t.shape[0], width - t.shape[1], *t.shape[2:])], 1)
                for t in parts
            ]
        out = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
        return out if len(parts) == 1 else out.index_select(0, self._inverse)

    def forward(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None = None,
        training: bool = False,
        skip_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return every member's output node (skip gates applied, exits ignored): ``genomes.evaluate``.

        Args:
            x: inputs.
            noise: uniform noise for training-mode hard-concrete gates (``gate_layout``
                order, member after member).
            training: training-mode gates and straight-through skip decisions.
            skip_noise: uniform noise of the skip decisions (training), in each member's
                ``skip_nodes`` order; None: drawn from ``skip_generator``.

        Raises:
            ValueError: for inputs of the wrong shape, or training without the noise it needs.

        Shape:
            x: (B, n_inputs); noise: (n_gates,); skip_noise: (P, S, B) -> (P, B, n_outputs)
        """
        return self.heads(x, noise, training, skip_noise).output

    __call__ = forward

    def heads(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None = None,
        training: bool = False,
        skip_noise: torch.Tensor | None = None,
        every_exit: bool = False,
    ) -> AdaptivePass:
        """Return the output, every live exit's logits and the skip decisions (the full path).

        Arguments as :meth:`forward`; ``every_exit``: ``heads`` also hold the exits
        that are not live under the deterministic gates of the genomes the engine was
        built from (after the live ones, by id; ``head_mask`` marks them too):
        training reaches them, since training-mode gates may open their path.
        """
        if x.dim() != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"inputs should have shape (B, {self.n_inputs}), got {tuple(x.shape)}")
        b = x.shape[0]
        if training and self.n_skips:
            if skip_noise is None:
                if self.skip_generator is None:
                    raise ValueError(
                        "training-mode skip gates need skip_noise or engine.skip_generator, got None"
                    )
                gen = self.skip_generator
                skip_noise = torch.rand(
                    (self.n_members, self.n_skips, b), generator=gen, device=gen.device
                )
            skip_noise = skip_noise.to(self.device, self.dtype)
            want = (self.n_members, self.n_skips, b)
            if tuple(skip_noise.shape) != want:
                raise ValueError(
                    f"skip_noise should have shape {want}, got {tuple(skip_noise.shape)}"
                )
        runs = []
        for ids, nidx, part in zip(self._ids, self._noise_index, self._parts, strict=True):
            nz = None if noise is None else noise.to(self.device).index_select(0, nidx)
            sn = None
            if training and part.n_skips:
                sn = skip_noise.index_select(0, ids)[:, : part.n_skips]  # type: ignore[union-attr]
            runs.append(part.heads(x, nz, training, sn, every_exit))
        e = self._n_every if every_exit else self._n_exits
        return AdaptivePass(
            self._merge([r.output for r in runs]),
            self._merge([r.heads for r in runs], e),
            self._merge([r.head_mask for r in runs], e),
            self._merge([r.z for r in runs], self.n_skips),
            self._skip_mask,
        )

    def penalty(self) -> torch.Tensor:
        """Return each member's structure penalty (sum of its gates' open probabilities).

        Shape:
            (P,)
        """
        return self._merge([part.penalty() for part in self._parts])

    def skip_rates(self, z: torch.Tensor) -> torch.Tensor:
        """Return the share of samples each skip gate runs (0 on padding).

        Shape:
            z: (P, S, B) -> (P, S)
        """
        return torch.where(self._skip_mask, z.mean(2), z.new_zeros(()))

    # ----------------------------------------------------------- the exit rule
    @torch.no_grad()
    def infer(
        self, x: torch.Tensor, thresholds: torch.Tensor | np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return every member's outputs, FLOPs and stage under the exit rule (``evaluate_adaptive``).

        Args:
            x: inputs.
            thresholds: one per live exit of each member, in its plan order (padding
                ignored); None: the fitted ones (:meth:`fit_thresholds`), else the genomes'.

        Raises:
            GenomeError: for thresholds of the wrong shape or outside (0, 1].

        Shape:
            x: (B, n_inputs); thresholds: (P, E) -> outputs (P, B, n_out), flops (P, B) float64,
            stage (P, B) int64
        """
        if x.dim() != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"inputs should have shape (B, {self.n_inputs}), got {tuple(x.shape)}")
        given = None
        if thresholds is not None:
            given = np.asarray(
                thresholds.detach().cpu() if isinstance(thresholds, torch.Tensor) else thresholds,
                np.float64,
            )
            if given.ndim != 2 or given.shape[0] != self.n_members:
                raise GenomeError(
                    f"thresholds should have shape ({self.n_members}, E), got {given.shape}"
                )
        runs = [
            part.infer(x, None if given is None else given[ids.cpu().numpy()])
            for ids, part in zip(self._ids, self._parts, strict=True)
        ]
        return tuple(self._merge([r[k] for r in runs]) for k in range(3))  # type: ignore[return-value]

    def fit_thresholds(
        self, X: torch.Tensor, y: torch.Tensor, tolerance: float
    ) -> list[tuple[float, float, float]]:
        """Fit each member's shared exit threshold on ``(X, y)`` (``genomes.adaptive.fit_threshold``).

        The fitted value is kept for every exit of the member (used by :meth:`infer`
        and :meth:`write_back`); a member without live exits keeps its genome's.

        Returns:
            Per member ``(threshold, accuracy, mean FLOPs)``.

        Shape:
            X: (N, n_inputs); y: (N,) class ids
        """
        fits: list = [None] * self.n_members
        for ids, part in zip(self._ids, self._parts, strict=True):
            for m, fit in zip(ids.tolist(), part.fit_thresholds(X, y, tolerance), strict=True):
                fits[m] = fit
        return fits

    def write_back(self) -> list[Genome]:
        """Return new genomes holding each member's current values (and fitted thresholds).

        Disabled edges, ``meta`` and everything the engine does not train come back
        unchanged; untrained values bit for bit.

        Raises:
            GenomeError: if a genome's structure changed since packing.
        """
        out: list = [None] * self.n_members
        for ids, part in zip(self._ids, self._parts, strict=True):
            for m, genome in zip(ids.tolist(), part.write_back(), strict=True):
                out[m] = genome
        return out
