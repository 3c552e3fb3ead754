"""TensorBoard reporter: what it logs reads back equal to stats.jsonl and best/metrics.json;
a resumed run shows each generation once; the CLI flag; a missing extra is one line, exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from hybrid.cli import main
from hybrid.config import loads_config
from hybrid.generation import GenerationReport
from hybrid.metrics import metric_value
from hybrid.reporters import Reporter, TensorBoardReporter
from hybrid.search import Search
from hybrid.state import SearchState
from hybrid.tracking import STATS_TAGS, TrackingError
from tests.hybrid.tiny import tiny_toml

# The reader is tensorboard's own (the `tracking` extra); without it these tests skip.
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
plugin_data_pb2 = pytest.importorskip("tensorboard.plugins.hparams.plugin_data_pb2")
EventAccumulator = event_accumulator.EventAccumulator

METRIC_KEYS = {"best_metric", "mean_metric", "champion_metric"}


def _config(tmp_path: Path, generations: int = 3, **overrides: Any):
    toml = tiny_toml(tmp_path, steps=5, generations=generations)
    return loads_config(toml, source="tiny.toml", overrides=overrides)


def _events(log_dir: Path) -> Any:
    ea = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0, "histograms": 0})
    ea.Reload()
    return ea


def _scalars(ea: Any, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def _text(ea: Any, tag: str) -> str:
    return ea.Tensors(f"{tag}/text_summary")[-1].tensor_proto.string_val[0].decode()


def _stats(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def _assert_matches_stats(ea: Any, stats: list[dict[str, Any]], metric: str) -> None:
    """Every STATS_TAGS scalar: one point per generation, equal to the stats line's (real) value."""
    for key, tag in STATS_TAGS.items():
        expected = [
            (s["generation"], metric_value(metric, s[key]) if key in METRIC_KEYS else s[key])
            for s in stats
            if s[key] is not None
        ]
        got = _scalars(ea, tag.format(metric=metric))
        assert [step for step, _ in got] == [step for step, _ in expected], tag
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6), tag


def test_logged_scalars_read_back_equal_to_stats_and_the_champion_s_test_score(tmp_path: Path) -> None:
    search = Search.start(_config(tmp_path))
    result = search.run(reporters=[TensorBoardReporter(search)])
    run = tmp_path / "tiny"
    ea = _events(run / "tensorboard")
    stats = _stats(run)
    assert [s["generation"] for s in stats] == [0, 1, 2]
    _assert_matches_stats(ea, stats, "accuracy")
    tags = set(ea.Tags()["scalars"])
    assert {f"time/{k}" for k in ("train_s", "select_s", "reproduce_s", "generation_s", "elapsed_s")} <= tags
    assert [step for step, _ in _scalars(ea, "time/elapsed_s")] == [0, 1, 2]
    # the champion: logged at each generation that found a new one, with its id
    changed = [s for i, s in enumerate(stats) if i == 0 or s["champion_id"] != stats[i - 1]["champion_id"]]
    assert _scalars(ea, "champion/id") == [(s["generation"], s["champion_id"]) for s in changed]
    assert _scalars(ea, "champion/val_accuracy") == pytest.approx(
        [(s["generation"], s["champion_metric"]) for s in changed]
    )
    # the end, at step = generations: the test figures of best/metrics.json
    best = json.loads((run / "best" / "metrics.json").read_text())
    assert _scalars(ea, "test/accuracy") == [(3, pytest.approx(best["test_metric"]))]
    assert _scalars(ea, "test/active_params") == [(3, best["active_parameters"])]
    assert result.test_metric == pytest.approx(best["test_metric"])
    assert {"val_accuracy/members", "active_params/members", "population/species_sizes"} <= set(
        ea.Tags()["histograms"]
    )
    assert "[task]" in _text(ea, "config")
    assert f"genome {result.champion_id}" in _text(ea, "champion")
    assert "class ExportedNet" in _text(ea, "champion/model.py")
    assert ea.Tags()["graph"]
    start = plugin_data_pb2.HParamsPluginData.FromString(
        ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    ).session_start_info
    assert start.hparams["training.steps"].number_value == 5
    assert start.hparams["task.metric"].string_value == "accuracy"


def test_a_lower_is_better_metric_is_logged_as_its_real_value(tmp_path: Path) -> None:
    search = Search.start(_config(tmp_path, generations=2, **{"task.metric": "log_loss"}))
    search.run(reporters=[TensorBoardReporter(search, tmp_path / "tb")])
    ea = _events(tmp_path / "tb")
    stats = _stats(tmp_path / "tiny")
    _assert_matches_stats(ea, stats, "log_loss")
    assert all(v > 0 for _, v in _scalars(ea, "val_log_loss/best"))  # not the negated fitness


