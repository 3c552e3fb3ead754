"""A recurrent group's core over time, with a hand-written backward (BPTT).

The core (:mod:`hybrid.population.recurrent`) is the part of a group that must run
step by step: level blocks of rows, each reading core levels at ``t - 1`` through
recurrent weights and lower levels at ``t`` through feed-forward weights::

    pre_k(t) = U_k(t) + sum_j a_j(t - 1) @ R_jk + sum_{j < k} a_j(t) @ F_jk
    a_k(t) = act_k(pre_k(t)),    a_j(-1) = 0

with the member-batched weights cut from one ``W = [R; F]`` (``2 Rc x Rc``, rows:
core columns at ``t - 1`` then at ``t``; columns: core rows) and ``U`` the input,
bias and initial-state terms of every step, computed before the loop. Only the
*links* ``(j, k, recurrent)`` that some member of the group has an edge on are
multiplied: a two-node member whose nodes loop on themselves costs two recurrent
products and one feed-forward product per step, not a dense ``Rc x Rc`` one.

Why by hand. Under autograd every step saves and differentiates its own products:
each step's backward computes that step's weight gradients (one more batched
matmul and an accumulation per link per step), and the levels' activations are
concatenated and stacked between steps. Here each level's activations are
written into one ``(P, T, B, width)`` tensor as the loop runs (every step's slice
a contiguous matrix per member, so products and activations run on contiguous
memory); the backward walks the steps in reverse with one batched matmul per
link per step (the gradient flowing to ``t - 1``, or to a lower level at ``t``),
and each link's weight gradient is one batched matmul over all ``T * B`` samples
at the end. The numbers are those of autograd up to float rounding.

Relu, tanh, sigmoid and identity differentiate from their outputs; a level with
another activation (or several) keeps its pre-activations and differentiates
them with autograd, one step at a time.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..activations import TORCH_ACTIVATIONS

__all__ = ["Acts", "CoreLoop", "activate"]

aten = torch.ops.aten

_Fwd = Callable[[torch.Tensor, torch.Tensor], object]
_Bwd = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], object]

#: Activations whose derivative is a function of their output: forward ``(z, out)``,
#: backward ``(grad_a, a, out)`` writing the gradient of ``z`` into ``out`` (the
#: kernels autograd uses for these ops).
_FORWARD: dict[str, _Fwd] = {
    "identity": lambda z, a: a.copy_(z),
    "relu": lambda z, a: torch.clamp_min(z, 0.0, out=a),
    "tanh": lambda z, a: torch.tanh(z, out=a),
    "sigmoid": lambda z, a: torch.sigmoid(z, out=a),
}
_BACKWARD: dict[str, _Bwd] = {
    "identity": lambda g, a, out: out.copy_(g),
    "relu": lambda g, a, out: aten.threshold_backward.grad_input(g, a, 0, grad_input=out),
    "tanh": lambda g, a, out: aten.tanh_backward.grad_input(g, a, grad_input=out),
    "sigmoid": lambda g, a, out: aten.sigmoid_backward.grad_input(g, a, grad_input=out),
}

#: A block's activations: the commonest one, and (name, row mask (P, 1, rows)) for the others.
Acts = tuple[str, list[tuple[str, torch.Tensor]]]

#: A link of the core: (source level, destination level, recurrent).
Link = tuple[int, int, bool]


def activate(acts: Acts, pre: torch.Tensor) -> torch.Tensor:
    """Return a block's activations of ``pre`` (the commonest one, the others where masked)."""
    base, others = acts
    out = TORCH_ACTIVATIONS[base](pre)
    for name, mask in others:
        out = torch.where(mask, TORCH_ACTIVATIONS[name](pre), out)
    return out


