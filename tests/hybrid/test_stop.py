"""Searches that stop when they are done and choose their champion: patience, the
short list with ``smallest_within``, and the final fine-tune (``final_steps``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from genomes import load
from hybrid.backends import evaluate_members
from hybrid.checkpoint import STATE_FILE, checkpoint_path, list_checkpoints
from hybrid.config import load_config, loads_config
from hybrid.errors import ConfigError, RunDirError
from hybrid.search import Search
from hybrid.shortlist import choose_within
from hybrid.state import SearchState
from hybrid.tasks import load_task
from hybrid.train import TrainConfig
from tests.hybrid.tiny import tiny_toml


def _config(tmp_path: Path, name: str, generations: int = 4, steps: int = 20, seed: int = 0, **overrides: Any):
    text = tiny_toml(tmp_path, seed=seed, generations=generations, steps=steps)
    return loads_config(text, source="tiny.toml", overrides={"run.name": name, **overrides})


def _stats(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def _metrics(run: Path) -> dict:
    return json.loads((run / "best" / "metrics.json").read_text())


# ------------------------------------------------------------------- patience
def test_patience_stops_at_the_first_generation_the_champion_has_gone_unbeaten_that_long(tmp_path: Path) -> None:
    patience = 2
    result = Search.start(_config(tmp_path, "p", generations=40, steps=5, **{"evolution.patience": patience})).run()
    stats = _stats(tmp_path / "p")
    assert result.stop_reason == "patience" and result.generations == len(stats) < 40
    since, last = [], None  # generations since the champion last changed, per generation
    for s in stats:
        key = (s["champion_id"], s["champion_metric"], s["champion_active_params"])
        since.append(0 if key != last else since[-1] + 1)
        last = key
    assert since[-1] == patience  # stopped as soon as it had waited `patience` generations ...
    assert all(n < patience for n in since[:-1])  # ... and not before
    assert _metrics(tmp_path / "p")["stop_reason"] == "patience"


def test_without_patience_the_same_run_goes_on(tmp_path: Path) -> None:
    stopped = Search.start(_config(tmp_path, "p", generations=40, steps=5, **{"evolution.patience": 2})).run()
    n = stopped.generations
    full = Search.start(_config(tmp_path, "f", generations=n + 2, steps=5)).run()
    assert full.stop_reason == "generations" and full.generations == n + 2
    assert _stats(tmp_path / "f")[:n] == _stats(tmp_path / "p")  # patience changes when it stops, not what it does


# ------------------------------------------------------------------ the choice
def test_smallest_within_picks_a_champion_no_larger_and_within_epsilon(tmp_path: Path) -> None:
    eps = 0.1
    best = Search.start(_config(tmp_path, "best")).run()
    small = Search.start(
        _config(tmp_path, "small", **{"selection.champion": "smallest_within", "selection.epsilon": eps})
    ).run()
    assert (tmp_path / "best" / "stats.jsonl").read_bytes() == (tmp_path / "small" / "stats.jsonl").read_bytes()
    mb, ms = _metrics(tmp_path / "best"), _metrics(tmp_path / "small")
    assert (mb["selected_by"], ms["selected_by"], ms["epsilon"]) == ("best", "smallest_within", eps)
    assert "epsilon" not in mb
    assert small.active_parameters < best.active_parameters  # not vacuous: on this seed the rule picks a smaller net
    assert ms["best_val_metric"] == mb["val_metric"] == mb["best_val_metric"]  # the short list holds the champion
    assert ms["val_metric"] >= mb["val_metric"] - eps - 1e-12
    # it is the rule's choice on the short list the last checkpoint holds
    run = tmp_path / "small"
    doc = json.loads((checkpoint_path(run, list_checkpoints(run)[-1]) / STATE_FILE).read_text())
    state = SearchState.from_dict(doc["state"])
    assert state.champion in state.shortlist and len(state.shortlist) >= 1
    assert ms["genome_id"] == choose_within(state.shortlist, eps).id
    assert not any(
        c.metric >= ms["best_val_metric"] - eps and c.active_params < ms["active_parameters"] for c in state.shortlist
    )


# -------------------------------------------------------------- final fine-tune
def _weights(path: Path) -> list[np.ndarray]:
    g = load(path)
    return [np.asarray(g.graph.edges[e]["weight"]) for e in sorted(g.graph.edges)]


def test_final_steps_fine_tune_the_champion_deterministically_and_it_is_what_is_tested(tmp_path: Path) -> None:
    plain = Search.start(_config(tmp_path, "plain")).run()
    a = Search.start(_config(tmp_path, "a", **{"evolution.final_steps": 40})).run()
    b = Search.start(_config(tmp_path, "b", **{"evolution.final_steps": 40})).run()
    assert plain.champion_id == a.champion_id == b.champion_id  # the same choice, then the fine-tune
    wp, wa, wb = (_weights(tmp_path / n / "best" / "genome.json") for n in ("plain", "a", "b"))
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))  # deterministic
    assert not all(np.array_equal(x, y) for x, y in zip(wa, wp, strict=True))  # changed by the fine-tune
    ma = _metrics(tmp_path / "a")
    assert ma["final_steps"] == 40 and _metrics(tmp_path / "plain")["final_steps"] == 0
    assert ma == {**_metrics(tmp_path / "b"), "elapsed_s": ma["elapsed_s"]}
    # the test score is the fine-tuned genome's (the one in best/)
    config = _config(tmp_path, "a")
    task = load_task(config.task, config.run.seed)
    tc = TrainConfig(**config.train_kwargs())
    (test,) = evaluate_members([load(tmp_path / "a" / "best" / "genome.json")], task.X_test, task.y_test, tc)
    assert ma["test_metric"] == float(test.accuracy) and ma["test_loss"] == test.loss
    assert ma["val_metric"] == _metrics(tmp_path / "plain")["val_metric"]  # chosen on validation before the fit


# --------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("section", "line", "key"),
    [
        ("evolution", "patience = 0", "evolution.patience"),
        ("evolution", "final_steps = -1", "evolution.final_steps"),
        ("evolution", "final_steps = 2000000", "evolution.final_steps"),
        ("selection", "epsilon = 2.0", "selection.epsilon"),
        ("selection", "epsilon = -0.1", "selection.epsilon"),
        ("selection", 'champion = "worst"', "selection.champion"),
    ],
)
def test_bad_stop_and_choice_settings_are_one_line_naming_the_key(
    tmp_path: Path, section: str, line: str, key: str
) -> None:
    text = tiny_toml(tmp_path)
    text = text.replace(f"[{section}]\n", f"[{section}]\n{line}\n") if f"[{section}]" in text else text + f"\n[{section}]\n{line}\n"
    path = tmp_path / "x.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and key in message


# ---------------------------------------------------------------------- state
def test_a_short_list_survives_the_round_trip_and_a_bad_entry_names_its_key(tmp_path: Path) -> None:
    search = Search.start(_config(tmp_path, "s", generations=2))
    search.run()
    state = search.state
    assert state.shortlist and state.champion in state.shortlist
    assert SearchState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    doc = json.loads(json.dumps(state.to_dict()))
    del doc["shortlist"][0]["genome"]
    with pytest.raises(RunDirError, match=r"state.shortlist.0.genome: field required"):
        SearchState.from_dict(doc, source="x")


def test_an_old_checkpoint_without_a_short_list_resumes_and_finishes_the_same_run(tmp_path: Path) -> None:
    Search.start(_config(tmp_path, "ref")).run()
    search = Search.start(_config(tmp_path, "old"))

    def interrupt(stats: dict) -> None:
        if stats["generation"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search.run(interrupt)
    run = tmp_path / "old"
    for gen in list_checkpoints(run):  # as a checkpoint written before the short list existed
        path = checkpoint_path(run, gen) / STATE_FILE
        doc = json.loads(path.read_text())
        del doc["state"]["shortlist"]
        path.write_text(json.dumps(doc))
    resumed = Search.resume(run)
    assert resumed.state.shortlist == (resumed.state.champion,)
    resumed.run()
    assert _stats(run) == _stats(tmp_path / "ref")
    assert _metrics(run)["genome_id"] == _metrics(tmp_path / "ref")["genome_id"]


def test_the_cli_says_which_rule_chose_the_champion(tmp_path: Path) -> None:
    import subprocess
    import sys

    cfg = tmp_path / "c.toml"
    text = tiny_toml(tmp_path, generations=2, steps=5)
    cfg.write_text(text + '\n[selection]\nchampion = "smallest_within"\nepsilon = 0.1\n')
    done = subprocess.run([sys.executable, "-m", "hybrid", "run", str(cfg), "--plain"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "(chosen by smallest_within 0.1)" in done.stdout
    status = subprocess.run([sys.executable, "-m", "hybrid", "status", str(tmp_path / "tiny")], capture_output=True, text=True, timeout=300)
    assert status.returncode == 0, status.stderr
    assert "champion rule: smallest_within 0.1" in status.stdout and "chosen by smallest_within" in status.stdout
