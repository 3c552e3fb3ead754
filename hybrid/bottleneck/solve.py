"""TINY's closed-form solves, batched over a leading dimension of padded problems.

Verbockhaven et al., "Growing Tiny Networks: Spotting Expressivity Bottlenecks and
Fixing Them Optimally" (TMLR 2024). With ``b`` a layer's input (a constant 1 appended
for the bias), ``dz`` the per-sample gradient at its pre-activation under a
sum-reduced loss and ``E`` the mean over the statistics batch:

* ``S = E[b bᵀ]`` and ``M = E[b dzᵀ]``; the best step of the existing weights is
  ``δW* = (S⁺ M)ᵀ`` with first-order gain ``tr(Mᵀ S⁺ M)`` (:func:`optimal_delta`); what
  it cannot express is the bottleneck ``V = dz − δW* b``.
* New neurons feeding the layer, read from the inputs ``b2`` of the layer before:
  ``S2 = E[b2 b2ᵀ]`` and ``N = E[b2 (−V)ᵀ] = −M2 + P δW*ᵀ`` with ``M2 = E[b2 dzᵀ]`` and
  ``P = E[b2 bᵀ]`` (:func:`bottleneck_cross`). With the SVD
  ``S2^(−½) N = U diag(λ) Vᵀ``, neuron ``k`` has fan-in ``α_k = √λ_k S2^(−½) u_k``
  (bias last) and fan-out ``ω_k = √λ_k v_k``; together they lower
  ``E‖−V − Σ ω_k α_kᵀ b2‖²`` by ``Σ λ_k²`` (times ``σ'(0)`` through an activation)
  (:func:`optimal_neurons`).
* A new skip edge into the layer from a node with inputs ``b_i``: ``W = (S_i⁺ N)ᵀ``,
  gain ``tr(Nᵀ S_i⁺ N)`` (:func:`optimal_edge`).

Conventions (``docs/design.md``, "Bottleneck growth: the closed-form solves"):

* Every matrix carries the same leading batch shape ``(...)`` (members x nodes, say);
  the functions are pure torch, compute in ``dtype`` (float64 by default) and return
  in the inputs' dtype.
* Padding: an absent input unit has a zero row/column in ``S`` *or* an identity
  row/column, and a zero row in ``M``/``N``; an absent output unit a zero column in
  ``M``/``N``. Both paddings give the same results, with exactly zero weights for the
  absent units: a unit whose row of ``S`` is zero off the diagonal and whose row of
  ``M``/``N`` is zero is decoupled from everything, so it is dropped (its diagonal
  too, keeping an identity padding out of the relative threshold). ``mask``
  (``(..., K)``, True for real input units) drops units explicitly, for paddings that
  are not exactly zero.
* Thresholds: with ``relative=True`` an eigenvalue of ``S`` is dropped when it is
  ``<= threshold * (largest eigenvalue of that problem)`` and a singular value is kept
  when it is ``>= statistical_threshold * (largest singular value)``, so summing
  instead of averaging (any positive scaling of the statistics) changes nothing but
  the scale of ``λ``. ``relative=False`` uses the thresholds as they are, as gromo
  does (it keeps at least one neuron even under the threshold).
* Singular ``S`` (dead ReLUs, closed gates, padding) is pseudo-inverted through its
  eigendecomposition: never an error, never NaN.
* A problem whose largest singular value is exactly 0 (nothing to fix, or an all-zero
  padding problem) gets ``count`` 0; gromo would still return one zero neuron.
* Signs: each neuron's ``(u_k, v_k)`` pair is flipped so that the entry of largest
  magnitude of its fan-out ``ω_k`` is positive (the first such entry on ties); SVD
  signs are otherwise arbitrary.
* ``k`` (the neuron dimension) is the largest ``count`` in the batch; a problem's
  neurons beyond its own ``count`` are zero, with ``λ`` 0.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = [
    "Neurons",
    "bottleneck_cross",
    "inverse_sqrt_psd",
    "optimal_delta",
    "optimal_edge",
    "optimal_neurons",
]


class Neurons(NamedTuple):
    """The new neurons of a batch of problems (:func:`optimal_neurons`).

    Shape:
        alpha: (..., k, K2), fan-in of each neuron, bias last; omega: (..., w, k),
        fan-out; lam: (..., k), singular values, descending; count: (...,) int64,
        how many of the k neurons of each problem are real.
    """

    alpha: torch.Tensor
    omega: torch.Tensor
    lam: torch.Tensor
    count: torch.Tensor

    @property
    def gain(self) -> torch.Tensor:
        """First-order gain ``Σ λ_k²`` of each problem's neurons, shape ``(...,)``.

        Multiply by ``σ'(0)`` of the new neurons' activation for the loss decrease.
        """
        return (self.lam**2).sum(-1)


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_tensors(fn: str, **tensors: torch.Tensor) -> None:
    """Refuse non-tensors, non-float dtypes, fewer than 2 dims and non-finite entries.

    Raises:
        ValueError: naming ``fn``, the argument and what was expected.
    """
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{fn}: {name} must be a floating-point tensor, got {t.dtype}")
        if t.ndim < 2:
            raise ValueError(
                f"{fn}: {name} has shape {_shape(t)}; expected a batch of matrices (..., rows, cols)"
            )
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{fn}: {name} has non-finite entries (NaN or inf)")


def _check_threshold(fn: str, name: str, value: float, relative: bool) -> None:
    """Refuse a negative threshold, or a relative one above 1.

    Raises:
        ValueError: naming ``fn``, the argument and its value.
    """
    ok = value >= 0 and (not relative or value <= 1)
    if not ok:
        expected = "in [0, 1] (relative=True)" if relative else ">= 0"
        raise ValueError(f"{fn}: {name} must be {expected}, got {value!r}")


def _check_pair(fn: str, s: torch.Tensor, other: torch.Tensor, other_name: str) -> None:
    """Check ``s`` is ``(..., K, K)`` and ``other`` is ``(..., K, w)`` with the same ``...``.

    Raises:
        ValueError: naming both shapes.
    """
    _check_tensors(fn, **{"s": s, other_name: other})
    square = s.shape[-1] == s.shape[-2]
    if not square or other.shape[-2] != s.shape[-1] or other.shape[:-2] != s.shape[:-2]:
        raise ValueError(
            f"{fn}: s has shape {_shape(s)} and {other_name} {_shape(other)}; expected "
            f"s (..., K, K) and {other_name} (..., K, w) with the same leading dims"
        )


def _units(
    fn: str, mask: torch.Tensor | None, s: torch.Tensor, rows: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Find the input units that take part and zero the others in ``s`` and ``rows``.

    A unit is out when ``mask`` says so, or (given ``rows``) when its row of ``s`` is
    zero off the diagonal and its row of ``rows`` is zero: such a unit is decoupled
    from the others and from the target, so its weights are exactly zero whatever its
    diagonal holds (a zero or identity padding). Zeroing its diagonal too keeps an
    identity padding out of the relative threshold.

    Args:
        fn: the public function, for messages.
        mask: (..., K) True for the real units, or None.
        s: (..., K, K).
        rows: (..., K, w) or None.

    Returns:
        ``(s, rows, keep)`` with ``keep`` bool (..., K).

    Raises:
        ValueError: when ``mask`` is not ``(..., K)`` for ``s`` of shape ``(..., K, K)``.
    """
    keep = torch.ones(s.shape[:-1], dtype=torch.bool, device=s.device)
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or _shape(mask) != _shape(s)[:-1]:
            got = _shape(mask) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(
                f"{fn}: mask has shape {got}; expected {_shape(s)[:-1]} (..., K) for s"
            )
        keep = mask.to(device=s.device, dtype=torch.bool)
    if rows is not None:
        off_diagonal = s - torch.diag_embed(s.diagonal(dim1=-2, dim2=-1))
        decoupled = (off_diagonal == 0).all(-1) & (rows == 0).all(-1)
        keep = keep & ~decoupled
        rows = rows * keep[..., :, None]
    return s * (keep[..., :, None] & keep[..., None, :]), rows, keep


