"""Tables as users have them: CSV/TSV/Parquet, categorical columns, missing values, raw-row export."""

from __future__ import annotations

import datetime
import decimal
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from genomes import Genome, InnovationTracker
from hybrid.cli import main
from hybrid.config import TaskConfig
from hybrid.errors import DataError
from hybrid.export import to_module
from hybrid.tasks import _files as files_module
from hybrid.tasks import load_task
from hybrid.tasks._encode import (
    encode_columns,
    encoded_names,
    fit_encoding,
    input_fill,
    raw_columns,
)
from hybrid.tasks._files import read_table
from hybrid.tasks.preprocess import encode

CLS = "classification"


def _line(row: int) -> str:
    return f"line {row + 2}"


#: Parquet needs pyarrow, the tabular extra (CI installs it; the dev extra does not).
needs_pyarrow = pytest.mark.skipif(
    importlib.util.find_spec("pyarrow") is None, reason="pyarrow not installed"
)


def _cfg(path: Path, **kw: object) -> TaskConfig:
    return TaskConfig(path=str(path), target="label", kind=CLS, **kw)


def _table(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "size": rng.normal(10.0, 3.0, n),
            "city": rng.choice(["Oslo", "Rome", "Paris"], n),
            "code": rng.integers(0, 3, n),
            "label": np.where(np.arange(n) % 2 == 0, "yes", "no"),
        }
    )


# ------------------------------------------------------------------ the encoder, by hand


def test_encoding_learns_from_training_rows_only() -> None:
    frame = pd.DataFrame(
        {
            "x": [1.0, np.nan, 3.0, 100.0, np.nan, 7.0],
            "c": ["b", "a", None, "zzz", "a", "unseen"],
        }
    )
    train = np.array([0, 1, 2, 4])  # rows 3 and 5 are held out
    cols = raw_columns(frame, (), "t.csv", _line)
    enc = fit_encoding(cols, train, "median", "t.csv")
    assert enc["columns"][0] == {"name": "x", "kind": "numeric", "fill": 2.0}  # median(1, 3)
    # sorted text, missing last; 'zzz' and 'unseen' only in held-out rows
    assert enc["columns"][1] == {"name": "c", "kind": "categorical", "categories": ["a", "b", None]}
    X = encode_columns(cols, enc)
    expected = np.array(
        [
            [1.0, 0, 1, 0],
            [2.0, 1, 0, 0],  # NaN -> the training median
            [3.0, 0, 0, 1],  # missing category: its own input
            [100.0, 0, 0, 0],  # unseen category: all zero
            [2.0, 1, 0, 0],
            [7.0, 0, 0, 0],
        ]
    )
    np.testing.assert_array_equal(X, expected)
    assert encoded_names(enc) == ["x", "c=a", "c=b", "c (missing)"]
    mean = fit_encoding(cols, train, "mean", "t.csv")["columns"][0]["fill"]
    assert mean == pytest.approx(2.0)


def test_columns_keep_file_order_and_categories_sort_by_text() -> None:
    frame = pd.DataFrame(
        {"z": ["b", "a", "b"], "a": [3, 1, 2], "m": [True, False, True], "n": [0.5, 1.5, 2.5]}
    )
    cols = raw_columns(frame, ["a"], "t.csv", _line)
    assert [(c.name, c.kind) for c in cols] == [
        ("z", "categorical"),
        ("a", "categorical"),  # listed in task.categorical: integer codes
        ("m", "categorical"),  # booleans
        ("n", "numeric"),
    ]
    enc = fit_encoding(cols, np.arange(3), "error", "t.csv")
    assert [c.get("categories") for c in enc["columns"]] == [
        ["a", "b"],
        ["1", "2", "3"],
        ["False", "True"],
        None,
    ]
    X = encode_columns(cols, enc)
    np.testing.assert_array_equal(X[0], [0, 1, 0, 0, 1, 0, 1, 0.5])
    # the exported preprocess gives the same inputs from the raw rows (fill aside)
    np.testing.assert_array_equal(encode(frame, enc, dtype=np.float64), X)
    rows = frame.to_dict("records")
    np.testing.assert_array_equal(encode(rows, enc), X.astype(np.float32))


