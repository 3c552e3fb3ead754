"""genomes.modules: harvest a trained sub-network, graft it back as a zero-initialised branch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genomes import (
    OPEN_LOGIT,
    Genome,
    GenomeError,
    InnovationTracker,
    ModuleEdge,
    ModuleNode,
    ModuleSpec,
    NotApplicable,
    evaluate,
    gate_value,
    harvest,
    insert_module,
    module_forward,
    node_activations,
)
from genomes.genome import edge_attrs, node_attrs
from tests.strategies import grown_genomes, mutation_config, randomise

GATES = st.sampled_from(["sigmoid", "hard_concrete"])
X = np.random.default_rng(7).normal(size=(6, 4))


def _hand_genome() -> Genome:
    """input 0 (2) -> 2 (tanh, 2) -> 3 (relu, 1) -> output 1 (1), skip 0 -> 1; known values."""
    g = Genome.minimal(2, 1, np.random.default_rng(0), InnovationTracker()).copy()
    h = g.graph
    h.nodes[0]["gate"] = np.array([1.0, -0.5], np.float32)
    h.add_node(2, **node_attrs("hidden", 2, "tanh", bias=[0.1, -0.2], gate=[2.0, 0.5]))
    h.add_node(3, **node_attrs("hidden", 1, "relu", bias=[0.3], gate=[1.5]))
    h.add_edge(0, 2, **edge_attrs(10, [[0.5, -1.0], [2.0, 0.25]], gate=0.7))
    h.add_edge(2, 3, **edge_attrs(11, [[1.5, -0.5]], gate=-0.3))
    h.add_edge(3, 1, **edge_attrs(12, [[0.8]], gate=1.1))
    return g.validate()


def _sig(v: float) -> float:
    return 1.0 / (1.0 + np.exp(-v))


def test_module_forward_of_a_harvest_matches_a_hand_computation():
    g = _hand_genome()
    x = np.array([[0.5, -1.0], [2.0, 0.3]])
    spec = harvest(g, [2, 3], "sigmoid", name="pair")
    assert spec.in_width == 2 and spec.outputs == (2,)  # node 3 feeds the output node
    assert [n.local for n in spec.nodes] == [1, 2] and spec.mean is None
    h_in = x * np.array([_sig(1.0), _sig(-0.5)])
    a2 = np.tanh(np.array([0.1, -0.2]) + _sig(0.7) * h_in @ np.array([[0.5, -1.0], [2.0, 0.25]]).T)
    h2 = a2 * np.array([_sig(2.0), _sig(0.5)])
    a3 = np.maximum(0.0, 0.3 + _sig(-0.3) * h2 @ np.array([[1.5, -0.5]]).T)
    np.testing.assert_allclose(module_forward(spec, x), a3, rtol=1e-6)  # pre-gate: g(3) not applied
    # the whole genome: its output node is the module's output
    whole = harvest(g, None, "sigmoid", name="all")
    assert whole.outputs == (3,)
    np.testing.assert_allclose(module_forward(whole, x), evaluate(g, x), rtol=1e-6)


def test_harvest_folds_gates_into_weights_and_keeps_biases():
    g = _hand_genome()
    spec = harvest(g, [2], "hard_concrete", name="one")
    (e,) = spec.edges
    gin = gate_value(g.node(0)["gate"], "hard_concrete")
    expect = gate_value(0.7, "hard_concrete") * g.edge(0, 2)["weight"].astype(np.float64) * gin[None, :]
    assert e.weight.tobytes() == expect.astype(np.float32).tobytes()
    assert spec.nodes[0].bias.tobytes() == g.node(2)["bias"].tobytes()
    assert spec.outputs == (1,)


def _two_sources() -> Genome:
    g = _hand_genome().copy()
    g.graph.add_edge(0, 3, **edge_attrs(13, np.zeros((1, 2))))
    return g.validate()


def _recurrent() -> Genome:
    g = _hand_genome().copy()
    g.graph.add_edge(3, 3, **edge_attrs(14, np.zeros((1, 1)), recurrent=True))
    return g.validate()


HARVEST_ERRORS = {
    "unknown id": (_hand_genome, [2, 9], {}, r"harvest: nodes \[2, 9\]: node 9 is not in the genome"),
    "input node": (_hand_genome, [0, 2], {}, r"node 0 is the input node"),
    "not connected": (_hand_genome, [2, 1], {}, r"nodes \[1, 2\] are not a connected sub-graph: .*\[\[1\], \[2\]\]"),
    "two sources": (_two_sources, [3], {}, r"exactly one node \(the module input\), found \[0, 2\]"),
    "recurrent": (_recurrent, [2, 3], {}, r"recurrent edge 3->3 touches the set"),
    "standardisation of a hidden source": (
        _hand_genome, [3], {"mean": np.zeros(2), "scale": np.ones(2)}, r"module input is node 2, not the input"
    ),
    "mean without scale": (_hand_genome, [2], {"mean": np.zeros(2)}, r"mean and scale should be given together"),
    "mean of a wrong width": (
        _hand_genome, [2], {"mean": np.zeros(3), "scale": np.ones(3)}, r"mean should be 2 finite numbers"
    ),
}


@pytest.mark.parametrize("case", sorted(HARVEST_ERRORS))
def test_harvest_refuses_with_one_line_naming_the_nodes(case):
    make, nodes, kwargs, message = HARVEST_ERRORS[case]
    with pytest.raises(GenomeError, match=message) as info:
        harvest(make(), nodes, "sigmoid", name="m", **kwargs)
    assert "\n" not in str(info.value)


def test_harvest_ignores_disabled_edges():
    g = _hand_genome().copy()  # 0 -> 2 -> 3 -> 1, plus 0 -> 4 -> 3 and a disabled 2 -> 4
    g.graph.add_node(4, **node_attrs("hidden", 1, "relu"))
    g.graph.add_edge(2, 4, **edge_attrs(20, np.ones((1, 2)), enabled=False))
    g.graph.add_edge(0, 4, **edge_attrs(21, np.ones((1, 2))))
    g.graph.add_edge(4, 3, **edge_attrs(22, np.ones((1, 1))))
    g.validate()
    with pytest.raises(GenomeError, match=r"nodes \[2, 4\] are not a connected sub-graph"):
        harvest(g, [2, 4], "sigmoid", name="m")  # only a disabled edge joins them
    spec = harvest(g, [2, 3, 4], "sigmoid", name="m")
    assert [(e.src, e.dst) for e in spec.edges] == [(0, 1), (0, 2), (1, 3), (2, 3)]


def test_harvest_keeps_the_standardisation_of_the_input_source():
    spec = harvest(_hand_genome(), None, "sigmoid", name="m", mean=[1.0, 2.0], scale=[0.5, 3.0])
    assert spec.mean.dtype == np.float64 and spec.mean.tolist() == [1.0, 2.0]
    assert spec.structure()["standardised"] is True


def test_spec_check_refuses_a_node_that_reaches_no_output():
    w = np.ones((1, 1), np.float32)
    nodes = (ModuleNode(1, 1, "relu", np.zeros(1, np.float32)), ModuleNode(2, 1, "relu", np.zeros(1, np.float32)))
    with pytest.raises(GenomeError, match=r"module 'm': node 2 reaches no output"):
        ModuleSpec("m", 1, nodes, (ModuleEdge(0, 1, w), ModuleEdge(1, 2, w)), (1,))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grown=grown_genomes(n_inputs=4, gate=GATES))
def test_harvest_of_a_whole_genome_computes_the_genome(grown):
    g, kind = grown.genome, grown.config.gate
    spec = harvest(g, None, kind, name="whole")
    np.testing.assert_allclose(module_forward(spec, X), evaluate(g, X, kind), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ insert_module
@st.composite
def _specs(draw: Any) -> ModuleSpec:
    """A module harvested from a random trained genome: the whole genome or one hidden node."""
    grown = draw(grown_genomes(n_inputs=st.integers(1, 5), gate=GATES, max_mutations=6))
    g, kind = grown.genome, grown.config.gate
    singles = []
    for n in g.hidden_nodes():
        feeders = {s for s, d in g.enabled_edges() if d == n}
        if len(feeders) == 1 and not any(n in e for e in g.recurrent_edges()):
            singles.append(n)
    if singles and draw(st.booleans()):
        return harvest(g, [draw(st.sampled_from(singles))], kind, name="single")
    return harvest(g, None, kind, name="whole")


def _source_h(child: Genome, record: dict, x: np.ndarray, kind: str) -> np.ndarray:
    """The gated value ``h`` of the graft's source node (host or stitch) in ``child``."""
    src = record["stitch"] if record["stitch"] is not None else record["host"]
    a = node_activations(child, x, kind)[src]
    return a * gate_value(child.node(src)["gate"], kind)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grown=grown_genomes(n_inputs=4, gate=GATES), spec=_specs(), seed=st.integers(0, 2**32 - 1), frozen=st.booleans())
