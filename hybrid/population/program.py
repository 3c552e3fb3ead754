"""Run a packed population's function forward and backward, level by level.

The hand-written backward exists for memory traffic, not for speed of arithmetic.
With autograd, every level reading a shared activation buffer costs a zero-filled
gradient of the whole buffer (``index_select`` / slice backward), so a step moves
``depth x rows x B`` floats. Here the work buffers (:mod:`.buffers`: activations
computed in place, their gradients, gathered inputs) are allocated once per batch
size and reused, and the backward walks the levels in reverse, accumulating each
chunk's input gradient into one buffer with ``index_add_``: memory traffic stays
proportional to the real work. Ops per step depend on levels x buckets, never on
the number of members.

Gates are folded into the weights as column scales (``W_eff = W * (g_e * g_src)``;
the scales come from autograd in :mod:`hybrid.population.engine`, the products and
their gradients are made here), so the buffer holds ungated activations and the
input is shared by every member. All buffers are neuron-major ``[rows, B]``: a
gather or scatter moves whole rows.

On CUDA ``index_add_`` accumulates with atomics, so gradients can differ in the
last bit between runs unless ``torch.use_deterministic_algorithms(True)`` is set.
"""

from __future__ import annotations

import numpy as np
import torch

from .buffers import FROM_OUTPUT, Buffers, level_runs
from .layout import Layout

__all__ = ["GraphProgram", "graph_apply"]

#: Below this many bucket weights per bucket, gate scales are applied in one flat
#: gather/scatter (cheap per entry) rather than one op per bucket (cheap per launch).
FLAT_SCALE_ENTRIES_PER_BUCKET = 4096


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
            for act, s, e in level_runs(lvl)
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
        self._buffers: dict[int, Buffers] = {}
        self._saved: tuple | None = None
        self.generation = 0  # forwards so far: tells a backward whether its buffers survive
        #: Return the weight and column gradients in reused buffers (valid until the next
        #: backward) instead of fresh tensors: for a caller that consumes them at once.
        self.reuse_grad_buffers = False

    def buffers(self, batch: int, weights: torch.Tensor, bias: torch.Tensor) -> Buffers:
        """Return the work buffers for ``batch`` samples (kept for the last two sizes)."""
        buf = self._buffers.get(batch)
        if buf is None or buf.key != (weights.data_ptr(), bias.data_ptr()):
            if len(self._buffers) >= 2 and batch not in self._buffers:
                self._buffers.pop(next(iter(self._buffers)))
            buf = self._buffers[batch] = Buffers(self, batch, weights, bias)
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
        buf.xt.copy_(xt)
        for op in buf.forward_ops:
            op()
        self._saved = (buf, weights)
        self.generation += 1
        return a.index_select(0, self.out_rows)

    def last_pass(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the last pass's per-row activations and pre-activation gradients.

        Rows are buffer rows (``Layout.bias_row`` says whose). Activations are
        ungated; the gradients are valid after that forward's backward. Views of
        the work buffers: the next forward overwrites them.

        Raises:
            RuntimeError: before any forward.

        Shape:
            -> ((rows + 1, B), (rows + 1, B))
        """
        if self._saved is None:
            raise RuntimeError("GraphProgram.last_pass needs a forward first")
        buf = self._saved[0]
        return buf.a, buf.ga

    @torch.no_grad()
    def backward(self, grad_out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return the gradients of the last forward's ``weights, cols, in_scale, bias``.

        Shape:
            grad_out: (P * n_out, B) -> ((n_padded,), (n_cols,), (n_input_rows, n_in), (rows,))
        """
        if self._saved is None:
            raise RuntimeError("GraphProgram.backward needs a forward first")
        buf, weights = self._saved
        ga, gw, block = buf.ga, self.gw, self.n_in_block
        ga.zero_()
        ga.index_copy_(0, self.out_rows, grad_out.to(self.dtype))
        for op in buf.backward_ops:
            op()
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
