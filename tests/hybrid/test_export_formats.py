"""Export writers and export_run: every format loads and predicts WITHOUT hybrid.

The round trips load the files in a separate Python process started with ``-S -E``
whose path is the standard library plus the folders holding torch, numpy (and
onnxruntime): no ``.pth`` files run, so the editable install of this repo is not
there, and the child checks that ``hybrid`` and ``genomes`` cannot be imported.
Its predictions must equal GenomeNet's within 1e-5.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genomes import ACTIVATIONS, Genome, InnovationTracker, active_structure, save
from hybrid.config import dump_config, loads_config
from hybrid.errors import HybridError, RunDirError
from hybrid.export import FORMATS, ExportError, export_genome, export_run
from hybrid.export import formats as formats_module
from hybrid.lineage import GenerationRow, GenomeRow, LineageWriter
from tests.hybrid.test_export_module import (
    MEAN,
    STD,
    gated_genome,
    import_file,
    raw_inputs,
    reference,
)

GATE = "hard_concrete"
LABELS = ["setosa", "versicolor", "virginica"]

LOADER = r"""
import importlib.util
import sys
import traceback

x_file, *args = sys.argv[1:]
paths = args[: args.index("--")]
sys.path.extend(args[args.index("--") + 1 :])  # plain entries: their .pth files never run
for name in ("hybrid", "genomes"):
    if importlib.util.find_spec(name) is not None:
        sys.exit(f"{name} is importable in the isolated process")
import numpy as np
import torch

torch.set_num_threads(1)


def predict(path, x):
    if path.endswith(".onnx"):
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return session.run(["y"], {"x": x})[0]
    if path.endswith(".py"):
        spec = importlib.util.spec_from_file_location("exported_model", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = module.load()
    elif path.endswith(".pt"):
        model = torch.jit.load(path)
    else:
        model = torch.export.load(path).module()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


x = np.load(x_file)
for path in paths:
    try:
        np.save(f"{path}.out.npy", predict(path, x))
    except Exception:
        with open(f"{path}.error.txt", "w") as f:
            f.write(traceback.format_exc())
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("hybrid", "genomes"))
if leaked:
    sys.exit(f"loading imported {leaked}")
