"""gromo (TINY's own library) as the oracle of hybrid.bottleneck.solve.

A ``64 -> h -> 10`` chain of two ``LinearGrowingModule`` s sees one statistics batch
of digits under a sum-reduced cross-entropy; gromo's new neurons (its TINY settings)
must be solve.py's, fed with gromo's own statistics, and gromo's statistics must be
the moments a plain torch pass computes from the same batch. Everything runs in
float64: gromo's default float32 solve is itself 1.2e-3 (relative to the largest
``λ``) away from its float64 solve on the same statistics, because the smallest
eigenvalues ``S2^(−½)`` keeps (6e-6, against a largest of 12) carry float32 rounding.
"""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from hybrid.bottleneck.solve import Neurons, bottleneck_cross, optimal_delta, optimal_neurons

LinearGrowingModule = pytest.importorskip("gromo.modules.linear_growing_module").LinearGrowingModule

BATCH = 256
TOLERANCE = 1e-4  # relative, per neuron


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    return torch.tensor(x, dtype=torch.float64) / 16, torch.tensor(y)


@pytest.fixture
def float64():
    """gromo builds its layers and ones-columns in the default dtype."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(saved)


def _chain(digits, h: int, seed: int):
    """gromo's chain after one statistics batch: ``(first, second, x, y)``."""
    torch.manual_seed(seed)
    order = torch.randperm(len(digits[0]), generator=torch.Generator().manual_seed(seed))
    x, y = digits[0][order[:BATCH]], digits[1][order[:BATCH]]
    first = LinearGrowingModule(64, h, post_layer_function=torch.nn.ReLU(), name="first")
    second = LinearGrowingModule(h, 10, previous_module=first, name="second")
    second.init_computation()
    loss = torch.nn.functional.cross_entropy(second(first(x)), y, reduction="sum")
    loss.backward()
    second.update_computation()
    return first, second, x, y


def _assert_same_neurons(ours: Neurons, alpha: torch.Tensor, omega: torch.Tensor, lam) -> None:
    """Equal within TOLERANCE, up to each neuron's sign and the order of equal ``λ``.

    Neurons with equal ``λ`` span a subspace in which any rotation is as optimal, so
    those are compared through the sum of their ``ω_k α_kᵀ``.
    """
    assert int(ours.count) == len(lam)
    torch.testing.assert_close(ours.lam, lam, rtol=0, atol=TOLERANCE * float(lam.max()))
    k = 0
    while k < len(lam):
        tied = int((lam[k:] - lam[k]).abs().le(TOLERANCE * lam[k]).sum())
        group = slice(k, k + tied)
        if tied == 1:
            sign = torch.sign((ours.omega[:, k] * omega[:, k]).sum())
            for mine, theirs in ((ours.alpha[k], alpha[k]), (ours.omega[:, k], omega[:, k])):
                assert float((sign * mine - theirs).norm()) <= TOLERANCE * float(theirs.norm())
        else:
            mine = ours.omega[:, group] @ ours.alpha[group]
            theirs = omega[:, group] @ alpha[group]
            assert float((mine - theirs).norm()) <= TOLERANCE * float(theirs.norm())
        k += tied


SETTINGS = [  # (statistical_threshold, maximum_added_neurons)
    (1e-3, None),  # gromo's defaults
    (0.2, None),  # the threshold cuts some
    (1e-3, 3),
    (10.0, None),  # over every singular value: gromo keeps one, and so do we
]