def test_category_values_match_by_their_text() -> None:
    enc = {
        "columns": [
            {"name": "k", "kind": "categorical", "categories": ["1", "2", "x", None]},
        ]
    }
    out = encode({"k": [1, 2.0, " x ", "1.0", None, np.nan]}, enc)
    np.testing.assert_array_equal(
        out, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]
    )
    with pytest.raises(ValueError, match="rows lack column"):
        encode({"other": [1]}, enc)


def test_missing_values_are_refused_by_default_naming_columns_and_counts(tmp_path: Path) -> None:
    df = _table()
    df.loc[[1, 4, 9], "size"] = np.nan
    df.loc[7, "city"] = None
    df.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError) as err:
        load_task(_cfg(tmp_path / "d.csv"), seed=0)
    assert str(err.value) == (
        f"{tmp_path / 'd.csv'}: missing values in columns 'size' (3), 'city' (1); "
        'set task.missing = "mean" or "median"'
    )
    task = load_task(_cfg(tmp_path / "d.csv", missing="median"), seed=0)
    assert task.encoding["missing"] == "median" and np.isfinite(task.X_train).all()


def test_missing_target_is_always_an_error(tmp_path: Path) -> None:
    df = _table()
    df.loc[[5, 6], "label"] = None
    df.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"line 7: empty or NaN target value \(2 row\(s\) in all\)"):
        load_task(_cfg(tmp_path / "d.csv", missing="mean"), seed=0)


@pytest.mark.parametrize(
    ("column", "fragment"),
    [
        (pd.Series(pd.date_range("2024-01-01", periods=60)), "column 'bad' has dtype datetime64"),
        (pd.Series(pd.to_timedelta(np.arange(60), unit="s")), "column 'bad' has dtype timedelta64"),
        (pd.Series([1 + 2j] * 60), "column 'bad' has dtype complex128"),
        (pd.Series([{"a": 1}, "x"] * 30, dtype=object), "column 'bad' holds dict values"),
    ],
)
def test_a_column_the_encoder_cannot_handle_is_named_with_its_dtype(column, fragment) -> None:
    frame = _table().drop(columns="label").assign(bad=column)
    with pytest.raises(DataError, match=fragment) as err:
        raw_columns(frame, (), "t.parquet", _line)
    assert "\n" not in str(err.value)


@needs_pyarrow
def test_parquet_columns_of_dates_or_decimals_are_not_measured_as_text(tmp_path: Path) -> None:
    # object columns without text: pandas' .str raises on them (the field length check skips them)
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 60
    labels = pa.array(["yes", "no"] * (n // 2))
    dates = pa.array([datetime.date(2024, 1, 1 + i % 28) for i in range(n)])
    pq.write_table(pa.table({"when": dates, "label": labels}), tmp_path / "dates.parquet")
    with pytest.raises(DataError, match=r"dates.parquet: column 'when' holds date values"):
        load_task(_cfg(tmp_path / "dates.parquet"), seed=0)
    amounts = pa.array([decimal.Decimal(f"{i}.5") for i in range(n)], pa.decimal128(5, 1))
    pq.write_table(pa.table({"amount": amounts, "label": labels}), tmp_path / "decimals.parquet")
    task = load_task(_cfg(tmp_path / "decimals.parquet"), seed=0)
    assert len(task.X_train) + len(task.X_val) + len(task.X_test) == n


@needs_pyarrow
def test_datetime_in_a_parquet_file_is_one_line_naming_it(tmp_path: Path) -> None:
    _table().assign(when=pd.date_range("2024-01-01", periods=60)).to_parquet(tmp_path / "d.parquet")
    with pytest.raises(DataError, match=r"d.parquet: column 'when' has dtype datetime64"):
        load_task(_cfg(tmp_path / "d.parquet"), seed=0)


def test_unknown_categorical_name_is_one_line_naming_it(tmp_path: Path) -> None:
    _table().to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match="task.categorical names 'colour', which is not a feature"):
        load_task(_cfg(tmp_path / "d.csv", categorical=["colour"]), seed=0)


def test_numbers_mixed_with_words_are_refused_unless_listed(tmp_path: Path) -> None:
    df = _table().astype({"code": object})
    df.loc[4, "code"] = "many"
    df.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match="column 'code', line 6: not a number.*task.categorical"):
        load_task(_cfg(tmp_path / "d.csv"), seed=0)
    task = load_task(_cfg(tmp_path / "d.csv", categorical=["code"]), seed=0)
    assert task.encoding["columns"][2]["categories"] == ["0", "1", "2", "many"]


