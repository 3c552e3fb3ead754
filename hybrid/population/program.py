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

Gates are folded into the weights before this runs (``W_eff = g_e * W * g_src``
column-wise, by autograd in :mod:`hybrid.population.engine`), so the buffer holds
ungated activations and the input is shared by every member.

On CUDA ``index_add_`` accumulates with atomics, so gradients can differ in the
last bit between runs unless ``torch.use_deterministic_algorithms(True)`` is set.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from genomes import ACTIVATION_IDS

from .layout import Layout

__all__ = ["GraphProgram", "graph_apply"]

aten = torch.ops.aten

_Fwd = Callable[[torch.Tensor, torch.Tensor], None]
_Bwd = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]


def _gauss_fwd(z: torch.Tensor, a: torch.Tensor) -> None:
    torch.mul(z, z, out=a)
    a.neg_().exp_()


def _gauss_bwd(g: torch.Tensor, z: torch.Tensor, a: torch.Tensor, out: torch.Tensor) -> None:
    torch.mul(g, a, out=out)
    out.mul_(z).mul_(-2.0)


def _sin_bwd(g: torch.Tensor, z: torch.Tensor, a: torch.Tensor, out: torch.Tensor) -> None:
    torch.cos(z, out=out)
    out.mul_(g)


# Activation forward (z -> out a) and backward (grad_a, z, a -> out grad_z), by id.
# The backward kernels are the ones autograd uses for these ops.
_FORWARD: dict[str, _Fwd] = {
    "identity": lambda z, a: a.copy_(z),
    "relu": lambda z, a: torch.clamp_min(z, 0.0, out=a),
    "tanh": lambda z, a: torch.tanh(z, out=a),
    "sigmoid": lambda z, a: torch.sigmoid(z, out=a),
    "gelu": lambda z, a: aten.gelu.out(z, approximate="tanh", out=a),
    "sin": lambda z, a: torch.sin(z, out=a),
    "gauss": _gauss_fwd,
    "softplus": lambda z, a: a.copy_(F.softplus(z)),
}
_BACKWARD: dict[str, _Bwd] = {
    "identity": lambda g, z, a, out: out.copy_(g),
    "relu": lambda g, z, a, out: aten.threshold_backward.grad_input(g, a, 0, grad_input=out),
    "tanh": lambda g, z, a, out: aten.tanh_backward.grad_input(g, a, grad_input=out),
    "sigmoid": lambda g, z, a, out: aten.sigmoid_backward.grad_input(g, a, grad_input=out),
    "gelu": lambda g, z, a, out: aten.gelu_backward.grad_input(g, z, approximate="tanh", grad_input=out),
    "sin": _sin_bwd,
    "gauss": _gauss_bwd,
    "softplus": lambda g, z, a, out: aten.softplus_backward.grad_input(g, z, 1, 20, grad_input=out),
}
FORWARD_BY_ID = {ACTIVATION_IDS[k]: f for k, f in _FORWARD.items()}
BACKWARD_BY_ID = {ACTIVATION_IDS[k]: f for k, f in _BACKWARD.items()}


class _Buffers:
    """Work buffers for one batch size (reused from step to step)."""

    def __init__(self, program: GraphProgram, batch: int) -> None:
        opts = {"device": program.device, "dtype": program.dtype}
        rows = program.layout.n_rows
        self.batch = batch
        self.z = torch.empty(rows, batch, **opts)
        self.a = torch.zeros(rows + 1, batch, **opts)  # row `rows` is the zero row
        self.ga = torch.empty(rows + 1, batch, **opts)
        self.gz = torch.empty(rows, batch, **opts)
        self.x = torch.empty(program.max_gather, batch, **opts)
        self.gx = torch.empty(program.max_gather, batch, **opts)


