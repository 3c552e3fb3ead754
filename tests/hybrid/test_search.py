"""The generation loop: determinism, exact population size, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from genomes import load
from hybrid.config import loads_config
from hybrid.errors import ConfigError
from hybrid.generation import initial_state
from hybrid.lineage import LineageWriter
from hybrid.search import Search, reproducible
from hybrid.tasks import load_task
from tests.hybrid.tiny import tiny_toml


def _config(tmp_path: Path, seed: int = 0, generations: int = 3, steps: int = 20, engine: str = "batched", name: str = "tiny"):
    text = tiny_toml(tmp_path, seed=seed, generations=generations, steps=steps, engine=engine)
    return loads_config(text, source="tiny.toml", overrides={"run.name": name})


def _run(tmp_path: Path, **kw) -> tuple[list[dict], dict]:
    search = Search.start(_config(tmp_path, **kw))
    result = search.run()
    stats = [json.loads(line) for line in (result.run_dir / "stats.jsonl").read_text().splitlines()]
    metrics = json.loads((result.run_dir / "best" / "metrics.json").read_text())
    return stats, metrics


def test_same_seed_gives_identical_stats_and_champion(tmp_path: Path) -> None:
    s1, m1 = _run(tmp_path, name="a")
    s2, m2 = _run(tmp_path, name="b")
    assert s1 == s2
    for key in ("genome_id", "val_metric", "test_metric", "active_parameters"):
        assert m1[key] == m2[key]
    assert load(tmp_path / "a" / "best" / "genome.json") == load(tmp_path / "b" / "best" / "genome.json")


def test_reproducible_asks_for_deterministic_kernels_on_cuda_only_and_restores_the_setting() -> None:
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    seen = []
    for device, on in (("cuda", True), ("cuda:1", True), ("cpu", True), ("cuda", False)):
        with reproducible(device, on):
            seen.append(torch.are_deterministic_algorithms_enabled())
        assert (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) == before
    assert seen == [True, True, before[0], before[0]]
    with pytest.raises(RuntimeError), reproducible("cuda"):  # restored on the way out of an error too
        raise RuntimeError("boom")
    assert torch.are_deterministic_algorithms_enabled() == before[0]


def test_run_deterministic_takes_a_boolean(tmp_path: Path) -> None:
    assert _config(tmp_path).run.deterministic is True
    text = tiny_toml(tmp_path, seed=0, generations=1, steps=5, engine="batched")
    off = loads_config(text.replace("[run]\n", "[run]\ndeterministic = false\n", 1), source="t.toml")
    assert off.run.deterministic is False
    with pytest.raises(ConfigError, match="run.deterministic"):
        loads_config(text.replace("[run]\n", '[run]\ndeterministic = "sometimes"\n', 1), source="t.toml")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_same_seed_on_cuda_gives_identical_stats(tmp_path: Path) -> None:
    """CUDA's atomic scatter-adds vary the summation order; ``run.deterministic`` fixes it."""
    runs = []
    for name in ("a", "b"):
        cfg = loads_config(
            tiny_toml(tmp_path, seed=0, generations=3, steps=60, engine="batched"),
            source="tiny.toml",
            overrides={"run.name": name, "run.device": "cuda"},
        )
        result = Search.start(cfg).run()
        runs.append((result.run_dir / "stats.jsonl").read_text())
    assert runs[0] == runs[1]


def test_different_seeds_give_different_runs(tmp_path: Path) -> None:
    s1, _ = _run(tmp_path, name="a", seed=0)
    s2, _ = _run(tmp_path, name="b", seed=1)
    for stats in (s1, s2):  # both complete, sound runs ...
        assert [r["generation"] for r in stats] == [0, 1, 2]
        assert all(0.0 <= r["best_metric"] <= 1.0 and r["n_failed"] == 0 for r in stats)
    # ... that start from different initial weights: the seed reaches generation 0
    configs = [_config(tmp_path, seed=seed) for seed in (0, 1)]
    first = [
        [m.genome for m in initial_state(c, load_task(c.task, c.run.seed)).members] for c in configs
    ]
    assert [g.structure_key() for g in first[0]] == [g.structure_key() for g in first[1]]
    assert any(
        not np.array_equal(a.graph.edges[e]["weight"], b.graph.edges[e]["weight"])
        for a, b in zip(*first, strict=True)
        for e in a.graph.edges
    )
    assert s1 != s2