# ------------------------------------------------------------------ reading


@pytest.mark.parametrize("engine", ["pyarrow", "c"])
def test_a_dataframe_round_trips_through_csv_bit_identical(tmp_path: Path, monkeypatch, engine) -> None:
    if engine == "pyarrow" and importlib.util.find_spec("pyarrow") is None:
        pytest.skip("pyarrow not installed")
    monkeypatch.setattr(files_module, "csv_engine", lambda: engine)
    rng = np.random.default_rng(3)
    values = rng.normal(size=(500, 4)) * 10.0 ** rng.integers(-12, 12, size=(500, 4))
    df = pd.DataFrame(values, columns=list("abcd")).assign(label=np.arange(500) % 3)
    df.to_csv(tmp_path / "d.csv", index=False)
    frame, y, _ = read_table(tmp_path / "d.csv", "label", CLS)
    assert (frame.to_numpy() == values).all() and list(y[:4]) == ["0", "1", "2", "0"]


@needs_pyarrow
def test_tsv_and_parquet_read_like_csv(tmp_path: Path) -> None:
    df = _table()
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_csv(tmp_path / "d.tsv", index=False, sep="\t")
    df.to_parquet(tmp_path / "d.pq")
    tasks = [load_task(_cfg(tmp_path / f"d.{s}"), seed=1) for s in ("csv", "tsv", "pq")]
    for t in tasks[1:]:
        np.testing.assert_array_equal(t.X_train, tasks[0].X_train)
        assert t.encoding == tasks[0].encoding and t.class_labels == ("no", "yes")


def test_c_engine_reports_a_short_row_by_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(files_module, "csv_engine", lambda: "c")
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,x\n3,4\n5,6,y\n")
    with pytest.raises(DataError, match="line 3 has 2 fields, the header has 3"):
        load_task(_cfg(tmp_path / "d.csv", missing="mean"), seed=0)


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        files_module.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pyarrow" else real(name, *a),
    )
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match=r"d.parquet: reading Parquet needs pyarrow: pip install"):
        load_task(_cfg(tmp_path / "d.parquet"), seed=0)


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"path": "d.txt", "target": "y", "kind": CLS}, "path"),
        ({"path": "d.parquet", "kind": CLS}, "target"),
        ({"path": "d.npz", "kind": CLS, "categorical": ["a"]}, "categorical"),
        ({"path": "d.npz", "kind": CLS, "missing": "mean"}, "missing"),
        ({"name": "spirals", "missing": "median"}, "missing"),
        ({"path": "d.csv", "target": "y", "kind": CLS, "categorical": ["y"]}, "categorical"),
    ],
)
def test_table_keys_are_checked_in_the_config(kw, key) -> None:
    with pytest.raises(ValueError, match=f"{key}: got"):
        TaskConfig(**kw)


# ------------------------------------------------------------------ export takes raw rows


def test_exported_module_fills_missing_numbers_before_standardising() -> None:
    g = Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), hidden=[4])
    net = to_module(g, feature_mean=[1.0, 2.0, 3.0], feature_std=[2.0, 2.0, 2.0])
    from hybrid.export.module import ExportedNet
    from hybrid.export.plan import plan_export

    filled = ExportedNet(plan_export(g, "sigmoid"), [1.0, 2.0, 3.0], [2.0] * 3, [5.0, None, None])
    filled.load_state_dict(net.state_dict(), strict=False)
    x = torch.tensor([[np.nan, 1.0, 1.0], [5.0, 1.0, 1.0]])
    out = filled.eval()(x).detach()
    assert torch.equal(out[0], out[1])
    assert torch.isnan(net(x)[0]).all()  # no fill: NaN stays NaN


TOML = """
[run]
name = "table"
seed = 0
runs_dir = "{runs}"

[task]
path = "data.csv"
target = "label"
kind = "classification"
missing = "median"
categorical = ["code"]

[genome]
hidden = [3]

[training]
steps = 20

[evolution]
population = 8
generations = 2
"""

