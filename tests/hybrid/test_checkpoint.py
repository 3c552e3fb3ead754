"""Checkpoints: round trip, crash safety, pruning, older checkpoints, no RNG half."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import genomes
from hybrid.checkpoint import (
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)
from hybrid.errors import RunDirError


def test_round_trip_of_state_and_genomes(tmp_path: Path) -> None:
    tracker = genomes.InnovationTracker()
    genome = genomes.Genome.minimal(3, 2, np.random.default_rng(0), tracker, hidden=(4,))
    state = {"population": [genomes.to_dict(genome)], "best": 0.75, "species": {"1": [0]}, "none": None}
    save_checkpoint(tmp_path, 5, state)
    gen, state2 = load_latest_checkpoint(tmp_path)
    assert gen == 5 and state2 == state
    assert genomes.from_dict(state2["population"][0]) == genome


def test_a_checkpoint_is_one_state_file_of_plain_json(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 0, {"a": [1, 2]})
    assert [p.name for p in path.iterdir()] == ["state.json"]
    doc = json.loads((path / "state.json").read_text())
    assert doc == {"format": "hybrid.checkpoint", "version": 1, "generation": 0, "state": {"a": [1, 2]}}


def test_an_older_checkpoint_with_a_tensors_file_still_loads(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 2, {"v": 1})
    # what the RNG half used to write: an empty safetensors file (8-byte header length + "{}")
    (path / "tensors.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
    assert load_latest_checkpoint(tmp_path) == (2, {"v": 1})


def test_state_holding_nan_or_infinity_writes_nothing(tmp_path: Path) -> None:
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            save_checkpoint(tmp_path, 0, {"x": bad})
    assert list_checkpoints(tmp_path) == []


def test_a_crashed_temp_checkpoint_is_ignored_and_cleaned_up(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, {"g": 1})
    crashed = tmp_path / "checkpoints" / ".tmp-gen_000002-abc"
    crashed.mkdir()
    (crashed / "state.json").write_text('{"format": "hybrid.chec')  # died mid-write
    gen, state = load_latest_checkpoint(tmp_path)
    assert gen == 1 and state == {"g": 1}
    save_checkpoint(tmp_path, 2, {"g": 2})
    assert not crashed.exists()
    assert load_latest_checkpoint(tmp_path)[0] == 2


def test_pruning_keeps_the_last_keep(tmp_path: Path) -> None:
    for g in range(6):
        save_checkpoint(tmp_path, g, {"g": g}, keep=3)
    assert list_checkpoints(tmp_path) == [3, 4, 5]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "gen_000003",
        "gen_000004",
        "gen_000005",
    ]


def test_no_checkpoint_gives_none(tmp_path: Path) -> None:
    assert load_latest_checkpoint(tmp_path) is None


def test_state_that_is_not_json_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path, 0, {"bad": object()})
    assert list_checkpoints(tmp_path) == []


def test_resaving_a_generation_replaces_it(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 3, {"v": 1})
    save_checkpoint(tmp_path, 3, {"v": 2})
    assert load_latest_checkpoint(tmp_path)[1] == {"v": 2}
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["gen_000003"]


def test_a_damaged_newest_checkpoint_is_an_error_not_a_silent_fallback(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 0, {})
    save_checkpoint(tmp_path, 1, {})
    (checkpoint_path(tmp_path, 1) / "state.json").write_text('{"format": "hyb')
    with pytest.raises(RunDirError, match=r"gen_000001/state.json: not valid JSON"):
        load_latest_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "expected format 'hybrid.checkpoint' version 1"),
        ({"format": "hybrid.checkpoint", "version": 9, "generation": 0, "state": {}}, "version 1"),
        ({"format": "hybrid.checkpoint", "version": 1, "generation": 4, "state": {}}, "generation: expected 0, got 4"),
        ({"format": "hybrid.checkpoint", "version": 1, "generation": 0, "state": "abc"}, "state: expected an object, got str"),
    ],
)
def test_a_malformed_envelope_is_one_line_naming_the_file(tmp_path: Path, doc: object, message: str) -> None:
    save_checkpoint(tmp_path, 0, {})
    (checkpoint_path(tmp_path, 0) / "state.json").write_text(json.dumps(doc))
    with pytest.raises(RunDirError, match="state.json: ") as info:
        load_checkpoint(tmp_path, 0)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_missing_state_file_is_named(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 0, {})
    (checkpoint_path(tmp_path, 0) / "state.json").unlink()
    with pytest.raises(RunDirError, match="state.json: checkpoint file missing"):
        load_latest_checkpoint(tmp_path)
