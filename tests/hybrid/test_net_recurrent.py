"""GenomeNet over time: the numpy reference's values, finite-difference gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from genomes import Genome, InnovationTracker, MutationConfig, add_recurrent_edge, evaluate_sequence
from hybrid.gates import gate_layout
from hybrid.net import GenomeNet, write_back
from tests.strategies import genomes_strategy


@given(
    genomes_strategy(recurrent=True, gate=st.sampled_from(["sigmoid", "hard_concrete"])),
    st.integers(0, 2**32 - 1),
)
def test_genome_net_matches_the_reference_over_time(genome, seed) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, 5, genome.n_inputs))
    state = rng.normal(size=(3, genome.state_size))
    for gate in ("sigmoid", "hard_concrete"):
        net = GenomeNet(genome, gate).eval()
        assert net.state_size == genome.state_size
        for s in (None, state):
            want, want_state = evaluate_sequence(genome, x, gate, state=s)
            with torch.no_grad():
                got, got_state = net(
                    torch.tensor(x, dtype=torch.float32),
                    state=None if s is None else torch.tensor(s, dtype=torch.float32),
                )
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(got_state.numpy(), want_state, rtol=1e-5, atol=1e-5)


@given(genomes_strategy(recurrent=True, max_mutations=8), st.integers(0, 2**32 - 1))
def test_genome_net_gradients_over_time_match_finite_differences(genome, seed) -> None:
    rng = np.random.default_rng(seed)
    net = GenomeNet(genome, "sigmoid").double()
    x = torch.tensor(rng.normal(size=(2, 4, genome.n_inputs)))
    state = torch.tensor(rng.normal(size=(2, genome.state_size)), requires_grad=True)
    probe = torch.tensor(rng.normal(size=(2, 4, genome.n_outputs)))

    def loss() -> torch.Tensor:
        out, final = net(x, state=state)
        return (out * probe).sum() + final.sum()

    leaves = [*net.parameters(), state]
    grads = torch.autograd.grad(loss(), leaves)
    eps = 1e-6
    with torch.no_grad():
        for leaf, grad in zip(leaves, grads, strict=True):
            flat = leaf.view(-1)
            for i in (
                rng.choice(flat.numel(), size=min(2, flat.numel()), replace=False)
                if flat.numel()
                else []
            ):
                old = flat[i].item()
                flat[i] = old + eps
                up = loss().item()
                flat[i] = old - eps
                down = loss().item()
                flat[i] = old
                assert abs((up - down) / (2 * eps) - grad.view(-1)[i].item()) < 1e-5 * max(
                    1.0, abs(up)
                )


def test_write_back_keeps_the_trained_recurrent_values_and_gates_are_laid_out() -> None:
    rng = np.random.default_rng(0)
    genome = Genome.minimal(2, 2, rng, InnovationTracker(), hidden=[3])
    genome, _ = add_recurrent_edge(genome, rng, InnovationTracker(next_id=50), MutationConfig())
    net = GenomeNet(genome)
    (s, d) = genome.recurrent_edges()[0]
    with torch.no_grad():
        net.edges[f"e{s}_{d}_weight"].add_(1.0)
    back = write_back(genome, net)
    np.testing.assert_array_equal(back.edge(s, d)["weight"], genome.edge(s, d)["weight"] + 1.0)
    assert [k for k, _ in gate_layout(genome)][-1] == (s, d)  # the newest innovation
    assert net.gate_logits().numel() == sum(r.size for r in gate_layout(genome))
    assert f"{s}(t-1)" in repr(net)


def test_genome_net_rejects_a_state_of_the_wrong_shape() -> None:
    net = GenomeNet(Genome.minimal(2, 1, np.random.default_rng(0), InnovationTracker()))
    with pytest.raises(ValueError, match=r"state should have shape \(3, 0\)"):
        net(torch.zeros(3, 4, 2), state=torch.zeros(3, 1))