CHILD = r"""
import importlib.util, json, sys
sys.path.extend(sys.argv[1:])
for name in ("hybrid", "genomes"):
    if importlib.util.find_spec(name) is not None:
        sys.exit(f"{name} is importable in the isolated process")
import numpy as np, pandas as pd, torch
torch.set_num_threads(1)
sys.path.insert(0, "best")
from model import CLASS_LABELS, load
from preprocess import encode
rows = pd.read_csv("test_rows.csv")
x = encode(rows)
assert np.array_equal(x, encode(json.load(open("test_rows.json"))), equal_nan=True)
with torch.no_grad():
    pred = load()(torch.from_numpy(x)).argmax(1).numpy()
labels = rows["label"].astype(str).to_numpy()
print(json.dumps({"accuracy": float(np.mean(np.array(CLASS_LABELS)[pred] == labels)),
                  "nan_inputs": int(np.isnan(x).sum())}))
"""


def _raw_test_rows(frame: pd.DataFrame, cfg: TaskConfig, seed: int) -> pd.DataFrame:
    """Return the raw rows of the test split: those whose encoding is a row of task.X_test."""
    task = load_task(cfg, seed)
    X = encode(frame, task.encoding, dtype=np.float64)
    fill = np.array([np.nan if v is None else v for v in input_fill(task.encoding)])
    X = np.where(np.isnan(X), fill, X)
    Xs = ((X - task.feature_mean) / task.feature_std).astype(np.float32)
    where = {row.tobytes(): i for i, row in enumerate(Xs)}
    rows = [where[row.tobytes()] for row in task.X_test]
    return frame.iloc[rows]


def test_csv_with_categories_and_gaps_runs_and_its_export_takes_raw_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 150
    size = rng.normal(0.0, 1.0, n)
    city = rng.choice(["Oslo", "Rome", "Paris"], n).astype(object)
    label = np.where(size + (city == "Rome") * 1.5 > 0.4, "high", "low")
    frame = pd.DataFrame(
        {"size": size, "city": city, "code": rng.integers(0, 4, n), "label": label}
    )
    frame.loc[rng.choice(n, 20, replace=False), "size"] = np.nan
    frame.loc[rng.choice(n, 10, replace=False), "city"] = None
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "c.toml").write_text(TOML.format(runs=(tmp_path / "runs").as_posix()))
    assert main(["run", str(tmp_path / "c.toml"), "--plain"]) == 0
    run = tmp_path / "runs" / "table"
    info = json.loads((run / "task.json").read_text())
    assert [c["name"] for c in info["encoding"]["columns"]] == ["size", "city", "code"]
    assert main(["export", str(run)]) == 0
    assert (run / "best" / "preprocess.py").is_file()

    cfg = TaskConfig(
        path=str(tmp_path / "data.csv"), target="label", kind=CLS, missing="median", categorical=["code"]
    )
    test_rows = _raw_test_rows(pd.read_csv(tmp_path / "data.csv"), cfg, seed=0)
    test_rows.to_csv(run / "test_rows.csv", index=False)
    records = test_rows.astype(object).where(test_rows.notna(), None).to_dict("records")
    (run / "test_rows.json").write_text(json.dumps(records))
    sites = []
    for name in ("torch", "numpy", "pandas"):
        folder = str(Path(importlib.util.find_spec(name).origin).parent.parent)
        sites += [] if folder in sites else [folder]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, "-S", "-E", "-c", CHILD, *sites],
        cwd=run, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    metrics = json.loads((run / "best" / "metrics.json").read_text())
    assert result["nan_inputs"] > 0  # raw gaps reached the module, which filled them
    # the engine scores in float32: the same predictions give the same float32 accuracy
    assert np.float32(result["accuracy"]) == np.float32(metrics["test_metric"])
    assert result["accuracy"] > 0.7


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("fmt", ["python", "torchscript", "pt2"])
def test_every_torch_format_fills_missing_numbers(tmp_path: Path, fmt: str) -> None:
    from hybrid.export import FORMATS, export_genome
    from tests.hybrid.test_export_module import import_file

    g = Genome.minimal(3, 2, np.random.default_rng(1), InnovationTracker(), hidden=[4])
    side = {"feature_mean": [0.5, 0.0, 1.0], "feature_std": [2.0, 1.0, 1.0]}
    side["feature_fill"] = [4.0, None, -1.0]
    result = export_genome(g, tmp_path / f"model{FORMATS[fmt][0]}", fmt, "sigmoid", side)
    assert result.sidecar["feature_fill"] == [4.0, None, -1.0]
    if fmt == "python":
        model = import_file(result.path, "fill_export").load()
    elif fmt == "torchscript":
        model = torch.jit.load(str(result.path))
    else:
        model = torch.export.load(str(result.path)).module()
    x = torch.tensor([[np.nan, 0.3, np.nan], [4.0, 0.3, -1.0], [1.0, np.nan, 2.0]])
    with torch.no_grad():
        out = model(x)
    assert torch.equal(out[0], out[1]) and torch.isnan(out[2]).all()