def test_population_size_is_exact_every_generation(tmp_path: Path) -> None:
    search = Search.start(_config(tmp_path, generations=4))
    sizes = []
    search.run(lambda s: sizes.append(sum(s["species_sizes"].values())))
    assert sizes == [8, 8, 8, 8]
    w = LineageWriter(tmp_path / "tiny" / "lineage.sqlite")
    per_gen = dict(w.conn.execute("SELECT generation, COUNT(*) FROM genomes GROUP BY generation"))
    assert per_gen == {0: 8, 1: 8, 2: 8, 3: 8}


def test_champion_is_scored_on_the_test_split_and_saved(tmp_path: Path) -> None:
    stats, metrics = _run(tmp_path)
    assert metrics["stop_reason"] == "generations"
    assert metrics["genome_id"] == stats[-1]["champion_id"]
    assert 0.0 <= metrics["test_metric"] <= 1.0
    genome = load(tmp_path / "tiny" / "best" / "genome.json")
    assert genome.n_inputs == 2 and genome.n_outputs == 2


def test_target_metric_stops_early(tmp_path: Path) -> None:
    text = tiny_toml(tmp_path, seed=0, generations=50, steps=30, engine="batched")
    config = loads_config(text.replace("elitism = 1", "elitism = 1\ntarget_metric = 0.5"), source="t.toml")
    result = Search.start(config).run()
    assert result.stop_reason == "target_metric" and result.generations < 50


def test_loop_engine_matches_batched_engine(tmp_path: Path) -> None:
    # Sigmoid gates: deterministic, so both engines must follow the same trajectory.
    cfg_b = _config(tmp_path, name="b", steps=10)
    cfg_l = _config(tmp_path, name="l", steps=10, engine="loop")
    patch = {"training": {"gate": "sigmoid", "penalty": 0.0}}
    cfg_b = cfg_b.model_copy(update={"training": cfg_b.training.model_copy(update=patch["training"])})
    cfg_l = cfg_l.model_copy(update={"training": cfg_l.training.model_copy(update=patch["training"])})
    rb, rl = Search.start(cfg_b).run(), Search.start(cfg_l).run()
    assert rb.champion_id == rl.champion_id
    assert rb.test_metric == pytest.approx(rl.test_metric, abs=1e-6)


def _stats(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]


