"""GenomeNet computes the genome's function: held to the numpy oracle genomes.evaluate."""

import copy
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import Genome, GenomeError, InnovationTracker, evaluate, open_probability
from genomes.gates import BETA, GATE_KINDS
from genomes.genome import edge_attrs
from hybrid.gates import gate_layout, n_gates
from hybrid.net import GenomeNet, write_back
from tests.strategies import genomes_strategy

KINDS = st.sampled_from(GATE_KINDS)
SEEDS = st.integers(0, 2**32 - 1)


def small_genome(seed: int = 0) -> Genome:
    """Return a 3-in 2-out genome: a tanh/gelu chain, a skip edge, a disabled and a recurrent edge."""
    rng = np.random.default_rng(seed)
    tracker = InnovationTracker()
    g = Genome.minimal(3, 2, rng, tracker, hidden=[4, 3], activation="tanh").copy()
    graph = g.graph
    a, b = g.hidden_nodes()
    graph.nodes[b]["activation"] = "gelu"
    for _, attrs in graph.nodes(data=True):
        if attrs["role"] != "input":
            attrs["bias"] = rng.normal(0, 0.5, attrs["width"]).astype(np.float32)
        if attrs["role"] != "output":
            attrs["gate"] = rng.uniform(-1.5, 1.5, attrs["width"]).astype(np.float32)
    graph.add_edge(0, 1, **edge_attrs(tracker.edge(0, 1), rng.normal(size=(2, 3)), gate=0.7))
    graph.add_edge(0, b, **edge_attrs(tracker.edge(0, b), rng.normal(size=(3, 3)), enabled=False))
    graph.add_edge(b, a, **edge_attrs(tracker.edge(b, a), rng.normal(size=(4, 3)), recurrent=True))
    for _, _, attrs in graph.edges(data=True):
        attrs["gate"] = np.float32(rng.uniform(-1.5, 1.5))
    return g.validate()


def inputs(genome: Genome, seed: int, batch: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 2.0, (batch, genome.n_inputs))