def _eigh(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh``, retried once with a jitter of a few ulps if it fails.

    LAPACK can fail to converge on ill-conditioned matrices with many repeated
    eigenvalues; a diagonal shift of ``K * eps * max|s|`` is far below any threshold.
    """
    try:
        return torch.linalg.eigh(s)
    except torch.linalg.LinAlgError:
        size = s.shape[-1]
        scale = s.abs().amax((-2, -1), keepdim=True).clamp_min(torch.finfo(s.dtype).tiny)
        jitter = size * torch.finfo(s.dtype).eps * scale
        return torch.linalg.eigh(s + jitter * torch.eye(size, dtype=s.dtype, device=s.device))


def _svd(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD ``(u, λ descending, vᵀ)``; through ``eigh`` of ``targetᵀ target`` if it fails.

    The fallback squares the condition number, which costs accuracy only on the small
    singular values that the thresholds drop anyway.

    Shape:
        target: (..., K2, w); u: (..., K2, r); λ: (..., r); vᵀ: (..., r, w), r = min(K2, w)
    """
    try:
        return torch.linalg.svd(target, full_matrices=False)
    except torch.linalg.LinAlgError:
        rank = min(target.shape[-2:])
        power, v = _eigh(target.mT @ target)
        power, v = power.flip(-1)[..., :rank], v.flip(-1)[..., :rank]
        lam = power.clamp_min(0).sqrt()
        safe = torch.where(lam > 0, lam, torch.ones_like(lam))
        u = torch.where(lam[..., None, :] > 0, (target @ v) / safe[..., None, :], 0.0)
        return u, lam, v.mT


def _inverse_eigen(
    s: torch.Tensor, threshold: float, relative: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigendecomposition of symmetric PSD ``s`` with the small eigenvalues inverted to 0.

    Args:
        s: (..., K, K), already in the compute dtype; symmetrised here.
        threshold: eigenvalues ``<= threshold`` (times the largest when ``relative``)
            are dropped.
        relative: see ``threshold``.

    Returns:
        ``(inv, vecs)``: ``1 / eigenvalue`` or 0 where dropped, shape (..., K), and the
        eigenvectors as columns, (..., K, K).
    """
    vals, vecs = _eigh((s + s.mT) / 2)
    if relative:
        floor = threshold * vals.amax(-1, keepdim=True).clamp_min(0)
    else:
        floor = torch.full_like(vals[..., :1], threshold)
    keep = vals > floor
    inv = torch.where(keep, 1.0 / torch.where(keep, vals, torch.ones_like(vals)), 0.0)
    return inv, vecs


def inverse_sqrt_psd(
    s: torch.Tensor,
    *,
    threshold: float,
    relative: bool = True,
    mask: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-inverse and inverse square root of a batch of symmetric PSD matrices.

    Args:
        s: the matrices.
        threshold: eigenvalues ``<= threshold`` are dropped (times the problem's
            largest eigenvalue when ``relative``).
        relative: threshold relative to the largest eigenvalue (default) or absolute.
        mask: True for the real units; the others are zeroed first.
        dtype: compute dtype (the results come back in ``s``'s dtype).

    Returns:
        ``(s_pinv, s_inv_sqrt)``, both with the shape of ``s``.

    Raises:
        ValueError: ``s`` is not a batch of square float matrices, has NaN/inf, or a
            threshold is out of range.

    Shape:
        s, mask: (..., K, K), (..., K)

    Example:
        >>> import torch
        >>> pinv, root = inverse_sqrt_psd(torch.diag(torch.tensor([4.0, 0.0])), threshold=1e-6)
        >>> pinv.tolist(), root.tolist()
        ([[0.25, 0.0], [0.0, 0.0]], [[0.5, 0.0], [0.0, 0.0]])
    """
    fn = "inverse_sqrt_psd"
    _check_tensors(fn, s=s)
    if s.shape[-1] != s.shape[-2]:
        raise ValueError(f"{fn}: s has shape {_shape(s)}; expected square matrices (..., K, K)")
    _check_threshold(fn, "threshold", threshold, relative)
    s, _, keep = _units(fn, mask, s, None)
    inv, vecs = _inverse_eigen(s.to(dtype), threshold, relative)
    both = keep[..., :, None] & keep[..., None, :]  # exact zeros for the absent units
    pinv = ((vecs * inv[..., None, :]) @ vecs.mT) * both
    root = ((vecs * inv.sqrt()[..., None, :]) @ vecs.mT) * both
    return pinv.to(s.dtype), root.to(s.dtype)


def optimal_delta(
    s: torch.Tensor,
    m: torch.Tensor,
    *,
    threshold: float = 1e-6,
    relative: bool = True,
    mask: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best first-order step of a layer's weights, ``δW* = (S⁺ M)ᵀ``, and its gain.

    ``δW*`` is the least-squares fit of ``dz`` by ``δW b`` over the statistics batch;
    its gain ``tr(Mᵀ S⁺ M)`` is computed as a sum of non-negative terms, so it is
    never negative.

    Args:
        s: ``E[b bᵀ]`` of the layer's inputs (bias last).
        m: ``E[b dzᵀ]``.
        threshold: eigenvalues of ``s`` ``<= threshold`` (times its largest when
            ``relative``) are dropped from the pseudo-inverse.
        relative: see ``threshold``.
        mask: True for the real input units; the others are zeroed first.
        dtype: compute dtype (the results come back in ``s``'s dtype).

    Returns:
        ``(delta, gain)``.

    Raises:
        ValueError: shapes that do not fit (naming them), non-float or non-finite
            input, or a threshold out of range.

    Shape:
        s: (..., K, K); m: (..., K, w); mask: (..., K); delta: (..., w, K); gain: (...,)

    Example:
        >>> import torch
        >>> delta, gain = optimal_delta(torch.eye(2) * 2, torch.tensor([[2.0], [0.0]]))
        >>> delta.tolist(), gain.item()
        ([[1.0, 0.0]], 2.0)
    """
    return _fit(
        "optimal_delta", s, m, "m", threshold=threshold, relative=relative, mask=mask, dtype=dtype
    )


def optimal_edge(
    s: torch.Tensor,
    n: torch.Tensor,
    *,
    threshold: float = 1e-6,
    relative: bool = True,
    mask: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of a new skip edge ``i -> j``: ``W = (S_i⁺ N)ᵀ``, gain ``tr(Nᵀ S_i⁺ N)``.

    The same least-squares solve as :func:`optimal_delta`, fitting the bottleneck
    ``−V`` of node ``j`` from the outputs of node ``i``.

    Args:
        s: ``E[b_i b_iᵀ]`` of the candidate source's outputs (a bias column last if
            the edge may carry one).
        n: ``E[b_i (−V_j)ᵀ]`` (see :func:`bottleneck_cross`).
        threshold: eigenvalue threshold of ``s`` (see :func:`optimal_delta`).
        relative: see ``threshold``.
        mask: True for the real source units.
        dtype: compute dtype (the results come back in ``s``'s dtype).

    Returns:
        ``(weight, gain)``.

    Raises:
        ValueError: as :func:`optimal_delta`.

    Shape:
        s: (..., K, K); n: (..., K, w); weight: (..., w, K); gain: (...,)
    """
    return _fit(
        "optimal_edge", s, n, "n", threshold=threshold, relative=relative, mask=mask, dtype=dtype
    )


def _fit(
    fn: str,
    s: torch.Tensor,
    m: torch.Tensor,
    m_name: str,
    *,
    threshold: float,
    relative: bool,
    mask: torch.Tensor | None,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``((S⁺ M)ᵀ, tr(Mᵀ S⁺ M))`` for :func:`optimal_delta` and :func:`optimal_edge`."""
    _check_pair(fn, s, m, m_name)
    _check_threshold(fn, "threshold", threshold, relative)
    out = torch.promote_types(s.dtype, m.dtype)
    s, m, keep = _units(fn, mask, s, m)
    inv, vecs = _inverse_eigen(s.to(dtype), threshold, relative)
    proj = vecs.mT @ m.to(dtype)  # M in S's eigenbasis: (..., K, w)
    weight = (vecs @ (inv[..., :, None] * proj)).mT * keep[..., None, :]
    gain = (inv[..., :, None] * proj.square()).sum((-2, -1))
    return weight.to(out), gain.to(out)


def bottleneck_cross(m2: torch.Tensor, p: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``N = E[b2 (−V)ᵀ] = −M2 + P δW*ᵀ``: the bottleneck seen from the layer before.

    Args:
        m2: ``E[b2 dzᵀ]``, the layer's pre-activation gradient against the inputs of
            the layer before (bias last).
        p: ``E[b2 bᵀ]``, the cross moment of the two layers' inputs.
        delta: ``δW*`` of the layer (:func:`optimal_delta`).

    Returns:
        ``n`` in the promoted dtype of the inputs.

    Raises:
        ValueError: shapes that do not fit (naming all three), non-float or non-finite
            input.

    Shape:
        m2: (..., K2, w); p: (..., K2, K); delta: (..., w, K); n: (..., K2, w)
    """
    fn = "bottleneck_cross"
    _check_tensors(fn, m2=m2, p=p, delta=delta)
    fits = (
        m2.shape[:-2] == p.shape[:-2] == delta.shape[:-2]
        and m2.shape[-2] == p.shape[-2]
        and m2.shape[-1] == delta.shape[-2]
        and p.shape[-1] == delta.shape[-1]
    )
    if not fits:
        raise ValueError(
            f"{fn}: m2 has shape {_shape(m2)}, p {_shape(p)} and delta {_shape(delta)}; "
            "expected m2 (..., K2, w), p (..., K2, K), delta (..., w, K) with the same leading dims"
        )
    out = torch.promote_types(torch.promote_types(m2.dtype, p.dtype), delta.dtype)
    return p.to(out) @ delta.to(out).mT - m2.to(out)


def optimal_neurons(
    s2: torch.Tensor,
    n: torch.Tensor,
    *,
    numerical_threshold: float = 1e-6,
    statistical_threshold: float = 1e-3,
    relative: bool = True,
    max_new: int | None = None,
    mask: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> Neurons:
    """TINY's new neurons: the leading singular directions of ``S2^(−½) N``.

    Args:
        s2: ``E[b2 b2ᵀ]`` of the inputs of the layer the neurons read from (bias last).
        n: ``E[b2 (−V)ᵀ]`` (:func:`bottleneck_cross`).
        numerical_threshold: eigenvalues of ``s2`` ``<= numerical_threshold`` (times the
            largest when ``relative``) are dropped from ``S2^(−½)``.
        statistical_threshold: singular values ``>= statistical_threshold`` (times the
            largest when ``relative``) are kept; with ``relative=False`` at least one is
            kept, as in gromo, unless the largest is 0.
        relative: thresholds relative to each problem's largest eigenvalue / singular
            value (default) or absolute.
        max_new: at most this many neurons per problem (None: no limit).
        mask: True for the real input units of ``s2``/``n``; the others are zeroed.
        dtype: compute dtype (the results come back in the inputs' dtype).

    Returns:
        :class:`Neurons` ``(alpha, omega, lam, count)``; neuron ``k`` of a problem is
        real when ``k < count``, else zero.

    Raises:
        ValueError: shapes that do not fit (naming them), non-float or non-finite
            input, a threshold out of range or a negative ``max_new``.

    Shape:
        s2: (..., K2, K2); n: (..., K2, w); mask: (..., K2); alpha: (..., k, K2);
        omega: (..., w, k); lam: (..., k); count: (...,)

    Example:
        >>> import torch
        >>> new = optimal_neurons(torch.eye(2), torch.tensor([[0.0], [-4.0]]))
        >>> new.alpha.tolist(), new.omega.tolist(), new.lam.tolist(), new.count.tolist()
        ([[0.0, -2.0]], [[2.0]], [4.0], 1)
    """
    fn = "optimal_neurons"
    _check_pair(fn, s2, n, "n")
    _check_threshold(fn, "numerical_threshold", numerical_threshold, relative)
    _check_threshold(fn, "statistical_threshold", statistical_threshold, relative)
    if max_new is not None and (
        isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 0
    ):
        raise ValueError(f"{fn}: max_new must be None or an integer >= 0, got {max_new!r}")
    out = torch.promote_types(s2.dtype, n.dtype)
    s2, n, keep = _units(fn, mask, s2, n)
    inv, vecs = _inverse_eigen(s2.to(dtype), numerical_threshold, relative)
    root = (vecs * inv.sqrt()[..., None, :]) @ vecs.mT  # S2^(-1/2), pseudo
    u, lam, vh = _svd(root @ n.to(dtype))
    u, vh = _fix_signs(u, vh)
    chosen = _kept(lam, statistical_threshold, relative, max_new)
    count = chosen.sum(-1)
    k = int(count.max()) if count.numel() else 0
    lam = torch.where(chosen, lam, 0.0)[..., :k]
    scale = lam.sqrt()
    # Absent inputs and outputs nobody asks anything of (a zero column of N) get exact
    # zeros: their entries are zero in exact arithmetic and rounding noise otherwise.
    alpha = scale[..., :, None] * (root @ u[..., :, :k]).mT * keep[..., None, :]
    asked = (n != 0).any(-2)
    omega = (scale[..., :, None] * vh[..., :k, :]).mT * asked[..., :, None]
    return Neurons(alpha.to(out), omega.to(out), lam.to(out), count)


def _fix_signs(u: torch.Tensor, vh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each singular pair so the largest-magnitude entry of ``v_k`` is positive.

    Shape:
        u: (..., K2, r); vh: (..., r, w)
    """
    if vh.shape[-1] == 0:
        return u, vh
    top = vh.gather(-1, vh.abs().argmax(-1, keepdim=True)).squeeze(-1)  # (..., r)
    sign = torch.where(top < 0, -1.0, 1.0).to(vh.dtype)
    return u * sign[..., None, :], vh * sign[..., :, None]


def _kept(lam: torch.Tensor, threshold: float, relative: bool, max_new: int | None) -> torch.Tensor:
    """Which singular values (descending, (..., r)) become neurons: a prefix of each row.

    Returns:
        bool (..., r).
    """
    top = lam[..., :1] if lam.shape[-1] else torch.zeros_like(lam[..., :1])
    floor = threshold * top if relative else top.clamp_max(threshold)
    keep = (lam >= floor) & (top > 0)
    if max_new is not None:
        keep[..., max_new:] = False
    return keep
