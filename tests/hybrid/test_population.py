"""The population engine's function, gradients and packing, held to GenomeNet and numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import GATE_KINDS, Genome, GenomeError, InnovationTracker, evaluate
from hybrid.gates import draw_gate_noise
from hybrid.net import GenomeNet, write_back
from hybrid.population import PopulationEngine, pack
from hybrid.population.plan import ladder
from hybrid.population.program import GraphProgram, graph_apply
from tests.hybrid.oracle import grads_as_genomes
from tests.strategies import populations_strategy, randomise

SEEDS = st.integers(0, 2**16)


def _inputs(pop: list[Genome], seed: int, n: int = 6) -> torch.Tensor:
    return torch.randn(n, pop[0].n_inputs, generator=torch.Generator().manual_seed(seed))


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    scale = 1.0 + float(b.abs().max()) if b.numel() else 1.0
    assert float((a - b).abs().max()) <= tol * scale if a.numel() else True


@settings(max_examples=40)
@given(populations_strategy(gate=st.sampled_from(GATE_KINDS)), st.sampled_from(GATE_KINDS), SEEDS)
def test_forward_equals_genomenet_and_numpy_for_every_member(pop, gate, seed):
    x = _inputs(pop, seed)
    out = PopulationEngine(pop, gate)(x)
    assert out.shape == (len(pop), x.shape[0], pop[0].n_outputs)
    for m, genome in enumerate(pop):
        _close(out[m], GenomeNet(genome, gate).eval()(x).detach())
        ref = torch.from_numpy(evaluate(genome, x.numpy().astype(np.float64), gate)).float()
        _close(out[m], ref)


@settings(max_examples=25)
@given(populations_strategy(gate="hard_concrete"), SEEDS)
def test_training_gates_equal_genomenet_given_the_same_noise(pop, seed):
    engine = PopulationEngine(pop, "hard_concrete")
    x = _inputs(pop, seed)
    noise = draw_gate_noise(engine.n_gates, 1, torch.Generator().manual_seed(seed))[0]
    out = engine(x, noise, training=True)
    for m, genome in enumerate(pop):
        start, end = engine.layout.members[m].gates
        net = GenomeNet(genome, "hard_concrete").train()
        _close(out[m], net(x, noise[start:end]).detach())


@settings(max_examples=30)
@given(populations_strategy(), SEEDS)
def test_gradients_equal_genomenet_for_every_member(pop, seed):
    x = _inputs(pop, seed)
    proj = torch.randn(
        len(pop), x.shape[0], pop[0].n_outputs, generator=torch.Generator().manual_seed(seed + 1)
    )
    engine = PopulationEngine(pop, "sigmoid")
    for p in engine.params:
        p.requires_grad_(True)
    loss = (engine(x) * proj).sum() + engine.penalty().sum()
    grads = grads_as_genomes(engine, torch.autograd.grad(loss, engine.params))
    for m, genome in enumerate(pop):
        net = GenomeNet(genome, "sigmoid")
        ((net(x) * proj[m]).sum() + net.penalty()).backward()
        for p in net.parameters():
            p.data.copy_(p.grad)
        ref = write_back(genome, net)
        for (label, a), (_, b) in zip(grads[m].iter_arrays(), ref.iter_arrays(), strict=True):
            assert np.allclose(a, b, rtol=1e-4, atol=1e-5), label


@settings(max_examples=30)
@given(populations_strategy(gate=st.sampled_from(GATE_KINDS)), st.data(), SEEDS)
def test_members_of_one_structure_keep_their_own_values(pop, data, seed):
    """Copies of members with other values (K-fold's fold copies) are packed once per structure."""
    rng = np.random.default_rng(seed)
    picks = data.draw(st.lists(st.sampled_from(range(len(pop))), min_size=1, max_size=6))
    pop = [*pop, *(randomise(pop[i], rng) for i in picks)]
    order = data.draw(st.permutations(range(len(pop))))
    pop = [pop[i] for i in order]
    engine = PopulationEngine(pop, "sigmoid")
    x = _inputs(pop, seed)
    out = engine(x)
    for m, genome in enumerate(pop):
        _close(out[m], GenomeNet(genome, "sigmoid").eval()(x).detach())
        start, end = engine.layout.members[m].gates
        assert end - start == GenomeNet(genome, "sigmoid").n_gates
    assert all(c == g for c, g in zip(engine.write_back(), pop, strict=True))


@settings(max_examples=30)
@given(populations_strategy(gate=st.sampled_from(GATE_KINDS)))
def test_write_back_of_an_untrained_population_is_bit_exact(pop):
    children = PopulationEngine(pop, "sigmoid").write_back()
    assert all(c == g and c is not g for c, g in zip(children, pop, strict=True))
    assert all(c.validate() for c in children)


def test_custom_backward_matches_finite_differences_in_float64():
    rng = np.random.default_rng(3)
    tracker = InnovationTracker()
    pop = [
        Genome.minimal(3, 2, rng, tracker, hidden=[4, 2], activation="tanh"),
        Genome.minimal(3, 2, rng, tracker, hidden=[3], activation="gelu"),
        Genome.minimal(3, 2, rng, tracker, hidden=[2], activation="softplus"),
        Genome.minimal(3, 2, rng, tracker),
    ]
    layout = pack(pop)
    program = GraphProgram(layout, "cpu", torch.float64)
    g = torch.Generator().manual_seed(0)
    f64 = {"generator": g, "dtype": torch.float64}
    xt = torch.randn(3, 5, **f64)
    real = torch.as_tensor(layout.weight_member < len(pop))  # padding gets no gradient
    inputs = [
        torch.tensor(layout.weights, dtype=torch.float64),
        torch.rand(len(layout.col_edge_gate), **f64),
        torch.rand(layout.n_input_rows, 3, **f64),
        torch.randn(layout.n_rows, **f64),
    ]
    proj = torch.randn(len(pop) * 2, 5, **f64)

    def f(*args):
        return (graph_apply(program, xt, *args) * proj).sum()

    params = [t.clone().requires_grad_() for t in inputs]
    grads = torch.autograd.grad(f(*params), params)
    for i, (t, grad) in enumerate(zip(inputs, grads, strict=True)):
        for _ in range(3):
            v = torch.randn(t.shape, **f64)
            if i == 0:
                v = torch.where(real, v, 0.0)
            eps = 1e-6
            plus = [x + eps * v if j == i else x for j, x in enumerate(inputs)]
            minus = [x - eps * v if j == i else x for j, x in enumerate(inputs)]
            numeric = (f(*plus) - f(*minus)) / (2 * eps)
            assert torch.allclose((grad * v).sum(), numeric, rtol=1e-6, atol=1e-8), i
    assert float(grads[0][~real].abs().max()) == 0.0


def test_pack_rejects_empty_and_mixed_width_populations():
    rng, tracker = np.random.default_rng(0), InnovationTracker()
    with pytest.raises(GenomeError, match="at least one genome"):
        pack([])
    with pytest.raises(GenomeError, match="n_inputs=2"):
        pack([Genome.minimal(2, 1, rng, tracker), Genome.minimal(3, 1, rng, tracker)])


def test_padding_efficiency_counts_real_edges_over_executed_macs():
    rng, tracker = np.random.default_rng(0), InnovationTracker()
    pop = [Genome.minimal(5, 3, rng, tracker, hidden=[w, 3]) for w in (1, 2, 5, 7)]
    layout = pack(pop, merge_macs=0)
    real = sum(a["weight"].size for g in pop for _, _, a in g.graph.edges(data=True))
    assert layout.useful_macs == real
    assert 0 < layout.padding_efficiency <= 1
    assert layout.executed_macs == real / layout.padding_efficiency


@pytest.mark.parametrize(
    ("n", "padded"),
    [(0, 0), (1, 1), (5, 5), (16, 16), (17, 18), (25, 26), (32, 32), (33, 36), (63, 64), (65, 72)],
)
def test_ladder_is_exact_to_16_then_rounds_up_to_eighths_of_a_power_of_two(n, padded):
    assert ladder(n) == padded


def test_engine_rejects_inputs_of_the_wrong_width():
    rng, tracker = np.random.default_rng(0), InnovationTracker()
    engine = PopulationEngine([Genome.minimal(2, 1, rng, tracker)])
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        engine(torch.zeros(4, 3))
