"""Run folders: creation, refusal to clobber, opening, and the stats log."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hybrid.config import loads_config
from hybrid.errors import RunDirError
from hybrid.rundir import create_run_dir, open_run_dir

CONFIG = loads_config('[task]\nname = "xor"\n[run]\nname = "r"\nseed = 4\n')


def test_create_writes_resolved_config_and_folders(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path / "runs", "r", CONFIG)
    assert run.path == tmp_path / "runs" / "r"
    assert run.checkpoints_dir.is_dir() and run.best_dir.is_dir()
    assert run.load_config() == CONFIG
    assert os.fspath(run) == str(run.path)
    assert not list(run.path.glob(".*.tmp"))  # the atomic write left no temp file


def test_existing_run_is_not_overwritten_and_the_error_says_how_to_resume(tmp_path: Path) -> None:
    create_run_dir(tmp_path, "r", CONFIG)
    with pytest.raises(RunDirError) as info:
        create_run_dir(tmp_path, "r", CONFIG)
    message = str(info.value)
    assert (
        str(tmp_path / "r") in message and "hybrid resume" in message and "--overwrite" in message
    )
    assert "\n" not in message


def test_overwrite_replaces_an_existing_run(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path, "r", CONFIG)
    run.append_stats({"generation": 0})
    run.close()  # the writer lock: a live run is never overwritten
    run = create_run_dir(tmp_path, "r", CONFIG, overwrite=True)
    assert run.read_stats() == []


def test_a_folder_that_is_not_a_run_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "precious.txt").write_text("keep me")
    with pytest.raises(RunDirError, match="not a run folder"):
        create_run_dir(tmp_path, "r", CONFIG, overwrite=True)
    assert (tmp_path / "r" / "precious.txt").exists()


def test_open_accepts_a_run_and_rejects_other_folders(tmp_path: Path) -> None:
    create_run_dir(tmp_path, "r", CONFIG)
    assert open_run_dir(tmp_path / "r").path == tmp_path / "r"
    with pytest.raises(RunDirError, match="no such run folder"):
        open_run_dir(tmp_path / "missing")
    with pytest.raises(RunDirError, match="not a run folder"):
        open_run_dir(tmp_path)


def test_stats_append_and_read_back(tmp_path: Path) -> None:
    import numpy as np

    run = create_run_dir(tmp_path, "r", CONFIG)
    for g in range(3):
        run.append_stats({"generation": g, "best": np.float32(0.5 + g / 10), "sizes": np.arange(2)})
    stats = run.read_stats()
    assert [s["generation"] for s in stats] == [0, 1, 2]
    assert stats[2]["best"] == pytest.approx(0.7) and stats[0]["sizes"] == [0, 1]


def test_a_line_cut_short_by_a_crash_is_ignored_then_dropped(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path, "r", CONFIG)
    run.append_stats({"generation": 0})
    with open(run.stats_path, "a") as f:
        f.write('{"generation": 1, "be')  # the process died mid-write
    assert [s["generation"] for s in run.read_stats()] == [0]
    run.append_stats({"generation": 1})
    assert [s["generation"] for s in run.read_stats()] == [0, 1]


def test_truncate_keeps_generations_up_to_the_checkpoint(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path, "r", CONFIG)
    for g in range(5):
        run.append_stats({"generation": g})
    run.truncate_stats(2)
    assert [s["generation"] for s in run.read_stats()] == [0, 1, 2]
    run.truncate_stats(None)
    assert run.read_stats() == []


def test_a_corrupt_complete_line_is_an_error(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path, "r", CONFIG)
    run.stats_path.write_text('{"generation": 0}\nnot json\n{"generation": 2}\n')
    with pytest.raises(RunDirError, match="stats.jsonl: line 2 is not valid JSON"):
        run.read_stats()


def test_stats_record_needs_a_generation(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path, "r", CONFIG)
    with pytest.raises(ValueError, match="generation"):
        run.append_stats({"best": 1.0})
