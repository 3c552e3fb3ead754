"""Active structure: only live neurons and edges count."""

from __future__ import annotations

import numpy as np

from genomes import Genome, InnovationTracker, active_structure
from genomes.genome import edge_attrs


def _genome():
    t = InnovationTracker()
    g = Genome.minimal(3, 2, np.random.default_rng(0), t, hidden=(4,))
    g.graph.add_edge(0, 1, **edge_attrs(t.edge(0, 1), np.ones((2, 3))))
    return g, g.hidden_nodes()[0]


def test_with_everything_open_every_weight_and_bias_counts():
    g, _ = _genome()
    live = active_structure(g, "hard_concrete")
    assert live.n_weights == 3 * 4 + 4 * 2 + 3 * 2
    assert live.n_parameters == live.n_weights + 4 + 2 == g.n_parameters()
    assert live.flops == 2 * live.n_weights


def test_closed_neurons_and_edges_do_not_count():
    g, h = _genome()
    g.graph.nodes[h]["gate"] = np.array([3, -6, 3, -6], np.float32)
    g.graph.edges[0, 1]["gate"] = np.float32(-6.0)
    live = active_structure(g, "hard_concrete")
    assert sorted(live.edges) == [(0, h), (h, 1)]
    assert live.n_weights == 3 * 2 + 2 * 2
    # the same genome under sigmoid gates: nothing is exactly closed
    assert active_structure(g, "sigmoid").n_weights == 3 * 4 + 4 * 2 + 3 * 2


def test_a_node_cut_off_from_the_output_is_not_live():
    g, h = _genome()
    g.graph.edges[h, 1]["gate"] = np.float32(-6.0)
    live = active_structure(g, "hard_concrete")
    assert h not in live.neurons and live.edges == [(0, 1)]
