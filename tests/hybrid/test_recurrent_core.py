"""The recurrent core's hand-written forward and backward, held to autograd on its formula."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hybrid.population.recurrent_core import CoreLoop, activate

ACTS = ("tanh", "relu", "sigmoid", "identity", "gelu", "sin", "gauss", "softplus")


def reference(loop: CoreLoop, U: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """The core's formula (module docstring) step by step, dense, under autograd."""
    P, T, B, Rc = U.shape
    mask = torch.zeros(2 * Rc, Rc, dtype=U.dtype)
    for j, k, rec in loop.links:
        (s0, s1), (d0, d1) = loop.blocks[j], loop.blocks[k]
        off = 0 if rec else Rc
        mask[off + s0 : off + s1, d0:d1] = 1
    Wm = W * mask
    prev = U.new_zeros(P, B, Rc)
    hs = []
    for t in range(T):
        now: list[torch.Tensor] = []
        for k, (r0, r1) in enumerate(loop.blocks):
            src = torch.cat([prev, *now, U.new_zeros(P, B, Rc - r0)], 2)
            pre = U[:, t, :, r0:r1] + torch.bmm(src, Wm[:, :, r0:r1])
            now.append(activate(loop.acts[k], pre))
        prev = torch.cat(now, 2)
        hs.append(prev)
    return torch.stack(hs, 1)


@st.composite
def cores(draw: st.DrawFn) -> tuple[CoreLoop, int, int, int]:
    widths = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    starts = [sum(widths[:k]) for k in range(len(widths))]
    blocks = [(s, s + w) for s, w in zip(starts, widths, strict=True)]
    P = draw(st.integers(1, 3))
    acts = []
    for r0, r1 in blocks:
        base = draw(st.sampled_from(ACTS))
        others = []
        if draw(st.booleans()):
            other = draw(st.sampled_from(ACTS))
            mask = torch.tensor(
                draw(st.lists(st.booleans(), min_size=P * (r1 - r0), max_size=P * (r1 - r0)))
            ).view(P, 1, r1 - r0)
            others.append((other, mask))
        acts.append((base, others))
    n = len(blocks)
    pairs = [(j, k, True) for j in range(n) for k in range(n)]
    pairs += [(j, k, False) for j in range(n) for k in range(j + 1, n)]
    links = draw(st.sets(st.sampled_from(pairs)))
    return CoreLoop(blocks, acts, links), P, draw(st.integers(1, 4)), draw(st.integers(1, 3))


@settings(max_examples=40, deadline=None)
@given(cores(), st.integers(0, 2**16))
def test_core_matches_autograd(core: tuple[CoreLoop, int, int, int], seed: int) -> None:
    loop, P, T, B = core
    Rc = loop.n_core
    gen = torch.Generator().manual_seed(seed)
    U = torch.randn(P, T, B, Rc, generator=gen, dtype=torch.float64).requires_grad_(True)
    W = (0.7 * torch.randn(P, 2 * Rc, Rc, generator=gen, dtype=torch.float64)).requires_grad_(True)
    grad = torch.randn(P, T, B, Rc, generator=gen, dtype=torch.float64)
    out = loop(U, W)
    (gu, gw) = torch.autograd.grad(out, (U, W), grad)
    ref = reference(loop, U, W)
    (ru, rw) = torch.autograd.grad(ref, (U, W), grad)
    # W entries outside the links do not act: autograd of the masked formula gives them 0.
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gu, ru, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gw, rw, rtol=1e-9, atol=1e-9)
    with torch.no_grad():
        torch.testing.assert_close(loop(U, W), ref, rtol=1e-10, atol=1e-10)


def test_feed_forward_link_must_go_up() -> None:
    with pytest.raises(ValueError, match="go up a level, got 1 -> 0"):
        CoreLoop([(0, 2), (2, 3)], [("tanh", []), ("tanh", [])], {(1, 0, False)})
