"""A run folder cannot be corrupted, escaped or faked: the writer lock, atomic creation,
confinement, stale temp files, strict JSON, escaped HTML and injection-proof export."""

from __future__ import annotations

import ast
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from genomes import Genome, InnovationTracker
from hybrid.cli import main
from hybrid.config import loads_config
from hybrid.errors import RunDirError
from hybrid.export import ExportError, export_genome
from hybrid.rundir import create_run_dir, dumps_json, open_run_dir
from tests.hybrid.test_bad_input_runs import make_finished_run

CONFIG = loads_config('[task]\nname = "xor"\n[run]\nname = "r"\nseed = 4\n')


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_finished_run(tmp_path_factory.mktemp("finished"))


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    path = tmp_path / "runs" / "tiny"
    shutil.copytree(finished, path, symlinks=True)
    return path


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(("run folder:", "gen "))]
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def _hold_lock(path: Path) -> subprocess.Popen[str]:
    """Start another process that holds ``path``'s writer lock until killed."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from hybrid.rundir import open_run_dir
        run = open_run_dir({str(path)!r}, writer=True)
        print("locked", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


# ------------------------------------------------------------------ the lock
def test_a_second_writer_is_refused_with_the_holders_pid_and_a_killed_holder_leaves_no_lock(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = (run / "stats.jsonl").read_bytes()
    holder = _hold_lock(run)
    try:
        assert main(["resume", str(run), "--plain"]) == 2
        line = _one_line(capsys)
        assert f"pid {holder.pid}" in line and "in use" in line
        cfg = run.parent.parent / "tiny.toml"
        cfg.write_text((run / "config.toml").read_text())
        assert main(["run", str(cfg), "--overwrite", "--plain", "--runs-dir", str(run.parent)]) == 2
        assert f"pid {holder.pid}" in _one_line(capsys)
        assert (run / "stats.jsonl").read_bytes() == stats  # nothing interleaved, nothing replaced
        # readers never take the lock and never block
        assert main(["status", str(run)]) == 0
        assert main(["lineage", str(run)]) == 0
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # SIGKILL dropped the lock: no stale lock to clean by hand
    writer = open_run_dir(run, writer=True)
    assert writer.is_writer
    writer.close()


def test_two_concurrent_resumes_one_is_refused_and_stats_hold_each_generation_once(
    finished: Path, tmp_path: Path
) -> None:
    run = tmp_path / "runs" / "tiny"
    shutil.copytree(finished, run, symlinks=True)
    # make the run unfinished with more generations to go, from its generation-0 checkpoint
    shutil.rmtree(run / "best")
    (run / "best").mkdir()
    shutil.rmtree(run / "checkpoints" / "gen_000001")
    text = (run / "config.toml").read_text().replace("generations = 2", "generations = 4")
    (run / "config.toml").write_text(text)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # whatever found hybrid and its deps
    cmd = [sys.executable, "-m", "hybrid", "resume", str(run), "--plain"]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    if codes == [0, 0]:  # the first finished before the second started: no overlap to test
        pytest.skip("the two resumes did not overlap on this machine")
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "in use by another hybrid process" in refused and "Traceback" not in refused
    gens = [json.loads(line)["generation"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert gens == [0, 1, 2, 3]


def test_a_live_run_is_never_overwritten_in_process(tmp_path: Path) -> None:
    first = create_run_dir(tmp_path, "r", CONFIG)
    first.append_stats({"generation": 0})
    with pytest.raises(RunDirError, match="in use"):
        create_run_dir(tmp_path, "r", CONFIG, overwrite=True)
    with pytest.raises(RunDirError, match="in use"):
        open_run_dir(tmp_path / "r", writer=True)
    assert len(first.read_stats()) == 1
    first.close()
    create_run_dir(tmp_path, "r", CONFIG, overwrite=True).close()


# ------------------------------------------------------------ atomic creation
def test_a_creation_killed_before_the_rename_leaves_no_run_folder_and_run_starts_afresh(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    leftover = runs / ".tiny.abc123.build"
    (leftover / "checkpoints").mkdir(parents=True)
    (leftover / "best").mkdir()
    cfg = tmp_path / "tiny.toml"
    from tests.hybrid.tiny import tiny_toml

    cfg.write_text(tiny_toml(runs, generations=1, steps=3))
    assert main(["resume", str(runs / "tiny")]) == 2
    assert "no such run folder" in _one_line(capsys)
    assert main(["run", str(cfg), "--plain"]) == 0  # no --overwrite needed
    assert not leftover.exists() and (runs / "tiny" / "best" / "genome.json").is_file()
    assert sorted(p.name for p in runs.iterdir()) == ["tiny"]


def test_a_folder_left_by_a_kill_between_mkdir_and_config_is_named_and_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    for sub in ("checkpoints", "best"):  # what the old creation made before config.toml
        (runs / "tiny" / sub).mkdir(parents=True)
    assert main(["resume", str(runs / "tiny")]) == 2
    assert "creation was interrupted" in _one_line(capsys)
    from tests.hybrid.tiny import tiny_toml

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_toml(runs, generations=1, steps=3))
    assert main(["run", str(cfg), "--plain"]) == 0
    assert (runs / "tiny" / "config.toml").is_file()


def test_a_failing_creation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hybrid.rundir._create as rundir

    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # a Ctrl-C between the folders and config.toml

    monkeypatch.setattr(rundir, "atomic_write", boom)
    with pytest.raises(KeyboardInterrupt):
        create_run_dir(tmp_path, "r", CONFIG, task={"name": "xor"})
    assert list(tmp_path.iterdir()) == []


def test_creation_writes_task_json_and_the_usual_modes(tmp_path: Path) -> None:
    info = {
        "name": "xor", "kind": "classification", "n_inputs": 2, "n_outputs": 2,
        "feature_mean": [0.0, 0.0], "feature_std": [1.0, 1.0], "class_labels": ["0", "1"],
    }
    run = create_run_dir(tmp_path, "r", CONFIG, task=info)
    assert run.read_task().n_inputs == 2 and run.is_writer
    assert (run.path.stat().st_mode & 0o777) == (0o777 & ~_umask())
    run.close()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------- confinement
def test_symlinks_leading_outside_are_refused_and_the_outside_is_untouched(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep me")
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").symlink_to(outside)
    assert main(["resume", str(run), "--plain"]) == 2
    assert "outside the run folder" in _one_line(capsys)
    assert main(["export", str(run)]) == 2
    assert "outside the run folder" in _one_line(capsys)
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    (run / "checkpoints").unlink()
    (run / "checkpoints").mkdir()
    from hybrid.rundir import RunDir

    with pytest.raises(RunDirError, match="outside"):
        RunDir(run).child("../precious/keep.txt")
    assert RunDir(run).child("best/genome.json") == run / "best" / "genome.json"


def test_a_run_folder_named_by_a_relative_path_is_read_and_written_in_place(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    rel = "runs/tiny"
    assert main(["report", rel]) == 0 and (run / "report.html").is_file()
    assert main(["export", rel]) == 0 and (run / "best" / "model.py").is_file()
    assert not (run / "runs").exists()  # nothing written under a doubled "runs/tiny/runs/tiny"
    capsys.readouterr()
    # a checkpoint entry leading outside is caught through a relative path too
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (run / "checkpoints" / "gen_999999").symlink_to(outside)
    assert main(["resume", rel, "--plain"]) == 2
    assert "outside the run folder" in _one_line(capsys)


def test_a_writer_cleans_temp_files_a_kill_left_in_best(run: Path) -> None:
    stale = run / "best" / ".genome.json.k1ll3d.tmp"
    stale.write_text("{half")
    open_run_dir(run)  # a reader leaves them alone
    assert stale.exists()
    writer = open_run_dir(run, writer=True)
    assert not stale.exists() and (run / "best" / "genome.json").exists()
    writer.close()


# ---------------------------------------------------------------- strict JSON
def test_nan_and_inf_become_null_with_the_reason_in_best_metrics(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path, "r", CONFIG)
    g = Genome.minimal(2, 2, np.random.default_rng(0), InnovationTracker())
    g.meta["id"] = 3
    metrics = {
        "genome_id": 3, "generation": 0, "val_metric": float("nan"), "val_loss": float("inf"),
        "test_metric": np.float32("nan"), "test_loss": 0.5, "metric": "accuracy", "active_parameters": 6,
        "flops": 8, "generations": 1, "stop_reason": "generations", "elapsed_s": 0.1,
    }
    run.write_best(g, metrics)
    text = run.best_metrics_path.read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert data["val_metric"] is None and data["test_metric"] is None
    assert data["not_finite"] == {"val_metric": "nan", "val_loss": "inf", "test_metric": "nan"}
    back = run.read_best_metrics()
    assert back is not None and back.test_metric is None and back.test_loss == 0.5
    run.close()


def test_dumps_json_never_writes_nan() -> None:
    text = dumps_json({"a": [1.0, float("-inf")], "b": {"c": float("nan")}}, indent=None)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["not_finite"] == {"a[1]": "-inf", "b.c": "nan"}
    assert not math.isnan(json.loads(dumps_json({"x": 1.5}))["x"])


# ---------------------------------------------------------------- HTML escaping
def test_a_script_in_a_handed_over_lineage_comes_out_inert_in_the_report(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = "<script>alert(1)</script>"
    conn = sqlite3.connect(run / "lineage.sqlite")
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'task'", (json.dumps(payload),))
        conn.execute("UPDATE genomes SET operators = ?", (json.dumps([{"op": payload, "args": {"x": payload}}]),))
    conn.close()
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# -------------------------------------------------------------- export injection
def test_a_crafted_meta_id_cannot_inject_code_into_the_exported_module(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    g = json.loads((run / "best" / "genome.json").read_text())
    g["meta"]["id"] = '1."""\nimport os; os.system("echo pwned")\n"""'
    (run / "best" / "genome.json").write_text(json.dumps(g))
    assert main(["export", str(run)]) == 2
    assert "meta.id" in _one_line(capsys)
    assert not (run / "best" / "model.py").exists()


@pytest.mark.parametrize(
    "name", ['x"""\nimport os\n"""', "a\\", 'q"', "line\nbreak", "\"\"\"; __import__('os')"]
)
def test_run_and_task_names_enter_the_module_as_escaped_text(tmp_path: Path, name: str) -> None:
    g = Genome.minimal(2, 2, np.random.default_rng(0), InnovationTracker())
    sidecar = {"genome_id": name, "run": {"name": name}, "task": {"name": name, "kind": "classification"}}
    result = export_genome(g, tmp_path / "m.py", "python", "sigmoid", sidecar)
    tree = ast.parse(result.path.read_text())
    imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert imported == {"torch"}  # only the module's own import: the name stayed text
    assert not any(isinstance(n, ast.Call) and getattr(n.func, "id", "") == "__import__" for n in ast.walk(tree))


def test_a_nan_class_label_or_weight_is_refused(tmp_path: Path) -> None:
    g = Genome.minimal(2, 2, np.random.default_rng(0), InnovationTracker())
    with pytest.raises(ExportError, match="class label"):
        export_genome(g, tmp_path / "m.py", "python", "sigmoid", {"class_labels": [float("nan"), 1]})
    out = g.output_id
    g.graph.nodes[out]["bias"] = np.full_like(g.graph.nodes[out]["bias"], np.inf)
    with pytest.raises(ExportError, match="NaN or inf") as info:
        export_genome(g, tmp_path / "m.py", "python", "sigmoid")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "m.py").exists()
