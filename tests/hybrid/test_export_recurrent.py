"""Recurrent genomes in every export format: the exported module is the genome over time.

The oracle is ``genomes.evaluate_sequence`` (numpy, float64) on standardised inputs;
the exported modules take raw features (B, T, F) and an optional initial state and
return the outputs (B, T, n_out) and the final state. The exported state keeps the
neurons a live recurrent edge reads; ``plan.state_index`` places each of its columns
in the genome's state, so an initial state is scattered there (zeros elsewhere)
and the genome's final state is read back through it.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from genomes import (
    GATE_KINDS,
    MUTATIONS,
    Genome,
    NotApplicable,
    active_structure,
    evaluate_sequence,
    save,
    state_layout,
    state_size,
)
from genomes.genome import edge_attrs
from hybrid.config import dump_config, loads_config
from hybrid.errors import HybridError
from hybrid.export import (
    FORMATS,
    ExportedNet,
    ExportError,
    RecurrentExportedNet,
    export_genome,
    export_run,
    plan_export,
    render_python,
    run_module,
    to_module,
)
from hybrid.net import GenomeNet
from tests.hybrid.test_export_formats import _available_formats, _site_dirs
from tests.hybrid.test_export_module import (
    CLOSED,
    MEAN,
    OPEN,
    STD,
    gated_genome,
    import_file,
    n_params,
)
from tests.strategies import grown_genomes

GATE = "hard_concrete"
BATCH, STEPS = 37, 9  # unlike the export's examples (2, 3): both axes must be dynamic
FILL = [None, 0.5, None, -1.0]  # features 1 and 3 are filled when missing
GATES = st.sampled_from(GATE_KINDS)


def raw_sequences(b: int, t: int, n_inputs: int = 4, seed: int = 0) -> np.ndarray:
    """Return raw features (b, t, n_inputs) around MEAN with spread STD."""
    z = np.random.default_rng(seed).normal(size=(b, t, n_inputs))
    return (MEAN[:n_inputs] + STD[:n_inputs] * z).astype(np.float32)


def reference(
    genome: Genome,
    gate: str,
    x_raw: np.ndarray,
    state: np.ndarray | None = None,
    fill: list | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return evaluate_sequence's outputs and its final state in the export's columns.

    ``state`` is an exported initial state: it goes to the genome's columns
    ``plan.state_index``, zeros elsewhere.
    """
    k = x_raw.shape[-1]
    if fill is not None:
        values = np.array([np.nan if v is None else v for v in fill], np.float32)
        x_raw = np.where(np.isnan(x_raw), values, x_raw)
    x = (x_raw - MEAN[:k]) / STD[:k]
    index = list(plan_export(genome, gate).state_index)
    full = None
    if state is not None:
        full = np.zeros((x.shape[0], state_size(genome)))
        full[:, index] = state
    y, final = evaluate_sequence(genome, x, gate, state=full)
    return y, final[:, index]


def assert_matches(got: tuple, expected: tuple, what: str = "") -> None:
    for name, a, b in zip(("outputs", "final state"), got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=f"{what} {name}")


def crafted_genome() -> Genome:
    """Return gated_genome(recurrent=True) with more recurrent edges, each a pruning case.

    Live recurrent edges: 3 -> 3 (the self-loop), 1 -> 2 (the output read back: no
    neuron gates), 0 -> 6 (the input, half-open gate, into node 6, which was dead and
    is now live through 6 -> 2). Dropped: 5 -> 3 (every neuron of 5 is closed) and
    2 -> 2 (edge gate closed). The genome's state is nodes 0, 1, 2, 3, 5, 6; the
    export's is 0 (3 of 4 features: feature 1 is closed), 1, 3 and 6.
    """
    g = gated_genome(recurrent=True).copy()
    graph = g.graph
    rng = np.random.default_rng(5)
    innovation = 1 + max(a["innovation"] for _, _, a in graph.edges(data=True))
    for i, (s, d, gate) in enumerate(
        [(1, 2, OPEN), (0, 6, 0.5), (6, 2, OPEN), (5, 3, OPEN), (2, 2, CLOSED)]
    ):
        shape = (graph.nodes[d]["width"], graph.nodes[s]["width"])
        weight = rng.normal(0, 0.8, shape)
        graph.add_edge(s, d, **edge_attrs(innovation + i, weight, gate, recurrent=True))
    return g.validate()


