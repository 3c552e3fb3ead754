"""Run a packed population's function forward and backward, level by level.

The hand-written backward exists for memory traffic, not for speed of arithmetic.
With autograd, every level reading a shared activation buffer costs a zero-filled
gradient of the whole buffer (``index_select`` / slice backward), so a step moves
``depth x rows x B`` floats. Here the buffers (pre-activations ``Z``, activations
``A`` and their gradients) are allocated once per batch size and reused, and the
backward walks the levels in reverse, accumulating each level's input gradient
into one buffer with ``index_add_``: memory traffic stays proportional to the real
work. Kernel launches per step depend on levels x buckets, never on the number of
members.

Gates are folded into the weights as column scales (``W_eff = W * (g_e * g_src)``;
the scales come from autograd in :mod:`hybrid.population.engine`, the products and
their gradients are made here), so the buffer holds ungated activations and the
input is shared by every member. All buffers are neuron-major ``[rows, B]``: a
gather or scatter moves whole rows.

On CUDA ``index_add_`` accumulates with atomics, so gradients can differ in the
last bit between runs unless ``torch.use_deterministic_algorithms(True)`` is set.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from genomes import ACTIVATION_IDS

from .layout import Layout
from .plan import Group

__all__ = ["GraphProgram", "graph_apply"]

#: Work-buffer bytes (rows and gathered columns) of the groups run back to back as one
#: chunk: about what stays in a core's L2 cache between a chunk's ops.
CHUNK_BYTES = 1 << 19

#: Below this many bucket weights per bucket, gate scales are applied in one flat
#: gather/scatter (cheap per entry) rather than one op per bucket (cheap per launch).
FLAT_SCALE_ENTRIES_PER_BUCKET = 4096

aten = torch.ops.aten

_Fwd = Callable[[torch.Tensor, torch.Tensor], None]
_Bwd = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], None]


def _gauss_fwd(z: torch.Tensor, a: torch.Tensor) -> None:
    torch.mul(z, z, out=a)
    a.neg_().exp_()


def _gauss_bwd(g: torch.Tensor, z: torch.Tensor, a: torch.Tensor) -> None:
    g.mul_(a).mul_(z).mul_(-2.0)


def _sin_bwd(g: torch.Tensor, z: torch.Tensor, a: torch.Tensor) -> None:
    g.mul_(torch.cos(z))


# Activation forward (z -> out a) and backward (grad_a, z, a -> grad_z written over
# grad_a), by id; the backward kernels are the ones autograd uses for these ops.
# Identity needs no op either way. The activations in ``FROM_OUTPUT`` differentiate
# from their output alone, so they run in place on the activation buffer (no
# pre-activation is kept); the others keep a copy of their pre-activations.
_FORWARD: dict[str, _Fwd] = {
    "relu": lambda z, a: torch.clamp_min(z, 0.0, out=a),
    "tanh": lambda z, a: torch.tanh(z, out=a),
    "sigmoid": lambda z, a: torch.sigmoid(z, out=a),
    "gelu": lambda z, a: aten.gelu.out(z, approximate="tanh", out=a),
    "sin": lambda z, a: torch.sin(z, out=a),
    "gauss": _gauss_fwd,
    "softplus": lambda z, a: a.copy_(F.softplus(z)),
}
_BACKWARD: dict[str, _Bwd] = {
    "relu": lambda g, z, a: aten.threshold_backward.grad_input(g, a, 0, grad_input=g),
    "tanh": lambda g, z, a: aten.tanh_backward.grad_input(g, a, grad_input=g),
    "sigmoid": lambda g, z, a: aten.sigmoid_backward.grad_input(g, a, grad_input=g),
    "gelu": lambda g, z, a: aten.gelu_backward.grad_input(g, z, approximate="tanh", grad_input=g),
    "sin": _sin_bwd,
    "gauss": _gauss_bwd,
    "softplus": lambda g, z, a: aten.softplus_backward.grad_input(g, z, 1, 20, grad_input=g),
}
FROM_OUTPUT = {ACTIVATION_IDS[k] for k in ("relu", "tanh", "sigmoid")}
FORWARD_BY_ID = {ACTIVATION_IDS[k]: f for k, f in _FORWARD.items()}
BACKWARD_BY_ID = {ACTIVATION_IDS[k]: f for k, f in _BACKWARD.items()}
IDENTITY = ACTIVATION_IDS["identity"]


def _level_runs(groups: tuple[Group, ...]) -> list[tuple[int, int, int]]:
    """Return a level's activation runs, merged across its groups (contiguous rows)."""
    runs: list[list[int]] = []
    for grp in groups:
        for act, s, e in grp.runs:
            if runs and runs[-1][0] == act and runs[-1][2] == s:
                runs[-1][2] = e
            else:
                runs.append([act, s, e])
    return [(a, s, e) for a, s, e in runs if a != IDENTITY]


