"""JSON and GraphML: bit-exact round trips; malformed files raise GenomeError only."""

from __future__ import annotations

import copy
import json
import os

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import (
    GATE_KINDS,
    Genome,
    GenomeError,
    InnovationTracker,
    from_dict,
    load,
    save,
    to_dict,
    to_graphml,
)
from tests.strategies import genomes_strategy


def _genome() -> Genome:
    return Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), hidden=(4,))


def _json_round_trip(g: Genome) -> Genome:
    return from_dict(json.loads(json.dumps(to_dict(g))))


@settings(max_examples=300)
@given(genome=genomes_strategy(gate=st.sampled_from(GATE_KINDS)))
def test_json_round_trip_is_exact(genome):
    back = _json_round_trip(genome)
    assert back == genome
    assert to_dict(back) == to_dict(genome)


def test_round_trip_keeps_signed_zeros_extremes_and_meta(tmp_path):
    g = _genome()
    w = g.graph.edges[0, 2]["weight"]
    w[0, 1], w[0, 2], w[1, 0] = -0.0, np.finfo(np.float32).max, np.finfo(np.float32).smallest_subnormal
    g.graph.nodes[2]["bias"][1] = -0.0
    g.graph.edges[2, 1]["gate"] = np.float32(-0.0)
    g.meta.update({"id": 12, "note": "champion"})
    path = tmp_path / "g.json"
    save(g, path)
    back = load(path)
    assert back == g and back.meta == g.meta
    assert np.signbit(back.edge(2, 1)["gate"]) and np.signbit(back.node(2)["bias"][1])
    assert os.listdir(tmp_path) == ["g.json"]  # the atomic write left no temp file


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(
    ("array", "named"),
    [
        (("node", 2, "bias"), r"genome.nodes\[2\] \(node 2\).bias\[1\]"),
        (("node", 2, "gate"), r"genome.nodes\[2\] \(node 2\).gate\[1\]"),
        (("edge", (0, 2), "weight"), r"\(edge 0->2\).weight\[1, 0\]"),
        (("edge", (2, 1), "gate"), r"\(edge 2->1\).gate: is"),
    ],
)
def test_a_stored_nan_or_infinity_is_refused_naming_the_node_or_edge(tmp_path, value, array, named):
    g = _genome()
    kind, key, attr = array
    if kind == "node":
        g.graph.nodes[key]["bias" if attr == "bias" else "gate"][1] = value
    elif attr == "weight":
        g.graph.edges[key]["weight"][1, 0] = value
    else:
        g.graph.edges[key]["gate"] = np.float32(value)
    path = tmp_path / "g.json"
    save(g, path)  # bit-exact writing stays possible; reading it back is what refuses
    with pytest.raises(GenomeError, match=named + ".*expected a finite number") as err:
        load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_hand_edited_plain_lists_are_read_as_float32():
    data = to_dict(_genome())
    edge = next(e for e in data["edges"] if (e["src"], e["dst"]) == (2, 1))
    edge["weight"] = [[1, 2, 3, 4], [0.5, -0.5, 0, 1e3]]
    edge["gate"] = 2.5
    g = from_dict(data)
    np.testing.assert_array_equal(g.edge(2, 1)["weight"], np.array([[1, 2, 3, 4], [0.5, -0.5, 0, 1e3]], np.float32))
    assert g.edge(2, 1)["gate"] == np.float32(2.5) and g.edge(2, 1)["weight"].dtype == np.float32