def test_sigkill_mid_generation_then_resume_gives_the_same_run(tmp_path: Path) -> None:
    ref_stats, ref_metrics = _run(tmp_path, name="ref", generations=6, steps=60)
    cfg = tmp_path / "kill.toml"
    cfg.write_text(tiny_toml(tmp_path, seed=0, generations=6, steps=60, engine="batched"))
    run = tmp_path / "kill"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "hybrid", "run", str(cfg), "--name", "kill", "--plain"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until two generations are on disk
        if (run / "stats.jsonl").exists() and len(_stats(run)) >= 2:
            break
        if proc.poll() is not None:
            pytest.fail("run ended before it could be killed")
        time.sleep(0.02)
    time.sleep(0.05)  # into the next generation
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(_stats(run)) < 6, "killed too late to test anything"
    out = subprocess.run([sys.executable, "-m", "hybrid", "resume", str(run), "--plain"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert _stats(run) == ref_stats
    metrics = json.loads((run / "best" / "metrics.json").read_text())
    for key in ("genome_id", "val_metric", "test_metric", "active_parameters", "generations"):
        assert metrics[key] == ref_metrics[key]
    assert load(run / "best" / "genome.json") == load(tmp_path / "ref" / "best" / "genome.json")


def test_members_of_stagnant_species_are_recorded_as_pruned_and_leave_no_children(tmp_path: Path) -> None:
    text = tiny_toml(tmp_path, seed=0, generations=5, steps=10, engine="batched")
    text = text.replace("target_species = 2", "target_species = 4\nstagnation = 1")
    Search.start(loads_config(text, source="t.toml")).run()
    w = LineageWriter(tmp_path / "tiny" / "lineage.sqlite")
    rows = list(w.conn.execute("SELECT id, generation, status, parents FROM genomes"))
    pruned = {i for i, _, status, _ in rows if status == "pruned"}
    assert pruned, "stagnation = 1 should drop some species"
    parents = {p for *_, ps in rows for p in json.loads(ps)}
    assert not pruned & parents


def test_ctrl_c_stops_cleanly_and_resume_finishes_the_same_run(tmp_path: Path) -> None:
    ref_stats, ref_metrics = _run(tmp_path, name="ref", generations=6, steps=60)
    cfg = tmp_path / "int.toml"
    cfg.write_text(tiny_toml(tmp_path, seed=0, generations=6, steps=60, engine="batched"))
    run = tmp_path / "int"
    cmd = [sys.executable, "-m", "hybrid", "run", str(cfg), "--name", "int", "--plain"]
    # SIGINT at its default in the child: a parent that ignores it (a pytest-xdist worker, a
    # background shell job) passes that on, and Python then raises no KeyboardInterrupt
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ((run / "stats.jsonl").exists() and _stats(run)):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt landed")
    assert proc.returncode == 130
    assert "Traceback" not in err and "hybrid resume" in err
    done = subprocess.run([sys.executable, "-m", "hybrid", "resume", str(run), "--plain"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _stats(run) == ref_stats
    assert json.loads((run / "best" / "metrics.json").read_text())["genome_id"] == ref_metrics["genome_id"]


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_the_start(tmp_path: Path) -> None:
    ref_stats, ref_metrics = _run(tmp_path, name="ref")
    Search.start(_config(tmp_path, name="early"))  # created, then "killed" before generation 0 ended
    result = Search.resume(tmp_path / "early").run()
    assert _stats(tmp_path / "early") == ref_stats
    assert result.champion_id == ref_metrics["genome_id"]


def test_joblib_per_genome_path_matches_the_batched_engine(tmp_path: Path) -> None:
    # Sigmoid gates are deterministic: per-genome jobs in worker processes and the
    # batched engine follow the same minibatches, so the runs agree to float tolerance.
    runs = {}
    for backend in ("none", "joblib"):
        text = tiny_toml(tmp_path, steps=10, gate="sigmoid", backend=backend)
        runs[backend] = Search.start(loads_config(text, source="t.toml", overrides={"run.name": backend})).run()
    assert runs["none"].champion_id == runs["joblib"].champion_id
    assert runs["none"].test_metric == pytest.approx(runs["joblib"].test_metric, abs=1e-6)
    s_batched, s_joblib = _stats(tmp_path / "none"), _stats(tmp_path / "joblib")
    assert [s["best_id"] for s in s_batched] == [s["best_id"] for s in s_joblib]
    for a, b in zip(s_batched, s_joblib, strict=True):
        assert a["best_metric"] == pytest.approx(b["best_metric"], abs=1e-6)


def test_time_budget_stops_after_the_generation_that_spends_it(tmp_path: Path) -> None:
    text = tiny_toml(tmp_path, generations=50, steps=5).replace("elitism = 1", "elitism = 1\ntime_budget_s = 1e-6")
    config = loads_config(text, source="t.toml")
    result = Search.start(config).run()
    assert (result.stop_reason, result.generations) == ("time_budget", 1)
    assert len(_stats(tmp_path / "tiny")) == 1
    assert json.loads((tmp_path / "tiny" / "best" / "metrics.json").read_text())["stop_reason"] == "time_budget"