"""


def _site_dirs() -> list[str]:
    """Return the folders holding the packages a plain user of an export would have."""
    dirs = []
    for name in ("torch", "numpy", "onnxruntime"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            folder = str(Path(spec.origin).parent.parent)
            if folder not in dirs:
                dirs.append(folder)
    return dirs


def predict_without_hybrid(paths: list[Path], x: np.ndarray) -> dict[Path, np.ndarray | str]:
    """Load exported files (format by suffix) in ONE fresh process that cannot import hybrid.

    Returns each file's predictions for ``x``, or the traceback its loading raised.
    """
    folder = paths[0].parent
    assert all(p.parent == folder for p in paths)
    np.save(folder / "x.npy", x)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["OMP_NUM_THREADS"] = "1"
    names = [p.name for p in paths]
    cmd = [sys.executable, "-S", "-E", "-c", LOADER, "x.npy", *names, "--", *_site_dirs()]
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results: dict[Path, np.ndarray | str] = {}
    for p in paths:
        error = folder / f"{p.name}.error.txt"
        results[p] = error.read_text() if error.exists() else np.load(folder / f"{p.name}.out.npy")
    return results


def sidecar() -> dict:
    return {
        "genome_id": 42,
        "run": {"name": "iris-demo", "path": "/runs/iris-demo"},
        "task": {"name": "iris", "kind": "classification"},
        "feature_mean": MEAN,
        "feature_std": STD,
        "class_labels": LABELS,
        "metrics": {"accuracy": 0.97},
    }


#: The formats loadable with torch alone, checked together in one child process.
TORCH_FORMATS = ("python", "torchscript", "pt2")
TEST_ROWS = 37  # a batch size unlike the export's example: the batch must be dynamic


def _available_formats() -> list[str]:
    onnx_ok = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))
    return [fmt for fmt in FORMATS if fmt != "onnx" or onnx_ok]


@pytest.fixture(scope="module")
def torch_round_trips(tmp_path_factory):
    """Export the gated genome in every torch format; load all in one process without hybrid."""
    folder = tmp_path_factory.mktemp("exports")
    paths = {
        fmt: export_genome(
            gated_genome(), folder / f"model{FORMATS[fmt][0]}", fmt, GATE, sidecar()
        ).path
        for fmt in TORCH_FORMATS
    }
    outputs = predict_without_hybrid(list(paths.values()), raw_inputs(TEST_ROWS))
    return {fmt: outputs[path] for fmt, path in paths.items()}


@pytest.mark.parametrize("fmt", TORCH_FORMATS)
def test_export_predicts_like_genome_net_in_a_process_without_hybrid(torch_round_trips, fmt):
    out = torch_round_trips[fmt]
    assert not isinstance(out, str), out
    expected = reference(gated_genome(), GATE, raw_inputs(TEST_ROWS))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif("onnx" not in _available_formats(), reason="needs the onnx extra")
def test_onnx_export_predicts_like_genome_net_in_onnxruntime(tmp_path):
    path = export_genome(gated_genome(), tmp_path / "model.onnx", "onnx", GATE, sidecar()).path
    out = predict_without_hybrid([path], raw_inputs(TEST_ROWS))[path]
    assert not isinstance(out, str), out
    expected = reference(gated_genome(), GATE, raw_inputs(TEST_ROWS))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_every_activation_and_a_constant_output_survive_every_format(tmp_path):
    cases = {
        act: Genome.minimal(4, 2, np.random.default_rng(3), InnovationTracker(), [3], act)
        for act in sorted(ACTIVATIONS)
    }
    constant = cases["constant"] = cases["identity"].copy()  # input edge closed: constant node
    constant.graph.edges[0, next(iter(constant.graph.successors(0)))]["gate"] = np.float32(-10)
    x = raw_inputs(TEST_ROWS)
    stats = {"feature_mean": MEAN, "feature_std": STD}
    paths = {
        export_genome(g, tmp_path / f"{name}{FORMATS[fmt][0]}", fmt, GATE, stats).path: name
        for name, g in cases.items()
        for fmt in _available_formats()
    }
    for path, out in predict_without_hybrid(list(paths), x).items():
        assert not isinstance(out, str), f"{path.name}: {out}"
        expected = reference(cases[paths[path]], GATE, x)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5, err_msg=path.name)


def test_every_format_has_a_round_trip_test():
    assert {*TORCH_FORMATS, "onnx"} == set(FORMATS)


def test_sidecar_records_task_run_size_and_files(tmp_path):
    g = gated_genome()
    result = export_genome(g, tmp_path / "out" / "model.py", "python", GATE, sidecar())
    assert [f.name for f in result.files] == ["model.py", "model.state_dict.pt", "model.py.json"]
    info = json.loads(result.files[-1].read_text())
    assert info == result.sidecar
    assert info["format"] == "hybrid.export" and info["export_format"] == "python"
    assert info["n_parameters"] == active_structure(g, GATE).n_parameters == result.n_parameters
    assert (info["n_inputs"], info["n_outputs"], info["gate"]) == (4, 3, GATE)
    assert info["feature_mean"] == MEAN.tolist() and info["feature_std"] == STD.tolist()
    assert info["class_labels"] == LABELS and info["metrics"] == {"accuracy": 0.97}
    assert (info["genome_id"], info["run"]["name"]) == (42, "iris-demo")
    assert 'CLASS_LABELS = ["setosa", "versicolor", "virginica"]' in result.path.read_text()


def _one_line_error(exc_info, *parts):
    message = str(exc_info.value)
    assert isinstance(exc_info.value, HybridError) and "\n" not in message
    for part in parts:
        assert part in message


def test_bad_requests_are_one_line_export_errors(tmp_path):
    g = gated_genome()
    with pytest.raises(ExportError) as exc:
        export_genome(g, tmp_path / "m.bin", "keras", GATE)
    _one_line_error(exc, "m.bin", "keras", "python")
    with pytest.raises(ExportError) as exc:
        export_genome(g, tmp_path / "m.onnx", "python", GATE)
    _one_line_error(exc, "m.onnx", "'.py'")
    with pytest.raises(ExportError) as exc:
        export_genome(g, tmp_path / "m.py", "python", GATE, {"class_labels": ["a", "b"]})
    _one_line_error(exc, "class_labels should have 3 entries")
    with pytest.raises(ExportError) as exc:
        export_genome(g, tmp_path / "m.py", "python", GATE, {"feature_std": [1.0] * 3})
    _one_line_error(exc, "m.py", "feature_std should have 4 values")


def test_onnx_without_the_extra_names_the_install_command(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        formats_module.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxscript" else real(name, *a),
    )
    with pytest.raises(ExportError) as exc:
        export_genome(gated_genome(), tmp_path / "m.onnx", "onnx", GATE)
    _one_line_error(exc, "m.onnx", "onnxscript", 'pip install -c constraints.txt -e ".[onnx]"')
    assert not (tmp_path / "m.onnx").exists()


# ------------------------------------------------------------------ export_run
#: A finished run's best/metrics.json.
METRICS = {
    "genome_id": 42, "generation": 3, "val_metric": 0.9, "val_loss": 0.3, "test_metric": 0.95,
    "test_loss": 0.2, "metric": "accuracy", "active_parameters": 53, "flops": 100, "generations": 4,
    "stop_reason": "generations", "elapsed_s": 1.5,
}


def make_run(tmp_path: Path, gate: str = GATE, genome_id: int = 42) -> Path:
    """Write the files of a run folder that export_run reads; return the folder."""
    run = tmp_path / "iris-run"
    g = gated_genome()
    g.meta["id"] = genome_id
    save(g, run / "best" / "genome.json")
    (run / "best" / "metrics.json").write_text(json.dumps(METRICS))
    config = loads_config(f'[run]\nseed = 1\n[task]\nname = "wine"\n[training]\ngate = "{gate}"\n')
    (run / "config.toml").write_text(dump_config(config))
    task = {
        "name": "iris",
        "kind": "classification",
        "n_inputs": 4,
        "n_outputs": 3,
        "feature_mean": MEAN.tolist(),
        "feature_std": STD.tolist(),
        "class_labels": LABELS,
    }
    (run / "task.json").write_text(json.dumps(task))
    return run


def test_export_run_writes_the_champion_next_to_it(tmp_path):
    run = make_run(tmp_path)
    result = export_run(run)
    assert result.path == run / "best" / "model.py"
    info = result.sidecar
    assert (info["genome_id"], info["gate"], info["task"]) == (
        42,
        GATE,
        {"name": "iris", "kind": "classification"},
    )
    assert info["metrics"]["test_metric"] == 0.95 and info["run"]["name"] == "iris-run"
    x = raw_inputs(9)
    model = import_file(result.path, "run_export").load()
    out = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(out, reference(gated_genome(), GATE, x), rtol=1e-5, atol=1e-5)


def test_export_run_out_may_be_a_folder_or_a_file(tmp_path):
    run = make_run(tmp_path)
    assert export_run(run, fmt="pt2", out=tmp_path / "dist").path == tmp_path / "dist" / "model.pt2"
    assert export_run(run, fmt="torchscript", out=tmp_path / "a.pt").path == tmp_path / "a.pt"


def test_export_run_names_the_missing_or_broken_file(tmp_path):
    run = make_run(tmp_path)
    good = (run / "config.toml").read_text()
    (run / "config.toml").write_text('[training]\ngate = "sigmoid"\n')
    with pytest.raises(HybridError) as exc:
        export_run(run)
    _one_line_error(exc, "config.toml", "[task]")
    (run / "config.toml").write_text(good)
    (run / "task.json").unlink()
    with pytest.raises(RunDirError) as exc:
        export_run(run)
    _one_line_error(exc, str(run / "task.json"))
    with pytest.raises(RunDirError) as exc:
        export_run(tmp_path / "nope")
    _one_line_error(exc, "nope", "no such run folder")


def test_export_run_refuses_a_task_that_does_not_fit_the_genome(tmp_path):
    run = make_run(tmp_path)
    task = json.loads((run / "task.json").read_text())
    five = {"n_inputs": 5, "feature_mean": [0.0] * 5, "feature_std": [1.0] * 5}
    (run / "task.json").write_text(json.dumps({**task, **five}))
    with pytest.raises(RunDirError) as exc:
        export_run(run)
    _one_line_error(exc, "task.json", "n_inputs is 5")


def write_lineage(run: Path) -> None:
    """Store generation 0 of two genomes in the run's lineage; only 7 keeps its weights."""
    writer = LineageWriter(run / "lineage.sqlite")
    rows = [
        GenomeRow(i, 0, (), (), 0, "ok", 0.5, 0.4, 0.9, 53, 100, gated_genome(seed=i), i == 7)
        for i in (7, 8)
    ]
    writer.write_generation(rows, GenerationRow(0, 7, 0.9, 0.8, 1, 3.0, 1.0, {}))
    writer.close()


def test_export_run_exports_any_stored_genome_from_the_lineage(tmp_path):
    run = make_run(tmp_path)
    write_lineage(run)
    result = export_run(run, genome="7", fmt="python")
    assert result.path == run / "exports" / "genome_7.py"
    assert result.sidecar["genome_id"] == 7
    assert result.sidecar["metrics"]["val_metric"] == 0.9
    x = raw_inputs(9)
    out = import_file(result.path, "lineage_export").load()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(out, reference(gated_genome(seed=7), GATE, x), rtol=1e-5, atol=1e-5)


def test_export_run_of_a_genome_without_weights_is_a_one_line_error(tmp_path):
    run = make_run(tmp_path)
    write_lineage(run)
    with pytest.raises(HybridError) as exc:
        export_run(run, genome=8)
    _one_line_error(exc, "8")
    with pytest.raises(HybridError) as exc:
        export_run(run, genome="latest")
    _one_line_error(exc, "'best' or an integer genome id")
