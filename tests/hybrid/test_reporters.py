"""Reporters: yours see every generation and the result; the documented example runs;
a run whose members all fail says so and ends without a champion."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest
import torch

import hybrid.reporters
from hybrid.champion import SearchResult
from hybrid.cli import main
from hybrid.config import loads_config
from hybrid.errors import ConfigError, NoChampionError
from hybrid.generation import FAILED_METRIC, GenerationReport
from hybrid.progress import Progress
from hybrid.reporters import Reporter
from hybrid.search import Search
from hybrid.state import SearchState
from tests.hybrid.tiny import tiny_toml


def _config(tmp_path: Path, **overrides):
    return loads_config(tiny_toml(tmp_path, steps=5, generations=3), source="tiny.toml", overrides=overrides)


class Recorder(Reporter):
    def __init__(self) -> None:
        self.seen: list[tuple[SearchState, GenerationReport]] = []
        self.results: list[SearchResult] = []

    def on_generation(self, state: SearchState, report: GenerationReport) -> None:
        self.seen.append((state, report))

    def on_finish(self, result: SearchResult) -> None:
        self.results.append(result)


def test_a_custom_reporter_receives_every_generation_then_the_result(tmp_path: Path) -> None:
    rec, calls = Recorder(), []
    result = Search.start(_config(tmp_path)).run(calls.append, reporters=[rec])
    assert [r.generation for _, r in rec.seen] == [0, 1, 2]
    assert [s.generation for s, _ in rec.seen] == [1, 2, 3]
    assert rec.seen[-1][0].finished == "generations" and rec.seen[-1][1].stop_reason == "generations"
    stats = [json.loads(line) for line in (tmp_path / "tiny" / "stats.jsonl").read_text().splitlines()]
    assert [dict(r.stats) for _, r in rec.seen] == stats
    assert [c["generation"] for c in calls] == [0, 1, 2]  # the on_generation callback still works
    assert rec.results == [result] and result.champion_id == rec.seen[-1][0].champion.id


def test_a_reporter_can_stop_the_search(tmp_path: Path) -> None:
    search = Search.start(_config(tmp_path))

    class StopAtOnce(Reporter):
        def on_generation(self, state: SearchState, report: GenerationReport) -> None:
            search.stop("enough")

    result = search.run(reporters=[StopAtOnce()])
    assert (result.stop_reason, result.generations) == ("enough", 1)


def test_the_reporters_module_example_runs() -> None:
    failures, tried = doctest.testmod(hybrid.reporters, optionflags=doctest.ELLIPSIS)
    assert tried > 5 and failures == 0


def test_a_run_where_every_member_fails_says_so_and_ends_without_a_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("hybrid.generation._metric", lambda task, result, ev: FAILED_METRIC)
    search = Search.start(_config(tmp_path))
    with pytest.raises(NoChampionError) as info, Progress(search, plain=True) as progress:
        search.run(reporters=[progress])
    assert info.value.exit_code == 3 and "\n" not in str(info.value)
    assert "finite" in str(info.value)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all("every member failed (8 of 8" in line for line in lines)
    assert not any("-1000000000" in line or "1000000000000" in line for line in lines)
    run = tmp_path / "tiny"
    assert not (run / "best" / "genome.json").exists() and not (run / "best" / "metrics.json").exists()
    text = (run / "stats.jsonl").read_text()
    assert "-1000000000" not in text and "1000000000000" not in text
    assert all(json.loads(line)["best_metric"] is None for line in text.splitlines())
    # `hybrid status` reads such a run without a traceback and says what it is
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "no champion yet" in out and "not finished" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_device_is_refused_before_the_run_folder_exists(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run.device"):
        Search.start(_config(tmp_path, **{"run.device": "cuda"}))
    assert not (tmp_path / "tiny").exists()