@pytest.mark.parametrize("h", [1, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("statistical_threshold", "max_new"), SETTINGS)
def test_new_neurons_match_gromo(digits, float64, h, seed, statistical_threshold, max_new) -> None:
    first, second, _, _ = _chain(digits, h, seed)
    second.compute_optimal_updates(  # TINY
        statistical_threshold=statistical_threshold,
        maximum_added_neurons=max_new,
        dtype=torch.float64,
        compute_delta=False,
        use_covariance=True,
        alpha_zero=False,
        omega_zero=False,
        use_projection=True,
        ignore_singular_values=False,
    )
    extension = first.extended_output_layer
    alpha = torch.cat([extension.weight, extension.bias[:, None]], 1).detach()  # bias last
    omega = second.extended_input_layer.weight.detach()

    delta, _ = optimal_delta(second.tensor_s(), second.tensor_m(), relative=False)
    n = bottleneck_cross(second.tensor_m_prev(), second.cross_covariance(), delta)
    torch.testing.assert_close(delta, second.delta_raw, rtol=TOLERANCE, atol=1e-10)
    torch.testing.assert_close(n, second.tensor_n, rtol=TOLERANCE, atol=1e-10)
    ours = optimal_neurons(
        second.tensor_s_growth(),
        n,
        numerical_threshold=1e-6,
        statistical_threshold=statistical_threshold,
        relative=False,
        max_new=max_new,
    )
    _assert_same_neurons(ours, alpha, omega, second.eigenvalues_extension.detach())


@pytest.mark.parametrize("h", [1, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gromo_statistics_are_the_plain_moments_of_the_batch(digits, float64, h, seed) -> None:
    first, second, x, y = _chain(digits, h, seed)
    # The chain again, by hand, with its pre-activation gradient under the summed loss.
    z1 = x @ first.weight.detach().T + first.bias.detach()
    hidden = torch.relu(z1)
    z2 = (hidden @ second.weight.detach().T + second.bias.detach()).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(z2, y, reduction="sum")
    (dz,) = torch.autograd.grad(loss, z2)
    ones = torch.ones(len(x), 1)
    b, b2 = torch.cat([hidden, ones], 1), torch.cat([x, ones], 1)
    mean = len(x)
    expected = {
        "S": (b.T @ b / mean, second.tensor_s()),
        "M": (b.T @ dz / mean, second.tensor_m()),
        "M2": (b2.T @ dz / mean, second.tensor_m_prev()),
        "P": (b2.T @ b / mean, second.cross_covariance()),
        "S2": (b2.T @ b2 / mean, second.tensor_s_growth()),
    }
    for name, (ours, theirs) in expected.items():
        assert ours.shape == theirs.shape, name
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("h", [1, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hybrid_statistics_pass_gives_gromos_neurons(digits, float64, h, seed) -> None:
    """End to end: the same chain as a genome, hybrid's own statistics pass and candidates."""
    import numpy as np

    from genomes import Genome, InnovationTracker
    from hybrid.bottleneck.candidates import Settings, cross_moments
    from hybrid.bottleneck.stats import collect, node_input

    first, second, x, y = _chain(digits, h, seed)
    genome = Genome.minimal(64, 10, np.random.default_rng(0), InnovationTracker(), hidden=[h], activation="relu")
    g = genome.graph
    (hid,) = genome.hidden_nodes()
    g.nodes[hid]["bias"] = first.bias.detach().numpy().astype(np.float32)
    g.nodes[hid]["gate"][:] = 5.0  # hard-concrete gates exactly open: the chain has none
    g.nodes[genome.input_id]["gate"][:] = 5.0
    g.nodes[genome.output_id]["bias"] = second.bias.detach().numpy().astype(np.float32)
    g.edges[genome.input_id, hid].update(weight=first.weight.detach().numpy().astype(np.float32), gate=np.float32(5.0))
    g.edges[hid, genome.output_id].update(weight=second.weight.detach().numpy().astype(np.float32), gate=np.float32(5.0))
    # gromo computed with the float64 weights; the genome stores float32: use those in both
    first.weight.data = torch.as_tensor(g.edges[genome.input_id, hid]["weight"], dtype=torch.float64)
    first.bias.data = torch.as_tensor(g.nodes[hid]["bias"], dtype=torch.float64)
    second.weight.data = torch.as_tensor(g.edges[hid, genome.output_id]["weight"], dtype=torch.float64)
    second.bias.data = torch.as_tensor(g.nodes[genome.output_id]["bias"], dtype=torch.float64)
    first, second, _, _ = _rerun(first, second, x, y)
    second.compute_optimal_updates(dtype=torch.float64, compute_delta=False, use_covariance=True,
                                   use_projection=True)  # fmt: skip
    extension = first.extended_output_layer
    alpha = torch.cat([extension.weight, extension.bias[:, None]], 1).detach()
    omega = second.extended_input_layer.weight.detach()

    (st,) = collect([genome.validate()], x.numpy(), y.numpy(), loss="cross_entropy", gate="hard_concrete",
                    dtype=torch.float64)  # fmt: skip
    rows, scale, _ = node_input(st, hid)
    s2 = st.G[rows][:, rows] * torch.as_tensor(scale)[:, None] * torch.as_tensor(scale)[None, :]
    cross = cross_moments([st], Settings(numerical_threshold=0.0))[0]  # gromo solves S exactly
    n = -cross[rows][:, st.target_rows(genome.output_id)] * torch.as_tensor(scale)[:, None]
    ours = optimal_neurons(s2, n, numerical_threshold=1e-6, statistical_threshold=1e-3, relative=False)
    _assert_same_neurons(ours, alpha, omega, second.eigenvalues_extension.detach())


def _rerun(first, second, x, y):
    """One more statistics batch through an existing chain (fresh statistics)."""
    for module in (first, second):
        module.reset_computation() if hasattr(module, "reset_computation") else None
    second.init_computation()
    loss = torch.nn.functional.cross_entropy(second(first(x)), y, reduction="sum")
    loss.backward()
    second.update_computation()
    return first, second, x, y
