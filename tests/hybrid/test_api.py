"""hybrid.search on in-memory data: the run folder is a normal one; bad data is one clear line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hybrid
from hybrid.api import flat_keys
from hybrid.cli import main
from hybrid.config import Config, TaskConfig
from hybrid.errors import ConfigError, DataError, InputError
from hybrid.reporters import Reporter
from hybrid.rundir import open_run_dir
from hybrid.search import Search
from hybrid.tasks import load_task

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FAST = {"population": 4, "generations": 2, "steps": 10, "device": "cpu"}


def blobs(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two separable blobs: X [n, 3], labels 'left' / 'right'."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, 3)) + 3.0 * y[:, None]
    return X, np.array(["left", "right"])[y]


def stored_task(run_dir: Path) -> dict:
    return tomllib.loads((run_dir / "config.toml").read_text())["task"]


def test_arrays_become_a_normal_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = blobs()
    result = hybrid.search(
        X, y, kind="classification", runs_dir=tmp_path / "runs", name="arr", **FAST
    )
    run = result.run_dir
    assert run == tmp_path / "runs" / "arr"
    assert stored_task(run)["path"] == "data.npz"  # relative: the folder can move
    assert sorted(np.load(run / "data.npz").files) == ["X", "y"]
    info = open_run_dir(run).read_task()
    assert info.class_labels == ["left", "right"] and info.source == str(
        (run / "data.npz").resolve()
    )
    assert not list((tmp_path / "runs").glob(".*"))  # nothing staged is left behind
    for argv in (["status", str(run)], ["lineage", str(run)], ["export", str(run)]):
        assert main(argv) == 0, argv
    assert (run / "best" / "model.py").is_file()


class _StopAfterFirst(Reporter):
    def on_generation(self, state, report) -> None:  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt


def test_a_stopped_array_run_resumes_to_the_run_left_alone(tmp_path: Path) -> None:
    X, y = blobs()
    alone = hybrid.search(X, y, kind="classification", runs_dir=tmp_path / "a", **FAST)
    with pytest.raises(KeyboardInterrupt):
        hybrid.search(
            X,
            y,
            kind="classification",
            runs_dir=tmp_path / "b",
            reporters=[_StopAfterFirst()],
            **FAST,
        )
    moved = tmp_path / "moved"
    (tmp_path / "b" / "run").rename(moved)  # the data travel with the folder
    resumed = Search.resume(moved).run()
    assert (moved / "stats.jsonl").read_bytes() == (alone.run_dir / "stats.jsonl").read_bytes()
    assert resumed.test_metric == alone.test_metric


def test_a_numeric_dataframe_becomes_a_csv_with_its_header(tmp_path: Path) -> None:
    X, y = blobs()
    frame = pd.DataFrame(X, columns=["height", "width", "depth"])
    result = hybrid.search(
        frame, pd.Series(y, name="side"), kind="classification", runs_dir=tmp_path, **FAST
    )
    path = result.run_dir / "data.csv"
    assert path.read_text().splitlines()[0] == "height,width,depth,side"
    # exact round trip (numpy parses every float exactly; pandas 2's default parser may not)
    np.testing.assert_array_equal(np.loadtxt(path, delimiter=",", skiprows=1, usecols=(0, 1, 2)), X)
    assert stored_task(result.run_dir)["target"] == "side"


def test_eval_set_is_the_validation_split(tmp_path: Path) -> None:
    X, y = blobs(60)
    X_val, y_val = blobs(15, seed=1)
    result = hybrid.search(
        X, y, kind="classification", runs_dir=tmp_path, eval_set=(X_val, y_val), **FAST
    )
    config = open_run_dir(result.run_dir).load_config()
    task = load_task(config.task, config.run.seed)
    assert (len(task.X_train), len(task.X_val), len(task.X_test)) == (48, 15, 12)
    raw_val = task.X_val * task.feature_std + task.feature_mean
    np.testing.assert_allclose(raw_val, X_val, rtol=1e-5, atol=1e-5)
    assert sorted(np.load(result.run_dir / "data.npz")["split"].tolist()).count(1) == 15


def test_overrides_flat_or_dotted_and_config_forms_agree(tmp_path: Path) -> None:
    X, y = blobs()
    toml = tmp_path / "base.toml"
    toml.write_text("[evolution]\npopulation = 4\ngenerations = 2\n[training]\nsteps = 10\n")
    forms = {
        "flat": ({}, {"population": 4, "generations": 2, "steps": 10}),
        "dotted": (
            {},
            {"evolution.population": 4, "evolution.generations": 2, "training.steps": 10},
        ),
        "dict": ({"evolution": {"population": 4, "generations": 2}, "training": {"steps": 10}}, {}),
        "path": (toml, {}),
    }
    stats = set()
    for name, (config, overrides) in forms.items():
        r = hybrid.search(
            X,
            y,
            config or None,
            kind="classification",
            runs_dir=tmp_path / "runs",
            name=name,
            device="cpu",
            **overrides,
        )
        stats.add((r.run_dir / "stats.jsonl").read_bytes())
    assert len(stats) == 1
    cfg = Config(
        task={"name": "xor"}, evolution={"population": 4, "generations": 2}, training={"steps": 10}
    )
    r = hybrid.search(
        X, y, cfg, runs_dir=tmp_path / "runs", name="obj", device="cpu"
    )  # kind from the Config
    assert (r.run_dir / "stats.jsonl").read_bytes() in stats


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"populaton": 4}, "unknown key 'populaton' (did you mean 'population'?)"),
        ({"path": "x.npz"}, "override 'task.path': set by hybrid.search"),
        (
            {"population": -1},
            "evolution.population: got -1, expected an integer >= 1 (from an override)",
        ),
    ],
)
def test_bad_overrides_are_one_config_error(tmp_path: Path, overrides: dict, message: str) -> None:
    X, y = blobs()
    with pytest.raises(ConfigError, match="^hybrid.search: ") as info:
        hybrid.search(X, y, kind="classification", runs_dir=tmp_path, **overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("X", "y", "kind", "message"),
    [
        (
            np.ones((6, 2)),
            np.array([0, 1, np.nan, 1, 0, 1]),
            "classification",
            r"y\[2\] is missing \(NaN/None\)",
        ),
        (np.ones((6, 2)), np.array([0.5, 1, np.nan, 1, 0, 1]), "regression", r"y\[2\] is missing"),
        (
            np.array([[1.0, np.inf]] * 6),
            np.arange(6) % 2,
            "classification",
            r"X\[0, 1\] is inf, expected a finite number",
        ),
        (
            np.ones((6, 2)),
            np.arange(5) % 2,
            "classification",
            r"y has shape \(5,\), expected 6 targets",
        ),
        (
            np.ones(6),
            np.arange(6) % 2,
            "classification",
            r"X is float64 of shape \(6,\), expected numbers of shape",
        ),
        (
            pd.DataFrame({"t": pd.date_range("2020", periods=6)}),
            np.arange(6) % 2,
            "classification",
            "X column 't' is datetime64",
        ),
        (
            pd.DataFrame({"a": [1.0, None, 2, 3, 4, 5]}),
            np.arange(6) % 2,
            "classification",
            "X column 'a', position 1: missing value",
        ),
        (
            np.ones((6, 2)),
            np.array(["a", "b", "a", "b", "a", "\x07b"]),
            "classification",
            "hybrid.search data: class label y\\[5\\]",
        ),
    ],
)
def test_bad_data_is_one_input_error(tmp_path: Path, X, y, kind: str, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=message) as info:
        hybrid.search(X, y, kind=kind, runs_dir=tmp_path, **FAST)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DataError)
    assert "\n" not in str(info.value) and ".data.npz" not in str(info.value)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # no run folder, nothing staged


def test_kind_is_required_without_a_config_that_says(tmp_path: Path) -> None:
    X, y = blobs()
    with pytest.raises(
        ConfigError,
        match=r"^hybrid.search: kind: got None, expected 'classification' or 'regression'",
    ):
        hybrid.search(X, y, runs_dir=tmp_path)


@pytest.mark.parametrize(
    ("split", "message"),
    [
        (
            np.array([0, 1, 2, 3, 0, 0]),
            r"split\[3\] is 3, expected 0 \(train\), 1 \(validation\) or 2 \(test\)",
        ),
        (np.array([0, 0, 2, 2, 0, 0]), "puts no row in the validation split"),
        (np.array([0.0, 1, 2, 0, 0, 0]), "array 'split' is float64 with shape"),
    ],
)
def test_a_bad_split_array_is_one_data_error(
    tmp_path: Path, split: np.ndarray, message: str
) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.arange(12.0).reshape(6, 2), y=np.arange(6.0), split=split)
    config = TaskConfig(path=str(path), kind="regression")
    with pytest.raises(DataError, match=message):
        load_task(config, 0)


def test_flat_keys_cover_every_config_key() -> None:
    from hybrid.config import SECTIONS

    assert (
        len(flat_keys()) == sum(len(m.model_fields) for m in SECTIONS.values()) - 1
    )  # name: run.name


def test_dataframe_target_names_and_eval_set_go_where_documented(tmp_path: Path) -> None:
    X, y = blobs()
    frame = pd.DataFrame(X, columns=["target", "b", "c"])
    r = hybrid.search(frame, y, kind="classification", runs_dir=tmp_path, name="t", **FAST)
    assert stored_task(r.run_dir)["target"] == "target_1"  # never a feature's name
    r = hybrid.search(
        frame, y, kind="classification", runs_dir=tmp_path, name="e", eval_set=(frame, y), **FAST
    )
    assert stored_task(r.run_dir)["path"] == "data.npz"  # a split needs the NPZ
    frame["colour"] = "red"
    with pytest.raises(InputError, match="X column 'colour' is categorical, but with eval_set"):
        hybrid.search(
            frame, y, kind="classification", runs_dir=tmp_path, eval_set=(frame, y), **FAST
        )
