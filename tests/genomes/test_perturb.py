"""perturb_weights, mutate_activation and reset_gates: values change, structure stays."""

from __future__ import annotations

import numpy as np
import pytest

from genomes import (
    Genome,
    InnovationTracker,
    MutationConfig,
    NotApplicable,
    mutate_activation,
    perturb_weights,
    reset_gates,
)
from tests.strategies import randomise


def _chain(hidden=(4, 3), seed=0):
    rng = np.random.default_rng(seed)
    t = InnovationTracker()
    return Genome.minimal(3, 2, rng, t, hidden=hidden), t, rng


def _changed(a: Genome, b: Genome) -> set[str]:
    ours = dict(b.iter_arrays())
    return {k for k, v in a.iter_arrays() if v.tobytes() != ours[k].tobytes()}


def test_perturb_weights_changes_only_the_arrays_it_names():
    g, t, rng = _chain()
    g = randomise(g, rng)
    child, record = perturb_weights(g, rng, t, MutationConfig(perturb_fraction=0.5))
    assert child.structure_key() == g.structure_key()
    assert _changed(g, child) == set(record.args["arrays"]) != set()
    assert all(label.endswith(("weight", "bias")) for label in record.args["arrays"])


def test_perturb_weights_keeps_unused_arrays_zero_and_gates_as_they_are():
    g, t, rng = _chain()
    child, record = perturb_weights(g, rng, t, MutationConfig(perturb_fraction=1.0))
    assert not child.node(child.input_id)["bias"].any()
    assert not child.node(child.output_id)["gate"].any()
    assert not any("gate" in k for k in _changed(g, child))
    assert len(record.args["arrays"]) == 3 + 3  # 3 enabled edges, 3 biases (2 hidden, output)
    child.validate()


def test_perturb_weights_noise_is_relative_to_each_arrays_scale():
    g, t, _ = _chain(hidden=())
    g.graph.edges[0, 1]["weight"] = np.full((2, 3), 1000.0, np.float32)
    rng = np.random.default_rng(0)
    child, _ = perturb_weights(g, rng, t, MutationConfig(perturb_fraction=1.0, perturb_std=0.1))
    delta = child.edge(0, 1)["weight"] - 1000.0
    assert 1.0 < np.abs(delta).max() < 500.0  # noise of std ~100, not ~0.1


def test_perturb_weights_always_touches_at_least_one_array():
    g, t, rng = _chain()
    _, record = perturb_weights(g, rng, t, MutationConfig(perturb_fraction=0.0))
    assert len(record.args["arrays"]) == 1


def test_mutate_activation_picks_another_allowed_activation():
    g, t, rng = _chain(hidden=(4,))
    h = g.hidden_nodes()[0]
    child, record = mutate_activation(g, rng, t, MutationConfig(activations=("relu", "tanh")))
    assert record.args == {"node": h, "old": "relu", "new": "tanh"}
    assert child.node(h)["activation"] == "tanh" and g.node(h)["activation"] == "relu"


@pytest.mark.parametrize(("hidden", "activations"), [((), ("tanh",)), ((2,), ("relu",))])
def test_mutate_activation_needs_a_node_and_an_alternative(hidden, activations):
    g, t, rng = _chain(hidden=hidden)
    with pytest.raises(NotApplicable):
        mutate_activation(g, rng, t, MutationConfig(activations=activations))


def test_reset_gates_reopens_one_node_or_edge():
    g, t, rng = _chain()
    g = randomise(g, rng, closed_share=1.0)
    config = MutationConfig()
    child, record = reset_gates(g, rng, t, config)
    init = np.float32(config.gate_init)
    if "node" in record.args:
        assert (child.node(record.args["node"])["gate"] == init).all()
        label = f"node {record.args['node']} gate"
    else:
        assert child.edge(record.args["src"], record.args["dst"])["gate"] == init
        label = f"edge {record.args['src']}->{record.args['dst']} gate"
    assert _changed(g, child) == {label}


def test_reset_gates_has_nothing_to_do_on_a_fresh_genome():
    g, t, rng = _chain()
    with pytest.raises(NotApplicable):
        reset_gates(g, rng, t, MutationConfig())
