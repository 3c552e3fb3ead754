"""Properties of TINY's closed-form solves (hybrid.bottleneck.solve).

Every property is drawn by hypothesis over seeds and sizes: the data are random
samples, the statistics their moments, and each check is exact algebra that must
hold for any draw (float64 inside, tolerances 1e-8 relative).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hybrid.bottleneck.solve import (
    Neurons,
    bottleneck_cross,
    inverse_sqrt_psd,
    optimal_delta,
    optimal_edge,
    optimal_neurons,
)

SEEDS = st.integers(0, 2**31 - 1)
F64 = torch.float64


def _moments(*samples: torch.Tensor) -> torch.Tensor:
    """``E[a bᵀ]`` over the rows of two sample matrices."""
    a, b = samples
    return a.mT @ b / a.shape[0]


def _with_bias(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)


def _close(
    actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-8, scale: float | None = None
) -> None:
    """Equal within ``rtol`` of ``scale`` (default: the largest entry of ``expected``).

    Entries near zero are held to the same absolute tolerance as the largest.
    """
    if scale is None:
        scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=0, atol=rtol * max(scale, 1e-12))


@st.composite
def layer_samples(draw, min_rank_margin: int = 4):
    """Samples of one layer in a chain: ``b2`` (inputs of the layer before), ``b``, ``dz``.

    With ``min_rank_margin >= 0`` there are more samples than columns (full rank).
    """
    gen = torch.Generator().manual_seed(draw(SEEDS))
    k2, k, w = draw(st.integers(1, 6)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    n = draw(st.integers(max(1, max(k2, k) + 1 + min_rank_margin), 40))
    b2 = _with_bias(torch.randn(n, k2, generator=gen, dtype=F64))
    weight = torch.randn(k2 + 1, k, generator=gen, dtype=F64)
    noise = 0.3 * torch.randn(n, k, generator=gen, dtype=F64)  # b is not a function of b2
    b = _with_bias(torch.tanh(b2 @ weight) + noise)
    dz = torch.randn(n, w, generator=gen, dtype=F64)
    return b2, b, dz


def _neurons_for(b2, b, dz, **kwargs) -> tuple[Neurons, torch.Tensor]:
    """The new neurons of the layer fed by ``b`` and their bottleneck samples ``−V``."""
    delta, _ = optimal_delta(_moments(b, b), _moments(b, dz))
    n = bottleneck_cross(_moments(b2, dz), _moments(b2, b), delta)
    minus_v = -(dz - b @ delta.mT)
    return optimal_neurons(_moments(b2, b2), n, **kwargs), minus_v


@settings(max_examples=40)
@given(layer_samples())
def test_delta_is_the_least_squares_fit(samples) -> None:
    _, b, dz = samples
    delta, gain = optimal_delta(_moments(b, b), _moments(b, dz))
    expected = torch.linalg.lstsq(b, dz).solution.mT
    _close(delta, expected)
    # The gain is the drop of E||dz - δ b||² from E||dz||², i.e. E||δ* b||².
    _close(gain, (b @ delta.mT).square().sum(1).mean())
    assert gain >= 0


@settings(max_examples=40)
@given(SEEDS, st.integers(1, 6), st.integers(1, 4), st.integers(0, 6))
def test_gains_and_singular_values_are_never_negative(seed, k, w, rank) -> None:
    gen = torch.Generator().manual_seed(seed)
    factor = torch.randn(rank, k, generator=gen, dtype=F64)
    s = factor.mT @ factor  # PSD of any rank, M not necessarily in its range
    m = torch.randn(k, w, generator=gen, dtype=F64)
    for solve in (optimal_delta, optimal_edge):
        _, gain = solve(s, m, threshold=0.0)
        assert gain >= 0
    new = optimal_neurons(s, m, numerical_threshold=0.0, statistical_threshold=0.0)
    assert (new.lam >= 0).all() and (new.gain >= 0).all()


@settings(max_examples=40)
@given(layer_samples(min_rank_margin=-3), st.sampled_from([0.0, 1e-3, 0.3]))
def test_neurons_reduce_the_projected_objective_by_sum_of_lambda_squared(
    samples, statistical_threshold
) -> None:
    b2, b, dz = samples
    new, minus_v = _neurons_for(b2, b, dz, statistical_threshold=statistical_threshold)
    # N is E[b2 (−V)ᵀ] with V the per-sample bottleneck.
    delta, _ = optimal_delta(_moments(b, b), _moments(b, dz))
    m2, p = _moments(b2, dz), _moments(b2, b)
    terms = max(float(m2.abs().max()), float((p.abs() @ delta.abs().mT).max()))
    _close(bottleneck_cross(m2, p, delta), _moments(b2, minus_v), scale=terms)
    added = b2 @ (new.omega @ new.alpha).mT  # Σ_k ω_k α_kᵀ b2 per sample, linear activation
    before = minus_v.square().sum(1).mean()
    after = (minus_v - added).square().sum(1).mean()
    _close(before - after, new.gain, scale=float(before))
    assert 1 <= int(new.count) <= min(b2.shape[1], dz.shape[1]) or float(new.gain) == 0


def _embed(mat: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, shape) -> torch.Tensor:
    out = torch.zeros(shape, dtype=mat.dtype)
    out[rows[:, None], cols[None, :]] = mat
    return out


@st.composite
def padded_batches(draw):
    """Problems of different sizes padded into one batch, real units at random places."""
    gen = torch.Generator().manual_seed(draw(SEEDS))
    size, k_max, w_max = draw(st.integers(1, 4)), draw(st.integers(2, 6)), draw(st.integers(1, 4))
    problems, units, outs = [], [], []
    for _ in range(size):
        k, w = draw(st.integers(1, k_max)), draw(st.integers(1, w_max))
        n = draw(st.integers(1, 12))
        x = torch.randn(n, k, generator=gen, dtype=F64)
        if draw(st.booleans()):  # a problem whose statistics are all zero
            x = torch.zeros_like(x)
        problems.append((_moments(x, x), _moments(x, torch.randn(n, w, generator=gen, dtype=F64))))
        units.append(torch.randperm(k_max, generator=gen)[:k].sort().values)
        outs.append(torch.randperm(w_max, generator=gen)[:w].sort().values)
    return problems, units, outs, k_max, w_max


def _pad(batch, identity: bool):
    problems, units, outs, k_max, w_max = batch
    s = torch.stack(
        [_embed(p[0], u, u, (k_max, k_max)) for p, u in zip(problems, units, strict=True)]
    )
    n = torch.stack(
        [_embed(p[1], u, o, (k_max, w_max)) for p, u, o in zip(problems, units, outs, strict=True)]
    )
    mask = torch.zeros(len(problems), k_max, dtype=torch.bool)
    for i, u in enumerate(units):
        mask[i, u] = True
    if identity:
        s = s + torch.diag_embed((~mask).to(F64))
    return s, n, mask


@settings(max_examples=40)
@given(
    padded_batches(),
    st.booleans(),
    st.booleans(),
    st.sampled_from([1e-3, 0.3]),
    st.sampled_from([None, 1]),
)
def test_batched_equals_a_loop_over_unpadded_problems(
    batch, identity, use_mask, statistical_threshold, max_new
) -> None:
    s, n, mask = _pad(batch, identity)
    mask = mask if use_mask else None  # zero and identity padding both work without one
    new = optimal_neurons(
        s, n, statistical_threshold=statistical_threshold, max_new=max_new, mask=mask
    )
    delta, gain = optimal_delta(s, n, mask=mask)
    problems, units, outs, k_max, w_max = batch
    assert new.alpha.shape[-2] == int(new.count.max())
    for i, ((si, ni), u, o) in enumerate(zip(problems, units, outs, strict=True)):
        one = optimal_neurons(si, ni, statistical_threshold=statistical_threshold, max_new=max_new)
        c = int(one.count)
        assert int(new.count[i]) == c
        _close(new.lam[i, :c], one.lam)
        assert (new.lam[i, c:] == 0).all() and (new.alpha[i, c:] == 0).all()
        _close(new.alpha[i, :c], _embed(one.alpha, torch.arange(c), u, (c, k_max)))
        _close(new.omega[i, :, :c], _embed(one.omega, o, torch.arange(c), (w_max, c)))
        d1, g1 = optimal_delta(si, ni)
        _close(delta[i], _embed(d1, o, u, (w_max, k_max)))
        _close(gain[i], g1)


@settings(max_examples=40)
@given(padded_batches())
def test_padded_units_get_zero_weights_with_identity_padding_and_no_mask(batch) -> None:
    s, n, mask = _pad(batch, identity=True)
    absent = ~mask
    new = optimal_neurons(s, n)
    assert (new.alpha.mT[absent] == 0).all()
    weight, _ = optimal_edge(s, n)
    assert (weight.mT[absent] == 0).all()
    # Absent outputs (zero columns of N) get zero fan-out.
    problems, units, outs, k_max, w_max = batch
    for i, o in enumerate(outs):
        dead = torch.ones(w_max, dtype=torch.bool)
        dead[o] = False
        assert (new.omega[i][dead] == 0).all() and (weight[i][dead] == 0).all()


@settings(max_examples=40)
@given(
    layer_samples(),
    st.floats(1e-3, 1e3),
    st.floats(1e-3, 1e3),
    st.sampled_from([1e-3, 0.3, 0.7]),
)
def test_relative_thresholds_ignore_the_scale_of_the_statistics(
    samples, c_inputs, c_grads, statistical_threshold
) -> None:
    b2, b, dz = samples
    s, m = _moments(b, b), _moments(b, dz)
    s2, n = _moments(b2, b2), _moments(b2, -dz)
    kw = {"statistical_threshold": statistical_threshold}
    delta, gain = optimal_delta(s, m)
    delta_c, gain_c = optimal_delta(s * c_inputs, m * c_grads)
    _close(delta_c, delta * (c_grads / c_inputs))
    _close(gain_c, gain * (c_grads**2 / c_inputs))
    new = optimal_neurons(s2, n, **kw)
    new_c = optimal_neurons(s2 * c_inputs, n * c_grads, **kw)
    assert int(new_c.count) == int(new.count)
    _close(new_c.lam, new.lam * (c_grads / c_inputs**0.5))
    _close(new_c.omega @ new_c.alpha, (new.omega @ new.alpha) * (c_grads / c_inputs))


@settings(max_examples=40)
@given(SEEDS, st.integers(1, 4), st.integers(1, 3), st.sampled_from(["duplicate", "zero"]))
def test_singular_statistics_give_finite_minimum_norm_solutions(seed, k, w, kind) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(20, k, generator=gen, dtype=F64)
    extra = x[:, :1] if kind == "duplicate" else torch.zeros(20, 1, dtype=F64)
    b = _with_bias(torch.cat([x, extra], 1))  # rank k + 1 of k + 2 columns
    dz = torch.randn(20, w, generator=gen, dtype=F64)
    delta, gain = optimal_delta(_moments(b, b), _moments(b, dz))
    _close(delta, (torch.linalg.pinv(b) @ dz).mT, rtol=1e-7)
    new = optimal_neurons(_moments(b, b), _moments(b, dz))
    for t in (delta, gain, *new):
        assert torch.isfinite(t.to(F64)).all()


def test_an_all_zero_problem_has_no_neurons_and_no_gain() -> None:
    s, n = torch.zeros(2, 3, 3), torch.zeros(2, 3, 2)
    for relative in (True, False):
        new = optimal_neurons(s, n, relative=relative)
        assert new.count.tolist() == [0, 0] and new.alpha.shape == (2, 0, 3)
        delta, gain = optimal_delta(s, n, relative=relative)
        assert (delta == 0).all() and (gain == 0).all()


def test_absolute_thresholds_keep_at_least_one_neuron_as_gromo_does() -> None:
    s, n = torch.eye(2), torch.tensor([[1e-4], [0.0]])
    assert int(optimal_neurons(s, n, relative=False).count) == 1
    assert int(optimal_neurons(s, n, relative=True).count) == 1
    new = optimal_neurons(torch.eye(3), torch.diag(torch.tensor([4.0, 1.0, 1e-4])))
    assert int(new.count) == 2  # 1e-4 < 1e-3 x 4 (relative)
    assert int(optimal_neurons(torch.eye(3), torch.eye(3) * 5, max_new=2).count) == 2


@settings(max_examples=30)
@given(layer_samples())
def test_sign_convention_largest_fan_out_entry_is_positive(samples) -> None:
    b2, b, dz = samples
    new, _ = _neurons_for(b2, b, dz, statistical_threshold=0.0)
    for j in range(int(new.count)):
        column = new.omega[:, j]
        assert column[column.abs().argmax()] > 0


def test_float32_in_float32_out_and_inverse_sqrt() -> None:
    s = torch.tensor([[4.0, 0.0], [0.0, 1e-9]])
    pinv, root = inverse_sqrt_psd(s, threshold=1e-6)
    assert pinv.dtype == torch.float32
    torch.testing.assert_close(pinv, torch.diag(torch.tensor([0.25, 0.0])))
    torch.testing.assert_close(root, torch.diag(torch.tensor([0.5, 0.0])))
    # absolute: 1e-9 is under 1e-6 either way; relative to 4 it is under 4e-6 too
    _, root_abs = inverse_sqrt_psd(s, threshold=1e-10, relative=False)
    assert float(root_abs[1, 1]) == pytest.approx(1e-9**-0.5, rel=1e-4)
    new = optimal_neurons(s, torch.tensor([[1.0], [0.0]]))
    assert new.alpha.dtype == new.omega.dtype == new.lam.dtype == torch.float32


BAD_SHAPES = [
    (optimal_delta, (torch.zeros(3, 4), torch.zeros(3, 2)), r"s has shape \(3, 4\)"),
    (optimal_delta, (torch.zeros(3, 3), torch.zeros(4, 2)), r"m \(4, 2\)"),
    (optimal_delta, (torch.zeros(2, 3, 3), torch.zeros(5, 3, 2)), r"m \(5, 3, 2\)"),
    (optimal_edge, (torch.zeros(3), torch.zeros(3, 2)), r"s has shape \(3,\)"),
    (optimal_neurons, (torch.zeros(3, 3), torch.zeros(2, 2)), r"n \(2, 2\)"),
    (
        bottleneck_cross,
        (torch.zeros(4, 2), torch.zeros(4, 3), torch.zeros(2, 5)),
        r"m2 has shape \(4, 2\), p \(4, 3\) and delta \(2, 5\)",
    ),
]


@pytest.mark.parametrize(("solve", "args", "message"), BAD_SHAPES)
def test_bad_shapes_raise_value_errors_naming_them(solve, args, message) -> None:
    with pytest.raises(ValueError, match=message):
        solve(*args)


def test_bad_values_raise_value_errors_naming_them() -> None:
    s, n = torch.eye(3), torch.ones(3, 2)
    with pytest.raises(ValueError, match="optimal_neurons: s has non-finite"):
        optimal_neurons(s * float("nan"), n)
    with pytest.raises(ValueError, match="statistical_threshold must be in"):
        optimal_neurons(s, n, statistical_threshold=2.0)
    with pytest.raises(ValueError, match="threshold must be >= 0, got -1"):
        optimal_delta(s, n, threshold=-1, relative=False)
    with pytest.raises(ValueError, match="max_new must be None or an integer >= 0, got -1"):
        optimal_neurons(s, n, max_new=-1)
    with pytest.raises(ValueError, match=r"mask has shape \(2,\); expected \(3,\)"):
        optimal_neurons(s, n, mask=torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="must be a floating-point tensor"):
        optimal_delta(torch.eye(3, dtype=torch.int64), n)


def test_lapack_failures_fall_back_to_a_jittered_eigh_and_an_eigh_svd(monkeypatch) -> None:
    gen = torch.Generator().manual_seed(0)
    b2 = _with_bias(torch.randn(30, 5, generator=gen, dtype=F64))
    s2, n = _moments(b2, b2), _moments(b2, torch.randn(30, 3, generator=gen, dtype=F64))
    expected = optimal_neurons(s2, n)
    eigh, calls = torch.linalg.eigh, []

    def eigh_failing_once(matrix):
        calls.append(matrix)
        if len(calls) == 1:
            raise torch.linalg.LinAlgError("did not converge")
        return eigh(matrix)

    def svd_failing(*args, **kwargs):
        raise torch.linalg.LinAlgError("did not converge")

    monkeypatch.setattr(torch.linalg, "eigh", eigh_failing_once)
    monkeypatch.setattr(torch.linalg, "svd", svd_failing)
    got = optimal_neurons(s2, n)
    assert len(calls) == 3  # failed, jittered retry, the SVD's Gram matrix
    assert int(got.count) == int(expected.count)
    for ours, theirs in zip(got, expected, strict=True):
        _close(ours.to(F64), theirs.to(F64), rtol=1e-6)
