"""Hand-edited and broken genome files: each is one ``GenomeError`` line naming the file.

``genomes.load`` is what ``hybrid export`` and ``show`` use on ``best/genome.json``;
every case below must be refused there (never a traceback, never a genome whose
network would return NaN), with the node, edge or key at fault named.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from genomes import Genome, GenomeError, InnovationTracker, load, save, to_dict
from genomes._errors import HybridError


def _doc() -> dict[str, Any]:
    g = Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), hidden=(4,))
    return to_dict(g)


def _node(doc: dict[str, Any], nid: int) -> dict[str, Any]:
    return next(n for n in doc["nodes"] if n["id"] == nid)


def _edge(doc: dict[str, Any], s: int, d: int) -> dict[str, Any]:
    return next(e for e in doc["edges"] if (e["src"], e["dst"]) == (s, d))


def _set(getter: Callable[[dict], dict], key: str, value: Any) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        getter(doc)[key] = value

    return edit


def _drop(getter: Callable[[dict], dict], key: str) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        del getter(doc)[key]

    return edit


def _doc_key(key: str, value: Any) -> Callable[[dict], None]:
    return _set(lambda d: d, key, value)


def HIDDEN(d: dict) -> dict:  # noqa: N802 - reads like the constant it stands for
    return _node(d, 2)


def INPUT(d: dict) -> dict:  # noqa: N802
    return _node(d, 0)


def IN_EDGE(d: dict) -> dict:  # noqa: N802
    return _edge(d, 0, 2)


def OUT_EDGE(d: dict) -> dict:  # noqa: N802
    return _edge(d, 2, 1)


def _bias_b64(d: dict) -> dict:
    return HIDDEN(d)["bias"]


def _add_edge(src: int, dst: int, innovation: int) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        extra = dict(OUT_EDGE(doc), src=src, dst=dst, innovation=innovation)
        width = {n["id"]: n["width"] for n in doc["nodes"]}
        extra["weight"] = [[0.0] * width[src] for _ in range(width[dst])]
        doc["edges"].append(extra)

    return edit


def _duplicate_edge(doc: dict) -> None:
    doc["edges"].append(dict(doc["edges"][0]))


#: case id -> (edit of a valid document, fragment of the message)
EDITS: dict[str, tuple[Callable[[dict], None], str]] = {
    "format of another tool": (_doc_key("format", "keras.model"), "genome.format"),
    "future version": (_doc_key("version", 99), "genome.version"),
    "version as text": (_doc_key("version", "1"), "genome.version"),
    "nodes as object": (_doc_key("nodes", {"0": {}}), "genome.nodes: should be list"),
    "edges missing": (_drop(lambda d: d, "edges"), "missing key 'edges'"),
    "meta as text": (_doc_key("meta", "champion"), "genome.meta"),
    "width negative": (_set(HIDDEN, "width", -1), "genome.nodes[2].width"),
    "width fractional": (_set(HIDDEN, "width", 1.5), "genome.nodes[2].width"),
    "width 2**40": (_set(HIDDEN, "width", 2**40), "genome.nodes[2].width"),
    "width disagrees with arrays": (_set(HIDDEN, "width", 5), "genome.nodes[2] (node 2).bias: shape"),
    "node id as text": (_set(HIDDEN, "id", "2"), "genome.nodes[2].id"),
    "node id 2**60": (_set(HIDDEN, "id", 2**60), "genome.nodes[2].id"),
    "role unknown": (_set(HIDDEN, "role", "bias"), "role should be one of"),
    "second input node": (_set(HIDDEN, "role", "input"), "exactly one input node"),
    "activation unknown": (_set(HIDDEN, "activation", "mish2"), "node 2: activation should be one of"),
    "activation as number": (_set(HIDDEN, "activation", 7), "genome.nodes[2].activation"),
    "input node activation": (_set(INPUT, "activation", "relu"), "node 0: input node activation"),
    "input bias set": (_set(INPUT, "bias", [0.0, 1.0, 0.0]), "node 0: input node bias"),
    "bias nan": (_set(HIDDEN, "bias", [0.0, float("nan"), 0.0, 0.0]), "(node 2).bias[1]: is nan"),
    "bias infinity": (_set(HIDDEN, "bias", [float("inf"), 0.0, 0.0, 0.0]), "(node 2).bias[0]: is inf"),
    "bias beyond float32": (_set(HIDDEN, "bias", [0.0, 0.0, -4e38, 0.0]), "(node 2).bias[2]: is -inf"),
    "gate nan": (_set(HIDDEN, "gate", [float("nan")] * 4), "(node 2).gate[0]: is nan"),
    "bias of booleans": (_set(HIDDEN, "bias", [True, False, True, False]), "should hold numbers only"),
    "bias of nulls": (_set(HIDDEN, "bias", [None] * 4), "should hold numbers only"),
    "bias ragged": (_set(HIDDEN, "bias", [[0.0], 1.0, 2.0, 3.0]), "(node 2).bias"),
    "bias as number": (_set(HIDDEN, "bias", 0.0), "genome.nodes[2].bias: should be dict/list"),
    "stored shape infinite": (_set(_bias_b64, "shape", [float("inf")]), "(node 2).bias.shape"),
    "stored shape as text": (_set(_bias_b64, "shape", ["4"]), "(node 2).bias.shape"),
    "stored shape negative": (_set(_bias_b64, "shape", [-4]), "(node 2).bias.shape"),
    "stored dtype float64": (_set(_bias_b64, "dtype", "float64"), "(node 2).bias: dtype"),
    "b64 not base64": (_set(_bias_b64, "b64", "@@@@"), "(node 2).bias.b64"),
    "b64 too short": (_set(_bias_b64, "b64", "AAAAAA=="), "(node 2).bias: shape should be (4,)"),
    "b64 as number": (_set(_bias_b64, "b64", 12), "(node 2).bias: not a float32 array"),
    "weight nan": (_set(IN_EDGE, "weight", [[float("nan")] * 3] * 4), "(edge 0->2).weight[0, 0]: is nan"),
    "weight 1e39": (_set(OUT_EDGE, "weight", [[0.0, 0.0, 0.0, 0.0], [0.0, 1e39, 0.0, 0.0]]), "(edge 2->1).weight[1, 1]: is inf"),
    "weight transposed": (_set(OUT_EDGE, "weight", [[0.0, 0.0]] * 4), "(edge 2->1).weight: shape"),
    "edge gate nan": (_set(OUT_EDGE, "gate", float("nan")), "(edge 2->1).gate: is nan"),
    "edge gate -infinity": (_set(OUT_EDGE, "gate", float("-inf")), "(edge 2->1).gate: is -inf"),
    "edge gate text": (_set(OUT_EDGE, "gate", "open"), "genome.edges[1].gate"),
    "edge gate boolean": (_set(OUT_EDGE, "gate", False), "genome.edges[1].gate"),
    "edge to a missing node": (_set(OUT_EDGE, "dst", 17), "node 17 does not exist"),
    "edge given twice": (_duplicate_edge, "appears twice"),
    "enabled as text": (_set(IN_EDGE, "enabled", "true"), "genome.edges[0].enabled"),
    "recurrent as number": (_set(IN_EDGE, "recurrent", 0), "genome.edges[0].recurrent"),
    "innovation negative": (_set(IN_EDGE, "innovation", -3), "genome.edges[0].innovation"),
    "innovation shared": (_set(OUT_EDGE, "innovation", 3), "innovation 3 is also used"),
    "edge into the input": (_add_edge(2, 0, 40), "may enter the input node"),
    "cycle": (_add_edge(2, 2, 41), "self-loop should be recurrent"),
    "output cut off": (_set(OUT_EDGE, "enabled", False), "output node 1 should be reachable"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(EDITS))
def test_a_hand_edited_genome_file_is_one_line_naming_the_file(case: str, tmp_path: Path) -> None:
    edit, fragment = EDITS[case]
    doc = _doc()
    edit(doc)
    path = tmp_path / "genome.json"
    path.write_text(json.dumps(doc))  # NaN and Infinity as Python's json writes them
    with pytest.raises(HybridError) as err:
        load(path)
    message = str(err.value)
    assert isinstance(err.value, GenomeError) and err.value.exit_code == 2
    assert message.startswith(f"{path}: ") and fragment in message, message
    assert "\n" not in message and len(message) < 600
    assert list(tmp_path.iterdir()) == [path]


#: case id -> (file bytes, or None for a folder; fragment of the message)
FILES: dict[str, tuple[bytes | None, str]] = {
    "empty file": (b"", "not valid JSON"),
    "truncated JSON": (json.dumps(_doc()).encode()[:200], "not valid JSON"),
    "JSON list": (b"[1, 2, 3]", "genome: should be an object"),
    "JSON number": (b"3", "genome: should be an object"),
    "JSON null": (b"null", "genome: should be an object"),
    "object without keys": (b"{}", "missing key 'format'"),
    "UTF-16 text": (json.dumps(_doc()).encode("utf-16"), "not a UTF-8 text file"),
    "nested 100000 deep": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "integer of 5000 digits": (b'{"format": "hybrid.genome", "version": ' + b"9" * 5000 + b"}", "not valid JSON"),
    "folder instead of file": (None, "cannot read genome file"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(FILES))
def test_a_broken_genome_file_is_one_line_naming_the_file(case: str, tmp_path: Path) -> None:
    content, fragment = FILES[case]
    path = tmp_path / "genome.json"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(GenomeError) as err:
        load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and fragment in message, message
    assert "\n" not in message


def test_there_are_at_least_fifty_broken_genome_files() -> None:
    assert len(EDITS) + len(FILES) >= 50


def test_the_unedited_document_loads(tmp_path: Path) -> None:
    g = Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), hidden=(4,))
    save(g, tmp_path / "genome.json")
    assert load(tmp_path / "genome.json") == g