class _Group:
    """Views of one group's slices of every buffer, made once per batch size.

    Slicing in the step loop costs more than the arithmetic for tiny genomes, so
    every view a step needs is made here once. Pre-activations are written into
    the activation buffer ``a`` and activated in place; gradients of activations
    become gradients of pre-activations in place in ``ga``.
    """

    def __init__(
        self, prog: GraphProgram, grp: Group, buf: _Buffers, params: tuple, col0: int
    ) -> None:
        weights, bias = params
        n_in, b = prog.layout.n_inputs, buf.batch
        n, k, wd, ri = grp.n, grp.fan_in, grp.width, grp.n_input_rows
        rows = slice(grp.row, grp.row + grp.n_rows)
        self.bucket = bool(k)
        win = slice(grp.in_row * n_in, (grp.in_row + ri) * n_in)
        self.win = prog.w[win].view(ri, n_in)
        self.gwin = prog.gw[win].view(ri, n_in)
        self.zin, self.gzin = buf.a[grp.row : grp.row + ri], buf.ga[grp.row : grp.row + ri]
        self.z = buf.a[rows]
        self.bias = bias[rows][:, None]
        if not k:
            return
        wsl = slice(grp.w_offset, grp.w_offset + n * wd * k)
        csl = slice(grp.col_offset, grp.col_offset + n * k)
        self.x3 = buf.x[csl].view(n, k, b)
        self.x3t = self.x3.transpose(1, 2)
        self.bias3 = bias[rows].view(n, wd, 1)
        self.z3 = buf.a[rows].view(n, wd, b)
        self.gz3 = buf.ga[rows].view(n, wd, b)
        self.w3 = prog.w[wsl].view(n, wd, k)
        self.w3t = self.w3.transpose(1, 2)
        self.gw3 = prog.gw[wsl].view(n, wd, k)
        self.raw3 = weights[wsl].view(n, wd, k)
        self.grad3 = prog.grad_w[wsl].view(n, wd, k)
        self.cols3 = prog.cols[csl].view(n, 1, k)
        self.gcols3 = prog.grad_cols[csl].view(n, 1, k)
        self.gx3 = buf.gx[grp.col_offset - col0 : grp.col_offset - col0 + n * k].view(n, k, b)


def _chunks(groups: tuple[Group, ...], batch: int, budget: int) -> list[list[Group]]:
    """Split a level's groups into consecutive runs of at most ``budget`` buffer floats."""
    out: list[list[Group]] = []
    size = budget
    for grp in groups:
        n = (grp.n_rows + grp.n * grp.fan_in) * batch
        if size + n > budget:
            out.append([])
            size = 0
        out[-1].append(grp)
        size += n
    return out