def test_insert_module_keeps_the_function_and_the_module_computes_its_spec(grown, spec, seed, frozen):
    # a copy lists each node's incoming edges in a canonical order, which fixes the float
    # summation order: the child (a copy plus new edges, summed last) then computes bit for bit
    g, kind = grown.genome.copy(), grown.config.gate
    child, record = insert_module(g, np.random.default_rng(seed), grown.tracker, grown.config, spec, frozen=frozen)
    child.validate()
    assert np.array_equal(evaluate(child, X, kind), evaluate(g, X, kind))
    assert np.array_equal(evaluate(child, X, "sigmoid"), evaluate(g, X, "sigmoid"))
    assert np.array_equal(evaluate(child, X, "hard_concrete"), evaluate(g, X, "hard_concrete"))
    args = record.args
    assert record.op == "insert_module" and args["hash"] == spec.content_hash() and args["frozen"] is frozen
    ids = args["nodes"]
    assert len(ids) == len(spec.nodes) and not any(n in g.graph for n in ids)
    assert (args["stitch"] is None) == (g.node(args["host"])["width"] == spec.in_width)
    for n in ids:
        a = child.node(n)
        assert a["frozen"] is frozen and a["module"] == {"name": spec.name, "hash": spec.content_hash(), "graft": ids[0]}
        assert (a["gate"] == np.float32(OPEN_LOGIT)).all()
    assert len(child.frozen_nodes()) == (len(spec.nodes) if frozen else 0)
    for o in spec.outputs:
        e = child.edge(ids[o - 1], args["consumer"])
        assert not e["frozen"] and not e["weight"].any() and e["gate"] == np.float32(grown.config.gate_init)
    acts = node_activations(child, X, kind)
    got = np.concatenate([acts[ids[o - 1]] for o in spec.outputs], axis=1)
    want = module_forward(spec, _source_h(child, args, X, kind))
    # sigmoid(OPEN_LOGIT) is 1 in float32 but 1 - 2e-9 in the float64 reference: every
    # term of every layer is off by that share, so an output that is a small difference
    # of larger terms is off by a few 1e-9 in absolute terms (seen: 4.2e-9 at -0.005);
    # a wrong weight or wiring moves outputs by orders of magnitude more
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-7)


