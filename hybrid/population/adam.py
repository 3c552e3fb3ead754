"""AdamW for a whole population in one flat vector, with per-member lr and freezing.

Loshchilov & Hutter (2019), "Decoupled Weight Decay Regularization". The update is
``torch.optim.AdamW``'s single-tensor path op for op (same kernels, same scalar
rounding), applied to every member at once::

    p    <- p * (1 - lr * wd)                  (decayed entries only)
    m    <- lerp(m, g, 1 - beta1)
    v    <- v * beta2 + (1 - beta2) * g * g
    den  <- sqrt(v) / sqrt(1 - beta2^t) + eps  (eps after the bias correction)
    p    <- p + (-lr / (1 - beta1^t)) * m / den

The per-member scalars (``1 - lr * wd``, ``-lr / (1 - beta1^t)``) are computed in
float64 and rounded once, as Python does for the single-tensor path. Members that
are not ``active`` keep their parameters and moments bit for bit (their gradients
may be NaN: ``torch.where`` drops them) and their step count stops.

Frozen entries (``frozen`` masks: the genes of grafted modules) are never moved, bit
for bit, in both paths: their gradient is taken as zero (so both moments stay zero)
and their values are put back after the step (undoing the decay). Without masks the
steps run exactly the code they ran before masks existed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["BatchedAdamW"]


class BatchedAdamW:
    """Batched AdamW over flat tensors whose entries belong to members.

    Entries with member index ``P`` (padding) are never moved by the general path;
    in the fast path their gradient is exactly zero, so they stay zero too.

    Args:
        params: the flat tensors (updated in place).
        members: member index of every entry of each tensor (``P`` for padding).
        lrs: learning rate of each member.
        decay: per tensor, whether it is decayed (``torch.optim.AdamW`` group with
            ``weight_decay``; the others have none).
        weight_decay: decoupled decay coefficient.
        betas: Adam's ``(beta1, beta2)``.
        eps: added to the bias-corrected ``sqrt(v)``.
        frozen: per tensor, a bool mask of the entries never to move (None: none);
            None for no masks at all.

    Shape:
        params[i], members[i], frozen[i]: (n_i,); lrs: (P,)
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        members: Sequence[torch.Tensor],
        lrs: torch.Tensor,
        decay: Sequence[bool],
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        frozen: Sequence[torch.Tensor | None] | None = None,
    ) -> None:
        self.params = list(params)
        #: Per tensor, the indices of its frozen entries (None: it has none).
        self.frozen = _frozen_indices(frozen, self.params)
        self._any_frozen = any(i is not None for i in self.frozen)
        self.members = list(members)
        self.decay = [bool(d) and weight_decay != 0 for d in decay]
        self.lrs = torch.as_tensor(lrs, dtype=torch.float64).cpu()
        self.weight_decay = weight_decay
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        for v, member in zip(self.exp_avg_sq, self.members, strict=True):
            # Padding: m stays 0 so its update is 0 whatever v is; a positive v keeps
            # sqrt off its slow path for zeros (10x slower than normal values on CPU).
            v[member == len(self.lrs)] = 1.0
        # Reused by the fast path: no big allocation per step.
        self._denom = [torch.empty_like(p) for p in self.params]
        self.t = 0  # steps of the members still active (they all step together)
        # sqrt(tiny) / sqrt(1 - beta2) = eps * 2^-26: a quarter ulp of eps in float32.
        tiny = (eps * 2.0**-26 * (1.0 - self.beta2) ** 0.5) ** 2
        dtype = self.params[0].dtype
        self._tiny = tiny if dtype == torch.float32 and tiny >= torch.finfo(dtype).tiny else None
        self.uniform = bool((self.lrs == self.lrs[0]).all())
        dtype, device = self.params[0].dtype, self.params[0].device
        keep = torch.cat([1.0 - self.lrs * weight_decay, torch.ones(1, dtype=torch.float64)])
        self._keep = keep.to(dtype).to(device)  # 1 - lr * wd per member (padding: 1)

    def _sqrt(self, v: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Return ``sqrt(v)`` into ``out``, bit for bit as it ends up in ``denom``.

        CPU ``sqrt`` of zeros and subnormals runs about 5-10x slower than of normal
        numbers, and Adam's ``v`` is full of zeros (dead units). Below ``_tiny``,
        ``sqrt(v) / sqrt(1 - beta2^t)`` is under half an ulp of ``eps``, so ``denom`` is
        ``eps`` either way: clamping there changes no result and skips the slow path.
        """
        if self._tiny is None:
            return torch.sqrt(v, out=out)
        return torch.clamp_min(v, self._tiny, out=out).sqrt_()

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor], active: torch.Tensor | None = None) -> None:
        """Apply one AdamW step to the entries of active members.

        Args:
            grads: gradient of each tensor.
            active: which members step; None means all (the fast, in-place path,
                op for op ``torch.optim.AdamW`` when the learning rates are equal).

        Shape:
            grads[i]: (n_i,); active: (P,) bool
        """
        self.t += 1
        if self._any_frozen:
            self._step_frozen(grads, active)
            return
        self._step(grads, active)

    def _step_frozen(self, grads: Sequence[torch.Tensor], active: torch.Tensor | None) -> None:
        """:meth:`_step` with the frozen entries' gradients zeroed and their values put back."""
        kept, zeroed = [], []
        for p, g, idx in zip(self.params, grads, self.frozen, strict=True):
            if idx is None:
                kept.append(None)
                zeroed.append(g)
                continue
            kept.append(p.index_select(0, idx))
            zeroed.append(g.index_fill(0, idx, 0.0))  # a copy: the caller's gradient stays
        self._step(zeroed, active)
        for p, idx, values in zip(self.params, self.frozen, kept, strict=True):
            if idx is not None:
                p.index_copy_(0, idx, values)

    def _step(self, grads: Sequence[torch.Tensor], active: torch.Tensor | None) -> None:
        """One step (``t`` already counted): the fast in-place path or the general one."""
        bc1 = 1.0 - self.beta1**self.t
        bc2_sqrt = (1.0 - self.beta2**self.t) ** 0.5
        if active is None and self.uniform:
            lr = float(self.lrs[0])
            state = zip(
                self.params,
                grads,
                self.exp_avg,
                self.exp_avg_sq,
                self._denom,
                self.decay,
                strict=True,
            )
            for p, g, m, v, denom, dec in state:
                if dec:
                    p.mul_(1 - lr * self.weight_decay)
                m.lerp_(g, 1 - self.beta1)
                v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
                self._sqrt(v, denom).div_(bc2_sqrt).add_(self.eps)
                p.addcdiv_(m, denom, value=-(lr / bc1))
            return
        p0 = self.params[0]
        neg_step = torch.cat([-(self.lrs / bc1), torch.zeros(1, dtype=torch.float64)])
        neg_step = neg_step.to(p0.dtype).to(p0.device)
        if active is not None:
            active = torch.cat([active, active.new_zeros(1)])
        for i, (p, g, dec) in enumerate(zip(self.params, grads, self.decay, strict=True)):
            member, m, v = self.members[i], self.exp_avg[i], self.exp_avg_sq[i]
            new_p = p * self._keep[member] if dec else p
            new_m = torch.lerp(m, g, 1 - self.beta1)
            new_v = v * self.beta2
            new_v.addcmul_(g, g, value=1 - self.beta2)
            denom = (new_v.sqrt() / bc2_sqrt).add_(self.eps)
            update = new_m * neg_step[member]
            new_p = new_p + update.div_(denom)
            if active is None:
                p.copy_(new_p)
                m.copy_(new_m)
                v.copy_(new_v)
                continue
            mask = active[member]
            p.copy_(torch.where(mask, new_p, p))
            m.copy_(torch.where(mask, new_m, m))
            v.copy_(torch.where(mask, new_v, v))

    def nbytes(self) -> int:
        """Return the bytes of the optimiser state."""
        return sum(t.numel() * t.element_size() for t in self.exp_avg + self.exp_avg_sq)


def _frozen_indices(
    frozen: Sequence[torch.Tensor | None] | None, params: Sequence[torch.Tensor]
) -> list[torch.Tensor | None]:
    """Each tensor's frozen entry indices (None where it has none).

    Raises:
        ValueError: if the masks do not match the tensors in number or shape.
    """
    if frozen is None:
        return [None] * len(params)
    if len(frozen) != len(params):
        raise ValueError(
            f"frozen should hold one mask per tensor ({len(params)}), got {len(frozen)}"
        )
    out: list[torch.Tensor | None] = []
    for i, (mask, p) in enumerate(zip(frozen, params, strict=True)):
        if mask is None:
            out.append(None)
            continue
        if tuple(mask.shape) != tuple(p.shape) or mask.dtype != torch.bool:
            raise ValueError(
                f"frozen[{i}] should be a bool mask of shape {tuple(p.shape)}, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        idx = torch.nonzero(mask.to(p.device)).view(-1)
        out.append(idx if idx.numel() else None)
    return out