def test_task_json_encoding_is_validated_against_n_inputs(tmp_path: Path) -> None:
    from hybrid.errors import RunDirError
    from hybrid.rundir import TaskInfo

    info = {
        "name": "d", "kind": CLS, "n_inputs": 3, "n_outputs": 2,
        "feature_mean": [0.0] * 3, "feature_std": [1.0] * 3, "class_labels": ["a", "b"],
        "encoding": {
            "format": "hybrid.encoding", "version": 1, "missing": "mean",
            "columns": [
                {"name": "x", "kind": "numeric", "fill": 1.5},
                {"name": "c", "kind": "categorical", "categories": ["p", None]},
            ],
        },
    }  # fmt: skip
    assert TaskInfo.model_validate(info).check(tmp_path / "task.json").encoding.columns[1].width == 2
    info["n_inputs"] = 4
    info["feature_mean"] = info["feature_std"] = [1.0] * 4
    with pytest.raises(RunDirError, match="key 'encoding' describes 3 inputs, expected n_inputs = 4"):
        TaskInfo.model_validate(info).check(tmp_path / "task.json")


def test_a_dataframe_with_categories_runs_through_hybrid_search(tmp_path: Path) -> None:
    import hybrid

    rng = np.random.default_rng(2)
    n = 60
    y = np.arange(n) % 2
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=n) + 2.0 * y,
            "colour": pd.Series(np.where(y == 1, "red", "blue"), dtype="category"),
            "word": np.array(["x", "y", "z"], dtype=object)[np.arange(n) % 3],
            "flag": (np.arange(n) % 4 == 0),
        }
    )
    fast = {"population": 4, "generations": 2, "steps": 10, "device": "cpu"}
    result = hybrid.search(frame, y, kind="classification", runs_dir=tmp_path, **fast)
    info = json.loads((result.run_dir / "task.json").read_text())
    kinds = {c["name"]: c["kind"] for c in info["encoding"]["columns"]}
    assert kinds == {"a": "numeric", "colour": "categorical", "word": "categorical", "flag": "categorical"}
    assert info["n_inputs"] == 1 + 2 + 3 + 2


@pytest.mark.parametrize(
    "labels",
    [
        pd.Series([3, -1, 3, 10**15, 0, -1]),
        pd.Series(np.array([7, 2, 7, 255], dtype=np.uint8)),
        pd.Series([True, False, False, True]),
        pd.Series([2, 1, 2, 5], dtype="Int64"),
        pd.Series([1.0, 2.0, 1.0, -0.0, 0.0]),
        pd.Series([" b", "a", "b", "a "]),
    ],
)
def test_label_text_is_every_row_made_text(labels: pd.Series, tmp_path: Path) -> None:
    """Integers are made text per distinct value: the same text as per row, the same first rows."""
    kind = labels.dtype.kind
    expected = labels.astype(str).to_numpy(dtype=object) if kind in "iubf" else None
    text = files_module._labels(tmp_path / "d.csv", "y", labels, lambda i: f"line {i + 2}")
    if expected is not None:
        assert text.tolist() == expected.tolist()
    codes, uniques = pd.factorize(text)
    np.testing.assert_array_equal(
        files_module._first_rows(codes, len(uniques)), np.unique(codes, return_index=True)[1]
    )


def test_first_rows_skip_missing_values() -> None:
    codes, uniques = pd.factorize(np.array([None, "b", "a", None, "b"], dtype=object))
    assert files_module._first_rows(codes, len(uniques)).tolist() == [1, 2]


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 24])
def test_a_nul_byte_is_found_on_its_line_whatever_the_read_size(tmp_path: Path, monkeypatch, chunk) -> None:
    monkeypatch.setattr(files_module, "_NUL_CHUNK", chunk)
    path = tmp_path / "d.csv"
    path.write_bytes(b"a,label\n" + b"1.5,x\n2.5,y\n" * 10 + b"3\x00,x\n4,y\n")
    with pytest.raises(DataError, match=r"d\.csv: line 22 holds a NUL byte"):
        read_table(path, "label", CLS)
