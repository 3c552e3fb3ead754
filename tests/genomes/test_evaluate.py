"""The numpy reference evaluation against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from genomes import Genome, GenomeError, InnovationTracker, evaluate
from genomes.genome import edge_attrs

X = np.array([[1.0, 3.0]])


def _genome(gate_logit: float, neuron_gates=None) -> Genome:
    """Return 0 (x2) -> h (x2, relu) -> 1 (x1) plus a skip 0 -> 1, every gate ``gate_logit``.

    W_0h = [[1, 2], [-1, 1]], b_h = [0.5, -0.5], W_h1 = [[2, -3]], W_01 = [[0.5, 0.25]],
    b_out = [0.1].
    """
    t = InnovationTracker()
    g = Genome.minimal(2, 1, np.random.default_rng(0), t, hidden=(2,), gate_init=gate_logit)
    h = g.hidden_nodes()[0]
    g.graph.edges[0, h]["weight"] = np.array([[1, 2], [-1, 1]], np.float32)
    g.graph.edges[h, 1]["weight"] = np.array([[2, -3]], np.float32)
    g.graph.add_edge(0, 1, **edge_attrs(t.edge(0, 1), [[0.5, 0.25]], gate_logit))
    g.graph.nodes[h]["bias"] = np.array([0.5, -0.5], np.float32)
    g.graph.nodes[1]["bias"] = np.array([0.1], np.float32)
    if neuron_gates is not None:
        g.graph.nodes[h]["gate"] = np.asarray(neuron_gates, np.float32)
    return g.validate()


def test_open_hard_concrete_gates_are_exactly_one():
    # pre_h = [0.5 + 1 + 6, -0.5 - 1 + 3] = [7.5, 1.5]; out = 0.1 + 2*7.5 - 3*1.5 + 0.5 + 0.75
    assert evaluate(_genome(6.0), X, "hard_concrete")[0, 0] == pytest.approx(11.85)


def test_a_closed_neuron_contributes_nothing():
    # neuron 2 closed: out = 0.1 + 2*7.5 + 0.5 + 0.75
    g = _genome(6.0, neuron_gates=[6.0, -6.0])
    assert evaluate(g, X, "hard_concrete")[0, 0] == pytest.approx(16.35)


def test_half_open_sigmoid_gates_scale_every_path():
    # every gate sigmoid(0) = 0.5: h_in = [0.5, 1.5]; pre_h = b + 0.5 * W h_in = [2.25, 0];
    # h = 0.5 * relu(pre_h) = [1.125, 0]; out = 0.1 + 0.5*2*1.125 + 0.5*(0.25 + 0.375)
    assert evaluate(_genome(0.0), X, "sigmoid")[0, 0] == pytest.approx(1.5375)


def test_disabled_and_recurrent_edges_contribute_nothing():
    g = _genome(6.0)
    g.graph.edges[0, 1]["enabled"] = False
    # without the skip: 0.1 + 2*7.5 - 3*1.5
    assert evaluate(g, X, "hard_concrete")[0, 0] == pytest.approx(10.6)
    h = g.hidden_nodes()[0]
    g.graph.add_edge(1, h, **edge_attrs(99, np.full((2, 1), 100.0), recurrent=True))
    assert evaluate(g.validate(), X, "hard_concrete")[0, 0] == pytest.approx(10.6)


def test_evaluate_maps_a_batch_row_by_row_in_the_requested_dtype():
    g = _genome(1.0)
    x = np.random.default_rng(0).normal(size=(5, 2))
    batch = evaluate(g, x)
    rows = np.concatenate([evaluate(g, x[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(batch, rows, rtol=1e-12)
    assert batch.shape == (5, 1) and batch.dtype == np.float64
    assert evaluate(g, x, dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize("shape", [(4,), (4, 3), (2, 2, 3), (2, 2, 2, 2)])  # (B, T, 2) is a sequence
def test_evaluate_rejects_inputs_of_the_wrong_shape(shape):
    with pytest.raises(GenomeError, match=r"inputs should have shape \(B, 2\)"):
        evaluate(_genome(1.0), np.zeros(shape))
