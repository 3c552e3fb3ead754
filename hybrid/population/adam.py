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
"""

from __future__ import annotations

import torch

__all__ = ["BatchedAdamW"]


class BatchedAdamW:
    """Batched AdamW over ``theta`` (entries of many members).

    Args:
        theta: the flat parameters (updated in place).
        member: member index of every entry of ``theta``.
        lrs: learning rate of each member.
        decay: which entries are decayed (``torch.optim.AdamW`` group with
            ``weight_decay``; the others have none).
        weight_decay: decoupled decay coefficient.
        betas: Adam's ``(beta1, beta2)``.
        eps: added to the bias-corrected ``sqrt(v)``.

    Shape:
        theta, member, decay: (n,); lrs: (P,)
    """

    def __init__(
        self,
        theta: torch.Tensor,
        member: torch.Tensor,
        lrs: torch.Tensor,
        decay: torch.Tensor,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.theta = theta
        self.member = member
        self.lrs = lrs.to("cpu", torch.float64)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg = torch.zeros_like(theta)
        self.exp_avg_sq = torch.zeros_like(theta)
        self.steps = torch.zeros(len(lrs), dtype=torch.long, device=theta.device)
        self.t = 0  # steps of the members still active (they all step together)
        keep = (1.0 - self.lrs * weight_decay).to(theta.dtype).to(theta.device)
        ones = torch.ones_like(keep)
        # 1 - lr * wd for decayed entries, exactly 1 for the others.
        self._keep = torch.where(decay, keep[member], ones[member]) if weight_decay else None

    @torch.no_grad()
    def step(self, grad: torch.Tensor, active: torch.Tensor) -> None:
        """Apply one AdamW step to the entries of active members.

        Args:
            grad: gradient of ``theta``.
            active: which members step.

        Shape:
            grad: (n,); active: (P,) bool
        """
        self.t += 1
        t = self.t
        neg_step = (-(self.lrs / (1.0 - self.beta1**t))).to(self.theta.dtype).to(self.theta.device)
        bc2_sqrt = (1.0 - self.beta2**t) ** 0.5
        mask = active[self.member]
        p = self.theta if self._keep is None else self.theta * self._keep
        m = torch.lerp(self.exp_avg, grad, 1 - self.beta1)
        v = self.exp_avg_sq * self.beta2
        v.addcmul_(grad, grad, value=1 - self.beta2)
        denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
        update = m * neg_step[self.member]
        p = p + update.div_(denom)
        self.theta.copy_(torch.where(mask, p, self.theta))
        self.exp_avg.copy_(torch.where(mask, m, self.exp_avg))
        self.exp_avg_sq.copy_(torch.where(mask, v, self.exp_avg_sq))
        self.steps += active.long()

    def nbytes(self) -> int:
        """Return the bytes of the optimiser state."""
        state = [self.exp_avg, self.exp_avg_sq, self.member]
        if self._keep is not None:
            state.append(self._keep)
        return sum(s.numel() * s.element_size() for s in state)