@st.composite
def recurrent_genomes(draw, gate: str | st.SearchStrategy[str] = GATES):
    """Draw a trained-looking genome grown with recurrent edges, plus 1-3 more of them.

    The recurrent edges get random weights and gates (closed about a quarter of the
    time, so pruning of the state is exercised).
    """
    grown = draw(grown_genomes(gate=gate, max_mutations=8, recurrent=True))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    genome = grown.genome
    for _ in range(draw(st.integers(1, 3))):
        try:
            genome, _ = MUTATIONS["add_recurrent_edge"](genome, rng, grown.tracker, grown.config)
        except NotApplicable:
            break
    genome = genome.copy()
    for s, d in genome.recurrent_edges():
        e = genome.graph.edges[s, d]
        e["weight"] = rng.normal(0, 1.0 / np.sqrt(e["weight"].shape[1]), e["weight"].shape).astype(
            np.float32
        )
        e["gate"] = np.float32(draw(st.sampled_from([CLOSED, 0.0, 1.0, OPEN])))
    assume(genome.is_recurrent)
    return genome.validate(), grown.config.gate


# ------------------------------------------------------------------ the module


@settings(max_examples=30)
@given(recurrent_genomes(), st.integers(1, 6), st.booleans())
def test_recurrent_module_is_the_genome_over_time(drawn, steps, with_state):
    genome, gate = drawn
    k = genome.n_inputs
    net = to_module(genome, gate, feature_mean=MEAN[:k], feature_std=STD[:k])
    assert isinstance(net, RecurrentExportedNet)
    assert n_params(net) == active_structure(genome, gate).n_parameters
    x = raw_sequences(5, steps, k)
    state = None
    if with_state:
        state = np.random.default_rng(1).normal(size=(5, net.state_size)).astype(np.float32)
    with torch.no_grad():
        y, final = net(torch.from_numpy(x), None if state is None else torch.from_numpy(state))
    assert y.shape == (5, steps, genome.n_outputs) and final.shape == (5, net.state_size)
    assert_matches((y.numpy(), final.numpy()), reference(genome, gate, x, state))


