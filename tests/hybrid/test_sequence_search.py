"""Sequence tasks through the search: recurrent training, growth, schedules, config checks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from genomes import Genome, InnovationTracker, MutationConfig, add_recurrent_edge
from hybrid.config import load_config
from hybrid.errors import ConfigError
from hybrid.growth import ReserveEdit, _as_genomes, _load_moments, _replay
from hybrid.population import RecurrentEngine
from hybrid.population.adam import BatchedAdamW
from hybrid.search import Search

TOML = """
[run]
name = "seq"
seed = {seed}
runs_dir = "{runs}"

[task]
name = "{task}"
n_samples = {n_samples}
{extra_task}

[genome]
hidden = [2]
activation = "tanh"
recurrent = true

[training]
steps = 12
bptt = 8
growth = "{growth}"
reserve_every = 4
reserve_p_add = 1.0
reserve_p_delete = 1.0
reserve_threshold = 0.5

[evolution]
population = 4
generations = {generations}
elitism = 1

[mutation]
widen = 0.3
add_recurrent_edge = 0.3
"""


def _config(tmp_path: Path, task: str = "brackets_hard", growth: str = "reserve", generations: int = 2,
            extra_task: str = "", seed: int = 0, n_samples: int = 640) -> Path:  # fmt: skip
    path = tmp_path / f"{task}-{growth}-{seed}.toml"
    path.write_text(
        TOML.format(runs=tmp_path / "runs", task=task, growth=growth, generations=generations,
                    extra_task=extra_task, seed=seed, n_samples=n_samples)  # fmt: skip
    )
    return path


def test_a_brackets_search_grows_records_the_rule_and_scores_excess_nats(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path))
    result = Search.start(config).run()
    metrics = json.loads((result.run_dir / "best" / "metrics.json").read_text())
    assert metrics["metric"] == "excess_nats" and not metrics["greater_is_better"]
    assert np.isfinite(result.test_metric) and result.test_metric > 0
    out = subprocess.run(
        [sys.executable, "-m", "hybrid", "lineage", str(result.run_dir), "--all"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    with_rule = subprocess.run(
        [sys.executable, "-c", (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
            "print(sum('reserve' in r[0] for r in c.execute('select operators from genomes')))"
        ), str(result.run_dir / "lineage.sqlite")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert int(with_rule) > 0, out.stdout  # p_add = p_delete = 1: the rule acted and was recorded


def test_the_same_seed_gives_the_same_sequence_run(tmp_path: Path) -> None:
    a = Search.start(load_config(_config(tmp_path, seed=3))).run()
    first = (a.run_dir / "stats.jsonl").read_bytes()
    b = Search.start(load_config(_config(tmp_path, seed=3)), overwrite=True).run()
    assert (b.run_dir / "stats.jsonl").read_bytes() == first


def test_sigkill_then_resume_gives_the_same_growing_sequence_run(tmp_path: Path) -> None:
    whole = Search.start(load_config(_config(tmp_path, generations=4, seed=5))).run()
    expected = (whole.run_dir / "stats.jsonl").read_bytes()
    best = json.loads((whole.run_dir / "best" / "metrics.json").read_text())
    path = _config(tmp_path, generations=4, seed=5)
    cmd = [sys.executable, "-m", "hybrid", "run", str(path), "--name", "kill", "--plain"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = tmp_path / "runs" / "kill"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until a generation is on disk
        if (run / "stats.jsonl").exists() and (run / "stats.jsonl").read_text().count("\n") >= 1:
            break
        if proc.poll() is not None:
            pytest.skip("the run ended before it could be killed")
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    result = Search.resume(run).run()
    assert (run / "stats.jsonl").read_bytes() == expected
    assert result.champion_id == best["genome_id"] and result.test_metric == best["test_metric"]


def test_a_schedule_changes_the_task_and_starts_a_new_champion(tmp_path: Path) -> None:
    extra = 'schedule = [["brackets_easy", 2], ["brackets_hard", 2]]'
    config = load_config(_config(tmp_path, task="brackets_easy", generations=4, extra_task=extra))
    search = Search.start(config)
    assert [(start, t.name) for start, t in search.phases] == [(0, "brackets_easy"), (2, "brackets_hard")]
    result = search.run()
    stats = [json.loads(line) for line in (result.run_dir / "stats.jsonl").read_text().splitlines()]
    # Generation 2 starts the hard phase: its champion is one of its own members.
    assert stats[2]["champion_metric"] == stats[2]["best_metric"]
    assert search.final_task.name == "brackets_hard"


@pytest.mark.parametrize("metric", ["accuracy", "roc_auc"])
def test_parity_runs_per_sequence_targets_with_masks(tmp_path: Path, metric: str) -> None:
    extra = f'metric = "{metric}"'
    config = load_config(_config(tmp_path, task="parity", growth="off", n_samples=200, extra_task=extra))
    result = Search.start(config).run()
    assert 0.0 <= result.test_metric <= 1.0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("training.engine", '"loop"', "training.engine: expected 'batched'"),
        ("task.selection_fraction", "0.1", "task.selection_fraction = 0.1"),
        ("evolution.final_steps", "10", "evolution.final_steps: expected 0"),
        ("training.input_noise", "0.5", "training.input_noise: expected 0"),
        ("training.class_weight", '"balanced"', "training.class_weight: expected 'none'"),
    ],
)
def test_settings_a_sequence_task_cannot_run_with_are_one_line(tmp_path: Path, key: str, value: str, message: str) -> None:
    path = _config(tmp_path)
    section, name = key.split(".")
    text = path.read_text().replace(f"[{section}]\n", f"[{section}]\n{name} = {value}\n", 1)
    path.write_text(text)
    out = subprocess.run([sys.executable, "-m", "hybrid", "run", str(path)], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs" / "seq").exists()


@pytest.mark.parametrize(
    ("section", "line", "key"),
    [
        ("training", 'growth = "reserve"', "training.growth"),
        ("genome", "recurrent = true", "genome.recurrent"),
        ("mutation", "add_recurrent_edge = 0.1", "mutation.add_recurrent_edge"),
    ],
)
def test_memory_on_a_task_without_time_steps_is_refused(tmp_path: Path, section: str, line: str, key: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[run]\nruns_dir = "{tmp_path}"\n[task]\nname = "circles"\n[{section}]\n{line}\n')
    with pytest.raises(ConfigError, match=f"{key}: expected"):
        Search.start(load_config(path))


def test_optimiser_moments_survive_a_repack_and_the_rule_s_edits() -> None:
    rng = np.random.default_rng(0)
    tracker = InnovationTracker()
    a = Genome.minimal(4, 4, rng, tracker, hidden=[3])
    a, _ = add_recurrent_edge(a, rng, tracker, MutationConfig())
    b = Genome.minimal(4, 4, rng, tracker, hidden=[5])
    engine = RecurrentEngine([a, b])
    opt = BatchedAdamW(engine.params, engine.members, torch.full((2,), 0.01, dtype=torch.float64), (True, False, False))
    for m in opt.exp_avg + opt.exp_avg_sq:
        m.copy_(torch.randn_like(m))
    opt.t = 7
    m_genomes = _as_genomes(engine, opt.exp_avg)
    v_genomes = _as_genomes(engine, opt.exp_avg_sq)
    assert [torch.equal(p, q) for p, q in zip(engine.params, RecurrentEngine([a, b]).params, strict=True)]
    # The rule drops neuron 1 of b's hidden node and adds one: moments of the rest carry over.
    h = b.hidden_nodes()[0]
    edit = ReserveEdit(h, np.array([0, 2, 3, 4]), 1)
    m_b, v_b = _replay(m_genomes[1], [edit]), _replay(v_genomes[1], [edit])
    assert m_b.node(h)["width"] == 5
    np.testing.assert_array_equal(m_b.node(h)["bias"][:4], m_genomes[1].node(h)["bias"][[0, 2, 3, 4]])
    assert m_b.node(h)["bias"][4] == 0.0
    from hybrid.growth import append_neurons, keep_neurons  # the helpers the replay uses

    grown_b = b.copy()
    keep_neurons(grown_b, h, np.array([0, 2, 3, 4]))
    append_neurons(grown_b, h, 1, None, 0.0)
    engine2 = RecurrentEngine([a, grown_b])
    opt2 = BatchedAdamW(engine2.params, engine2.members, torch.full((2,), 0.01, dtype=torch.float64), (True, False, False))
    _load_moments(opt2, ([m_genomes[0], m_b], [v_genomes[0], v_b], opt.t), "sigmoid", "cpu")
    assert opt2.t == 7
    back = _as_genomes(engine2, opt2.exp_avg)
    np.testing.assert_array_equal(back[0].node(a.hidden_nodes()[0])["bias"], m_genomes[0].node(a.hidden_nodes()[0])["bias"])
    np.testing.assert_array_equal(back[1].node(h)["bias"], m_b.node(h)["bias"])
    for (s, d) in a.gated_edges():
        np.testing.assert_array_equal(back[0].edge(s, d)["weight"], m_genomes[0].edge(s, d)["weight"])


def test_parity_needs_memory_a_recurrent_start_solves_what_a_feedforward_one_cannot(tmp_path: Path) -> None:
    scores = {}
    for recurrent in (True, False):
        path = tmp_path / f"parity-{recurrent}.toml"
        path.write_text(
            f'[run]\nname = "p{recurrent}"\nruns_dir = "{tmp_path}"\n[task]\nname = "parity"\n'
            f'[genome]\nhidden = [4]\nactivation = "tanh"\nrecurrent = {str(recurrent).lower()}\n'
            "[training]\nsteps = 300\nbatch_size = 64\n[evolution]\npopulation = 4\ngenerations = 1\n"
        )
        scores[recurrent] = Search.start(load_config(path)).run().test_metric
    assert scores[True] >= 0.95 and scores[False] <= 0.75, scores