def _plain(n_inputs: int, gate: str = "hard_concrete") -> tuple[Genome, InnovationTracker]:
    tracker = InnovationTracker()
    g = Genome.minimal(n_inputs, 1, np.random.default_rng(3), tracker)
    return g, tracker


def _source_spec(n_inputs: int = 3, mean: Any = None, scale: Any = None) -> ModuleSpec:
    rng = np.random.default_rng(11)
    src = randomise(Genome.minimal(n_inputs, 2, rng, InnovationTracker(), hidden=[4, 3]), rng, 0.0)
    return harvest(src, None, "hard_concrete", name="src", mean=mean, scale=scale)


def test_harvest_then_insert_with_the_same_standardisation_is_bit_identical():
    mean, scale = np.array([0.5, -1.0, 3.0]), np.array([2.0, 0.1, 7.0])
    spec = _source_spec(3, mean, scale)
    g, tracker = _plain(3)
    child, record = insert_module(
        g, np.random.default_rng(0), tracker, mutation_config("hard_concrete"), spec, mean=mean, scale=scale
    )
    assert record.args["host"] == 0 and record.args["adapted"] is True and record.args["stitch"] is None
    ids = {k: n for k, n in enumerate(record.args["nodes"], start=1)}
    ids[0] = 0
    for name, arr in spec.arrays().items():
        parts = name.split(".")
        if parts[0] == "node":
            assert child.node(ids[int(parts[1])])["bias"].tobytes() == arr.tobytes()
        elif parts[0] == "edge":
            assert child.edge(ids[int(parts[1])], ids[int(parts[2])])["weight"].tobytes() == arr.tobytes()