@settings(max_examples=10)
@given(recurrent_genomes())
def test_generated_python_is_the_same_module(drawn):
    genome, gate = drawn
    k = genome.n_inputs
    net = to_module(genome, gate, feature_mean=MEAN[:k], feature_std=STD[:k])
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(net.state_dict(), Path(tmp) / "m.state_dict.pt")
        source = render_python(plan_export(genome, gate), weights="m.state_dict.pt", title="T.")
        (Path(tmp) / "m.py").write_text(source)
        model = import_file(Path(tmp) / "m.py", "recurrent_source").load()
    assert model.state_dict().keys() == net.state_dict().keys()
    x = torch.from_numpy(raw_sequences(4, 3, k))
    with torch.no_grad():
        for a, b in zip(model(x), net(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_state_is_the_genomes_where_nothing_is_pruned():
    g = gated_genome(recurrent=True)
    plan = plan_export(g, "sigmoid")  # sigmoid gates are never exactly 0: nothing closed
    assert state_layout(g) == ((3, 3),)
    assert plan.state_index == (0, 1, 2) and plan.state_size == state_size(g) == 3
    x = raw_sequences(6, 4)
    state = np.random.default_rng(2).normal(size=(6, 3)).astype(np.float32)
    net = to_module(g, "sigmoid", feature_mean=MEAN, feature_std=STD)
    with torch.no_grad():
        y, final = net(torch.from_numpy(x), torch.from_numpy(state))
    expected = evaluate_sequence(g, (x - MEAN) / STD, "sigmoid", state=state)
    assert_matches((y.numpy(), final.numpy()), expected)
    assert "node3_gate" in net.state_dict()  # sigmoid gates are < 1: the state carries them


@pytest.mark.parametrize("gate", GATE_KINDS)
def test_exported_state_is_genome_nets_state(gate):
    g = gated_genome(recurrent=True)
    plan = plan_export(g, gate)
    x = torch.from_numpy(raw_sequences(5, 6))
    state = torch.from_numpy(np.random.default_rng(7).normal(size=(5, 3)).astype(np.float32))
    with torch.no_grad():
        y, final = to_module(g, gate, feature_mean=MEAN, feature_std=STD)(x, state)
        z = (x - torch.from_numpy(MEAN)) / torch.from_numpy(STD)
        y_net, final_net = GenomeNet(g, gate).eval()(z, state=state)
    assert plan.state_index == (0, 1, 2)  # node 3's neurons are all open under both gates
    torch.testing.assert_close(y, y_net, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(final, final_net, rtol=1e-5, atol=1e-5)


def test_pruned_state_keeps_only_what_live_recurrent_edges_read():
    g = crafted_genome()
    assert [n for n, _ in state_layout(g)] == [0, 1, 2, 3, 5, 6]
    plan = plan_export(g, GATE)
    assert [(p.node, p.neurons) for p in plan.state] == [
        (0, (0, 2, 3)),
        (1, (0, 1, 2)),
        (3, (0, 1, 2)),
        (6, (0, 1)),
    ]
    # genome state: 0 [0:4], 1 [4:7], 2 [7:12], 3 [12:15], 5 [15:17], 6 [17:19]
    assert plan.state_index == (0, 2, 3, 4, 5, 6, 12, 13, 14, 17, 18)
    assert plan.genome_state_size == 19 and plan.state_size == 11
    # node 0's feature 3 is half-open: the stored input carries its gate
    assert [p.gate is None for p in plan.state] == [False, True, True, True]
    layers = {layer.id: layer for layer in plan.layers}
    assert layers[2].recurrent_sources == (1, 6) and layers[3].recurrent_sources == (3,)
    assert 5 not in layers  # every neuron closed: dead, and so is 5 -> 3
    net = to_module(g, GATE, feature_mean=MEAN, feature_std=STD)
    assert n_params(net) == active_structure(g, GATE).n_parameters
    x = raw_sequences(8, 5)
    state = np.random.default_rng(3).normal(size=(8, 11)).astype(np.float32)
    for initial in (None, state):
        with torch.no_grad():
            got = net(torch.from_numpy(x), None if initial is None else torch.from_numpy(initial))
        assert_matches(tuple(t.numpy() for t in got), reference(g, GATE, x, initial))


def test_a_state_carried_across_calls_equals_one_long_call():
    net = to_module(crafted_genome(), GATE, feature_mean=MEAN, feature_std=STD)
    x = torch.from_numpy(raw_sequences(3, 7))
    with torch.no_grad():
        y, final = net(x)
        y1, s1 = net(x[:, :4])
        y2, s2 = net(x[:, 4:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y)
    torch.testing.assert_close(s2, final)


def test_recurrent_genome_whose_recurrent_edges_are_all_closed_has_an_empty_state():
    g = gated_genome(recurrent=True).copy()
    g.graph.edges[3, 3]["gate"] = np.float32(CLOSED)
    net = to_module(g, GATE, feature_mean=MEAN, feature_std=STD)
    assert isinstance(net, RecurrentExportedNet) and net.state_size == 0
    x = raw_sequences(4, 3)
    with torch.no_grad():
        y, final = net(torch.from_numpy(x))
    assert final.shape == (4, 0)
    assert_matches((y.numpy(), final.numpy()), reference(g, GATE, x))


def test_feed_forward_genomes_export_as_before():
    g = gated_genome()
    plan = plan_export(g, GATE)
    assert not plan.is_recurrent and plan.state == () and plan.state_size == 0
    assert type(to_module(g, GATE)) is ExportedNet
    source = render_python(plan, weights="w.pt", title="T.")
    assert "STATE" not in source and "def step" not in source
    assert "def forward(self, x: torch.Tensor) -> torch.Tensor:" in source


def test_bad_shapes_are_one_line_errors():
    net = to_module(crafted_genome(), GATE)
    with pytest.raises(ValueError, match=r"x should have shape \(B, T, 4\), got \(5, 4\)$"):
        net(torch.zeros(5, 4))
    with pytest.raises(ValueError, match=r"state should have shape \(5, 11\), got \(5, 3\)$"):
        net(torch.zeros(5, 2, 4), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="recurrent genome: build a RecurrentExportedNet"):
        ExportedNet(plan_export(crafted_genome(), GATE))


# ------------------------------------------------------------------ files, without hybrid

LOADER = r"""
import importlib.util
import json
import sys
import traceback

x_file, state_file, *args = sys.argv[1:]
paths = args[: args.index("--")]
sys.path.extend(args[args.index("--") + 1 :])  # plain entries: their .pth files never run
for name in ("hybrid", "genomes"):
    if importlib.util.find_spec(name) is not None:
        sys.exit(f"{name} is importable in the isolated process")
import numpy as np
import torch

torch.set_num_threads(1)


def run(path, x, state):
    if state is None and path.endswith((".onnx", ".pt2")):  # their state input is required
        with open(path + ".json") as f:
            state = np.zeros((x.shape[0], json.load(f)["state"]["size"]), np.float32)
    if path.endswith(".onnx"):
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return session.run(["y", "final_state"], {"x": x, "state": state})
    if path.endswith(".py"):
        spec = importlib.util.spec_from_file_location("exported_model", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = module.load()
    elif path.endswith(".pt"):
        model = torch.jit.load(path)
    else:
        model = torch.export.load(path).module()
    args = (torch.from_numpy(x),) + (() if state is None else (torch.from_numpy(state),))
    with torch.no_grad():
        return [t.numpy() for t in model(*args)]


x = np.load(x_file)
given = np.load(state_file)
for path in paths:
    for tag, state in (("zero", None), ("given", given)):
        try:
            y, final = run(path, x, state)
            np.save(f"{path}.{tag}.y.npy", y)
            np.save(f"{path}.{tag}.state.npy", final)
        except Exception:
            with open(f"{path}.error.txt", "w") as f:
                f.write(traceback.format_exc())
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("hybrid", "genomes"))
if leaked:
    sys.exit(f"loading imported {leaked}")
"""


def run_without_hybrid(paths: list[Path], x: np.ndarray, state: np.ndarray) -> dict:
    """Run exported files in ONE fresh process that cannot import hybrid.

    Each file runs from the zero state and from ``state`` (pt2 and ONNX, whose
    state input is required, get zeros of the sidecar's ``state.size``).

    Returns:
        path -> {"zero": (y, final), "given": (y, final)}, or the traceback.
    """
    folder = paths[0].parent
    assert all(p.parent == folder for p in paths)
    np.save(folder / "x.npy", x)
    np.save(folder / "state.npy", state)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["OMP_NUM_THREADS"] = "1"
    names = [p.name for p in paths]
    files = ["x.npy", "state.npy", *names, "--", *_site_dirs()]
    cmd = [sys.executable, "-S", "-E", "-c", LOADER, *files]
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results: dict = {}
    for p in paths:
        error = folder / f"{p.name}.error.txt"
        if error.exists():
            results[p] = error.read_text()
            continue
        results[p] = {
            tag: tuple(np.load(folder / f"{p.name}.{tag}.{part}.npy") for part in ("y", "state"))
            for tag in ("zero", "given")
        }
    return results


def export_all(genome: Genome, gate: str, folder: Path, formats: list[str], name: str = "m"):
    """Export ``genome`` in ``formats`` with MEAN/STD and FILL; return {path: format}."""
    k = genome.n_inputs
    side = {"feature_mean": MEAN[:k], "feature_std": STD[:k], "feature_fill": FILL[:k]}
    return {
        export_genome(genome, folder / f"{name}{FORMATS[fmt][0]}", fmt, gate, side).path: fmt
        for fmt in formats
    }


def check_round_trips(genome: Genome, gate: str, folder: Path, formats: list[str]) -> None:
    paths = export_all(genome, gate, folder, formats)
    k = genome.n_inputs
    x = raw_sequences(BATCH, STEPS, k, seed=4)
    if k > 1:  # missing values of a filled feature at some steps: filled per step
        x[::5, 2, 1] = np.nan
    size = plan_export(genome, gate).state_size
    state = np.random.default_rng(6).normal(size=(BATCH, size)).astype(np.float32)
    expected = {
        "zero": reference(genome, gate, x, None, FILL[:k]),
        "given": reference(genome, gate, x, state, FILL[:k]),
    }
    for path, got in run_without_hybrid(list(paths), x, state).items():
        assert not isinstance(got, str), f"{path.name}: {got}"
        for tag in ("zero", "given"):
            assert_matches(got[tag], expected[tag], f"{path.name} from the {tag} state:")


def test_every_torch_format_runs_the_genome_over_time_without_hybrid(tmp_path):
    check_round_trips(crafted_genome(), GATE, tmp_path, ["python", "torchscript", "pt2"])


@pytest.mark.slow
@pytest.mark.skipif("onnx" not in _available_formats(), reason="needs the onnx extra")
def test_onnx_runs_the_genome_over_time_in_onnxruntime(tmp_path):
    check_round_trips(crafted_genome(), GATE, tmp_path, ["onnx"])


@pytest.mark.slow
def test_an_empty_state_round_trips_in_every_format(tmp_path):
    g = gated_genome(recurrent=True).copy()
    g.graph.edges[3, 3]["gate"] = np.float32(CLOSED)  # the only recurrent edge closed: S = 0
    assert plan_export(g, GATE).state_size == 0
    check_round_trips(g, GATE, tmp_path, _available_formats())


@pytest.mark.slow
@settings(max_examples=4)
@given(recurrent_genomes())
def test_random_recurrent_genomes_round_trip_in_every_format(drawn):
    genome, gate = drawn
    with tempfile.TemporaryDirectory() as tmp:
        check_round_trips(genome, gate, Path(tmp), _available_formats())


def test_sidecar_and_source_say_what_the_state_is(tmp_path):
    g = crafted_genome()
    result = export_genome(g, tmp_path / "m.py", "python", GATE, {"genome_id": 7})
    info = json.loads(result.files[-1].read_text())
    state = info["state"]
    assert state["size"] == 11 and state["genome_size"] == 19
    assert state["genome_index"] == [0, 2, 3, 4, 5, 6, 12, 13, 14, 17, 18]
    assert state["layout"][0] == {
        "node": 0, "neurons": [0, 2, 3], "offset": 0, "genome_offset": 0, "gated": True
    }
    assert [e["node"] for e in state["layout"]] == [0, 1, 3, 6]
    assert info["input"].startswith("sequences (B, T, n_inputs) of raw features")
    assert "state=None" in state["initial"]
    source = result.path.read_text()
    assert "STATE_SIZE = 11\n" in source
    assert "STATE_LAYOUT = [(0, [0, 2, 3]), (1, [0, 1, 2]), (3, [0, 1, 2]), (6, [0, 1])]" in source
    assert "prev3 = state[:, 6:9]  # node 3 at t-1" in source
    pt2 = export_genome(g, tmp_path / "m.pt2", "pt2", GATE).sidecar["state"]
    assert "required" in pt2["initial"]
    assert "state" not in export_genome(gated_genome(), tmp_path / "f.py", "python", GATE).sidecar


# ------------------------------------------------------------------ feed-forward-only paths


def make_recurrent_run(tmp_path: Path) -> Path:
    run = tmp_path / "seq-run"
    g = crafted_genome()
    g.meta["id"] = 12
    save(g, run / "best" / "genome.json")
    config = loads_config(f'[run]\nseed = 1\n[task]\nname = "wine"\n[training]\ngate = "{GATE}"\n')
    (run / "config.toml").write_text(dump_config(config))
    task = {
        "name": "seq",
        "kind": "classification",
        "n_inputs": 4,
        "n_outputs": 3,
        "feature_mean": MEAN.tolist(),
        "feature_std": STD.tolist(),
        "class_labels": [0, 1, 2],
        "sequence": True,
        "per_step": True,
        "stream": False,
        "T": 20,
    }
    (run / "task.json").write_text(json.dumps(task))
    return run


def test_run_module_refuses_a_recurrent_champion_in_one_line(tmp_path):
    run = make_recurrent_run(tmp_path)
    with pytest.raises(ExportError) as exc:
        run_module(run)
    message = str(exc.value)
    assert isinstance(exc.value, HybridError) and exc.value.exit_code == 2 and "\n" not in message
    assert str(run / "best" / "genome.json") in message and "genome 12 is recurrent" in message


def test_export_run_of_a_recurrent_champion_writes_a_sequence_module(tmp_path):
    run = make_recurrent_run(tmp_path)
    result = export_run(run)
    assert result.sidecar["state"]["size"] == 11 and result.sidecar["genome_id"] == 12
    assert result.sidecar["task"] == {
        "name": "seq", "kind": "classification", "sequence": True, "per_step": True,
        "stream": False, "T": 20,
    }
    model = import_file(result.path, "recurrent_run").load()
    x = raw_sequences(3, 4)
    with torch.no_grad():
        got = model(torch.from_numpy(x))
    assert_matches(tuple(t.numpy() for t in got), reference(crafted_genome(), GATE, x))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_cli_exports_a_recurrent_champion(tmp_path, capsys):
    from hybrid.cli import main

    run = make_recurrent_run(tmp_path)
    assert main(["export", str(run), "--format", "torchscript", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "model.pt") in out and "torchscript: " in out
    model = torch.jit.load(str(tmp_path / "model.pt"))
    x = raw_sequences(3, 4)
    with torch.no_grad():
        got = model(torch.from_numpy(x))
    assert_matches(tuple(t.numpy() for t in got), reference(crafted_genome(), GATE, x))


def test_tensorboard_logs_a_recurrent_champion_s_module_graph(tmp_path):
    pytest.importorskip("tensorboard")
    from types import SimpleNamespace

    from torch.utils.tensorboard import SummaryWriter

    from hybrid.tracking import TensorBoardReporter

    run = make_recurrent_run(tmp_path)
    writer = SummaryWriter(str(tmp_path / "tb"))
    reporter = SimpleNamespace(_writer=writer, gate=GATE)
    TensorBoardReporter._add_champion_module(reporter, run, 0)  # traces (1, 1, F): no error
    writer.close()
    assert any((tmp_path / "tb").iterdir())
