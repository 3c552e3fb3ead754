"""The recurrent population engine: P genomes run over time in one computation per step.

:class:`RecurrentEngine` computes every member's function over a sequence
(``docs/design.md``, "Recurrent edges"): an enabled recurrent edge ``i -> j`` reads
``h_i(t - 1)`` (the given initial state, or zero, at ``t = 0``), every other edge
``h_i(t)``. It has :class:`~hybrid.population.engine.PopulationEngine`'s interface
(flat ``weights``/``biases``/``gates``, their member indices, ``gate_values``,
``penalty``, ``write_back``), so :class:`~hybrid.population.adam.BatchedAdamW` and
the training loops drive either.

How a member is laid out. Its non-input nodes are split in two:

* the **core**: every node whose value the next time step needs, i.e. the sources of
  recurrent edges (the state, ``genomes.state_layout``) and their feed-forward
  ancestors. Only the core runs inside the loop over time;
* the **rest** (usually the output node and nodes that only feed it): computed after
  the loop for all ``T * B`` samples at once, reading the core's values at ``t``
  and ``t - 1``.

Within each part nodes go to levels by feed-forward depth (inputs do not count: the
input's contribution, and that of recurrent edges from the input, is computed for
all time steps before the loop). Members of one block structure form a group (split
further by size where padding would cost more than another group's kernels,
``GROUP_MACS``); level ``l`` of every member of a group is one padded block of rows,
and the group's edges and biases are one dense tensor ``Dt[P, cols, rows]``
scattered from the flat weights and biases once per forward, with the edge gates
and the source neurons' gates folded in::

    cols: [1 | x(t) F | x(t-1) F | core(t-1) Rc | core(t) Rc | rest(t) Rr]
    rows: [core levels ... | rest levels ... | output]

(column 0 holds the biases, read against a column of ones) so a block reads one
contiguous column range. Rows hold ungated activations ``a = act(pre)`` (output
rows: ``pre``); the state's gated values ``g(gate) * a`` are formed at the end, and
a given initial state enters the first step through its own edge-gated weights.
When no member's output is a state node, the output is its own last level, at the
same rows for every member. The core runs over time in
:class:`~hybrid.population.recurrent_core.CoreLoop` (hand-written forward and
backward through time, one batched matmul per level link per step); autograd does
the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from genomes import Genome, GenomeError, state_layout

from ..gates import check_gate_kind, gate_layout
from ..net import has_frozen, members_from_flat
from .engine import PackedGates
from .recurrent_core import CoreLoop, activate

__all__ = ["RecurrentEngine"]


@dataclass
class _Member:
    """Where one member's genes live in the flat tensors and the row space."""

    edges: list[tuple[int, int]]  # gated edges, gate_layout order
    weight: list[int]  # start of each edge's weight in the flat weights
    edge_gate: int  # flat gate index of the first edge gate
    bias_nodes: list[int]
    bias: list[int]  # start of each bias in the flat biases
    gate_nodes: list[int]
    gate: list[int]  # start of each node's gates in the flat gates
    gates: tuple[int, int]  # this member's gate range
    state: tuple[tuple[int, int], ...]  # genomes.state_layout
    rows: dict[int, int] = field(default_factory=dict)  # node -> first row


def _levels(genome: Genome, nodes: set[int], order: list[int]) -> dict[int, int]:
    """Feed-forward level of each node of ``nodes``, counting only predecessors in ``nodes``."""
    g = genome.graph
    level: dict[int, int] = {}
    for n in order:
        if n not in nodes:
            continue
        preds = [
            p
            for p in g.predecessors(n)
            if p in nodes and g.edges[p, n]["enabled"] and not g.edges[p, n]["recurrent"]
        ]
        level[n] = max((level[p] + 1 for p in preds), default=0)
    return level


def _core(genome: Genome, sources: list[int]) -> set[int]:
    """Non-input state nodes and their feed-forward ancestors (never the input)."""
    g, inp = genome.graph, genome.input_id
    todo = [n for n in sources if n != inp]
    core = set(todo)
    while todo:
        n = todo.pop()
        for p in g.predecessors(n):
            e = g.edges[p, n]
            if p != inp and p not in core and e["enabled"] and not e["recurrent"]:
                core.add(p)
                todo.append(p)
    return core