class _Chunk:
    """Consecutive groups of one level, run back to back while their rows are in cache.

    One gather and one scatter for all of them, activation runs merged across them.
    """

    def __init__(self, prog: GraphProgram, groups: list[Group], buf: _Buffers) -> None:
        buckets = [grp for grp in groups if grp.fan_in]
        c0 = buckets[0].col_offset if buckets else 0
        c1 = buckets[-1].col_offset + buckets[-1].n * buckets[-1].fan_in if buckets else 0
        self.groups = [_Group(prog, grp, buf, buf.params, c0) for grp in groups]
        src = np.concatenate([grp.src for grp in buckets]) if buckets else np.zeros(0, np.int64)
        self.src = torch.as_tensor(src, device=prog.device)
        self.x, self.gx = buf.x[c0:c1], buf.gx[: c1 - c0]
        rows = slice(groups[0].row, groups[-1].row + groups[-1].n_rows)
        self.ga, self.gbias = buf.ga[rows], prog.grad_bias[rows]
        self.runs = []
        for act, s, e in _level_runs(groups):
            keep = act not in FROM_OUTPUT  # its backward needs the pre-activation
            z = buf.zs[buf.n_zs : buf.n_zs + e - s] if keep else None
            buf.n_zs += (e - s) if keep else 0
            self.runs.append((FORWARD_BY_ID[act], BACKWARD_BY_ID[act], z, buf.a[s:e], buf.ga[s:e]))


class _Buffers:
    """Work buffers for one batch size (reused from step to step) and their views."""

    def __init__(
        self, prog: GraphProgram, batch: int, weights: torch.Tensor, bias: torch.Tensor
    ) -> None:
        opts = {"device": prog.device, "dtype": prog.dtype}
        rows = prog.layout.n_rows
        self.batch = batch
        self.key = (weights.data_ptr(), bias.data_ptr())
        self.params = (weights, bias)
        budget = CHUNK_BYTES // torch.finfo(prog.dtype).bits * 8
        chunks = [c for lvl in prog.layout.levels for c in _chunks(lvl, batch, budget)]
        gather = [sum(g.n * g.fan_in for g in c) for c in chunks]
        self.a = torch.zeros(rows + 1, batch, **opts)  # row `rows` is the zero row
        self.ga = torch.empty(rows + 1, batch, **opts)
        self.zs = torch.empty(prog.n_saved_rows, batch, **opts)  # kept pre-activations
        self.n_zs = 0
        self.x = torch.empty(prog.n_cols, batch, **opts)  # gathered inputs, kept for backward
        self.gx = torch.empty(max(gather + [1]), batch, **opts)
        self.chunks = [_Chunk(prog, c, self) for c in chunks]
        self.reversed = self.chunks[::-1]
        self.buckets = [g for c in self.chunks for g in c.groups if g.bucket]