class _InterruptAt(Reporter):
    def __init__(self, generation: int) -> None:
        self.generation = generation

    def on_generation(self, state: SearchState, report: GenerationReport) -> None:
        if report.generation == self.generation:
            raise KeyboardInterrupt


def test_a_resumed_run_shows_each_generation_once_with_the_resumed_values(tmp_path: Path) -> None:
    # checkpoints at 0 and 2; generation 3 is logged, then the run stops before checkpointing it
    config = _config(tmp_path, generations=5, **{"checkpoint.every": 2})
    search = Search.start(config)
    first = TensorBoardReporter(search)
    with pytest.raises(KeyboardInterrupt):
        search.run(reporters=[first, _InterruptAt(3)])
    first.close()
    run = tmp_path / "tiny"
    assert [step for step, _ in _scalars(_events(run / "tensorboard"), "time/elapsed_s")] == [0, 1, 2, 3]
    before = dict(_scalars(_events(run / "tensorboard"), "time/train_s"))

    resumed = Search.resume(run)
    assert resumed.generation == 3
    resumed.run(reporters=[TensorBoardReporter(resumed)])
    ea = _events(run / "tensorboard")
    assert len(list((run / "tensorboard").iterdir())) == 2  # appended: a second event file
    _assert_matches_stats(ea, _stats(run), "accuracy")
    train_s = dict(_scalars(ea, "time/train_s"))
    assert sorted(train_s) == [0, 1, 2, 3, 4]
    assert [train_s[g] for g in (0, 1, 2)] == [before[g] for g in (0, 1, 2)]  # kept from the first process
    assert [step for step, _ in _scalars(ea, "test/accuracy")] == [5]


def test_cli_run_and_resume_take_tensorboard_with_or_without_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "tiny.toml"
    toml.write_text(tiny_toml(tmp_path / "runs", steps=5, generations=2))
    assert main(["run", str(toml), "--plain", "--tensorboard", str(tmp_path / "tb" / "tiny")]) == 0
    assert f"tensorboard --logdir {tmp_path / 'tb' / 'tiny'}" in capsys.readouterr().err
    assert [s for s, _ in _scalars(_events(tmp_path / "tb" / "tiny"), "val_accuracy/best")] == [0, 1]
    run = tmp_path / "runs" / "tiny"
    assert not (run / "tensorboard").exists()

    assert main(["run", str(toml), "--plain", "--overwrite", "--tensorboard"]) == 0
    ea = _events(run / "tensorboard")
    _assert_matches_stats(ea, _stats(run), "accuracy")
    capsys.readouterr()
    assert main(["status", str(run)]) == 0
    assert f"tensorboard: tensorboard --logdir {run / 'tensorboard'}" in capsys.readouterr().out

    # resuming a finished run scores its champion again: the test figures are shown once
    assert main(["resume", str(run), "--plain", "--tensorboard"]) == 0
    assert [s for s, _ in _scalars(_events(run / "tensorboard"), "test/accuracy")] == [2]


def test_a_missing_tensorboard_package_is_one_line_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "tiny.toml"
    toml.write_text(tiny_toml(tmp_path / "runs", steps=5, generations=1))
    assert main(["run", str(toml), "--plain"]) == 0
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if absent
    for argv in (
        ["run", str(toml), "--name", "other", "--tensorboard"],
        ["resume", str(tmp_path / "runs" / "tiny"), "--tensorboard"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ".[tracking]" in err and "Traceback" not in err, err
    assert not (tmp_path / "runs" / "other").exists()  # refused before the run folder was made
    search = Search.start(_config(tmp_path / "py"))
    with pytest.raises(TrackingError, match=r"tensorboard package.*\.\[tracking\]"):
        TensorBoardReporter(search)
    search.run_dir.close()


def test_a_log_dir_that_is_a_file_is_refused_before_the_run_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "tiny.toml"
    toml.write_text(tiny_toml(tmp_path / "runs", steps=5, generations=1))
    (tmp_path / "taken").write_text("x")
    for where in ("taken", "taken/sub"):
        assert main(["run", str(toml), "--tensorboard", str(tmp_path / where)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not a folder" in err and str(tmp_path / where) in err
    assert not (tmp_path / "runs" / "tiny").exists()