class GraphProgram:
    """The level/bucket plan of a :class:`Layout` on a device, with its work buffers.

    One forward may be in flight at a time: :meth:`backward` uses the buffers the
    last :meth:`forward` filled.

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
        self.weight_pos = torch.as_tensor(layout.weight_pos, **idx)
        self.bias_row = torch.as_tensor(layout.bias_row, **idx)
        self.out_rows = torch.as_tensor(layout.out_rows, **idx)
        self.levels = [
            [(grp, torch.as_tensor(grp.src, **idx)) for grp in lvl] for lvl in layout.levels
        ]
        self.max_gather = max([grp.n * grp.fan_in for lvl in layout.levels for grp in lvl] + [1])
        self.w = torch.zeros(layout.n_padded, device=self.device, dtype=dtype)
        self.gw = torch.zeros(layout.n_padded, device=self.device, dtype=dtype)
        self.zbias = torch.zeros(layout.n_rows, device=self.device, dtype=dtype)
        self._buffers: dict[int, _Buffers] = {}
        self._live: _Buffers | None = None
        self._x: torch.Tensor | None = None

    def buffers(self, batch: int) -> _Buffers:
        """Return the work buffers for ``batch`` samples (kept for the last two sizes)."""
        buf = self._buffers.get(batch)
        if buf is None:
            if len(self._buffers) >= 2:
                self._buffers.pop(next(iter(self._buffers)))
            buf = self._buffers[batch] = _Buffers(self, batch)
        return buf

    def nbytes(self) -> int:
        """Return the bytes held by the plan's index tensors and work buffers."""
        tensors = [self.weight_pos, self.bias_row, self.out_rows, self.w, self.gw, self.zbias]
        tensors += [src for lvl in self.levels for _, src in lvl]
        for b in self._buffers.values():
            tensors += [b.z, b.a, b.ga, b.gz, b.x, b.gx]
        return sum(t.numel() * t.element_size() for t in tensors)

    @torch.no_grad()
    def forward(self, xt: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Return every member's output.

        Args:
            xt: the shared input, transposed.
            weights: effective (gate-folded) weights in ``theta`` order.
            bias: biases in ``theta`` order.

        Shape:
            xt: (n_in, B); weights: (n_weights,); bias: (n_biases,) -> (P * n_out, B)
        """
        n_in, batch = xt.shape
        buf = self.buffers(batch)
        z, a, w = buf.z, buf.a, self.w
        w.index_copy_(0, self.weight_pos, weights)
        self.zbias.index_copy_(0, self.bias_row, bias)
        z.copy_(self.zbias[:, None].expand_as(z))
        for lvl in self.levels:
            for grp, src in lvl:
                rows = slice(grp.row, grp.row + grp.n_rows)
                if grp.n_input_rows:
                    r = grp.n_input_rows
                    win = w[grp.win_offset : grp.win_offset + r * n_in].view(r, n_in)
                    zin = z[grp.row : grp.row + r]
                    zin.addmm_(win, xt)
                if grp.fan_in:
                    n, k, wd = grp.n, grp.fan_in, grp.width
                    x = torch.index_select(a, 0, src, out=buf.x[: n * k])
                    wb = w[grp.w_offset : grp.w_offset + n * wd * k].view(n, wd, k)
                    z[rows].view(n, wd, batch).baddbmm_(wb, x.view(n, k, batch))
                for act, start, end in grp.runs:
                    FORWARD_BY_ID[act](z[start:end], a[start:end])
        self._live, self._x = buf, xt
        return a.index_select(0, self.out_rows)

    @torch.no_grad()
    def backward(self, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the gradients of the effective weights and biases of the last forward.

        Shape:
            grad_out: (P * n_out, B) -> ((n_weights,), (n_biases,))
        """
        buf, xt = self._live, self._x
        if buf is None or xt is None:
            raise RuntimeError("GraphProgram.backward needs a forward first")
        n_in, batch = xt.shape
        z, a, ga, gz, w, gw = buf.z, buf.a, buf.ga, buf.gz, self.w, self.gw
        ga.zero_()
        ga.index_copy_(0, self.out_rows, grad_out.to(self.dtype))
        x_rows = xt.t()
        for lvl in reversed(self.levels):
            for grp, src in lvl:
                for act, start, end in grp.runs:
                    BACKWARD_BY_ID[act](ga[start:end], z[start:end], a[start:end], gz[start:end])
                if grp.n_input_rows:
                    r = grp.n_input_rows
                    gwin = gw[grp.win_offset : grp.win_offset + r * n_in].view(r, n_in)
                    torch.mm(gz[grp.row : grp.row + r], x_rows, out=gwin)
                if grp.fan_in:
                    n, k, wd = grp.n, grp.fan_in, grp.width
                    gzb = gz[grp.row : grp.row + grp.n_rows].view(n, wd, batch)
                    x = torch.index_select(a, 0, src, out=buf.x[: n * k]).view(n, k, batch)
                    wb = w[grp.w_offset : grp.w_offset + n * wd * k].view(n, wd, k)
                    gwb = gw[grp.w_offset : grp.w_offset + n * wd * k].view(n, wd, k)
                    torch.bmm(gzb, x.transpose(1, 2), out=gwb)
                    gx = torch.bmm(wb.transpose(1, 2), gzb, out=buf.gx[: n * k].view(n, k, batch))
                    ga.index_add_(0, src, gx.view(n * k, batch))
        self._live = self._x = None
        grad_w = gw.index_select(0, self.weight_pos)
        grad_b = gz.sum(1).index_select(0, self.bias_row)
        return grad_w, grad_b


class _GraphFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, program: GraphProgram, xt, weights, bias):  # type: ignore[override]
        ctx.program = program
        return program.forward(xt, weights, bias)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        grad_w, grad_b = ctx.program.backward(grad_out.contiguous())
        return None, None, grad_w, grad_b


def graph_apply(
    program: GraphProgram, xt: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """Return every member's output, differentiable in ``weights`` and ``bias``.

    Shape:
        xt: (n_in, B); weights: (n_weights,); bias: (n_biases,) -> (P * n_out, B)
    """
    if torch.is_grad_enabled() and (weights.requires_grad or bias.requires_grad):
        return _GraphFunction.apply(program, xt, weights, bias)
    return program.forward(xt, weights, bias)
