"""Genome drawings: layers follow the graph, closed structure is marked, PNGs are written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hypothesis import given, settings

from genomes import Genome, InnovationTracker, add_node
from hybrid.draw import draw_genome, drawing_graph, layout
from hybrid.lineage import Structure, structure_dict
from tests.strategies import genomes_strategy, mutation_config

PNG = b"\x89PNG\r\n\x1a\n"


def _grown() -> Genome:
    rng = np.random.default_rng(1)
    tracker = InnovationTracker()
    g = Genome.minimal(3, 2, rng, tracker, hidden=(4,))
    g, _ = add_node(g, rng, tracker, mutation_config("hard_concrete"))
    return g


def _with_closed_gates(g: Genome) -> Genome:
    g = g.copy()
    hidden = g.hidden_nodes()[0]
    g.node(hidden)["gate"][:] = [-8.0] + [6.0] * (g.node(hidden)["width"] - 1)  # one neuron shut
    src, dst = next(e for e in g.enabled_edges() if e[0] == g.input_id)
    g.edge(src, dst)["gate"] = np.float32(-8.0)  # an edge shut
    return g


@settings(max_examples=25)
@given(genomes_strategy(gate="hard_concrete"))
def test_every_feedforward_edge_points_to_a_later_layer(genome: Genome) -> None:
    g = drawing_graph(genome, "hard_concrete")
    pos = layout(g)
    for s, d, a in g.edges(data=True):
        if not a["recurrent"]:
            assert g.nodes[s]["layer"] < g.nodes[d]["layer"]
            assert pos[s][0] < pos[d][0]
    assert len(set(pos.values())) == len(pos)  # no two nodes on one spot
    assert g.nodes[genome.output_id]["layer"] == max(a["layer"] for _, a in g.nodes(data=True))


def test_closed_gates_and_disabled_edges_are_marked() -> None:
    genome = _with_closed_gates(_grown())
    g = drawing_graph(genome, "hard_concrete")
    hidden = genome.hidden_nodes()[0]
    assert g.nodes[hidden]["open"] == g.nodes[hidden]["width"] - 1
    shut = [(s, d) for s, d, a in g.edges(data=True) if a["open"] == 0.0]
    assert len(shut) == 1 and not g.edges[shut[0]]["live"]
    disabled = [e for e in genome.graph.edges if not genome.edge(*e)["enabled"]]
    assert disabled and all(not g.edges[e]["enabled"] for e in disabled)  # add_node disabled the split edge


def test_a_bare_structure_draws_with_everything_open() -> None:
    genome = _grown()
    structure = Structure.from_json(json.dumps(structure_dict(genome)))
    g = drawing_graph(structure)
    assert all(a["norm"] is None for *_, a in g.edges(data=True))
    assert set(g.edges) == set(genome.graph.edges)


def _pixels(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    assert path.read_bytes().startswith(PNG)
    return imread(path)  # (H, W, 3 or 4) floats in [0, 1]


def test_draw_genome_writes_pngs_for_genomes_and_structures(tmp_path: Path) -> None:
    genome = _with_closed_gates(_grown())
    a = _pixels(draw_genome(genome, tmp_path / "g.png", gate="hard_concrete", title="a genome"))
    b = _pixels(draw_genome(Structure.from_json(json.dumps(structure_dict(genome))), tmp_path / "s.png"))
    for img in (a, b):
        assert img.ndim == 3 and img.shape[0] >= 200 and img.shape[1] >= 400  # 110 dpi, >= 4 x 2.5 in
        colours = np.unique(img.reshape(-1, img.shape[2]).round(2), axis=0)
        assert len(colours) > 10  # nodes, edges and labels drawn, not a blank canvas
    assert a.shape[0] > b.shape[0]  # the title gets its own band above the graph


def test_closed_gates_change_the_drawing(tmp_path: Path) -> None:
    grown = _grown()
    open_ = _pixels(draw_genome(grown, tmp_path / "open.png", gate="hard_concrete"))
    shut = _pixels(draw_genome(_with_closed_gates(grown), tmp_path / "shut.png", gate="hard_concrete"))
    assert open_.shape == shut.shape  # same graph, same layout
    assert np.abs(open_ - shut).max() > 0.1  # the closed neuron and edge look different
    again = _pixels(draw_genome(grown, tmp_path / "again.png", gate="hard_concrete"))
    assert np.array_equal(open_, again)  # and drawing is deterministic
