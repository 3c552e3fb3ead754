"""Bottleneck growth in the search: grow mode end to end, determinism, kill + resume.

A tiny circles search with the three bottleneck operators on, and ``hybrid grow`` on
the same task: the lineage records the operators with their figures, the same seed
gives the same run, a run killed mid-generation resumes to the same run, and a
sequence task refuses them in one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hybrid.cli import main
from hybrid.config import loads_config
from hybrid.lineage.reader import open as open_lineage
from hybrid.search import Search
from tests.hybrid.tiny import tiny_toml

BOTTLENECK = """
grow_bottleneck = 0.5
add_node_bottleneck = 0.3
add_edge_bottleneck = 0.3
bottleneck_batch = 32
"""


def _toml(tmp_path: Path, generations: int = 4) -> str:
    text = tiny_toml(tmp_path, seed=0, generations=generations, steps=20, engine="batched")
    return text.replace("[mutation]\n", "[mutation]\n" + BOTTLENECK, 1)


def _ops(run: Path) -> list:
    return [op for rec in open_lineage(run).records() for op in rec.operators]


def _stats(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]


def test_search_records_bottleneck_growth_and_repeats_itself(tmp_path: Path) -> None:
    a = Search.start(loads_config(_toml(tmp_path / "a"), source="a.toml")).run()
    b = Search.start(loads_config(_toml(tmp_path / "b"), source="b.toml")).run()
    grown = [op for op in _ops(a.run_dir) if op.op.endswith("bottleneck")]
    assert grown, "no bottleneck growth in 4 generations of 8 members"
    for op in grown:
        assert op.args["gamma"] > 0 and op.args["realised"] >= 0.5 * op.args["predicted"]
    assert _stats(a.run_dir) == _stats(b.run_dir)
    assert a.test_metric == b.test_metric and a.active_parameters == b.active_parameters


def test_grow_command_grows_one_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "g.toml"
    text = _toml(tmp_path, generations=5).replace("population = 8", "population = 1")
    for blind in ("add_node", "widen", "add_edge"):  # only bottleneck growth
        text = text.replace(f"{blind} = 0.3", f"{blind} = 0.0")
    cfg.write_text(text)
    assert main(["grow", str(cfg), "--plain", "--name", "g"]) == 0
    run = tmp_path / "g"
    assert [sum(s["species_sizes"].values()) for s in _stats(run)] == [1] * 5
    ops = _ops(run)
    assert not any(op.op in ("elite", "crossover") for op in ops)
    assert any(op.op.endswith("bottleneck") for op in ops)
    assert (run / "best" / "genome.json").exists()
    assert main(["lineage", str(run), "best"]) == 0
    assert "bottleneck(" in capsys.readouterr().out


def test_grow_mode_settings_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text(tiny_toml(tmp_path, seed=0, generations=2, steps=5, engine="batched"))
    code = main(["grow", str(cfg), "--plain"])  # no bottleneck rate: nothing would grow
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "mutation.grow_bottleneck" in err[0] and "g.toml" in err[0]


def test_sequence_task_refuses_bottleneck_growth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text('[task]\nname = "parity"\n\n[evolution]\npopulation = 4\ngenerations = 1\n\n'
                   '[mutation]\ngrow_bottleneck = 0.1\n')  # fmt: skip
    code = main(["run", str(cfg), "--plain", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "mutation.grow_bottleneck" in err[0]


@pytest.mark.slow
def test_sigkill_then_resume_with_bottleneck_growth_gives_the_same_run(tmp_path: Path) -> None:
    ref = Search.start(loads_config(_toml(tmp_path / "ref", generations=6), source="r.toml")).run()
    cfg = tmp_path / "kill.toml"
    cfg.write_text(_toml(tmp_path / "k", generations=6))
    run = tmp_path / "k" / "tiny"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hybrid", "run", str(cfg), "--plain"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (run / "stats.jsonl").exists() and len(_stats(run)) >= 2:
            break
        if proc.poll() is not None:
            pytest.fail("run ended before it could be killed")
        time.sleep(0.02)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out = subprocess.run([sys.executable, "-m", "hybrid", "resume", str(run), "--plain"], capture_output=True,
                         text=True, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert _stats(run) == _stats(ref.run_dir)