#: Per-sample multiply-adds a group's own kernels per step are worth, by device type:
#: members of one structure are split by size where the padding saved pays for them.
GROUP_MACS = {"cpu": 12288.0, "cuda": 262144.0}


def _split_by_size(ids: list[int], sizes: list[int], cost: float) -> list[list[int]]:
    """Cut ``ids`` (sorted by size) into runs minimising ``sum(cost + len(run) * max_size**2)``.

    A run pads every member to its largest, so its work is ``len * max**2``; each run
    costs ``cost`` more. Dynamic programming over the sorted sizes.
    """
    order = sorted(ids, key=lambda m: (sizes[m], m))
    w = [float(sizes[m]) ** 2 for m in order]
    best = [0.0] + [float("inf")] * len(order)
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        for i in range(j):
            c = best[i] + cost + (j - i) * w[j - 1]
            if c < best[j]:
                best[j], cut[j] = c, i
    runs, j = [], len(order)
    while j:
        runs.append(sorted(order[cut[j] : j]))
        j = cut[j]
    return runs[::-1]


class RecurrentEngine(PackedGates):
    """P genomes with recurrent edges, run over time together.

    Args:
        genomes: valid genomes sharing ``n_inputs`` and ``n_outputs`` (only read);
            feed-forward genomes work too (applied at every time step).
        gate: ``"sigmoid"`` or ``"hard_concrete"``.
        device: where to run (default CPU).
        dtype: float dtype of parameters and buffers.

    Raises:
        ValueError: for an unknown gate kind.
        GenomeError: for an empty population, members of different widths, or a member
            with frozen (grafted) genes or sparse edges: both are feed-forward only.
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
        if not self.genomes:
            raise GenomeError("RecurrentEngine: the population is empty")
        first = self.genomes[0]
        self.n_inputs, self.n_outputs = first.n_inputs, first.n_outputs
        for k, g in enumerate(self.genomes):
            if (g.n_inputs, g.n_outputs) != (self.n_inputs, self.n_outputs):
                raise GenomeError(
                    f"RecurrentEngine: member {k} has {g.n_inputs} inputs and {g.n_outputs} "
                    f"outputs, expected {self.n_inputs} and {self.n_outputs} as member 0"
                )
            if has_frozen(g):
                raise GenomeError(
                    f"member {k} has frozen (grafted) genes: modules are feed-forward only"
                )
            if any(a.get("mask") is not None for *_, a in g.graph.edges(data=True)):
                raise GenomeError(
                    f"member {k} has sparse edges (mutation.sparsify): they are for feed-forward networks"
                )
        self._structure = [g.structure_key() for g in self.genomes]
        self._build()

    # ------------------------------------------------------------------ packing
    def _build(self) -> None:
        """Pack the flat parameters, the row layout and every index tensor."""
        weights: list[np.ndarray] = []
        biases: list[np.ndarray] = []
        gates: list[np.ndarray] = []
        wm: list[np.ndarray] = []
        bm: list[np.ndarray] = []
        gm: list[np.ndarray] = []
        n_w = n_b = n_g = 0
        members: list[_Member] = []
        parts: list[tuple[dict[int, int], dict[int, int], int]] = []  # core levels, rest levels
        for m, genome in enumerate(self.genomes):
            g = genome.graph
            order = genome.topological_order()
            runs = gate_layout(genome, order)
            sl = _Member([], [], 0, [], [], [], [], (n_g, n_g), tuple(state_layout(genome)))
            for key, size in runs:
                if isinstance(key, tuple):
                    if not sl.edges:
                        sl.edge_gate = n_g
                    sl.edges.append(key)
                    gates.append(np.atleast_1d(np.asarray(g.edges[key]["gate"], np.float32)))
                else:
                    sl.gate_nodes.append(key)
                    sl.gate.append(n_g)
                    gates.append(np.asarray(g.nodes[key]["gate"], np.float32))
                n_g += size
            if not sl.edges:
                sl.edge_gate = n_g
            sl.gates = (sl.gates[0], n_g)
            for s, d in sl.edges:
                w = np.asarray(g.edges[s, d]["weight"], np.float32)
                sl.weight.append(n_w)
                weights.append(w.reshape(-1))
                n_w += w.size
            for n in order:
                if g.nodes[n]["role"] != "input":
                    sl.bias_nodes.append(n)
                    sl.bias.append(n_b)
                    biases.append(np.asarray(g.nodes[n]["bias"], np.float32))
                    n_b += int(g.nodes[n]["width"])
            wm.append(np.full(n_w - sum(len(x) for x in wm), m))
            bm.append(np.full(n_b - sum(len(x) for x in bm), m))
            gm.append(np.full(n_g - sum(len(x) for x in gm), m))
            core = _core(genome, [n for n, _ in sl.state])
            rest = {n for n in g.nodes if g.nodes[n]["role"] != "input"} - core
            parts.append((_levels(genome, core, order), _levels(genome, rest, order), len(order)))
            members.append(sl)
        self._members = members
        self._flat = (
            np.concatenate(weights) if weights else np.zeros(0, np.float32),
            np.concatenate(biases),
            np.concatenate(gates),
        )
        self._member_index = tuple(
            np.concatenate(x).astype(np.int64) if x else np.zeros(0, np.int64) for x in (wm, bm, gm)
        )
        self._global_tensors()
        # Members of one block structure share a group: a two-level member does not pad
        # every one-level member with a second block.
        keys: dict[tuple[int, int, bool], list[int]] = {}
        for m, (genome, (core, rest, _)) in enumerate(zip(self.genomes, parts, strict=True)):
            out_core = genome.output_id in core
            n_rest = max((lv + 1 for n, lv in rest.items() if n != genome.output_id), default=0)
            key = (max(core.values(), default=-1) + 1, n_rest, out_core)
            keys.setdefault(key, []).append(m)
        sizes = [
            sum(int(a["width"]) for _, a in g.graph.nodes(data=True)) - self.n_inputs
            for g in self.genomes
        ]
        cost = GROUP_MACS.get(self.device.type, GROUP_MACS["cuda"])
        buckets = [b for ids in keys.values() for b in _split_by_size(ids, sizes, cost)]
        self._groups = [_Group(self, ids, [parts[m][:2] for m in ids]) for ids in buckets]
        order = np.concatenate([grp.ids for grp in self._groups])
        self._unperm = torch.as_tensor(np.argsort(order), device=self.device)
        self.state_size = max(grp.state_size for grp in self._groups)

    def _global_tensors(self) -> None:
        """The flat parameters and the per-weight, per-member index tensors."""
        F = self.n_inputs
        n_w, n_g = len(self._flat[0]), len(self._flat[2])
        one = n_g + 1  # index of 1 in the gate values extended by [0, 1]
        w_gate = np.zeros(n_w, np.int64)  # edge gate of each weight
        w_src = np.full(n_w, one, np.int64)  # the neuron gate of its source column, else 1
        hidden = np.zeros(n_w, bool)  # weights leaving a hidden node (L1, neuron sizes)
        in_gate = []
        for genome, sl in zip(self.genomes, self._members, strict=True):
            g = genome.graph
            gate_of = dict(zip(sl.gate_nodes, sl.gate, strict=True))
            for k, (s, d) in enumerate(sl.edges):
                size = g.edges[s, d]["weight"].size
                ws = g.edges[s, d]["weight"].shape[1]
                idx = np.arange(sl.weight[k], sl.weight[k] + size)
                w_gate[idx] = sl.edge_gate + k
                if s in gate_of:  # input and hidden sources: their neuron gates
                    w_src[idx] = np.tile(gate_of[s] + np.arange(ws), size // ws)
                hidden[idx] = g.nodes[s]["role"] == "hidden"
            in_gate.append(gate_of[genome.input_id] + np.arange(F))
        idx = {"device": self.device, "dtype": torch.long}
        fl = {"device": self.device, "dtype": self.dtype}
        self.weights = torch.tensor(self._flat[0], **fl)
        self.biases = torch.tensor(self._flat[1], **fl)
        self.gates = torch.tensor(self._flat[2], **fl)
        self.members = tuple(torch.as_tensor(x, **idx) for x in self._member_index)
        self._w_gate = torch.as_tensor(w_gate, **idx)
        self._w_src = torch.as_tensor(w_src, **idx)
        self._in_gate = torch.as_tensor(np.stack(in_gate), **idx)
        self._hidden_weights = torch.as_tensor(np.flatnonzero(hidden), **idx)
        # Penalty: each member's gates (contiguous) as a padded [P, G] table.
        starts = np.array([sl.gates[0] for sl in self._members])
        sizes = np.array([sl.gates[1] - sl.gates[0] for sl in self._members])
        width = max(int(sizes.max()), 1)
        table = starts[:, None] + np.arange(width)[None, :]
        table = np.where(np.arange(width)[None, :] < sizes[:, None], table, n_g)
        self._gate_table = torch.as_tensor(table, **idx)

    # ----------------------------------------------------------------- sizes
    def __repr__(self) -> str:
        groups = ", ".join(
            f"{len(g.ids)}x(rows={g.n_rows}, core={g.n_core}, levels={len(g.blocks)})"
            for g in self._groups
        )
        return (
            f"RecurrentEngine(P={self.n_members}, in={self.n_inputs}, out={self.n_outputs}, "
            f"gate={self.gate!r}, device={self.device}, state={self.state_size}, groups=[{groups}])"
        )

    @property
    def groups(self) -> list[_Group]:
        """The member groups (one block structure each), in packing order."""
        return list(self._groups)

    @property
    def params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The trained tensors ``(weights, biases, gates)``."""
        return self.weights, self.biases, self.gates

    @property
    def n_members(self) -> int:
        """Number of members P."""
        return len(self.genomes)

    @property
    def n_gates(self) -> int:
        """Number of gates of all members (the width of a noise row)."""
        return len(self._flat[2])

    def gate_range(self, member: int) -> tuple[int, int]:
        """Return ``(start, end)`` of ``member``'s gates in the flat gates and a noise row."""
        return self._members[member].gates

    def state_sizes(self) -> list[int]:
        """Return each member's state size (``genomes.state_size``)."""
        return [sum(w for _, w in sl.state) for sl in self._members]

    def state_layouts(self) -> list[tuple[tuple[int, int], ...]]:
        """Return each member's ``genomes.state_layout``: its state columns, in order."""
        return [sl.state for sl in self._members]

    # ---------------------------------------------------------------- function
    def forward(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None = None,
        training: bool = False,
        state: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return every member's outputs over the sequence and its final state.

        Args:
            x: input sequences, shared by all members, on the engine's device.
            noise: uniform noise for training-mode hard-concrete gates.
            training: use training-mode gates.
            state: each member's initial state (``genomes.state_layout`` order; columns
                past a member's own state size are ignored); None: zeros.

        Returns:
            ``(outputs, final state)``; a member's final-state columns past its own
            state size are zero.

        Raises:
            ValueError: if ``x`` or ``state`` has the wrong shape.

        Shape:
            x: (B, T, n_inputs); noise: (n_gates,); state: (P, B, state_size)
            -> (P, B, T, n_outputs), (P, B, state_size)
        """
        P, F, S = self.n_members, self.n_inputs, self.state_size
        if x.dim() != 3 or x.shape[2] != F:
            raise ValueError(f"inputs should have shape (B, T, {F}), got {tuple(x.shape)}")
        B, T = x.shape[0], x.shape[1]
        if T < 1:
            raise ValueError(
                f"inputs should hold at least one time step, got shape {tuple(x.shape)}"
            )
        if state is not None and tuple(state.shape) != (P, B, S):
            raise ValueError(f"state should have shape ({P}, {B}, {S}), got {tuple(state.shape)}")
        out, final = self._run(x.to(self.dtype), noise, training, state)
        return out.permute(0, 3, 2, 1), final

    def _run(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None,
        training: bool,
        state: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` with the outputs class-major: (P, n_outputs, T, B)."""
        values = self.gate_values(noise, training)
        values = torch.cat([values, values.new_zeros(1), values.new_ones(1)])
        w = self.weights * values.index_select(0, self._w_gate)  # edge gates folded in
        w_src = w * values.index_select(0, self._w_src)  # and the source neurons' gates
        # Dense weights are gathered from [w_src | biases] (biases: a column of ones).
        dense_src = torch.cat([w_src, self.biases])
        outs, finals = [], []
        S = self.state_size
        for grp in self._groups:
            st = None if state is None else state.index_select(0, grp.index)[:, :, : grp.state_size]
            out, final = grp.run(x, values, w, dense_src, st)
            outs.append(out)
            finals.append(final if grp.state_size == S else _pad(final, S))
        if len(self._groups) == 1:
            return outs[0], finals[0]
        return (
            torch.cat(outs).index_select(0, self._unperm),
            torch.cat(finals).index_select(0, self._unperm),
        )

    __call__ = forward

    def weight_l1(self, sources: str = "hidden") -> torch.Tensor:
        """Return each member's sum of ``|W|`` over its enabled edges (ff and recurrent).

        Args:
            sources: ``"hidden"``: only edges leaving a hidden node (each neuron's
                outgoing and recurrent weights); ``"all"``: every enabled edge.

        Raises:
            ValueError: for another ``sources``.

        Shape:
            (P,)
        """
        if sources not in ("hidden", "all"):
            raise ValueError(f"sources should be 'hidden' or 'all', got {sources!r}")
        w, member = self.weights.abs(), self.members[0]
        if sources == "hidden":
            w, member = w[self._hidden_weights], member[self._hidden_weights]
        return w.new_zeros(self.n_members).index_add(0, member, w)

    # -------------------------------------------------------------- write back
    def write_back(self) -> list[Genome]:
        """Return new genomes holding each member's current values.

        Disabled edges, unused biases and gates and ``meta`` are copied unchanged;
        untrained values come back bit for bit.

        Raises:
            GenomeError: if a genome's structure changed since packing.
        """
        w, b, g = (t.detach().to("cpu", torch.float32).numpy() for t in self.params)
        return members_from_flat(self.genomes, self._members, self._structure, w, b, g)


class _Group:
    """Members of one block structure, packed into padded level blocks (module docstring).

    Index tensors point into the engine's flat parameters; ``ids`` are the members'
    places in the population.
    """

    def __init__(
        self,
        engine: RecurrentEngine,
        ids: list[int],
        parts: list[tuple[dict[int, int], dict[int, int]]],
    ) -> None:
        self.ids = np.array(ids, dtype=np.int64)
        self.genomes = [engine.genomes[m] for m in ids]
        self._members = [engine._members[m] for m in ids]
        self.n_inputs, self.n_outputs = engine.n_inputs, engine.n_outputs
        self.device, self.dtype = engine.device, engine.dtype
        self._sizes = tuple(len(f) for f in (engine._flat[0], engine._flat[2], engine._flat[1]))
        self.index = torch.as_tensor(self.ids, device=self.device)
        self._in_gate = engine._in_gate[self.index]
        self._layout_rows(parts)
        self._layout_tensors()

    def _layout_rows(self, parts: list[tuple[dict[int, int], dict[int, int]]]) -> None:
        """Give every non-input node its rows: core levels, rest levels, then the output."""
        outputs = [g.output_id for g in self.genomes]
        parts = [(core, rest, 0) for core, rest in parts]
        #: True when no member's output is a state node: the output is its own last level.
        self.output_level = all(
            o not in core for o, (core, _, _) in zip(outputs, parts, strict=True)
        )
        levels = []
        for o, (core, rest, _) in zip(outputs, parts, strict=True):
            if self.output_level:
                rest = {n: lv for n, lv in rest.items() if n != o}
            levels.append((core, rest))
        n_core = max((max(c.values(), default=-1) + 1 for c, _ in levels), default=0)
        n_rest = max((max(r.values(), default=-1) + 1 for _, r in levels), default=0)
        widths = np.zeros(n_core + n_rest, np.int64)
        for genome, (core, rest) in zip(self.genomes, levels, strict=True):
            own = np.zeros_like(widths)
            for n, lv in core.items():
                own[lv] += genome.graph.nodes[n]["width"]
            for n, lv in rest.items():
                own[n_core + lv] += genome.graph.nodes[n]["width"]
            widths = np.maximum(widths, own)
        sizes = [int(w) for w in widths] + ([self.n_outputs] if self.output_level else [])
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.n_core = int(widths[:n_core].sum())
        self.n_rows = int(starts[-1])
        #: (first row, end row) of every level block: core levels, rest levels, output.
        self.blocks = [(int(starts[k]), int(starts[k + 1])) for k in range(len(sizes))]
        self._n_core_blocks = n_core
        for genome, sl, (core, rest) in zip(self.genomes, self._members, levels, strict=True):
            fill = list(starts[:-1])
            for n, k in [
                *sorted(core.items()),
                *((n, n_core + lv) for n, lv in sorted(rest.items())),
            ]:
                sl.rows[n] = int(fill[k])
                fill[k] += genome.graph.nodes[n]["width"]
            if self.output_level:
                sl.rows[genome.output_id] = int(starts[-2])

    def _layout_tensors(self) -> None:
        """Build the index tensors the forward pass gathers with."""
        P, F, R, Rc = len(self.ids), self.n_inputs, self.n_rows, self.n_core
        C = 1 + 2 * F + Rc + R  # [1 | x(t) | x(t-1) | core(t-1) | core(t) | rest(t)]
        self.n_cols = C
        c0 = 1 + 2 * F  # the first core column
        n_w, n_g, n_b = self._sizes
        one, zero = n_g + 1, n_g  # indices into the gate values extended by [0, 1]
        S = max((sum(w for _, w in sl.state) for sl in self._members), default=0)
        self.state_size = int(S)
        dense_w: list[np.ndarray] = []  # the group's weights ...
        dense: list[np.ndarray] = []  # ... and their places in Dt (P, C, R), flattened
        state_w: list[np.ndarray] = []  # recurrent weights from state nodes ...
        state_pos: list[np.ndarray] = []  # ... and their places in Ws (P, S, R), flattened
        row_gate = np.full((P, R), zero, np.int64)
        acts = np.full((P, R), "", dtype=object)
        out_rows = np.zeros((P, self.n_outputs), np.int64)
        state_src = np.full((P, S), F + R, np.int64)  # into [h_in | h rows | 0]
        self._any_input_rec = False
        core_level = np.zeros(Rc, np.int64)  # core row -> its level
        for k, (r0, r1) in enumerate(self.blocks[: self._n_core_blocks]):
            core_level[r0:r1] = k
        links: set[tuple[int, int, bool]] = set()  # (source level, destination level, rec)
        #: Whether a recurrent edge leaves a core node for a node outside the core.
        self._rest_reads_prev = False
        for m, (genome, sl) in enumerate(zip(self.genomes, self._members, strict=True)):
            g, inp = genome.graph, genome.input_id
            gate_of = dict(zip(sl.gate_nodes, sl.gate, strict=True))
            state_col, col = {}, 0
            for n, w in sl.state:
                state_col[n] = col
                state_src[m, col : col + w] = (
                    np.arange(w) if n == inp else F + sl.rows[n] + np.arange(w)
                )
                col += w
            for k, (s, d) in enumerate(sl.edges):
                e = g.edges[s, d]
                wd, ws = e["weight"].shape
                rec = bool(e["recurrent"])
                rows = sl.rows[d] + np.arange(wd)
                if s == inp:
                    cols = 1 + (F if rec else 0) + np.arange(ws)
                    self._any_input_rec |= rec
                elif rec:
                    cols = c0 + sl.rows[s] + np.arange(ws)
                    self._rest_reads_prev |= sl.rows[d] >= Rc
                else:
                    cols = c0 + Rc + sl.rows[s] + np.arange(ws)
                if s != inp and sl.rows[s] < Rc and sl.rows[d] < Rc:
                    links.add((int(core_level[sl.rows[s]]), int(core_level[sl.rows[d]]), rec))
                idx = (sl.weight[k] + np.arange(wd * ws)).reshape(wd, ws)
                dense_w.append(idx.reshape(-1))
                dense.append(((m * C + cols[None, :]) * R + rows[:, None]).reshape(-1))
                if rec:
                    scols = state_col[s] + np.arange(ws)
                    state_w.append(idx.reshape(-1))
                    state_pos.append(((m * S + scols[None, :]) * R + rows[:, None]).reshape(-1))
            for n, start in zip(sl.bias_nodes, sl.bias, strict=True):
                w = g.nodes[n]["width"]
                dense_w.append(n_w + start + np.arange(w))  # the bias column, 0
                dense.append((m * C) * R + sl.rows[n] + np.arange(w))
                acts[m, sl.rows[n] : sl.rows[n] + w] = g.nodes[n]["activation"]
                if g.nodes[n]["role"] == "output":
                    row_gate[m, sl.rows[n] : sl.rows[n] + w] = one
                else:
                    row_gate[m, sl.rows[n] : sl.rows[n] + w] = gate_of[n] + np.arange(w)
            out_rows[m] = sl.rows[genome.output_id] + np.arange(self.n_outputs)
        idx = {"device": self.device, "dtype": torch.long}
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64)  # noqa: E731
        self._dense_w = torch.as_tensor(cat(dense_w), **idx)
        self._dense = torch.as_tensor(cat(dense), **idx)
        self._state_w = torch.as_tensor(cat(state_w), **idx)
        self._state_pos = torch.as_tensor(cat(state_pos), **idx)
        self._row_gate = torch.as_tensor(row_gate, **idx)
        self._out_rows = torch.as_tensor(out_rows, **idx)
        self._state_src = torch.as_tensor(state_src, **idx)
        self._in_gate_flat = self._in_gate.reshape(-1)
        self._core_gate_flat = self._row_gate[:, :Rc].reshape(-1)
        # Activations per block: the commonest one everywhere, the others where they are.
        self._acts = []
        for r0, r1 in self.blocks:
            names = acts[:, r0:r1]
            used = [a for a in names.reshape(-1) if a]
            base = max(set(used), key=used.count) if used else "identity"
            others = []
            for a in sorted(set(used) - {base}):
                others.append((a, torch.as_tensor(names == a, device=self.device).unsqueeze(1)))
            self._acts.append((base, others))
        n = self._n_core_blocks
        self._loop = CoreLoop(self.blocks[:n], self._acts[:n], links)

    def _dense_weights(self, dense_src: torch.Tensor) -> torch.Tensor:
        """Every member's edges and biases as one dense ``Dt[P, cols, rows]``.

        ``Dt`` (``D`` transposed) has the edge gates and the source neurons' gates
        folded in (rows hold ungated activations); column 0 holds the biases.
        """
        P, R = len(self.ids), self.n_rows
        # Scattered (unique places): the backward is a gather of the weights' places.
        vals = dense_src.index_select(0, self._dense_w)
        Dt = dense_src.new_zeros(P * self.n_cols * R).index_copy(0, self._dense, vals)
        return Dt.view(P, self.n_cols, R)

    def _state_weights(self, w: torch.Tensor) -> torch.Tensor:
        """``Ws[P, state, rows]``: a given initial state (gated values) through the
        recurrent edges, edge gates folded in."""
        P, R = len(self.ids), self.n_rows
        vals = w.index_select(0, self._state_w)
        Ws = w.new_zeros(P * self.state_size * R).index_copy(0, self._state_pos, vals)
        return Ws.view(P, self.state_size, R)

    def _activate(self, block: int, pre: torch.Tensor) -> torch.Tensor:
        return activate(self._acts[block], pre)

    def run(
        self,
        x: torch.Tensor,
        values: torch.Tensor,
        w: torch.Tensor,
        dense_src: torch.Tensor,
        state: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The group's outputs, class-major (P_g, n_outputs, T, B), and final states.

        Args:
            x: the inputs (B, T, F).
            values: gate values extended by ``[0, 1]``.
            w: every weight with its edge gate folded in.
            dense_src: every weight with its edge gate and its source neuron's gate
                folded in, then every bias.
            state: the group members' initial states (P_g, B, state_size), or None.

        Values are row vectors: a block's activations are (P, B, rows) per step, or
        (P, T * B, rows) for all steps; the output block is kept transposed,
        (P, n_outputs, T * B), the layout the losses reduce fastest.
        """
        P, F, Rc = len(self.ids), self.n_inputs, self.n_core
        B, T = x.shape[0], x.shape[1]
        Dt = self._dense_weights(dense_src)
        xt = x.transpose(0, 1).reshape(T * B, F)  # t-major rows: t * B + b
        cols = [xt.new_ones(T * B, 1), xt]  # [1 | x(t)]: the bias column first
        if self._any_input_rec:  # x(t - 1) as F more columns; zero at t = 0
            cols.append(torch.cat([xt.new_zeros(B, F), xt[: (T - 1) * B]], 0))
        xt = torch.cat(cols, 1)
        n_in = xt.shape[1]
        c0 = 1 + 2 * F  # the first core column
        st = None if state is None or self.state_size == 0 else state
        Ws = None if st is None else self._state_weights(w)

        def inputs(r0: int, r1: int) -> torch.Tensor:
            """Bias and input terms of rows r0:r1 for every step, (P, T * B, r1 - r0)."""
            # A transposed view of a contiguous copy: the fastest CPU bmm for an inner
            # size of F (measured 2.3 ms against 7 ms for a contiguous one at P = 56).
            w_in = Dt[:, :n_in, r0:r1].transpose(1, 2).contiguous().transpose(1, 2)
            u = torch.bmm(xt.expand(P, -1, -1), w_in)
            if st is None or Ws is None:
                return u
            first = u[:, :B] + torch.bmm(st, Ws[:, :, r0:r1])  # the given state, at t = 0
            return torch.cat([first, u[:, B:]], 1)

        a_last = x.new_zeros(P, B, 0)
        parts: list[torch.Tensor] = []
        lead = 0
        if Rc:
            prev, now = self._core(inputs(0, Rc).view(P, T, B, Rc), Dt)
            a_last = now[:, (T - 1) * B :]
            parts, lead = ([prev, now], Rc) if prev is not None else ([now], 0)
        rows = parts[-1:]
        last = len(self.blocks) - 1
        for k in range(self._n_core_blocks, len(self.blocks)):
            r0, r1 = self.blocks[k]
            W = Dt[:, c0 + Rc - lead : c0 + Rc + r0, r0:r1].contiguous()
            src = None if not parts else parts[0] if len(parts) == 1 else torch.cat(parts, 2)
            if self.output_level and k == last:
                u = inputs(r0, r1)
                out = (u if src is None else torch.baddbmm(u, src, W)).transpose(1, 2)
                break
            u = inputs(r0, r1)
            a = self._activate(k, u if src is None else torch.baddbmm(u, src, W))
            parts.append(a)
            rows.append(a)
        else:
            allrows = torch.cat(rows, 2)
            out = allrows.gather(2, self._out_rows.unsqueeze(1).expand(P, T * B, self.n_outputs))
            out = out.transpose(1, 2)
        final = self._final_state(x, values, a_last)
        return out.reshape(P, self.n_outputs, T, B), final

    def _core(self, U: torch.Tensor, Dt: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Run the core over time; return its activations at ``t - 1`` and ``t``, (P, T * B, Rc).

        The first is None when nothing outside the core reads it. The given initial
        state is in ``U``'s first step already, so the loop starts from zeros.
        """
        P, T, B, Rc = U.shape
        c0 = 1 + 2 * self.n_inputs  # the first core column
        now = self._loop(U, Dt[:, c0 : c0 + 2 * Rc, :Rc]).view(P, T * B, Rc)
        if not self._rest_reads_prev:  # no recurrent edge from the core into the rest
            return None, now
        return torch.cat([now.new_zeros(P, B, Rc), now[:, : (T - 1) * B]], 1), now

    def _final_state(self, x: torch.Tensor, values: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Each member's state after the last step, ``genomes.state_layout`` order: (P, B, S).

        Args:
            x: the inputs (B, T, F).
            values: gate values extended by ``[0, 1]``.
            a: the core's activations at the last step (P, B, Rc).
        """
        P, S, B = len(self.ids), self.state_size, x.shape[0]
        if S == 0:
            return x.new_zeros(P, B, 0)
        in_gate = values.index_select(0, self._in_gate_flat).view(P, 1, -1)
        h_in = x[:, -1, :].unsqueeze(0) * in_gate  # (P, B, F)
        h = a * values.index_select(0, self._core_gate_flat).view(P, 1, self.n_core)
        src = torch.cat([h_in, h, h.new_zeros(P, B, self.n_rows - self.n_core + 1)], 2)
        return src.gather(2, self._state_src.unsqueeze(1).expand(P, B, S))


def _pad(state: torch.Tensor, size: int) -> torch.Tensor:
    """``state`` (P, B, S) with zero columns up to ``size``."""
    return torch.cat([state, state.new_zeros(*state.shape[:2], size - state.shape[2])], 2)


def gate_of_input(sl: _Member, input_id: int) -> int:
    """Flat index of the input node's first neuron gate."""
    return sl.gate[sl.gate_nodes.index(input_id)]


def _take(state: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Columns of ``state`` (P, B, S) picked by ``index`` (P, K); index S gives zeros: (P, B, K)."""
    P, B = state.shape[:2]
    padded = torch.cat([state, state.new_zeros(P, B, 1)], 2)
    return padded.gather(2, index.unsqueeze(1).expand(P, B, index.shape[1]))
