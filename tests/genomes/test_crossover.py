"""NEAT crossover: the fitter parent's structure, genes from either parent."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import (
    Genome,
    InnovationTracker,
    MutationConfig,
    add_edge,
    add_node,
    crossover,
    perturb_weights,
    to_dict,
    widen,
)
from tests.strategies import populations_strategy, randomise

CONFIG = MutationConfig()


def _bits(a) -> bytes:
    return np.asarray(a).tobytes()


def _node_gene(a: dict) -> tuple:
    return _bits(a["bias"]), _bits(a["gate"]), a["activation"]


def _edge_gene(a: dict) -> tuple:
    return _bits(a["weight"]), _bits(a["gate"])


@settings(max_examples=100)
@given(pop=populations_strategy(), seed=st.integers(0, 2**32 - 1))
def test_child_has_the_fitter_structure_and_genes_of_either_parent(pop, seed):
    fitter, other = pop[0], pop[1]
    before = to_dict(fitter), to_dict(other)
    child, record = crossover(fitter, other, np.random.default_rng(seed), CONFIG)
    child.validate()
    assert (to_dict(fitter), to_dict(other)) == before
    assert child.structure_key()[1] == fitter.structure_key()[1]  # edges, enabled flags
    assert [(n, w) for n, _, w, *_ in child.structure_key()[0]] == [
        (n, w) for n, _, w, *_ in fitter.structure_key()[0]
    ]
    from_other = 0  # genes that differ from the fitter's must be the other's, bit for bit
    for n, a in child.graph.nodes(data=True):
        if _node_gene(a) != _node_gene(fitter.node(n)):
            assert _node_gene(a) == _node_gene(other.node(n))
            from_other += 1
    for s, d, a in child.graph.edges(data=True):
        if _edge_gene(a) != _edge_gene(fitter.edge(s, d)):
            assert other.edge(s, d)["innovation"] == a["innovation"]
            assert _edge_gene(a) == _edge_gene(other.edge(s, d))
            from_other += 1
    assert from_other <= record.args["from_other"] <= record.args["matched"]


def test_crossover_with_itself_is_the_identity():
    rng = np.random.default_rng(0)
    t = InnovationTracker()
    g = randomise(Genome.minimal(3, 2, rng, t, hidden=(4,)), rng)
    child, record = crossover(g, g.copy(), rng, CONFIG)
    assert child == g
    assert record.args["matched"] == 3 + 2  # nodes 0, 1, h and edges 0->h, h->1
    assert record.args["shape_mismatch"] == 0


def test_crossover_counts_matching_genes_and_keeps_disjoint_ones_from_the_fitter():
    rng = np.random.default_rng(0)
    t = InnovationTracker()
    base = randomise(Genome.minimal(3, 2, rng, t, hidden=(4,)), rng)
    fitter, _ = add_node(base, rng, t, CONFIG)  # + node k, edges i->k, k->j
    other, _ = add_edge(base, rng, t, CONFIG)  # + edge 0->1
    other, _ = perturb_weights(other, rng, t, MutationConfig(perturb_fraction=1.0))
    child, record = crossover(fitter, other, np.random.default_rng(1), CONFIG)
    assert record.args["matched"] == 3 + 2  # the base's genes
    assert not child.graph.has_edge(0, 1)
    k = next(n for n in fitter.hidden_nodes() if n not in base.graph)
    assert _bits(child.node(k)["bias"]) == _bits(fitter.node(k)["bias"])


def test_mismatched_shapes_come_from_the_fitter():
    rng = np.random.default_rng(0)
    t = InnovationTracker()
    base = randomise(Genome.minimal(3, 2, rng, t, hidden=(4,)), rng)
    wide, _ = widen(base, rng, t, CONFIG)
    h = base.hidden_nodes()[0]
    for seed in range(8):
        child, record = crossover(wide, base, np.random.default_rng(seed), CONFIG)
        assert record.args["shape_mismatch"] == 3  # node h and both of its edges
        assert child.node(h)["width"] == wide.node(h)["width"]
        assert _bits(child.edge(0, h)["weight"]) == _bits(wide.edge(0, h)["weight"])
        child.validate()
