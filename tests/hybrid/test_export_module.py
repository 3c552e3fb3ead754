"""to_module: gates folded into weights, only the live structure kept, same function.

The oracle is GenomeNet (eval mode) on standardised inputs; the exported module
takes raw features and must standardise them itself.
"""

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import ACTIVATIONS, GATE_KINDS, Genome, InnovationTracker, active_structure
from genomes.genome import edge_attrs, node_attrs
from hybrid.export import ACTIVATION_CODE, plan_export, render_python, to_module
from hybrid.net import GenomeNet
from tests.strategies import genomes_strategy

CLOSED = -10.0  # hard-concrete gate exactly 0 (sigmoid: 4.5e-5, not closed)
OPEN = 3.0  # hard-concrete gate exactly 1
MEAN = np.array([1.5, -2.0, 0.25, 10.0], np.float32)
STD = np.array([2.0, 0.5, 1.0, 4.0], np.float32)


def gated_genome(seed: int = 0, recurrent: bool = False) -> Genome:
    """Return a 4-in 3-out genome exercising every folding case under hard_concrete gates.

    Node 2 (tanh[5]): two closed neuron gates, one half-open. Node 3 (relu[3]): reads
    input and node 2 and has a recurrent self-loop, disabled unless ``recurrent``
    (test_export_recurrent.py). Node 4 (sigmoid[2]): its only input
    edge is closed, so it is a constant node. Node 5 (gelu[2]): every neuron closed,
    dead. Node 6 (sin[2]): its only output edge is closed, dead. Edge 2->1 disabled.
    Input gates: feature 1 closed, feature 3 half-open.
    """
    rng = np.random.default_rng(seed)
    t = InnovationTracker()
    g = Genome.minimal(4, 3, rng, t).copy()
    graph = g.graph
    graph.remove_edge(0, 1)
    graph.nodes[0]["gate"] = np.array([OPEN, CLOSED, OPEN, 0.0], np.float32)
    hidden = {2: (5, "tanh"), 3: (3, "relu"), 4: (2, "sigmoid"), 5: (2, "gelu"), 6: (2, "sin")}
    for n, (width, act) in hidden.items():
        graph.add_node(n, **node_attrs("hidden", width, act, bias=rng.normal(0, 0.5, width)))
    graph.nodes[2]["gate"] = np.array([OPEN, CLOSED, 0.5, OPEN, CLOSED], np.float32)
    graph.nodes[5]["gate"] = np.full(2, CLOSED, np.float32)
    graph.nodes[1]["bias"] = rng.normal(0, 0.5, 3).astype(np.float32)
    edges = {
        (0, 2): {},
        (0, 3): {"gate": 0.8},
        (2, 3): {},
        (3, 3): {"recurrent": True, "enabled": recurrent},
        (0, 4): {"gate": CLOSED},
        (4, 1): {},
        (0, 5): {},
        (5, 1): {},
        (2, 6): {},
        (6, 1): {"gate": CLOSED},
        (3, 1): {},
        (2, 1): {"enabled": False},
    }
    for (s, d), extra in edges.items():
        shape = (graph.nodes[d]["width"], graph.nodes[s]["width"])
        kw = {"gate": OPEN, **extra}
        graph.add_edge(s, d, **edge_attrs(t.edge(s, d), rng.normal(0, 0.8, shape), **kw))
    return g.validate()


def closed_output_genome() -> Genome:
    """Return a genome whose only edge is closed: the output is its bias, a constant."""
    g = Genome.minimal(3, 2, np.random.default_rng(1), InnovationTracker()).copy()
    g.graph.edges[0, 1]["gate"] = np.float32(CLOSED)
    g.graph.nodes[1]["bias"] = np.array([0.5, -1.0], np.float32)
    return g.validate()


def raw_inputs(n: int, n_inputs: int = 4, seed: int = 0) -> np.ndarray:
    """Return raw features around MEAN with spread STD (first ``n_inputs`` columns)."""
    z = np.random.default_rng(seed).normal(size=(n, n_inputs))
    return (MEAN[:n_inputs] + STD[:n_inputs] * z).astype(np.float32)


