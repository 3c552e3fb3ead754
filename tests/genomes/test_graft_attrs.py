"""The grafted-module attributes: ``frozen`` / ``module`` on nodes, ``frozen`` on edges."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest

from genomes import (
    Genome,
    GenomeError,
    InnovationTracker,
    from_dict,
    load,
    save,
    to_dict,
    to_graphml,
)
from genomes.genome import edge_attrs, node_attrs

HASH = "ab" * 32
MODULE = {"name": "m", "hash": HASH, "graft": 2}


def _grafted() -> Genome:
    """input 0 (width 2) -> 2 (frozen, module) -> 3 (frozen) -> output 1, plus 0 -> 1."""
    rng = np.random.default_rng(0)
    g = Genome.minimal(2, 1, rng, InnovationTracker()).copy()
    h = g.graph
    h.add_node(2, **node_attrs("hidden", 3, "tanh", bias=[0.1, 0.2, 0.3], frozen=True, module=MODULE))
    h.add_node(3, **node_attrs("hidden", 1, "relu", frozen=True, module=MODULE))
    h.add_edge(0, 2, **edge_attrs(10, rng.normal(size=(3, 2)), frozen=True))
    h.add_edge(2, 3, **edge_attrs(11, rng.normal(size=(1, 3)), frozen=True))
    h.add_edge(3, 1, **edge_attrs(12, np.zeros((1, 1))))
    return g.validate()


def test_attrs_default_to_unfrozen_and_are_always_set():
    a = node_attrs("hidden", 2, "relu")
    assert a["frozen"] is False and a["module"] is None
    assert edge_attrs(3, np.zeros((1, 1)))["frozen"] is False
    m = {"name": "x", "hash": HASH, "graft": 5}
    b = node_attrs("hidden", 1, "relu", frozen=True, module=m)
    assert b["frozen"] is True and b["module"] == m and b["module"] is not m


def test_genome_without_the_attributes_still_validates_and_compares():
    g = _grafted()
    old = g.copy()
    for n in [1, 0]:  # the minimal genome's nodes, as an older build made them
        del old.graph.nodes[n]["frozen"], old.graph.nodes[n]["module"]
    del old.graph.edges[0, 1]["frozen"]
    assert old.validate() == g


def test_copy_does_not_share_the_module_dict():
    g = _grafted()
    c = g.copy()
    c.graph.nodes[2]["module"]["name"] = "other"
    assert g.graph.nodes[2]["module"]["name"] == "m"
    assert c != g


def test_equality_and_structure_key_see_frozen_and_module():
    g = _grafted()
    c = g.copy()
    c.graph.edges[3, 1]["frozen"] = False
    assert c == g
    c.graph.nodes[3]["module"] = dict(MODULE, graft=3)
    assert c != g and c.structure_key() != g.structure_key()


def test_queries_and_display():
    g = _grafted()
    assert g.frozen_nodes() == [2, 3]
    assert g.frozen_edges() == [(0, 2), (2, 3)]
    assert g.grafts() == {2: [2, 3]}
    assert "modules=1" in repr(g)
    assert "[module m graft 2 frozen]" in str(g)


def _set(path, value):
    def edit(g: Genome) -> None:
        attrs = g.graph.nodes[path[0]] if len(path) == 2 else g.graph.edges[path[0], path[1]]
        attrs[path[-1]] = value

    return edit


BROKEN = {
    "node frozen not bool": (_set((2, "frozen"), 1), "node 2: frozen should be a bool"),
    "edge frozen not bool": (_set((0, 2, "frozen"), "yes"), "edge 0->2: frozen should be a bool"),
    "module not dict": (_set((2, "module"), "m"), "node 2: module should be None or a dict"),
    "module extra key": (_set((2, "module"), dict(MODULE, x=1)), "node 2: module should be None or a dict"),
    "module name": (_set((2, "module"), dict(MODULE, name=3)), "node 2: module name should be a non-empty str"),
    "module hash": (_set((2, "module"), dict(MODULE, hash="AB" * 32)), "node 2: module hash should be 64"),
    "module graft": (_set((2, "module"), dict(MODULE, graft=-1)), "node 2: module graft should be"),
    "frozen without module": (_set((2, "module"), None), "node 2: a frozen node should carry its module"),
    "frozen output": (_set((1, "frozen"), True), "node 1: a frozen node should be hidden"),
    "unfrozen edge into frozen node": (_set((0, 2, "frozen"), False), "edge 0->2: an edge into frozen node 2"),
    "recurrent edge into frozen node": (
        _set((2, 3, "recurrent"), True), "edge 2->3: an edge into frozen node 3 should not be recurrent"
    ),
    "frozen edge into trainable node": (_set((3, 1, "frozen"), True), "edge 3->1: a frozen edge should go into"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_validate_names_the_broken_rule(case):
    edit, message = BROKEN[case]
    g = _grafted().copy()
    edit(g)
    with pytest.raises(GenomeError, match=message):
        g.validate()


def test_json_round_trip_keeps_frozen_and_module(tmp_path):
    g = _grafted()
    data = to_dict(g)
    assert data["version"] == 2
    nodes = {n["id"]: n for n in data["nodes"]}
    assert nodes[2]["frozen"] is True and nodes[2]["module"] == MODULE
    assert "frozen" not in nodes[1] and "module" not in nodes[1]
    edges = {(e["src"], e["dst"]): e for e in data["edges"]}
    assert edges[0, 2]["frozen"] is True and "frozen" not in edges[3, 1]
    save(g, tmp_path / "g.json")
    back = load(tmp_path / "g.json")
    assert back == g and back.graph.nodes[2]["module"] == MODULE


def test_plain_genome_json_changes_only_in_the_version():
    g = Genome.minimal(3, 2, np.random.default_rng(1), InnovationTracker(), hidden=[2])
    data = to_dict(g)
    for item in data["nodes"] + data["edges"]:
        assert "frozen" not in item and "module" not in item


def test_version_1_files_still_load():
    g = Genome.minimal(3, 2, np.random.default_rng(1), InnovationTracker(), hidden=[2])
    data = json.loads(json.dumps(to_dict(g)))
    data["version"] = 1
    back = from_dict(data)
    assert back == g
    assert all(a["frozen"] is False and a["module"] is None for _, a in back.graph.nodes(data=True))


def _edit_node(key, value):
    def edit(data):
        node = next(n for n in data["nodes"] if n["id"] == 2)
        node[key] = value

    return edit


BAD_FILES = {
    "frozen string": (_edit_node("frozen", "true"), r"genome.nodes\[2\] \(node 2\).frozen: should be bool"),
    "module list": (_edit_node("module", [1]), r"genome.nodes\[2\] \(node 2\).module: should be an object or null"),
    "module unknown key": (
        _edit_node("module", dict(MODULE, extra=1)), r"\(node 2\).module: unknown key 'extra'"
    ),
    "module no hash": (
        _edit_node("module", {"name": "m", "graft": 2}), r"\(node 2\).module: missing key 'hash'"
    ),
    "module short hash": (
        _edit_node("module", dict(MODULE, hash="abc")), r"\(node 2\).module.hash: should be 64 lowercase hex"
    ),
    "module graft text": (
        _edit_node("module", dict(MODULE, graft="2")), r"\(node 2\).module.graft: should be int"
    ),
    "module dropped from frozen node": (
        _edit_node("module", None), "node 2: a frozen node should carry its module"
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_graft_values_in_a_file_name_the_key(case):
    edit, message = BAD_FILES[case]
    data = json.loads(json.dumps(to_dict(_grafted())))
    edit(data)
    with pytest.raises(GenomeError, match=message) as info:
        from_dict(data)
    assert "\n" not in str(info.value)


def test_edge_frozen_bad_value_names_the_edge():
    data = json.loads(json.dumps(to_dict(_grafted())))
    next(e for e in data["edges"] if e["src"] == 0 and e["dst"] == 2)["frozen"] = 1
    with pytest.raises(GenomeError, match=r"\(edge 0->2\).frozen: should be bool"):
        from_dict(data)


def test_graphml_carries_frozen_and_module(tmp_path):
    path = tmp_path / "g.graphml"
    to_graphml(_grafted(), path)
    back = nx.read_graphml(path)
    assert back.nodes["2"]["frozen"] is True and back.nodes["2"]["module"] == "m"
    assert back.nodes["2"]["module_hash"] == HASH and back.nodes["2"]["graft"] == 2
    assert "frozen" not in back.nodes["1"]
    assert back.edges["0", "2"]["frozen"] is True and "frozen" not in back.edges["3", "1"]
