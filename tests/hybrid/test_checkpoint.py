"""Checkpoints: round trip, exact RNG states, crash safety, pruning."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import genomes
from hybrid.checkpoint import (
    capture_rng,
    checkpoint_path,
    list_checkpoints,
    load_latest_checkpoint,
    restore_rng,
    save_checkpoint,
)
from hybrid.errors import RunDirError


def _draws(np_rng: np.random.Generator, t_gen: torch.Generator, py: random.Random) -> tuple:
    return (
        np_rng.random(3).tolist(),
        np_rng.integers(0, 1000, 3).tolist(),
        torch.rand(3, generator=t_gen).tolist(),
        py.random(),
        py.gauss(0.0, 1.0),
    )


def test_round_trip_of_state_tensors_and_genomes(tmp_path: Path) -> None:
    tracker = genomes.InnovationTracker()
    genome = genomes.Genome.minimal(3, 2, np.random.default_rng(0), tracker, hidden=(4,))
    state = {
        "population": [genomes.to_dict(genome)],
        "best": 0.75,
        "species": {"1": [0]},
        "inf": float("inf"),
    }
    weights = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    tensors = {
        "weights": weights.t(),
        "mask": torch.tensor([True, False]),
    }  # a non-contiguous view too
    save_checkpoint(tmp_path, 5, state, tensors)
    gen, state2, tensors2 = load_latest_checkpoint(tmp_path)
    assert gen == 5 and state2 == state
    assert genomes.from_dict(state2["population"][0]) == genome
    assert torch.equal(tensors2["weights"], weights.t()) and torch.equal(
        tensors2["mask"], tensors["mask"]
    )


def test_restored_rng_states_reproduce_the_same_next_draws(tmp_path: Path) -> None:
    np_rng, t_gen, py = (
        np.random.default_rng(11),
        torch.Generator().manual_seed(11),
        random.Random(11),
    )
    _draws(np_rng, t_gen, py)
    py.gauss(0.0, 1.0)  # leaves a cached gauss value in the python state
    rng_state, rng_tensors = capture_rng({"numpy": np_rng, "torch": t_gen, "python": py})
    save_checkpoint(tmp_path, 0, {"rng": rng_state}, rng_tensors)
    expected = _draws(np_rng, t_gen, py)

    fresh = {
        "numpy": np.random.default_rng(0),
        "torch": torch.Generator(),
        "python": random.Random(0),
    }
    _, state, tensors = load_latest_checkpoint(tmp_path)
    restore_rng(fresh, state["rng"], tensors)
    assert _draws(fresh["numpy"], fresh["torch"], fresh["python"]) == expected


def test_mt19937_numpy_state_survives_json(tmp_path: Path) -> None:
    rng = np.random.Generator(np.random.MT19937(3))
    state, tensors = capture_rng({"mt": rng})
    json.dumps(state)  # JSON-ready
    expected = rng.random(4).tolist()
    restore_rng({"mt": rng}, json.loads(json.dumps(state)), tensors)
    assert rng.random(4).tolist() == expected


def test_restoring_into_the_wrong_kind_of_generator_is_an_error() -> None:
    state, tensors = capture_rng({"a": np.random.default_rng(0)})
    with pytest.raises(RunDirError, match="'a'"):
        restore_rng({"a": random.Random(0)}, state, tensors)
    with pytest.raises(RunDirError, match="'b'"):
        restore_rng({"b": np.random.default_rng(0)}, state, tensors)


def test_a_crashed_temp_checkpoint_is_ignored_and_cleaned_up(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, {"g": 1})
    crashed = tmp_path / "checkpoints" / ".tmp-gen_000002-abc"
    crashed.mkdir()
    (crashed / "state.json").write_text('{"format": "hybrid.chec')  # died mid-write
    gen, state, _ = load_latest_checkpoint(tmp_path)
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
    (checkpoint_path(tmp_path, 1) / "tensors.safetensors").unlink()
    with pytest.raises(RunDirError, match="tensors.safetensors: checkpoint file missing"):
        load_latest_checkpoint(tmp_path)


def test_checkpoint_files_hold_no_pickle(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 0, {"a": [1, 2]}, {"t": torch.zeros(2)})
    assert sorted(p.name for p in path.iterdir()) == ["state.json", "tensors.safetensors"]
    json.loads((path / "state.json").read_text())