def reference(genome: Genome, gate: str, x_raw: np.ndarray) -> np.ndarray:
    """Return GenomeNet's outputs for raw features standardised with MEAN/STD."""
    k = x_raw.shape[1]
    x = torch.from_numpy((x_raw - MEAN[:k]) / STD[:k])
    with torch.no_grad():
        return GenomeNet(genome, gate).eval()(x).numpy()


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def import_file(path, name="exported_model"):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("gate", GATE_KINDS)
def test_exported_module_computes_the_genome_function_from_raw_features(gate):
    g = gated_genome()
    net = to_module(g, gate, feature_mean=MEAN, feature_std=STD)
    x = raw_inputs(64)
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, reference(g, gate, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("gate", GATE_KINDS)
def test_parameter_count_equals_active_structure(gate):
    g = gated_genome()
    expected = active_structure(g, gate).n_parameters
    assert n_params(to_module(g, gate)) == expected
    if gate == "hard_concrete":  # closed gates really shrink it
        assert expected < g.n_parameters()


def test_closed_gates_and_dead_nodes_are_removed():
    plan = plan_export(gated_genome(), "hard_concrete")
    layers = {layer.id: layer for layer in plan.layers}
    assert plan.input_index == (0, 2, 3)
    assert set(layers) == {2, 3, 4, 1}  # 5 (all neurons closed) and 6 (closed out-edge) dead
    assert layers[2].neurons == (0, 2, 3)
    assert layers[3].sources == (0, 2) and layers[3].weight.shape == (3, 6)
    assert layers[1].sources == (3, 4)  # topological order; 2->1 disabled, 5->1 and 6->1 dead
    assert [layer.id for layer in plan.layers][-1] == 1


def test_constant_node_is_kept_as_a_trainable_bias():
    g = gated_genome()
    net = to_module(g, "hard_concrete")
    assert plan_export(g, "hard_concrete").layers[2].is_constant
    assert net.node4_bias.shape == (2,) and net.node4_bias.requires_grad
    x = torch.zeros(7, 4)
    net(x).sum().backward()
    assert net.node4_bias.grad is not None and net.node4_bias.grad.abs().sum() > 0


def test_all_paths_closed_gives_the_output_bias_for_every_row():
    g = closed_output_genome()
    net = to_module(g, "hard_concrete")
    assert n_params(net) == 2 == active_structure(g, "hard_concrete").n_parameters
    out = net(torch.randn(5, 3))
    assert torch.equal(out, torch.tensor([[0.5, -1.0]]).expand(5, 2))


def test_export_reads_the_genome_without_changing_it():
    g = gated_genome()
    before = g.copy()
    net = to_module(g, "hard_concrete")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    assert g == before


def test_statistics_of_the_wrong_size_are_refused():
    with pytest.raises(ValueError, match="feature_std should have 4 values"):
        to_module(gated_genome(), feature_std=[1.0, 2.0])
    with pytest.raises(ValueError, match="feature_std should be finite and > 0"):
        to_module(gated_genome(), feature_std=[1.0, 0.0, 1.0, 1.0])


@settings(max_examples=25)
@given(genomes_strategy(gate=st.sampled_from(GATE_KINDS)), st.sampled_from(GATE_KINDS))
def test_any_genome_exports_to_the_same_function_and_live_size(genome, gate):
    net = to_module(
        genome, gate, feature_mean=MEAN[: genome.n_inputs], feature_std=STD[: genome.n_inputs]
    )
    assert n_params(net) == active_structure(genome, gate).n_parameters
    x = raw_inputs(16, genome.n_inputs)
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, reference(genome, gate, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_generated_activation_code_matches_the_registry(name):
    z = torch.linspace(-6, 6, 101, dtype=torch.float64)
    got = eval(ACTIVATION_CODE[name].format("z"), {"torch": torch, "F": F, "z": z})
    np.testing.assert_allclose(got.numpy(), ACTIVATIONS[name](z.numpy()), rtol=1e-7, atol=1e-9)


def write_python_export(tmp_path, genome, gate):
    """Write the generated source and to_module's weights; return (module file, net)."""
    net = to_module(genome, gate, feature_mean=MEAN, feature_std=STD)
    plan = plan_export(genome, gate)
    torch.save(net.state_dict(), tmp_path / "m.state_dict.pt")
    source = render_python(plan, weights="m.state_dict.pt", title="Test export.")
    (tmp_path / "m.py").write_text(source)
    return tmp_path / "m.py", net


@pytest.mark.parametrize("gate", GATE_KINDS)
def test_generated_source_is_the_same_network_as_to_module(tmp_path, gate):
    path, net = write_python_export(tmp_path, gated_genome(), gate)
    model = import_file(path).load()
    assert model.state_dict().keys() == net.state_dict().keys()
    assert n_params(model) == n_params(net)
    x = torch.from_numpy(raw_inputs(33))
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), rtol=1e-6, atol=1e-6)


def test_python_export_fine_tunes_with_a_plain_optimiser(tmp_path):
    path, _ = write_python_export(tmp_path, gated_genome(), "hard_concrete")
    model = import_file(path).load().train()
    x = torch.from_numpy(raw_inputs(128, seed=1))
    y = torch.from_numpy(np.random.default_rng(2).integers(0, 3, 128))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        optimiser.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