class GraphProgram:
    """The level/bucket plan of a :class:`Layout` on a device, with its work buffers.

    The buffers are reused, so only the most recent forward can be backpropagated
    (any number of times): a backward of an older one raises.

    Args:
        layout: the packed population.
        device: where to run.
        dtype: float dtype of the buffers.
    """

    def __init__(self, layout: Layout, device: torch.device | str, dtype: torch.dtype) -> None:
        self.layout = layout
        self.device = torch.device(device)
        self.dtype = dtype
        idx = {"device": self.device, "dtype": torch.long}
        fl = {"device": self.device, "dtype": dtype}
        self.out_rows = torch.as_tensor(layout.out_rows, **idx)
        self.n_cols = len(layout.col_edge_gate)
        self.n_saved_rows = sum(
            e - s
            for lvl in layout.levels
            for act, s, e in _level_runs(lvl)
            if act not in FROM_OUTPUT
        )
        self.n_in_block = layout.n_input_rows * layout.n_inputs
        # Gate scales of bucket weights: one op per bucket, or (many small buckets)
        # one gather and one scatter over all bucket weights, whichever costs less.
        groups = [grp for lvl in layout.levels for grp in lvl if grp.fan_in]
        n_entries = len(layout.weights) - self.n_in_block
        self.flat_scales = n_entries < FLAT_SCALE_ENTRIES_PER_BUCKET * len(groups)
        self.entry_col = None
        if self.flat_scales:
            cols = [
                np.broadcast_to(
                    g.col_offset + np.arange(g.n * g.fan_in).reshape(g.n, 1, g.fan_in),
                    (g.n, g.width, g.fan_in),
                ).reshape(-1)
                for g in groups
            ]
            entry_col = np.concatenate(cols) if cols else np.zeros(0, np.int64)
            self.entry_col = torch.as_tensor(entry_col, **idx)
            self.cols_e = torch.zeros(n_entries, **fl)
        n_padded = len(layout.weights)
        self.w = torch.zeros(n_padded, **fl)  # effective (gated) weights
        self.gw = torch.zeros(n_padded, **fl)
        self.grad_w = torch.zeros(n_padded, **fl)
        self.cols = torch.zeros(self.n_cols, **fl)
        self.grad_cols = torch.zeros(self.n_cols, **fl)
        self.grad_bias = torch.zeros(layout.n_rows, **fl)
        self.in_scale = torch.zeros(layout.n_input_rows, layout.n_inputs, **fl)
        self._buffers: dict[int, _Buffers] = {}
        self._saved: tuple | None = None
        self.generation = 0  # forwards so far: tells a backward whether its buffers survive
        #: Return the weight and column gradients in reused buffers (valid until the next
        #: backward) instead of fresh tensors: for a caller that consumes them at once.
        self.reuse_grad_buffers = False

    def buffers(self, batch: int, weights: torch.Tensor, bias: torch.Tensor) -> _Buffers:
        """Return the work buffers for ``batch`` samples (kept for the last two sizes)."""
        buf = self._buffers.get(batch)
        if buf is None or buf.key != (weights.data_ptr(), bias.data_ptr()):
            if len(self._buffers) >= 2 and batch not in self._buffers:
                self._buffers.pop(next(iter(self._buffers)))
            buf = self._buffers[batch] = _Buffers(self, batch, weights, bias)
        return buf

    def nbytes(self) -> int:
        """Return the bytes held by the plan's index tensors and work buffers."""
        tensors = [
            self.out_rows,
            self.w,
            self.gw,
            self.grad_w,
            self.cols,
            self.grad_cols,
            self.grad_bias,
            self.in_scale,
        ]
        for b in self._buffers.values():
            tensors += [b.a, b.ga, b.zs, b.x, b.gx] + [c.src for c in b.chunks]
        return sum(t.numel() * t.element_size() for t in tensors)

    @torch.no_grad()
    def forward(
        self,
        xt: torch.Tensor,
        weights: torch.Tensor,
        cols: torch.Tensor,
        in_scale: torch.Tensor,
        bias: torch.Tensor,
    ) -> torch.Tensor:
        """Return every member's output.

        Args:
            xt: the shared input, transposed.
            weights: the padded weights (ungated).
            cols: gate scale of every bucket column.
            in_scale: gate scale of every input-block weight.
            bias: bias of every buffer row.

        Shape:
            xt: (n_in, B); weights: (n_padded,); cols: (n_cols,);
            in_scale: (n_input_rows, n_in); bias: (rows,) -> (P * n_out, B)
        """
        buf = self.buffers(xt.shape[1], weights, bias)
        a, block = buf.a, self.n_in_block
        self.cols.copy_(cols)
        self.in_scale.copy_(in_scale)
        torch.mul(weights[:block], self.in_scale.view(-1), out=self.w[:block])
        if self.flat_scales:
            torch.index_select(self.cols, 0, self.entry_col, out=self.cols_e)
            torch.mul(weights[block:], self.cols_e, out=self.w[block:])
        else:
            for g in buf.buckets:
                torch.mul(g.raw3, g.cols3, out=g.w3)
        for chunk in buf.chunks:
            if chunk.src.shape[0]:
                torch.index_select(a, 0, chunk.src, out=chunk.x)
            for g in chunk.groups:
                if g.bucket:
                    torch.baddbmm(g.bias3, g.w3, g.x3, out=g.z3)
                    if g.zin.shape[0]:
                        g.zin.addmm_(g.win, xt)
                else:
                    torch.addmm(g.bias, g.win, xt, out=g.z)
            for fwd, _, z, a_run, _ in chunk.runs:
                if z is None:
                    fwd(a_run, a_run)
                else:
                    fwd(z.copy_(a_run), a_run)
        self._saved = (buf, xt, weights)
        self.generation += 1
        return a.index_select(0, self.out_rows)

    @torch.no_grad()
    def backward(self, grad_out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return the gradients of the last forward's ``weights, cols, in_scale, bias``.

        Shape:
            grad_out: (P * n_out, B) -> ((n_padded,), (n_cols,), (n_input_rows, n_in), (rows,))
        """
        if self._saved is None:
            raise RuntimeError("GraphProgram.backward needs a forward first")
        buf, xt, weights = self._saved
        ga, gw, block = buf.ga, self.gw, self.n_in_block
        ga.zero_()
        ga.index_copy_(0, self.out_rows, grad_out.to(self.dtype))
        x_rows = xt.t()
        for chunk in buf.reversed:
            for _, bwd, z, a_run, ga_run in chunk.runs:
                bwd(ga_run, z, a_run)
            torch.sum(chunk.ga, 1, out=chunk.gbias)
            for g in chunk.groups:
                if g.gzin.shape[0]:
                    torch.mm(g.gzin, x_rows, out=g.gwin)
                if g.bucket:
                    torch.bmm(g.gz3, g.x3t, out=g.gw3)
                    torch.bmm(g.w3t, g.gz3, out=g.gx3)
            if chunk.src.shape[0]:
                ga.index_add_(0, chunk.src, chunk.gx)
        torch.mul(gw[:block], self.in_scale.view(-1), out=self.grad_w[:block])
        grad_in = (gw[:block] * weights[:block]).view_as(self.in_scale)
        if self.flat_scales:
            torch.mul(gw[block:], self.cols_e, out=self.grad_w[block:])
            self.grad_cols.zero_().index_add_(0, self.entry_col, gw[block:] * weights[block:])
        else:
            for g in buf.buckets:
                torch.mul(g.gw3, g.cols3, out=g.grad3)
                torch.sum(g.gw3 * g.raw3, dim=1, keepdim=True, out=g.gcols3)
        grad_w, grad_cols, grad_bias = self.grad_w, self.grad_cols, self.grad_bias
        if not self.reuse_grad_buffers:
            grad_w, grad_cols, grad_bias = grad_w.clone(), grad_cols.clone(), grad_bias.clone()
        return grad_w, grad_cols, grad_in, grad_bias


class _GraphFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, program: GraphProgram, xt, weights, cols, in_scale, bias):  # type: ignore[override]
        ctx.program = program
        out = program.forward(xt, weights, cols, in_scale, bias)
        ctx.generation = program.generation
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        if ctx.generation != ctx.program.generation:
            raise RuntimeError(
                "population engine: only the most recent forward can be backpropagated (its work "
                f"buffers are reused); this is forward {ctx.generation}, the last was "
                f"{ctx.program.generation}"
            )
        return (None, None, *ctx.program.backward(grad_out.contiguous()))


def graph_apply(
    program: GraphProgram,
    xt: torch.Tensor,
    weights: torch.Tensor,
    cols: torch.Tensor,
    in_scale: torch.Tensor,
    bias: torch.Tensor,
) -> torch.Tensor:
    """Return every member's output, differentiable in everything but ``xt``.

    Shape:
        as :meth:`GraphProgram.forward`.
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in (weights, cols, in_scale, bias)):
        return _GraphFunction.apply(program, xt, weights, cols, in_scale, bias)
    return program.forward(xt, weights, cols, in_scale, bias)
