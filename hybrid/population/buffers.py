"""Work buffers of a :class:`~hybrid.population.program.GraphProgram` and the step's ops.

Buffers are neuron-major ``[rows, B]`` and made once per batch size: activations
``a`` (pre-activations are written there and activated in place), their gradients
``ga`` (turned into gradients of pre-activations in place), the gathered bucket
inputs ``x`` (kept for the backward), one chunk's input gradients ``gx`` and, for
activations whose derivative needs the pre-activation (gelu, sin, gauss,
softplus), a copy of those rows ``zs`` and a scratch ``zt`` of the same rows, so
that no activation op allocates (profiled under K-fold, sin's backward allocating its
``cos`` each step took ten times the forward's ``sin``).
Relu, tanh, sigmoid and identity need no copy: the pre-activation buffer of a
standard step is gone.

A level's groups run in *chunks* of consecutive groups whose rows and gathered
columns fit ``CHUNK_BYTES`` (about a core's L2 cache): one gather, one scatter,
merged activation runs and the bias-gradient sum per chunk, while its rows are
hot. Every op of a step is bound once to its views (``functools.partial``): a
tiny genome's step is hundreds of ops, and finding views and arguments each
time cost more than some of the ops.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch

from genomes import ACTIVATION_IDS

from .plan import Group

if TYPE_CHECKING:
    from .program import GraphProgram

__all__ = ["FROM_OUTPUT", "Buffers", "level_runs"]

aten = torch.ops.aten

#: Work-buffer bytes (rows and gathered columns) of the groups run back to back as one
#: chunk: about what stays in a core's L2 cache between a chunk's ops.
CHUNK_BYTES = 1 << 19


_Fwd = Callable[[torch.Tensor, torch.Tensor], None]
_Bwd = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None], None]


def _gauss_fwd(z: torch.Tensor, a: torch.Tensor) -> None:
    torch.mul(z, z, out=a)
    a.neg_().exp_()


def _gauss_bwd(g: torch.Tensor, z: torch.Tensor, a: torch.Tensor, t: torch.Tensor | None) -> None:
    g.mul_(a).mul_(z).mul_(-2.0)


def _sin_bwd(g: torch.Tensor, z: torch.Tensor, a: torch.Tensor, t: torch.Tensor) -> None:
    g.mul_(torch.cos(z, out=t))


# Activation forward (z -> out a) and backward (grad_a, z, a, scratch t of z's shape ->
# grad_z written over grad_a), by id; the backward kernels are the ones autograd uses
# for these ops. Neither allocates.
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
    "softplus": lambda z, a: aten.softplus.out(z, 1, 20, out=a),
}
_BACKWARD: dict[str, _Bwd] = {
    "relu": lambda g, z, a, t: aten.threshold_backward.grad_input(g, a, 0, grad_input=g),
    "tanh": lambda g, z, a, t: aten.tanh_backward.grad_input(g, a, grad_input=g),
    "sigmoid": lambda g, z, a, t: aten.sigmoid_backward.grad_input(g, a, grad_input=g),
    "gelu": lambda g, z, a, t: aten.gelu_backward.grad_input(g, z, approximate="tanh", grad_input=g),
    "sin": _sin_bwd,
    "gauss": _gauss_bwd,
    "softplus": lambda g, z, a, t: aten.softplus_backward.grad_input(g, z, 1, 20, grad_input=g),
}
FROM_OUTPUT = {ACTIVATION_IDS[k] for k in ("relu", "tanh", "sigmoid")}
FORWARD_BY_ID = {ACTIVATION_IDS[k]: f for k, f in _FORWARD.items()}
BACKWARD_BY_ID = {ACTIVATION_IDS[k]: f for k, f in _BACKWARD.items()}
IDENTITY = ACTIVATION_IDS["identity"]


def level_runs(groups: tuple[Group, ...]) -> list[tuple[int, int, int]]:
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
        self, prog: GraphProgram, grp: Group, buf: Buffers, params: tuple, col0: int
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

    def __init__(self, prog: GraphProgram, groups: list[Group], buf: Buffers) -> None:
        buckets = [grp for grp in groups if grp.fan_in]
        c0 = buckets[0].col_offset if buckets else 0
        c1 = buckets[-1].col_offset + buckets[-1].n * buckets[-1].fan_in if buckets else 0
        self.groups = [_Group(prog, grp, buf, buf.params, c0) for grp in groups]
        src = np.concatenate([grp.src for grp in buckets]) if buckets else np.zeros(0, np.int64)
        self.src = torch.as_tensor(src, device=prog.device)
        self.x, self.gx = buf.x[c0:c1], buf.gx[: c1 - c0]
        rows = slice(groups[0].row, groups[-1].row + groups[-1].n_rows)
        self.ga, self.gbias = buf.ga[rows], prog.grad_bias[rows]
        self.a = buf.a
        self.runs = []
        for act, s, e in level_runs(groups):
            keep = act not in FROM_OUTPUT  # its backward needs the pre-activation
            z = buf.zs[buf.n_zs : buf.n_zs + e - s] if keep else None
            t = buf.zt[buf.n_zs : buf.n_zs + e - s] if keep else None
            buf.n_zs += (e - s) if keep else 0
            self.runs.append((FORWARD_BY_ID[act], BACKWARD_BY_ID[act], z, t, buf.a[s:e], buf.ga[s:e]))

    def forward_ops(self, xt: torch.Tensor) -> list[Callable[[], object]]:
        """Return the chunk's forward: gather, matmuls, activations in place."""
        ops: list[Callable[[], object]] = []
        if self.src.shape[0]:
            ops.append(partial(torch.index_select, self.a, 0, self.src, out=self.x))
        for g in self.groups:
            if g.bucket:
                ops.append(partial(torch.baddbmm, g.bias3, g.w3, g.x3, out=g.z3))
                if g.zin.shape[0]:
                    ops.append(partial(g.zin.addmm_, g.win, xt))
            else:
                ops.append(partial(torch.addmm, g.bias, g.win, xt, out=g.z))
        for fwd, _, z, _, a_run, _ in self.runs:
            if z is not None:
                ops.append(partial(z.copy_, a_run))
            ops.append(partial(fwd, a_run if z is None else z, a_run))
        return ops

    def backward_ops(self, buf: Buffers) -> list[Callable[[], object]]:
        """Return the chunk's backward: activations in place, bias sums, matmuls, scatter."""
        ops: list[Callable[[], object]] = [partial(bwd, g, z, a, t) for _, bwd, z, t, a, g in self.runs]
        ops.append(partial(torch.sum, self.ga, 1, out=self.gbias))
        x_rows = buf.xt.t()
        for g in self.groups:
            if g.gzin.shape[0]:
                ops.append(partial(torch.mm, g.gzin, x_rows, out=g.gwin))
            if g.bucket:
                ops.append(partial(torch.bmm, g.gz3, g.x3t, out=g.gw3))
                ops.append(partial(torch.bmm, g.w3t, g.gz3, out=g.gx3))
        if self.src.shape[0]:
            ops.append(partial(buf.ga.index_add_, 0, self.src, self.gx))
        return ops


class Buffers:
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
        self.xt = torch.empty(prog.layout.n_inputs, batch, **opts)  # the step's input
        self.a = torch.zeros(rows + 1, batch, **opts)  # row `rows` is the zero row
        self.ga = torch.empty(rows + 1, batch, **opts)
        self.zs = torch.empty(prog.n_saved_rows, batch, **opts)  # kept pre-activations
        self.zt = torch.empty_like(self.zs)  # scratch for their backward (no allocation per step)
        self.n_zs = 0
        self.x = torch.empty(prog.n_cols, batch, **opts)  # gathered inputs, kept for backward
        self.gx = torch.empty(max(gather + [1]), batch, **opts)
        self.chunks = [_Chunk(prog, c, self) for c in chunks]
        self.buckets = [g for c in self.chunks for g in c.groups if g.bucket]
        # The step as flat lists of bound ops: a tiny genome's step is ~1000 ops, and
        # calling a bound op costs less than finding its views and arguments each time.
        self.forward_ops = [op for c in self.chunks for op in c.forward_ops(self.xt)]
        self.backward_ops = [op for c in self.chunks[::-1] for op in c.backward_ops(self)]
