"""SearchState: checkpoint round trip, and a malformed state.json is one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid.checkpoint import checkpoint_path, list_checkpoints, load_checkpoint, save_checkpoint
from hybrid.config import loads_config
from hybrid.errors import RunDirError
from hybrid.generation import StepContext, initial_state, step
from hybrid.search import Search
from hybrid.state import SearchState
from hybrid.tasks import load_task
from tests.hybrid.tiny import tiny_toml


@pytest.fixture(scope="module")
def stepped(tmp_path_factory: pytest.TempPathFactory) -> SearchState:
    tmp = tmp_path_factory.mktemp("state")
    config = loads_config(tiny_toml(tmp, steps=5), source="tiny.toml")
    task = load_task(config.task, config.run.seed)
    state, _ = step(initial_state(config, task), StepContext(config, task, "cpu"))
    return state


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("runs")
    config = loads_config(tiny_toml(tmp, steps=5, generations=2), source="tiny.toml")
    Search.start(config).run()
    return tmp / "tiny"


def test_a_state_survives_a_checkpoint_round_trip(tmp_path: Path, stepped: SearchState) -> None:
    assert stepped.champion is not None and stepped.species and stepped.generation == 1
    save_checkpoint(tmp_path, 0, stepped.to_dict())
    back = SearchState.from_dict(load_checkpoint(tmp_path, 0))
    assert back == stepped
    assert back.to_dict() == stepped.to_dict()


def _corrupt(state: dict, edit: str) -> dict:
    s = json.loads(json.dumps(state))
    if edit == "no members":
        del s["members"]
    elif edit == "members abc":
        s["members"] = "abc"
    elif edit == "empty species":
        s["species"] = [{}]
    elif edit == "unknown activation":
        s["members"][0]["genome"]["nodes"][-1]["activation"] = "warp_drive"
    elif edit == "bad tracker":
        s["tracker"] = {"next_id": "many"}
    elif edit == "string id":
        s["members"][1]["id"] = "7"
    elif edit == "negative generation":
        s["generation"] = -3
    elif edit == "champion without genome":
        del s["champion"]["genome"]
    elif edit == "unknown key":
        s["rng"] = {}
    return s


@pytest.mark.parametrize(
    ("edit", "key", "expected"),
    [
        ("no members", "state.members", "field required"),
        ("members abc", "state.members", "valid list"),
        ("empty species", "state.species.0.id", "field required"),
        ("unknown activation", "state.members[0].genome", "warp_drive"),
        ("bad tracker", "state.tracker", "not a valid innovation tracker"),
        ("string id", "state.members.1.id", "valid integer"),
        ("negative generation", "state.generation", "greater than or equal to 0"),
        ("champion without genome", "state.champion.genome", "field required"),
        ("unknown key", "state.rng", "extra inputs are not permitted"),
    ],
)
def test_a_malformed_state_names_the_file_the_key_and_what_was_expected(
    stepped: SearchState, edit: str, key: str, expected: str
) -> None:
    with pytest.raises(RunDirError) as info:
        SearchState.from_dict(_corrupt(stepped.to_dict(), edit), source="gen_000000/state.json")
    message = str(info.value)
    assert message.startswith(f"gen_000000/state.json: {key}") and expected in message
    assert "\n" not in message


def test_resume_of_a_malformed_checkpoint_is_one_line_and_exit_2(run_dir: Path) -> None:
    gen = list_checkpoints(run_dir)[-1]
    path = checkpoint_path(run_dir, gen) / "state.json"
    original = path.read_text()
    doc = json.loads(original)
    doc["state"] = _corrupt(doc["state"], "members abc")
    path.write_text(json.dumps(doc))
    try:
        with pytest.raises(RunDirError, match="state.json: state.members"):
            Search.resume(run_dir)
        out = subprocess.run([sys.executable, "-m", "hybrid", "resume", str(run_dir), "--plain"],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 2
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
        assert "state.members" in out.stderr and str(path) in out.stderr
    finally:
        path.write_text(original)


def test_a_checkpoint_whose_state_is_from_another_generation_is_refused(run_dir: Path) -> None:
    gen = list_checkpoints(run_dir)[-1]
    path = checkpoint_path(run_dir, gen) / "state.json"
    original = path.read_text()
    doc = json.loads(original)
    doc["state"]["generation"] += 5
    path.write_text(json.dumps(doc))
    try:
        with pytest.raises(RunDirError, match="state.generation: expected"):
            Search.resume(run_dir)
    finally:
        path.write_text(original)
