"""The statistics pass against GenomeNet's autograd: D's blocks are weight gradients.

For an enabled edge ``e = i -> j`` the sum-reduced loss has
``dL/dW_e = g_e * sum_b dz_j H_iᵀ``, and for a node's bias ``dL/db_j = sum_b dz_j``;
so ``D = E[H dzᵀ]`` is checked block by block against ``GenomeNet``'s gradients,
which checks ``H`` (features) and ``dz`` (per-sample gradients) together.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes.gates import gate_value
from hybrid.bottleneck.stats import collect, node_input
from hybrid.net import GenomeNet
from tests.strategies import genomes_strategy


def _grads(genome, x, y, gate):
    net = GenomeNet(genome, gate=gate).double().eval()
    out = net(torch.as_tensor(x, dtype=torch.float64))
    loss = torch.nn.functional.cross_entropy(out, torch.as_tensor(y), reduction="sum")
    loss.backward()
    return {k: p.grad.numpy() for k, p in net.named_parameters()}


@settings(max_examples=25, deadline=None)
@given(
    population=st.lists(genomes_strategy(n_inputs=3, n_outputs=3, gate="hard_concrete"), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_moments_are_the_engines_weight_and_bias_gradients(population, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(17, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=17)
    stats = collect(population, x, y, loss="cross_entropy", gate="hard_concrete")
    for genome, st_ in zip(population, stats, strict=True):
        grads = _grads(genome, x, y, "hard_concrete")
        g = genome.graph
        for n in [*genome.hidden_nodes(), genome.output_id]:
            rows = st_.target_rows(n)
            bias = st_.D[st_.one, rows].numpy() * len(x)
            np.testing.assert_allclose(bias, grads[f"nodes.n{n}_bias"], rtol=1e-4, atol=1e-4)
            feat, scale, blocks = node_input(st_, n)
            for src, at in blocks:
                e = g.edges[src, n]
                w = int(g.nodes[src]["width"])
                block = st_.D[feat[at : at + w]][:, rows].numpy().T * len(x)  # sum dz H_iᵀ
                g_e = float(gate_value(e["gate"], "hard_concrete"))
                np.testing.assert_allclose(block * g_e, grads[f"edges.e{src}_{n}_weight"], rtol=1e-4, atol=1e-4)
            assert scale[-1] == 1.0 and feat[-1] == st_.one


def test_moments_are_means_of_features():
    from genomes import Genome, InnovationTracker

    rng = np.random.default_rng(0)
    genome = Genome.minimal(4, 2, rng, InnovationTracker(), hidden=[3])
    x = rng.normal(size=(9, 4)).astype(np.float32)
    (st_,) = collect([genome], x, np.zeros(9, np.int64), loss="cross_entropy", gate="sigmoid")
    torch.testing.assert_close(st_.G, st_.H @ st_.H.t() / 9)
    torch.testing.assert_close(st_.D, st_.H @ st_.dz.t() / 9)
    assert torch.all(st_.H[st_.one] == 1.0)


def test_recurrent_genomes_are_refused():
    from genomes import Genome, GenomeError, InnovationTracker
    from genomes.mutations.growth import add_recurrent_edge
    from tests.strategies import mutation_config

    rng = np.random.default_rng(0)
    tracker = InnovationTracker()
    genome = Genome.minimal(2, 2, rng, tracker, hidden=[2])
    genome, _ = add_recurrent_edge(genome, rng, tracker, mutation_config())
    with pytest.raises(GenomeError, match="recurrent"):
        collect([genome], np.zeros((3, 2), np.float32), np.zeros(3, np.int64), loss="cross_entropy", gate="sigmoid")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_statistics_match_the_cpus():
    """The statistics pass on a GPU gives the CPU's moments (it once mixed devices and raised)."""
    from genomes import Genome, InnovationTracker

    rng = np.random.default_rng(3)
    genome = Genome.minimal(3, 3, rng, InnovationTracker(), hidden=[4, 2])
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    (cpu,) = collect([genome], x, y, loss="cross_entropy", gate="sigmoid", device="cpu")
    (gpu,) = collect([genome], x, y, loss="cross_entropy", gate="sigmoid", device="cuda")
    for name in ("H", "dz", "G", "D"):
        torch.testing.assert_close(getattr(gpu, name), getattr(cpu, name), rtol=1e-4, atol=1e-5)
    assert gpu.loss == pytest.approx(cpu.loss, rel=1e-5)