@settings(max_examples=60)
@given(genomes_strategy(gate=KINDS), KINDS, SEEDS)
def test_output_matches_numpy_oracle(genome, kind, seed):
    x = inputs(genome, seed)
    net = GenomeNet(genome, kind).eval()
    got = net(torch.tensor(x, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(got, evaluate(genome, x, kind), rtol=1e-5, atol=1e-5)


@settings(max_examples=30)
@given(genomes_strategy(gate=KINDS), KINDS, SEEDS)
def test_float64_net_matches_oracle_to_rounding(genome, kind, seed):
    x = inputs(genome, seed)
    net = GenomeNet(genome, kind).double().eval()
    got = net(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(got, evaluate(genome, x, kind), rtol=1e-10, atol=1e-10)


@settings(max_examples=40)
@given(genomes_strategy(gate=KINDS), KINDS)
def test_write_back_of_an_untrained_net_is_bit_exact(genome, kind):
    before = genome.copy()
    assert write_back(genome, GenomeNet(genome, kind)) == genome
    assert genome == before


@settings(max_examples=40)
@given(genomes_strategy(gate=KINDS), KINDS)
def test_penalty_is_the_sum_of_open_probabilities(genome, kind):
    g = genome.graph
    logits = [g.nodes[genome.input_id]["gate"]]
    logits += [g.nodes[n]["gate"] for n in genome.hidden_nodes()]
    logits += [np.atleast_1d(g.edges[e]["gate"]) for e in genome.enabled_edges()]
    expected = open_probability(np.concatenate(logits), kind).sum()
    net = GenomeNet(genome, kind).double()
    assert net.n_gates == sum(len(v) for v in logits)
    assert net.penalty().item() == pytest.approx(expected, rel=1e-12)


def test_parameters_are_keyed_by_node_and_edge_ids():
    g = small_genome()
    a, b = g.hidden_nodes()
    net = GenomeNet(g)
    assert set(net.nodes) == {
        "n0_gate", f"n{a}_bias", f"n{a}_gate", f"n{b}_bias", f"n{b}_gate", "n1_bias"
    }
    assert set(net.edges) == {
        f"e{s}_{d}_{what}"
        for s, d in [(0, a), (a, b), (b, 1), (0, 1), (b, a)]  # (b, a): the recurrent edge
        for what in ("weight", "gate")
    }
    assert net.edges[f"e0_{a}_weight"].shape == (4, 3)
    assert net.edges[f"e0_{a}_gate"].shape == ()


def test_gate_layout_is_input_hidden_in_topological_order_then_edges_by_innovation():
    g = small_genome()
    a, b = g.hidden_nodes()
    edges = g.gated_edges()  # feed-forward and recurrent, by innovation
    assert (b, a) in edges and edges == sorted(edges, key=lambda e: g.edge(*e)["innovation"])
    runs = gate_layout(g)
    assert [k for k, _ in runs] == [0, a, b, *edges]
    assert [n for _, n in runs] == [g.node(n)["width"] for n in (0, a, b)] + [1] * len(edges)
    assert n_gates(g) == sum(n for _, n in runs)
    # GenomeNet's gate parameters follow the same layout.
    net = GenomeNet(g)
    assert list(net.gate_keys) == ["n0_gate", f"n{a}_gate", f"n{b}_gate"] + [f"e{s}_{d}_gate" for s, d in edges]
    assert [p.numel() for p in net.gate_parameters()] == [n for _, n in runs]


def test_building_and_training_never_touch_the_genome():
    g = small_genome()
    before = g.copy()
    net = GenomeNet(g)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    assert g == before


def test_write_back_returns_a_new_valid_genome_with_the_nets_values():
    g = small_genome()
    g.meta["id"] = 42
    net = GenomeNet(g).double()
    a, _ = g.hidden_nodes()
    with torch.no_grad():
        net.nodes[f"n{a}_bias"].fill_(0.25)
        net.edges["e0_1_gate"].fill_(-4.0)
        net.edges["e0_1_weight"].mul_(2.0)
    child = write_back(g, net).validate()
    assert child is not g and child.meta == {"id": 42}
    assert child.node(a)["bias"].dtype == np.float32
    np.testing.assert_array_equal(child.node(a)["bias"], np.full(4, 0.25, np.float32))
    assert child.edge(0, 1)["gate"] == np.float32(-4.0) and np.ndim(child.edge(0, 1)["gate"]) == 0
    np.testing.assert_array_equal(child.edge(0, 1)["weight"], 2.0 * g.edge(0, 1)["weight"])
    # Disabled and recurrent genes are carried over unchanged.
    for s, d in g.graph.edges:
        if not g.edge(s, d)["enabled"] or g.edge(s, d)["recurrent"]:
            np.testing.assert_array_equal(child.edge(s, d)["weight"], g.edge(s, d)["weight"])
    assert g == small_genome()


def test_write_back_rejects_a_net_of_another_structure():
    with pytest.raises(GenomeError, match="different structure"):
        write_back(small_genome(), GenomeNet(Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker())))


@pytest.mark.parametrize("kind", GATE_KINDS)
def test_gradients_match_finite_differences(kind):
    net = GenomeNet(small_genome(1), kind).double().eval()
    names = [n for n, _ in net.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in net.parameters()]
    x = torch.tensor(inputs(small_genome(1), 2, batch=3), requires_grad=True)

    def output(x, *ps):
        return torch.func.functional_call(net, dict(zip(names, ps, strict=True)), (x,))

    assert torch.autograd.gradcheck(output, (x, *params))


def test_training_mode_gradients_match_finite_differences():
    net = GenomeNet(small_genome(1), "hard_concrete").double().train()
    names = [n for n, _ in net.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in net.parameters()]
    x = torch.tensor(inputs(small_genome(1), 2, batch=3))
    noise = torch.full((net.n_gates,), 0.5, dtype=torch.float64)

    def output(*ps):
        return torch.func.functional_call(net, dict(zip(names, ps, strict=True)), (x, noise))

    assert torch.autograd.gradcheck(output, tuple(params))


@pytest.mark.parametrize("kind", GATE_KINDS)
def test_penalty_gradient_is_the_open_probability_slope(kind):
    net = GenomeNet(small_genome(), kind).double()
    net.penalty().backward()
    p = open_probability(net.gate_logits().detach().numpy(), kind)
    got = torch.cat([p.grad.reshape(-1) for p in net.gate_parameters()]).numpy()
    np.testing.assert_allclose(got, p * (1 - p), rtol=1e-12)


@settings(max_examples=30)
@given(genomes_strategy(gate="hard_concrete"), SEEDS)
def test_training_sample_equals_oracle_with_shifted_logits(genome, seed):
    # A hard-concrete sample with noise u is the deterministic gate of the logit
    # (logit + log u - log(1 - u)) / BETA: the oracle checks the noise layout too.
    net = GenomeNet(genome, "hard_concrete").double().train()
    u = torch.rand(net.n_gates, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    u = u.clamp(0.01, 0.99)
    shifted = (net.gate_logits().detach() + torch.log(u) - torch.log1p(-u)) / BETA
    sizes = [size for _, size in gate_layout(genome)]
    with torch.no_grad():
        for p, value in zip(net.gate_parameters(), shifted.split(sizes), strict=True):
            p.copy_(value.reshape(p.shape))
    oracle = write_back(genome, net)
    x = inputs(genome, seed)
    net2 = GenomeNet(genome, "hard_concrete").double().train()
    got = net2(torch.tensor(x), noise=u).detach().numpy()
    np.testing.assert_allclose(got, evaluate(oracle, x, "hard_concrete"), rtol=1e-5, atol=1e-5)


def test_training_mode_noise_comes_from_the_given_generator():
    g = small_genome()
    x = torch.tensor(inputs(g, 0), dtype=torch.float32)
    outs = [GenomeNet(g, "hard_concrete", torch.Generator().manual_seed(5))(x) for _ in range(2)]
    assert torch.equal(outs[0], outs[1])
    eval_out = GenomeNet(g, "hard_concrete").eval()(x)
    assert not torch.equal(outs[0], eval_out)
    with pytest.raises(ValueError, match="noise or a generator"):
        GenomeNet(g, "hard_concrete")(x)


def test_sigmoid_gates_are_deterministic_in_training_mode():
    g = small_genome()
    x = torch.tensor(inputs(g, 0), dtype=torch.float32)
    net = GenomeNet(g, "sigmoid")
    assert torch.equal(net.train()(x), net.eval()(x))


def test_inputs_of_the_wrong_width_are_rejected():
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        GenomeNet(small_genome())(torch.zeros(4, 2))


def test_repr_lists_nodes_with_their_inputs():
    g = small_genome()
    a, b = g.hidden_nodes()
    text = repr(GenomeNet(g, "hard_concrete"))
    assert "gate='hard_concrete'" in text and "n_gates=" in text
    assert f"{b}: gelu[3] <- {a}" in text and f"1: output[2] <- {b}, 0" in text


def test_net_can_be_copied_and_pickled():
    g = small_genome()
    net = GenomeNet(g).eval()
    x = torch.tensor(inputs(g, 0), dtype=torch.float32)
    for other in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert torch.equal(other(x), net(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", GATE_KINDS)
def test_cuda_output_matches_cpu(kind):
    g = small_genome()
    x = torch.tensor(inputs(g, 0), dtype=torch.float32)
    net = GenomeNet(g, kind).eval()
    torch.testing.assert_close(net.cuda()(x.cuda()).cpu(), GenomeNet(g, kind).eval()(x))
