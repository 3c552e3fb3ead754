"""NEAT compatibility distance: the four terms, symmetry and identity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from genomes import (
    DistanceConfig,
    Genome,
    InnovationTracker,
    MutationConfig,
    add_node,
    distance,
    widen,
)
from genomes.genome import edge_attrs
from tests.strategies import populations_strategy

ONLY = {
    "excess": DistanceConfig(excess=1.0, disjoint=0.0, weight=0.0, width=0.0),
    "disjoint": DistanceConfig(excess=0.0, disjoint=1.0, weight=0.0, width=0.0),
    "weight": DistanceConfig(excess=0.0, disjoint=0.0, weight=1.0, width=0.0),
    "width": DistanceConfig(excess=0.0, disjoint=0.0, weight=0.0, width=1.0),
}


def _base(hidden=(4,)):
    rng = np.random.default_rng(0)
    t = InnovationTracker()
    return Genome.minimal(3, 2, rng, t, hidden=hidden), t, rng


@settings(max_examples=100)
@given(pop=populations_strategy())
def test_distance_is_zero_to_itself_symmetric_and_non_negative(pop):
    a, b = pop[0], pop[1]
    assert distance(a, a) == 0.0
    assert distance(a, a.copy()) == 0.0
    d = distance(a, b)
    assert d == distance(b, a)
    assert np.isfinite(d) and d >= 0.0


def test_excess_genes_are_those_past_the_others_newest():
    g, t, rng = _base()
    child, _ = add_node(g, rng, t, MutationConfig())  # node k + 2 edges, all newer than g's genes
    assert distance(g, child, ONLY["excess"]) == 3.0
    assert distance(g, child, ONLY["disjoint"]) == 0.0


def _with_edges(g: Genome, t: InnovationTracker, pairs) -> Genome:
    g = g.copy()
    for s, d in pairs:
        shape = (g.node(d)["width"], g.node(s)["width"])
        g.graph.add_edge(s, d, **edge_attrs(t.edge(s, d), np.zeros(shape, np.float32)))
    return g.validate()


def test_disjoint_genes_are_unmatched_genes_within_range():
    g, t, _ = _base(hidden=(4, 3))
    a, b = g.hidden_nodes()
    first, second, third = (0, b), (a, 1), (0, 1)
    assert t.edge(*first) < t.edge(*second) < t.edge(*third)
    one = _with_edges(g, t, [first, third])
    two = _with_edges(g, t, [second])
    # third is past two's newest gene: excess; first and second are disjoint
    assert distance(one, two, ONLY["excess"]) == 1.0
    assert distance(one, two, ONLY["disjoint"]) == 2.0


def test_weight_term_is_the_mean_per_entry_difference_of_matching_edges():
    g, _, _ = _base()
    h = g.hidden_nodes()[0]
    other = g.copy()
    other.graph.edges[0, h]["weight"] = other.edge(0, h)["weight"] + np.float32(0.5)  # 4x3
    other.graph.edges[h, 1]["weight"] = other.edge(h, 1)["weight"] - np.float32(0.25)  # 2x4
    assert distance(g, other, ONLY["weight"]) == pytest.approx((0.5 + 0.25) / 2, abs=1e-6)


def test_width_term_counts_neurons_of_matching_nodes_and_compares_the_shared_block():
    g, t, rng = _base()
    wide, record = widen(g, rng, t, MutationConfig())
    assert distance(g, wide, ONLY["width"]) == record.args["added"]
    assert distance(g, wide, ONLY["weight"]) == 0.0  # the shared block is unchanged


def test_large_genomes_normalise_by_gene_count():
    g, t, rng = _base()
    child, _ = add_node(g, rng, t, MutationConfig())  # 3 excess genes; child has 1+2+2+... genes
    n = max(len(g.hidden_nodes()) + g.graph.number_of_edges(),
            len(child.hidden_nodes()) + child.graph.number_of_edges())  # fmt: skip
    config = DistanceConfig(excess=1.0, disjoint=0.0, weight=0.0, width=0.0, normalise_above=1)
    assert distance(g, child, config) == pytest.approx(3.0 / n)


def test_nan_weights_do_not_make_the_distance_nan():
    g, _, _ = _base()
    bad = g.copy()
    bad.graph.edges[0, g.hidden_nodes()[0]]["weight"][0, 0] = np.nan
    assert distance(bad, bad) == 0.0
    assert np.isfinite(distance(g, bad))