def test_insert_folds_another_standardisation_into_the_first_layer():
    m_s, s_s = np.array([0.5, -1.0, 3.0]), np.array([2.0, 0.1, 7.0])
    m_t, s_t = np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.5, 3.0])
    spec = _source_spec(3, m_s, s_s)
    g, tracker = _plain(3)
    child, record = insert_module(
        g, np.random.default_rng(0), tracker, mutation_config("hard_concrete"), spec, mean=m_t, scale=s_t
    )
    assert record.args["adapted"] is True
    raw = np.random.default_rng(1).normal(size=(8, 3)) * 3
    acts = node_activations(child, (raw - m_t) / s_t, "hard_concrete")  # input gates are exactly 1
    (o,) = spec.outputs
    np.testing.assert_allclose(
        acts[record.args["nodes"][o - 1]], module_forward(spec, (raw - m_s) / s_s), rtol=1e-5, atol=1e-5
    )
    # without the target's standardisation nothing is adapted
    _, plain = insert_module(g, np.random.default_rng(0), tracker, mutation_config("hard_concrete"), spec)
    assert plain.args["adapted"] is False


def test_a_stitch_joins_a_host_of_another_width():
    spec = _source_spec(3)
    g, tracker = _plain(5)
    config = mutation_config("hard_concrete")
    child, record = insert_module(g, np.random.default_rng(0), tracker, config, spec)
    stitch = record.args["stitch"]
    a = child.node(stitch)
    assert (a["width"], a["activation"], a["frozen"]) == (3, "identity", False)
    assert a["module"]["graft"] == record.args["nodes"][0] and not a["bias"].any()
    assert child.edge(0, stitch)["weight"].shape == (3, 5) and not child.edge(0, stitch)["frozen"]
    assert (a["gate"] == np.float32(config.gate_init)).all()


def test_node_ids_are_run_wide_and_a_used_pair_is_not_free():
    spec = _source_spec(3)
    g, tracker = _plain(3)
    config = mutation_config("hard_concrete")
    a, ra = insert_module(g, np.random.default_rng(0), tracker, config, spec)
    b, rb = insert_module(g, np.random.default_rng(0), tracker, config, spec)
    assert ra.args["nodes"] == rb.args["nodes"] and a == b
    with pytest.raises(NotApplicable, match="no free"):  # 0 -> 1 was the only pair; module nodes are frozen
        insert_module(a, np.random.default_rng(0), tracker, config, spec)


def test_an_unfrozen_graft_is_tagged_but_trainable():
    spec = _source_spec(3)
    g, tracker = _plain(3)
    child, record = insert_module(g, np.random.default_rng(0), tracker, mutation_config(), spec, frozen=False)
    assert child.frozen_nodes() == [] and child.frozen_edges() == []
    assert sorted(child.grafts()) == [record.args["nodes"][0]]


def test_insert_module_refuses_a_bad_standardisation():
    spec = _source_spec(3)
    g, tracker = _plain(3)
    with pytest.raises(GenomeError, match=r"insert_module 'src': scale should be 3 finite numbers"):
        insert_module(g, np.random.default_rng(0), tracker, mutation_config(), spec, mean=np.zeros(3), scale=np.ones(2))