def test_hand_written_numbers_beyond_float32_are_refused_without_warning(recwarn):
    data = to_dict(_genome())
    data["nodes"][2]["bias"] = [1.0, -1e300, 0.0, 1e39]
    with pytest.raises(GenomeError, match=r"nodes\[2\] \(node 2\).bias\[1\]: is -inf in float32"):
        from_dict(data)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def _edit(path, value=None, delete=False):
    def edit(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        if delete:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return edit


MALFORMED = {
    "format": (_edit(["format"], "other"), r"genome.format: should be 'hybrid.genome'"),
    "version": (_edit(["version"], 6), r"genome.version: should be one of \[1, 2, 3, 4, 5\], got 6"),
    "nodes missing": (_edit(["nodes"], delete=True), "genome: missing key 'nodes'"),
    "node not object": (_edit(["nodes", 0], 5), r"genome.nodes\[0\]: should be an object"),
    "width string": (_edit(["nodes", 2, "width"], "4"), r"genome.nodes\[2\].width: should be int"),
    "width bool": (_edit(["nodes", 2, "width"], True), r"genome.nodes\[2\].width: should be int"),
    "width zero": (_edit(["nodes", 2, "width"], 0), r"genome.nodes\[2\].width: should be in \[1, 2\*\*31 - 1\], got 0"),
    "duplicate node": (_edit(["nodes", 1, "id"], 0), r"genome.nodes\[1\].id: node 0 appears twice"),
    "bias shape": (_edit(["nodes", 2, "bias"], [1.0, 2.0]), r"genome.nodes\[2\] \(node 2\).bias: shape should be \(4,\)"),
    "bias base64": (_edit(["nodes", 2, "bias", "b64"], "!!"), r"genome.nodes\[2\] \(node 2\).bias.b64: not a float32 array"),
    "bias dtype": (_edit(["nodes", 2, "bias", "dtype"], "float64"), r"genome.nodes\[2\] \(node 2\).bias: dtype should be 'float32'"),
    "bias strings": (_edit(["nodes", 2, "bias"], ["a", "b", "c", "d"]), r"genome.nodes\[2\] \(node 2\).bias: should hold numbers only"),
    "edge to nowhere": (_edit(["edges", 0, "dst"], 42), r"genome.edges\[0\].dst: node 42 does not exist"),
    "enabled string": (_edit(["edges", 0, "enabled"], "yes"), r"genome.edges\[0\].enabled: should be bool"),
    "innovation missing": (_edit(["edges", 1, "innovation"], delete=True), r"genome.edges\[1\]: missing key 'innovation'"),
    "meta list": (_edit(["meta"], []), "genome.meta: should be an object"),
    "role unknown": (_edit(["nodes", 2, "role"], "middle"), "node 2: role should be one of"),
    "breaks a rule": (_edit(["edges", 1, "enabled"], False), "output node 1 should be reachable"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_data_raises_genome_error_naming_the_key(case):
    edit, message = MALFORMED[case]
    data = to_dict(_genome())
    edit(data)
    with pytest.raises(GenomeError, match=message):
        from_dict(data)


@pytest.mark.parametrize(
    "shape", [[float("inf"), 4], [4.0], ["4"], "4", [True], [-4], None, [4, 1]]
)
def test_a_bad_stored_shape_is_a_genome_error(shape):
    data = to_dict(_genome())
    data["nodes"][2]["bias"]["shape"] = shape  # [inf] used to raise OverflowError
    with pytest.raises(GenomeError, match=r"genome.nodes\[2\] \(node 2\).bias"):
        from_dict(data)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_edit(["nodes", 2, "activation"], "swish"), "node 2: activation should be one of"),
        (_edit(["nodes", 2, "activation"], 3), r"nodes\[2\].activation: should be str"),
        (_edit(["edges", 0, "gate"], True), r"edges\[0\].gate: should be dict/list/int/float"),
        (_edit(["edges", 0, "innovation"], 2**80), r"edges\[0\].innovation: should be an int in"),
        (_edit(["nodes", 2, "id"], -1), r"nodes\[2\].id: should be an int in"),
        (_edit(["nodes", 2, "bias"], [1, "2", 3, 4]), "should hold numbers only"),
        (_edit(["nodes", 2, "bias"], [1, None, 3, 4]), "should hold numbers only"),
    ],
)
def test_hand_edits_of_names_ids_and_values_are_genome_errors(edit, message):
    data = to_dict(_genome())
    edit(data)
    with pytest.raises(GenomeError, match=message):
        from_dict(data)


JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10), st.floats(allow_nan=True), st.text(max_size=3),
    st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)  # fmt: skip


def _paths(x, prefix=()):
    yield prefix
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _paths(v, (*prefix, i))


@settings(max_examples=300)
@given(data=st.data(), genome=genomes_strategy(max_mutations=4), junk=JUNK, delete=st.booleans())
def test_any_hand_edit_gives_a_valid_genome_or_a_genome_error(data, genome, junk, delete):
    doc = to_dict(genome)
    paths = [p for p in _paths(doc) if p]
    path = data.draw(st.sampled_from(paths))
    edited = copy.deepcopy(doc)
    _edit(list(path), junk, delete=delete and isinstance(_parent(edited, path), dict))(edited)
    try:
        g = from_dict(edited)
    except GenomeError:
        return
    g.validate()


def _parent(doc, path):
    for key in path[:-1]:
        doc = doc[key]
    return doc


@pytest.mark.parametrize(("text", "message"), [
    (None, "cannot read genome file"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "genome: should be an object"),
])  # fmt: skip
def test_load_names_the_file_it_cannot_use(tmp_path, text, message):
    path = tmp_path / "g.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(GenomeError, match=message) as err:
        load(path)
    assert str(path) in str(err.value)


def test_graphml_holds_the_structure_and_loads_with_networkx(tmp_path):
    g = _genome()
    g.graph.add_edge(0, 1, innovation=9, enabled=False, recurrent=False,
                     weight=np.ones((2, 3), np.float32), gate=np.float32(3.0))  # fmt: skip
    path = tmp_path / "g.graphml"
    h = to_graphml(g, path)
    back = nx.read_graphml(path)
    assert sorted(back.nodes) == ["0", "1", "2"] and set(h.nodes) == {0, 1, 2}
    assert back.nodes["2"] == {"role": "hidden", "width": 4, "activation": "relu"}
    e = back.edges["0", "1"]
    assert (e["innovation"], e["enabled"], e["recurrent"]) == (9, False, False)
    assert e["weight_norm"] == pytest.approx(np.sqrt(6.0))
    assert not any(isinstance(v, np.ndarray) for _, a in h.nodes(data=True) for v in a.values())