class CoreLoop:
    """The core of one group: its level blocks, their activations and links, run over time.

    Args:
        blocks: ``(first row, end row)`` of each core level, contiguous from row 0.
        acts: each block's activations (:data:`Acts`).
        links: the ``(source level, destination level, recurrent)`` pairs some member
            has an edge on; a feed-forward link goes from a lower level to a higher one.

    Raises:
        ValueError: for a feed-forward link that does not go up a level.
    """

    def __init__(
        self, blocks: list[tuple[int, int]], acts: list[Acts], links: set[Link] | list[Link]
    ) -> None:
        self.blocks = list(blocks)
        self.n_core = self.blocks[-1][1] if self.blocks else 0
        self.acts = list(acts)
        self.links = sorted(set(links), key=lambda x: (x[1], not x[2], x[0]))
        for j, k, rec in self.links:
            if not rec and j >= k:
                raise ValueError(f"a feed-forward core link should go up a level, got {j} -> {k}")
        #: Per level: True when its one activation differentiates from its output.
        self.simple = [not others and base in _FORWARD for base, others in self.acts]

    def __call__(self, U: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """Return the core's activations at every step, differentiable in ``U`` and ``W``.

        Shape:
            U: (P, T, B, Rc); W: (P, 2 Rc, Rc) -> (P, T, B, Rc)
        """
        if torch.is_grad_enabled() and (U.requires_grad or W.requires_grad):
            return _CoreFunction.apply(self, U, W)
        with torch.no_grad():
            return self._join(self.forward(U, W)[0])

    def _join(self, H: list[torch.Tensor]) -> torch.Tensor:
        return H[0] if len(H) == 1 else torch.cat(H, 3)

    def _weights(self, W: torch.Tensor) -> list[torch.Tensor]:
        """Each link's weights (P, source width, destination width), in ``links`` order."""
        Rc = self.n_core
        out = []
        for j, k, rec in self.links:
            (s0, s1), (d0, d1) = self.blocks[j], self.blocks[k]
            off = 0 if rec else Rc
            out.append(W[:, off + s0 : off + s1, d0:d1])
        return out

    def forward(
        self, U: torch.Tensor, W: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """Run the core over time; return each level's activations and kept pre-activations.

        Shape:
            U: (P, T, B, Rc); W: (P, 2 Rc, Rc) -> per level (P, T, B, width), and per
            level (P, T, B, width) or None (kept only where the backward needs them)
        """
        P, T, B, _ = U.shape
        widths = [r1 - r0 for r0, r1 in self.blocks]
        H = [U.new_empty(P, T, B, w) for w in widths]
        Z = [
            None if s else U.new_empty(P, T, B, w) for s, w in zip(self.simple, widths, strict=True)
        ]
        Hs = [h.unbind(1) for h in H]
        Zs = [None if z is None else z.unbind(1) for z in Z]
        Us = [U[..., r0:r1].unbind(1) for r0, r1 in self.blocks]
        Ws = self._weights(W)
        pre = [U.new_empty(P, B, w) for w in widths]  # one step's pre-activations, contiguous
        # Per level: (source steps, lag 1 for a recurrent link, weights).
        terms: list[list[tuple[tuple[torch.Tensor, ...], int, torch.Tensor]]] = [[] for _ in H]
        for (j, k, rec), w in zip(self.links, Ws, strict=True):
            terms[k].append((Hs[j], int(rec), w))
        if len(H) == 1 and len(terms[0]) == 1 and terms[0][0][1] and Z[0] is None:
            # One level reading itself at t - 1: the common case, without the bookkeeping.
            act, us, hs, w, p = _FORWARD[self.acts[0][0]], Us[0], Hs[0], Ws[0], pre[0]
            act(us[0], hs[0])
            for t in range(1, T):
                act(torch.baddbmm(us[t], hs[t - 1], w, out=p), hs[t])
            return H, Z
        for t in range(T):
            for k in range(len(H)):
                z, first = Us[k][t], True
                for src, lag, w in terms[k]:
                    if t < lag:
                        continue
                    if first:
                        z, first = torch.baddbmm(z, src[t - lag], w, out=pre[k]), False
                    else:
                        z.baddbmm_(src[t - lag], w)
                zs = Zs[k]
                if zs is None:
                    _FORWARD[self.acts[k][0]](z, Hs[k][t])
                else:
                    zs[t].copy_(z)
                    Hs[k][t].copy_(activate(self.acts[k], z))
        return H, Z

    def backward(
        self,
        W: torch.Tensor,
        H: list[torch.Tensor],
        Z: list[torch.Tensor | None],
        grad: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the gradients of ``U`` and ``W`` given that of the activations.

        Shape:
            W: (P, 2 Rc, Rc); H, Z: as :meth:`forward` returns them; grad: (P, T, B, Rc)
            -> (P, T, B, Rc), (P, 2 Rc, Rc)
        """
        P, T, B, Rc = grad.shape
        widths = [r1 - r0 for r0, r1 in self.blocks]
        G = [torch.empty_like(h) for h in H]  # gradients of the pre-activations
        Gs = [g.unbind(1) for g in G]
        Hs = [h.unbind(1) for h in H]
        grads = [grad[..., r0:r1].unbind(1) for r0, r1 in self.blocks]
        WsT = [w.transpose(1, 2).contiguous() for w in self._weights(W)]
        tmp = [grad.new_empty(P, B, w) for w in widths]  # one step's gradients, contiguous
        # Who reads level j: (their gradient steps, lag 1 for a recurrent link, weights^T).
        readers: list[list[tuple[tuple[torch.Tensor, ...], int, torch.Tensor]]] = [[] for _ in H]
        for (j, k, rec), wt in zip(self.links, WsT, strict=True):
            readers[j].append((Gs[k], int(rec), wt))
        if len(H) == 1 and len(readers[0]) == 1 and readers[0][0][1] and Z[0] is None:
            # One level reading itself at t - 1 (as in forward).
            bwd, gr, hs, gs, wt, p = (
                _BACKWARD[self.acts[0][0]],
                grads[0],
                Hs[0],
                Gs[0],
                WsT[0],
                tmp[0],
            )
            bwd(gr[T - 1], hs[T - 1], gs[T - 1])
            for t in range(T - 2, -1, -1):
                bwd(torch.baddbmm(gr[t], gs[t + 1], wt, out=p), hs[t], gs[t])
        else:
            for t in range(T - 1, -1, -1):
                for j in range(len(H) - 1, -1, -1):
                    g, first = grads[j][t], True
                    for src, lag, wt in readers[j]:
                        if t + lag >= T:
                            continue
                        if first:
                            g, first = torch.baddbmm(g, src[t + lag], wt, out=tmp[j]), False
                        else:
                            g.baddbmm_(src[t + lag], wt)
                    self._act_backward(j, g, Hs[j][t], Z[j], t, Gs[j][t])
        grad_w = W.new_zeros(W.shape)
        flat_h = [h.view(P, T * B, -1) for h in H]
        flat_g = [g.view(P, T * B, -1) for g in G]
        for j, k, rec in self.links:
            (s0, s1), (d0, d1) = self.blocks[j], self.blocks[k]
            if rec:
                if T > 1:
                    src = flat_h[j][:, : (T - 1) * B].transpose(1, 2)
                    grad_w[:, s0:s1, d0:d1] = torch.bmm(src, flat_g[k][:, B:])
            else:
                grad_w[:, Rc + s0 : Rc + s1, d0:d1] = torch.bmm(
                    flat_h[j].transpose(1, 2), flat_g[k]
                )
        return self._join(G), grad_w

    def _act_backward(
        self,
        k: int,
        g: torch.Tensor,
        a: torch.Tensor,
        Z: torch.Tensor | None,
        t: int,
        out: torch.Tensor,
    ) -> None:
        """Write level ``k``'s gradient of pre-activations at step ``t`` into ``out``."""
        if Z is None:
            _BACKWARD[self.acts[k][0]](g, a, out)
            return
        with torch.enable_grad():
            z = Z[:, t].detach().requires_grad_(True)
            (gz,) = torch.autograd.grad(activate(self.acts[k], z), z, g)
        out.copy_(gz)


class _CoreFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, loop: CoreLoop, U, W):  # type: ignore[override]
        H, Z = loop.forward(U, W)
        ctx.loop, ctx.Z = loop, Z
        ctx.save_for_backward(W, *H)
        return loop._join(H)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        W, *H = ctx.saved_tensors
        grad_u, grad_w = ctx.loop.backward(W, H, ctx.Z, grad)
        return None, grad_u, grad_w
