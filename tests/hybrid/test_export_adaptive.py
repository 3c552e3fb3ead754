"""Export of adaptive genomes (issue 16): exit heads and per-input skip gates.

The oracle is ``genomes.adaptive.evaluate_adaptive`` (numpy, float64): every
exported module gives its per-sample outputs (1e-5), and the data-dependent
formats (python, torchscript) its per-sample FLOPs exactly. The genomes are
``tests.adaptive_cases.adaptive_genome``: random values, so some samples stop at
each exit and skip gates open for some samples and close for others.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genomes import GenomeError, active_structure, load, save
from genomes.adaptive import adaptive_plan, evaluate_adaptive, exit_nodes, skip_nodes
from hybrid import __version__
from hybrid.cli import main
from hybrid.config import dump_config, loads_config
from hybrid.export import (
    ExportError,
    export_genome,
    export_run,
    plan_export,
    render_python,
    to_module,
)
from hybrid.export.adaptive import AdaptiveNet, plan_adaptive
from hybrid.export.module import ExportedNet
from tests.adaptive_cases import adaptive_genome
from tests.hybrid.test_export_formats import METRICS, predict_without_hybrid
from tests.hybrid.test_export_module import MEAN, STD, gated_genome, import_file

TOL = 1e-5
#: Seeds whose genomes have at least one exit and one skip gate (checked by a test).
SEEDS = (0, 2, 3, 7, 8)
ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def raw_rows(seed: int, n: int = 48) -> np.ndarray:
    """Raw features (before standardisation with MEAN/STD), float32."""
    z = np.random.default_rng(100 + seed).normal(0.0, 2.0, size=(n, 4))
    return (z * STD + MEAN).astype(np.float32)


def reference(genome, raw: np.ndarray, thresholds=None):
    """``evaluate_adaptive`` on the standardised features (what the modules compute)."""
    x = (raw.astype(np.float64) - MEAN) / STD
    return evaluate_adaptive(genome, x, "sigmoid", np.float64, thresholds)


def stats() -> dict:
    return {"feature_mean": MEAN, "feature_std": STD}


def test_the_seeds_have_exits_and_skip_gates_that_split_the_batch():
    stops = set()
    for seed in SEEDS:
        g = adaptive_genome(seed)
        assert exit_nodes(g) and skip_nodes(g)
        r = reference(g, raw_rows(seed))
        stops |= set(np.unique(r.exit).tolist())
        assert any(0 < z.mean() < 1 for z in r.runs.values())
    assert {0, 1, 2} <= stops  # first exit, second exit and the output node are all used


@pytest.mark.parametrize("seed", SEEDS)
def test_python_and_torchscript_give_the_reference_outputs_and_flops(tmp_path, seed):
    g = adaptive_genome(seed)
    raw = raw_rows(seed)
    r = reference(g, raw)
    x = torch.from_numpy(raw)
    py = export_genome(g, tmp_path / "m.py", "python", sidecar=stats())
    model = import_file(py.path, f"adaptive_{seed}").load()
    ts = torch.jit.load(export_genome(g, tmp_path / "m.pt", "torchscript", sidecar=stats()).path)
    for net in (model, ts, to_module(g, feature_mean=MEAN, feature_std=STD)):
        with torch.no_grad():
            out, flops = net.forward_flops(x)
            plain = net(x)
        np.testing.assert_allclose(out.numpy(), r.outputs, rtol=TOL, atol=TOL)
        np.testing.assert_array_equal(plain.numpy(), out.numpy())
        assert flops.dtype == torch.int64
        np.testing.assert_array_equal(flops.numpy(), r.flops)
    info = py.sidecar["adaptive"]
    plan = adaptive_plan(g)
    assert info["exits"] == list(plan.exits) and info["thresholds"] == [0.6] * len(plan.exits)
    assert (
        info["skip_gates"] == sorted(plan.skip_flops) and info["control_flow"] == "data-dependent"
    )
    assert info["full_flops"] == plan.full_flops == active_structure(g).flops


def test_the_modules_hold_exactly_the_live_parameters():
    for seed in SEEDS:
        g = adaptive_genome(seed)
        net = to_module(g)
        assert isinstance(net, AdaptiveNet)
        expected = active_structure(g).n_parameters
        assert sum(p.numel() for p in net.parameters()) == expected == plan_export(g).n_parameters


def test_a_sample_that_stops_early_computes_no_later_node(tmp_path):
    """Hooks count the rows each layer multiplies: a stopped sample reaches none after its exit."""
    seed = 0  # exit after stage 0 for some samples, the output node for the others
    g = adaptive_genome(seed)
    raw = raw_rows(seed, 64)
    r = reference(g, raw)
    plan = r.plan
    stopped = r.exit < len(plan.exits)
    assert 0 < stopped.sum() < len(raw)
    model = import_file(export_genome(g, tmp_path / "m.py", "python").path, "rows").load()
    rows: dict[str, int] = {}

    def count(name):
        def hook(module, args, output):
            rows[name] = rows.get(name, 0) + args[0].shape[0]

        return hook

    for name, module in model.named_children():
        module.register_forward_hook(count(name))
    x = torch.from_numpy(((raw - MEAN) / STD).astype(np.float32))
    with torch.no_grad():
        _, flops = model.forward_flops(x)
    reached = r.exit[None, :] >= np.arange(len(plan.stages))[:, None]  # (stages, B)
    for k, stage in enumerate(plan.stages):
        for n in stage.nodes:
            ran = reached[k] & r.runs[n] if n in r.runs else reached[k]
            assert rows[f"node{n}"] == ran.sum()
            if n in r.runs:
                assert (
                    rows[f"node{n}_skip"] == reached[k].sum()
                )  # the gate runs for every sample there
        if stage.exit is not None:
            assert rows[f"node{stage.exit}"] == reached[k].sum()
    assert rows[f"node{g.output_id}"] == (~stopped).sum() < len(raw)
    assert flops.numpy()[stopped].max() < plan.full_flops
    np.testing.assert_array_equal(flops.numpy(), r.flops)


def test_every_sample_stopping_at_the_first_exit_runs_nothing_after_it(tmp_path):
    g = adaptive_genome(0, threshold=0.34)  # 3 classes: max softmax >= 1/3 always
    raw = raw_rows(0, 16)
    r = reference(g, raw)
    assert (r.exit == 0).all()
    model = import_file(export_genome(g, tmp_path / "m.py", "python").path, "first").load()
    x = torch.from_numpy(((raw - MEAN) / STD).astype(np.float32))
    with torch.no_grad():
        out, flops = model.forward_flops(x)
    np.testing.assert_allclose(out.numpy(), r.outputs, rtol=TOL, atol=TOL)
    np.testing.assert_array_equal(flops.numpy(), r.flops)
    with torch.no_grad():
        empty, none = model.forward_flops(x[:0])
    assert empty.shape == (0, 3) and none.shape == (0,)


@pytest.mark.filterwarnings(
    "ignore:Initializing zero-element tensors:UserWarning"
)  # nn.Linear(0, 1)
def test_a_skip_gated_node_with_no_live_input_runs_all_or_nothing(tmp_path):
    g = adaptive_genome(2)
    n = skip_nodes(g)[0]
    for s in list(g.graph.predecessors(n)):
        g.graph.edges[s, n]["gate"] = np.float32(-1e4)  # closed (sigmoid exactly 0): n is constant
    live = active_structure(g)
    assert n in live.skips and not [e for e in live.edges if e[1] == n]
    raw = raw_rows(2)
    r = reference(g, raw)
    net = to_module(g, feature_mean=MEAN, feature_std=STD)
    model = import_file(
        export_genome(g, tmp_path / "m.py", "python", sidecar=stats()).path, "const"
    )
    assert f"node{n}_skip_bias" in net.state_dict()  # a bias-only gate
    ts = torch.jit.load(export_genome(g, tmp_path / "m.pt", "torchscript", sidecar=stats()).path)
    for m in (net, model.load(), ts):
        with torch.no_grad():
            out, flops = m.forward_flops(torch.from_numpy(raw))
        np.testing.assert_allclose(out.numpy(), r.outputs, rtol=TOL, atol=TOL)
        np.testing.assert_array_equal(flops.numpy(), r.flops)


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_all_paths_pt2_and_onnx_give_the_same_outputs(tmp_path, seed):
    g = adaptive_genome(seed)
    raw = raw_rows(seed, 37)
    r = reference(g, raw)
    res = export_genome(g, tmp_path / "m.pt2", "pt2", sidecar=stats(), all_paths=True)
    with torch.no_grad():
        out = torch.export.load(res.path).module()(torch.from_numpy(raw))
    np.testing.assert_allclose(out.numpy(), r.outputs, rtol=TOL, atol=TOL)
    info = res.sidecar["adaptive"]
    assert info["control_flow"] == "all-paths" and str(r.plan.full_flops) in info["flops"]
    with torch.no_grad():
        net = to_module(g, feature_mean=MEAN, feature_std=STD)
        np.testing.assert_allclose(
            net.all_paths(torch.from_numpy(raw)).numpy(), r.outputs, atol=TOL
        )
    if ONNX:
        import onnxruntime

        res = export_genome(g, tmp_path / "m.onnx", "onnx", sidecar=stats(), all_paths=True)
        session = onnxruntime.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
        out = session.run(["y"], {"x": raw})[0]
        np.testing.assert_allclose(out, r.outputs, rtol=TOL, atol=TOL)
        assert res.sidecar["adaptive"]["control_flow"] == "all-paths"


def test_the_files_run_in_a_process_without_hybrid(tmp_path):
    g = adaptive_genome(3)
    raw = raw_rows(3, 37)
    r = reference(g, raw)
    paths = [
        export_genome(g, tmp_path / f"m{suffix}", fmt, sidecar=stats(), all_paths=True).path
        for fmt, suffix in (("python", ".py"), ("torchscript", ".pt"), ("pt2", ".pt2"))
    ]
    outputs = predict_without_hybrid(paths, raw)
    for path in paths:
        assert not isinstance(outputs[path], str), outputs[path]
        np.testing.assert_allclose(outputs[path], r.outputs, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_static_formats_refuse_an_adaptive_genome_without_the_flag(tmp_path, fmt):
    with pytest.raises(ExportError) as exc:
        export_genome(adaptive_genome(0), tmp_path / f"m.{fmt}", fmt)
    message = str(exc.value)
    assert "\n" not in message and repr(fmt) in message and "all_paths=True" in message
    assert "--all-paths" in message
    assert not list(tmp_path.iterdir())


def test_thresholds_can_be_overridden_and_are_checked(tmp_path):
    g = adaptive_genome(8)
    raw = raw_rows(8)
    e = len(adaptive_plan(g).exits)
    res = export_genome(g, tmp_path / "m.py", "python", thresholds=0.9)
    assert res.sidecar["adaptive"]["thresholds"] == [0.9] * e
    r = reference(g, raw, np.full(e, 0.9))
    assert (r.exit != reference(g, raw).exit).any()  # the override changes where samples stop
    with torch.no_grad():
        out, flops = (
            import_file(res.path, "thr")
            .load()
            .forward_flops(torch.from_numpy(((raw - MEAN) / STD).astype(np.float32)))
        )
    np.testing.assert_allclose(out.numpy(), r.outputs, rtol=TOL, atol=TOL)
    np.testing.assert_array_equal(flops.numpy(), r.flops)
    for bad in (0.0, 1.5, float("nan"), {999: 0.5}):
        with pytest.raises(ExportError) as exc:
            export_genome(g, tmp_path / "bad.py", "python", thresholds=bad)
        assert "\n" not in str(exc.value) and "bad.py" in str(exc.value)
    with pytest.raises(ExportError, match="no exit nodes"):
        export_genome(gated_genome(), tmp_path / "plain.py", "python", thresholds=0.9)
    with pytest.raises(GenomeError, match=r"\(0, 1\]"):
        plan_adaptive(g, thresholds=2.0)


def test_an_adaptive_plan_is_refused_by_the_plain_module_and_source():
    plan = plan_export(adaptive_genome(0))
    with pytest.raises(ValueError, match="AdaptiveNet"):
        ExportedNet(plan)
    with pytest.raises(ValueError, match="adaptive=plan_adaptive"):
        render_python(plan, weights="w.pt", title="t")
    with pytest.raises(GenomeError, match="budgets"):
        to_module(adaptive_genome(0), budgets=True)


# ------------------------------------------------------------------ plain genomes
#: sha256 of the python export of tests.hybrid.test_export_module.gated_genome (version
#: blanked) and of its sidecar (versions dropped), as written before issue 16.
PLAIN_SOURCE = "60883a9f569a82703acf2ae42e92f58cbc5f15193d7bb117b4cf560505f308c9"
PLAIN_SIDECAR = "ac53606c5b02666ea5d6c526d2fc954f00bc4901910f23bcf203d579e56bae67"


def test_a_plain_genome_exports_exactly_as_before(tmp_path):
    side = {
        "feature_mean": MEAN,
        "feature_std": STD,
        "class_labels": ["a", "b", "c"],
        "genome_id": 7,
        "task": {"name": "iris", "kind": "classification"},
    }
    r = export_genome(gated_genome(), tmp_path / "model.py", "python", sidecar=side)
    text = r.path.read_text().replace(f"hybrid {__version__}", "hybrid VERSION")
    assert hashlib.sha256(text.encode()).hexdigest() == PLAIN_SOURCE
    info = {k: v for k, v in r.sidecar.items() if not k.endswith("_version")}
    assert hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest() == PLAIN_SIDECAR
    plan = plan_export(gated_genome())
    assert not plan.is_adaptive and not plan.exits and not plan.skips
    assert type(to_module(gated_genome())) is ExportedNet


# ------------------------------------------------------------------ command line
def make_run(tmp_path: Path, seed: int = 0) -> Path:
    """A run folder whose champion is an adaptive genome (4 features, 3 classes)."""
    run = tmp_path / "adaptive-run"
    g = adaptive_genome(seed)
    g.meta["id"] = 11
    save(g, run / "best" / "genome.json")
    (run / "best" / "metrics.json").write_text(json.dumps({**METRICS, "genome_id": 11}))
    config = loads_config('[run]\nseed = 1\n[task]\nname = "wine"\n[training]\ngate = "sigmoid"\n')
    (run / "config.toml").write_text(dump_config(config))
    task = {
        "name": "iris",
        "kind": "classification",
        "n_inputs": 4,
        "n_outputs": 3,
        "feature_mean": MEAN.tolist(),
        "feature_std": STD.tolist(),
        "class_labels": ["a", "b", "c"],
    }
    (run / "task.json").write_text(json.dumps(task))
    return run


@pytest.mark.parametrize(
    ("argv", "parts"),
    [
        (["--format", "onnx"], ("'onnx'", "--all-paths")),
        (["--format", "pt2"], ("'pt2'", "--all-paths")),
        (["--threshold", "1.5"], ("--threshold", "(0, 1]")),
        (["--threshold", "0"], ("--threshold", "(0, 1]")),
        (["--threshold", "x"], ("--threshold", "'x'")),
    ],
)
def test_bad_adaptive_exports_on_the_command_line_exit_2_with_one_line(
    tmp_path, capsys, argv, parts
):
    run = make_run(tmp_path)
    assert main(["export", str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hybrid export: error:")
    for part in parts:
        assert part in err
    assert not [p for p in (run / "best").iterdir() if p.name.startswith("model")]


def test_the_command_line_exports_all_paths_and_a_threshold(tmp_path, capsys):
    run = make_run(tmp_path)
    out = tmp_path / "out"
    assert main(["export", str(run), "--format", "pt2", "--all-paths", "--out", str(out)]) == 0
    assert "adaptive (all-paths)" in capsys.readouterr().out
    info = json.loads((out / "model.pt2.json").read_text())
    assert info["adaptive"]["control_flow"] == "all-paths" and info["genome_id"] == 11
    assert main(["export", str(run), "--threshold", "0.9", "--out", str(out)]) == 0
    info = json.loads((out / "model.py.json").read_text())
    assert info["adaptive"]["thresholds"] == [0.9] * len(info["adaptive"]["exits"])
    assert info["adaptive"]["control_flow"] == "data-dependent"
    result = export_run(run, out=tmp_path / "api", threshold=0.75)
    assert result.sidecar["adaptive"]["thresholds"] == [0.75] * len(info["adaptive"]["exits"])


def test_closed_inputs_missing_features_and_hard_concrete_gates(tmp_path):
    g = adaptive_genome(3)
    g.graph.nodes[g.input_id]["gate"][1] = -1e4  # input feature 1 closed under both gate kinds
    raw = raw_rows(3)
    raw[::5, 2] = np.nan  # filled with feature_fill[2]
    fill = [None, None, 0.75, None]
    filled = np.where(np.isnan(raw), np.array([0, 0, 0.75, 0], np.float32), raw)
    for gate in ("sigmoid", "hard_concrete"):
        assert len(plan_export(g, gate).input_index) == 3
        x = (filled.astype(np.float64) - MEAN) / STD
        r = evaluate_adaptive(g, x, gate)
        side = {**stats(), "feature_fill": fill}
        res = export_genome(g, tmp_path / f"{gate}.py", "python", gate, sidecar=side)
        ts = export_genome(g, tmp_path / f"{gate}.pt", "torchscript", gate, sidecar=side)
        for net in (import_file(res.path, f"fill_{gate}").load(), torch.jit.load(ts.path)):
            with torch.no_grad():
                out, flops = net.forward_flops(torch.from_numpy(raw))
            np.testing.assert_allclose(out.numpy(), r.outputs, rtol=TOL, atol=TOL)
            np.testing.assert_array_equal(flops.numpy(), r.flops)


# --------------------------------------------------------- dialling the cost
def make_wine_run(tmp_path: Path, seed: int = 0, exits: int = 2) -> Path:
    """A run folder on wine (13 features, 3 classes) whose champion is a random adaptive genome."""
    from hybrid.tasks import load_task

    run = tmp_path / f"wine-run-{seed}-{exits}"
    g = adaptive_genome(seed, n_inputs=13, n_outputs=3, exits=exits, skips=1)
    g.meta["id"] = 5
    save(g, run / "best" / "genome.json")
    (run / "best" / "metrics.json").write_text(json.dumps({**METRICS, "genome_id": 5}))
    config = loads_config('[run]\nseed = 1\n[task]\nname = "wine"\n[training]\ngate = "sigmoid"\n')
    (run / "config.toml").write_text(dump_config(config))
    data = load_task(config.task, 1)
    task = {"name": "wine", "kind": "classification", "n_inputs": 13, "n_outputs": 3,
            "feature_mean": [0.0] * 13, "feature_std": [1.0] * 13, "class_labels": [0, 1, 2]}  # fmt: skip
    (run / "task.json").write_text(json.dumps(task))
    assert data.X_val.shape[1] == 13
    return run


@pytest.mark.parametrize("share", [0.6, 0.8, 1.0])
def test_a_flops_share_fits_the_most_accurate_threshold_within_it_on_validation(tmp_path, share):
    from genomes.adaptive import threshold_for_flops
    from hybrid.config import load_config
    from hybrid.tasks import load_task

    run = make_wine_run(tmp_path)
    g = load(run / "best" / "genome.json")
    if not exit_nodes(g):
        pytest.skip("the factory grew no exit on this seed")
    data = load_task(load_config(run / "config.toml").task, 1)
    X = np.asarray(data.X_val, np.float64)
    r = evaluate_adaptive(g, X)
    want = threshold_for_flops(r.heads, r.output, data.y_val, r.stage_flops, share * r.plan.full_flops)
    if want is None:
        with pytest.raises(ExportError, match="no exit threshold"):
            export_run(run, out=tmp_path / "o", flops_share=share)
        return
    result = export_run(run, out=tmp_path / "o", flops_share=share)
    dial = result.sidecar["dial"]
    assert (dial["threshold"], dial["val_accuracy"], dial["val_average_flops"]) == want
    assert dial["val_average_flops"] <= share * dial["full_flops"]
    assert result.sidecar["adaptive"]["thresholds"] == [want[0]] * len(exit_nodes(g))
    # the written module runs at that cost: its per-input FLOPs on validation average to the fit's
    net = import_file(result.path).load()
    with torch.no_grad():
        _, flops = net.forward_flops(torch.tensor(np.asarray(data.X_val), dtype=torch.float32))
    assert float(flops.double().mean()) == pytest.approx(dial["val_average_flops"], rel=1e-6)


def test_the_command_line_dials_and_refuses_bad_shares_in_one_line(tmp_path, capsys):
    run = make_wine_run(tmp_path)
    assert main(["export", str(run), "--flops-share", "1", "--out", str(tmp_path / "o")]) == 0
    assert "dialled to 1 of the full path" in capsys.readouterr().out
    bad = [
        (["--flops-share", "0"], "(0, 1]"),
        (["--flops-share", "1.5"], "(0, 1]"),
        (["--flops-share", "half"], "'half'"),
        (["--flops-share", "0.5", "--threshold", "0.9"], "not both"),
        (["--flops-share", "0.0001"], "no exit threshold"),
    ]
    for argv, part in bad:
        assert main(["export", str(run), *argv, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and part in err, err
    for share in (0, 1.5, True, "0.5"):  # the Python API checks what the command line parsed
        with pytest.raises(ExportError, match="flops_share"):
            export_run(run, out=tmp_path / "bad", flops_share=share)
    plain = make_wine_run(tmp_path, exits=0)
    assert main(["export", str(plain), "--flops-share", "0.5", "--out", str(tmp_path / "p")]) == 2
    assert "no exit head" in capsys.readouterr().err
