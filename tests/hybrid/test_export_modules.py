"""Genomes carrying grafted modules (frozen genes, issue 18) export like any other genome.

A grafted module is inlined as ordinary hidden nodes and edges, so every format
computes it with no module-specific code; the exported files must match
``genomes.evaluate`` within 1e-5 when loaded in a process that cannot import hybrid,
and nothing in them may name the module library (module name, content hash).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import GATE_KINDS, Genome, active_structure, evaluate
from genomes.genome import edge_attrs, node_attrs
from genomes.modules import OPEN_LOGIT
from hybrid.export import FORMATS, export_genome, to_module
from tests.hybrid.test_export_formats import TEST_ROWS, _available_formats, predict_without_hybrid
from tests.hybrid.test_export_module import MEAN, STD, gated_genome, raw_inputs
from tests.hybrid.test_frozen_engine import freeze, frozen_populations

GATE = "hard_concrete"
NAME = "spiral_feature_block"  # the library entry's name: must not leak into an export
HASH = "5e" * 32


def module_genome(seed: int = 0) -> Genome:
    """``gated_genome`` with two grafts: input -> 20 -> 21 -> output, node 3 -> 22 -> output.

    The module nodes are frozen (gates ``OPEN_LOGIT``), and so are the edges into them;
    their edges to the output are trainable with non-zero weights, so the modules do
    change the function.
    """
    rng = np.random.default_rng(seed)
    g = gated_genome(seed).copy()
    graph = g.graph
    innovation = 1 + max(a["innovation"] for _, _, a in graph.edges(data=True))
    nodes = {20: (3, "tanh", 20), 21: (2, "relu", 20), 22: (2, "sigmoid", 22)}
    for n, (width, act, graft) in nodes.items():
        module = {"name": NAME, "hash": HASH, "graft": graft}
        bias = rng.normal(0, 0.5, width)
        graph.add_node(n, **node_attrs("hidden", width, act, bias, None, OPEN_LOGIT, True, module))
    edges = {(0, 20): True, (20, 21): True, (3, 22): True, (21, 1): False, (22, 1): False}
    for (s, d), frozen in edges.items():
        shape = (graph.nodes[d]["width"], graph.nodes[s]["width"])
        gate = OPEN_LOGIT if frozen else 3.0
        weight = rng.normal(0, 0.8, shape)
        graph.add_edge(s, d, **edge_attrs(innovation, weight, gate, frozen=frozen))
        innovation += 1
    return g.validate()


def numpy_reference(genome: Genome, gate: str, x_raw: np.ndarray) -> np.ndarray:
    """``genomes.evaluate`` of features standardised with MEAN/STD."""
    k = x_raw.shape[1]
    x = (x_raw.astype(np.float64) - MEAN[:k]) / STD[:k]
    return evaluate(genome, x, gate)


def test_the_module_genome_really_uses_its_modules():
    g = module_genome()
    plain = g.copy()
    for e in ((21, 1), (22, 1)):
        plain.graph.edges[e]["weight"] = np.zeros_like(plain.graph.edges[e]["weight"])
    x = raw_inputs(16)
    assert not np.allclose(numpy_reference(g, GATE, x), numpy_reference(plain, GATE, x), atol=1e-3)


@pytest.mark.parametrize("gate", GATE_KINDS)
def test_to_module_of_a_module_genome_matches_numpy(gate):
    g = module_genome()
    net = to_module(g, gate, feature_mean=MEAN, feature_std=STD)
    assert sum(p.numel() for p in net.parameters()) == active_structure(g, gate).n_parameters
    x = raw_inputs(64)
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, numpy_reference(g, gate, x), rtol=1e-5, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(frozen_populations(gate=st.sampled_from(GATE_KINDS), size=1), st.sampled_from(GATE_KINDS))
def test_any_genome_with_frozen_genes_exports_to_the_numpy_function(pop, gate):
    genome = pop[0]
    k = genome.n_inputs
    net = to_module(genome, gate, feature_mean=MEAN[:k], feature_std=STD[:k])
    x = raw_inputs(16, k)
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, numpy_reference(genome, gate, x), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_every_format_of_a_module_genome_predicts_like_numpy_without_hybrid(tmp_path):
    g = module_genome()
    formats = _available_formats()
    assert set(formats) >= {"python", "torchscript", "pt2"}
    stats = {"feature_mean": MEAN, "feature_std": STD}
    results = {
        fmt: export_genome(g, tmp_path / f"model{FORMATS[fmt][0]}", fmt, GATE, stats)
        for fmt in formats
    }
    x = raw_inputs(TEST_ROWS)
    outputs = predict_without_hybrid([r.path for r in results.values()], x)
    expected = numpy_reference(g, GATE, x)
    for fmt, result in results.items():
        out = outputs[result.path]
        assert not isinstance(out, str), f"{fmt}: {out}"
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5, err_msg=fmt)
        for f in result.files:  # nothing refers to the library: no name, no hash, no "module" tag
            data = f.read_bytes()
            for word in (NAME, HASH, '"graft"', "frozen"):
                assert word.encode() not in data, (f.name, word)
        assert not {"module", "modules", "graft"} & set(json.loads(result.files[-1].read_text()))


def test_export_reads_a_module_genome_without_changing_it(tmp_path):
    g = module_genome()
    before = g.copy()
    export_genome(g, tmp_path / "m.py", "python", GATE)
    assert g == before
    assert all(g.graph.nodes[n]["module"]["hash"] == HASH for n in (20, 21, 22))


def test_freeze_helper_keeps_a_valid_genome():
    g = freeze(gated_genome(), np.random.default_rng(0), 1.0)
    assert g.validate() is g
    assert not g.graph.nodes[3].get("frozen", False)  # its disabled self-loop is recurrent
    assert all(g.graph.nodes[n].get("frozen", False) for n in (2, 4, 5, 6))


@pytest.mark.parametrize("gate", GATE_KINDS)
def test_export_holds_a_module_s_inner_weights_and_biases_bit_for_bit(gate):
    """Gates of a graft are exactly 1, so folding them into the weights changes no bit."""
    g = module_genome()
    net = to_module(g, gate, feature_mean=MEAN, feature_std=STD)
    exported = [t.detach().numpy() for t in net.state_dict().values()]
    inner = [g.graph.edges[20, 21]["weight"], g.graph.nodes[21]["bias"], g.graph.nodes[22]["bias"]]
    for arr in inner:
        assert any(
            e.dtype == arr.dtype and e.size >= arr.size and arr.tobytes() in _slices(e, arr.shape) for e in exported
        ), f"no exported tensor holds {arr.shape} bit for bit"


def _slices(e: np.ndarray, shape: tuple[int, ...]) -> set[bytes]:
    """Every contiguous row block (or 1-D run) of ``e`` with ``shape``, as bytes."""
    out = set()
    if e.ndim == 1 and len(shape) == 1:
        out |= {e[i : i + shape[0]].tobytes() for i in range(e.size - shape[0] + 1)}
    elif e.ndim == 2 and len(shape) == 2:
        for r in range(e.shape[0] - shape[0] + 1):
            for c in range(e.shape[1] - shape[1] + 1):
                out.add(np.ascontiguousarray(e[r : r + shape[0], c : c + shape[1]]).tobytes())
    return out
