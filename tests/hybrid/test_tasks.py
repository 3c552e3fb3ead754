"""Tasks: built-ins, user CSV/NPZ data, seeded splits, training-only standardisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import train_test_split

from hybrid.config import TaskConfig
from hybrid.errors import DataError
from hybrid.tasks import TASKS, Task, load_task, split_indices
from hybrid.tasks._load import carve_selection
from hybrid.tasks._split import shuffle_split


def _splits(task: Task) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(task.X_train, task.y_train), (task.X_val, task.y_val), (task.X_test, task.y_test)]


def _raw_rows(task: Task, X: np.ndarray) -> set[tuple[float, ...]]:
    raw = X * task.feature_std + task.feature_mean
    return {tuple(np.round(r, 3)) for r in raw}


@pytest.mark.parametrize("name", [n for n, s in TASKS.items() if not s.sequence])
def test_builtin_task_loads_with_consistent_shapes(name: str) -> None:
    task = load_task(TaskConfig(name=name), seed=0)
    assert task.kind == TASKS[name].kind == "classification"
    for X, y in _splits(task):
        assert X.dtype == np.float32 and X.shape[1] == task.n_inputs and len(X) == len(y) > 0
        assert y.dtype == np.int64 and 0 <= y.min() and y.max() < task.n_outputs
        assert not X.flags.writeable
    assert len(task.class_labels) == task.n_outputs
    assert TASKS[name].description and "\n" not in TASKS[name].description


@pytest.mark.parametrize("name", [n for n, s in TASKS.items() if s.split and not s.sequence])
def test_splits_are_seeded_disjoint_and_cover_the_data(name: str) -> None:
    a, b, c = (load_task(TaskConfig(name=name), seed=s) for s in (1, 1, 2))
    for (xa, ya), (xb, yb) in zip(_splits(a), _splits(b), strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a.y_test, c.y_test) or not np.array_equal(a.X_test, c.X_test)
    rows = [_raw_rows(a, X) for X, _ in _splits(a)]
    n = sum(len(X) for X, _ in _splits(a))
    if len(set.union(*rows)) == n:  # data without duplicate rows: splits must be disjoint
        assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])


def test_split_sizes_follow_the_fractions() -> None:
    task = load_task(TaskConfig(name="digits", val_fraction=0.1, test_fraction=0.3), seed=0)
    n = 1797
    assert len(task.X_test) == pytest.approx(0.3 * n, abs=1)
    assert len(task.X_val) == pytest.approx(0.1 * n, abs=1)
    assert len(task.X_train) + len(task.X_val) + len(task.X_test) == n


def test_classification_splits_are_stratified() -> None:
    task = load_task(TaskConfig(name="breast_cancer"), seed=0)
    shares = [np.mean(y) for _, y in _splits(task)]
    assert max(shares) - min(shares) < 0.02


def test_standardisation_uses_the_training_split_only() -> None:
    task = load_task(TaskConfig(name="wine"), seed=3)
    np.testing.assert_allclose(task.X_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(task.X_train.std(axis=0), 1.0, atol=1e-4)
    from sklearn.datasets import load_wine

    raw = load_wine().data
    train_raw = task.X_train * task.feature_std + task.feature_mean
    np.testing.assert_allclose(task.feature_mean, train_raw.mean(axis=0), rtol=1e-5)
    assert not np.allclose(task.feature_mean, raw.mean(axis=0), rtol=1e-3)
    assert abs(task.X_test.mean()) > 1e-3  # held-out data are not re-centred on their own mean


def test_xor_is_its_four_points_in_every_split() -> None:
    task = load_task(TaskConfig(name="xor"), seed=0)
    for X, y in _splits(task):
        assert X.shape == (4, 2)
        np.testing.assert_array_equal(y, [0, 1, 1, 0])


def test_spirals_are_the_classic_194_points_by_default() -> None:
    task = load_task(TaskConfig(name="spirals"), seed=0)
    assert sum(len(X) for X, _ in _splits(task)) == 194
    raw = np.concatenate([X for X, _ in _splits(task)]) * task.feature_std + task.feature_mean
    assert np.abs(raw).max() == pytest.approx(6.5, abs=1e-4)  # radius of the first point


def test_synthetic_tasks_follow_n_samples_and_noise() -> None:
    task = load_task(TaskConfig(name="circles", n_samples=200, noise=0.0), seed=0)
    assert sum(len(X) for X, _ in _splits(task)) == 200


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _csv_cfg(path: Path, target: str = "label", kind: str = "classification") -> TaskConfig:
    return TaskConfig(path=str(path), target=target, kind=kind)


def test_csv_classification_with_string_labels(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i % 3 * 1.5},{'ab'[i % 2]}\n" for i in range(40))
    task = load_task(_csv_cfg(_write(tmp_path / "d.csv", "a,b,label\n" + rows)), seed=0)
    assert task.name == "d" and task.n_inputs == 2 and task.class_labels == ("a", "b")
    assert task.source == str((tmp_path / "d.csv").resolve())


def test_csv_regression_targets_are_float_columns(tmp_path: Path) -> None:
    rows = "".join(f"{i},{2.5 * i}\n" for i in range(30))
    task = load_task(
        _csv_cfg(_write(tmp_path / "r.csv", "x,y\n" + rows), "y", "regression"), seed=0
    )
    assert task.y_train.dtype == np.float32 and task.y_train.shape[1] == 1 and task.n_outputs == 1
    assert task.class_labels == ()


def test_numeric_class_labels_are_ordered_numerically(tmp_path: Path) -> None:
    rows = "".join(f"{i},{[2, 10, 1.0][i % 3]}\n" for i in range(30))
    task = load_task(_csv_cfg(_write(tmp_path / "d.csv", "x,label\n" + rows)), seed=0)
    assert task.class_labels == ("1", "2", "10")


def test_npz_data_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(50, 3)), y=np.arange(50) % 2)
    task = load_task(TaskConfig(path=str(tmp_path / "d.npz"), kind="classification"), seed=0)
    assert task.n_inputs == 3 and task.n_outputs == 2


@pytest.mark.parametrize(
    ("text", "target", "expected"),
    [
        ("", "label", "empty file"),
        ("a,b,label\n", "label", "no data rows"),
        ("a,b,c\n1,2,0\n", "label", "no target column 'label' among the header's 3 column(s)"),
        ("a,b,label\n1,2,0\n1,x7,1\n", "label", "column 'b', line 3: not a number"),
        ("a,b,label\n1,2,0\n1,inf,1\n", "label", "column 'b', line 3: infinite value"),
        ("a,b,label\n1,2,0\n1,,1\n", "label", "missing values in column 'b' (1)"),
        ("a,b,label\n1,2,0\n1,2\n", "label", "line 3 has 2 fields, the header has 3"),
        ("a,label\n1,0\n2,0\n", "label", "only one class ('0')"),
    ],
)
def test_bad_csv_gives_one_line_naming_file_column_and_value(
    text: str, target: str, expected: str, tmp_path: Path
) -> None:
    path = _write(tmp_path / "d.csv", text)
    with pytest.raises(DataError) as info:
        load_task(_csv_cfg(path, target), seed=0)
    assert str(info.value).startswith(str(path)) and expected in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_csv_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.csv: file not found"):
        load_task(_csv_cfg(tmp_path / "nope.csv"), seed=0)


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        ({"features": np.zeros((4, 2)), "y": np.zeros(4)}, "no array 'X' (arrays: 'features', 'y')"),
        ({"X": np.zeros((4, 2))}, "no array 'y'"),
        ({"X": np.zeros((4, 2)), "y": np.zeros(3)}, "X has 4 rows but y has 3"),
        ({"X": np.zeros(4), "y": np.zeros(4)}, "expected numbers of shape [samples, features]"),
        ({"X": np.array([[0.0], [np.nan]]), "y": np.zeros(2)}, "X[1, 0] is nan"),
        (
            {"X": np.zeros((4, 1)), "y": np.array([0.5, 1, 0, 1])},
            "class label y[0] is not an integer",
        ),
    ],
)
def test_bad_npz_gives_one_line_naming_the_array(
    arrays: dict, expected: str, tmp_path: Path
) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as info:
        load_task(TaskConfig(path=str(path), kind="classification"), seed=0)
    assert str(info.value).startswith(str(path)) and expected in str(info.value)


def test_too_small_a_class_to_stratify_is_a_data_error(tmp_path: Path) -> None:
    rows = "".join(f"{i},{int(i == 0)}\n" for i in range(20))
    with pytest.raises(DataError, match="cannot split 20 samples"):
        load_task(_csv_cfg(_write(tmp_path / "d.csv", "x,label\n" + rows)), seed=0)


# The splits before hybrid drew them itself (hybrid.tasks._split): two sklearn
# train_test_split calls, then a third for the selection split. Runs resume
# byte-identical and shipped results depend on these rows, so they must not move.
def _sklearn_split(y: np.ndarray, val: float, test: float, seed: int, stratify: bool) -> tuple:
    state = int(np.random.default_rng([seed, 1]).integers(2**31 - 1))
    idx = np.arange(len(y))
    rest, te = train_test_split(idx, test_size=test, random_state=state, stratify=y if stratify else None)
    tr, va = train_test_split(
        rest, test_size=val / (1.0 - test), random_state=state + 1, stratify=y[rest] if stratify else None
    )
    return np.sort(tr), np.sort(va), np.sort(te)


def _sklearn_carve(y: np.ndarray, train: np.ndarray, fraction: float, seed: int, stratify: bool) -> tuple:
    state = int(np.random.default_rng([seed, 2]).integers(2**31 - 1))
    rest, sel = train_test_split(
        train, test_size=fraction * len(y) / len(train), random_state=state,
        stratify=y[train] if stratify else None,
    )
    return np.sort(rest), np.sort(sel)


@st.composite
def _targets(draw: st.DrawFn) -> np.ndarray:
    """Class ids of 2 to 400 rows: 1 to 6 classes, some of them rare (1 or 2 rows)."""
    n = draw(st.integers(2, 400))
    weights = draw(st.lists(st.integers(1, 50), min_size=1, max_size=6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = rng.choice(len(weights), size=n, p=np.array(weights) / sum(weights))
    if draw(st.booleans()):  # a rare class
        y[draw(st.integers(0, n - 1))] = len(weights)
    return y.astype(np.int64)


def _same(old: tuple | None, new: tuple | None) -> None:
    assert (old is None) == (new is None), (old, new)
    if old is not None:
        for a, b in zip(old, new, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b)


@settings(max_examples=300, deadline=None)
@given(
    y=_targets(),
    val=st.sampled_from([0.1, 0.15, 0.2, 0.25, 1 / 3]),
    test=st.floats(0.05, 0.5),
    seed=st.integers(0, 2**63 - 1),
    stratify=st.booleans(),
    fraction=st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.3]),
)
def test_splits_are_todays_sklearn_splits_for_any_seed(
    y: np.ndarray, val: float, test: float, seed: int, stratify: bool, fraction: float
) -> None:
    try:
        old = _sklearn_split(y, val, test, seed, stratify)
    except ValueError:
        old = None
    try:
        new = split_indices(y, val, test, seed, stratify, "t")
    except DataError:
        new = None
    _same(old, new)
    if new is None or fraction == 0.0:
        return
    try:
        old = _sklearn_carve(y, new[0], fraction, seed, stratify)
    except ValueError:
        old = None
    try:
        new = carve_selection(y, new[0], fraction, seed, stratify, "t")
    except DataError:
        new = None
    _same(old, new)


@settings(max_examples=100, deadline=None)
@given(y=_targets(), test=st.floats(0.01, 0.99), state=st.integers(0, 2**32 - 1), stratify=st.booleans())
def test_shuffle_split_draws_the_rows_and_order_train_test_split_draws(
    y: np.ndarray, test: float, state: int, stratify: bool
) -> None:
    rows = np.random.default_rng(state).permutation(len(y))  # any order, as a split's training rows
    try:
        old = train_test_split(rows, test_size=test, random_state=state, stratify=y[rows] if stratify else None)
    except ValueError:
        old = None
    try:
        train, held = shuffle_split(len(rows), test, state, y[rows] if stratify else None)
        new = [rows[train], np.sort(rows[held])]
    except ValueError:
        new = None
    if old is not None:
        old[1] = np.sort(old[1])  # the test rows come back in no particular order
    _same(old, new)


@pytest.mark.parametrize("n", [10_000, 100_003])
@pytest.mark.parametrize("seed", [0, 1, 2**40 + 7])
@pytest.mark.parametrize("stratify", [True, False])
def test_large_splits_are_todays_sklearn_splits(n: int, seed: int, stratify: bool) -> None:
    y = np.random.default_rng(seed).choice(7, size=n, p=[0.4, 0.2, 0.2, 0.1, 0.05, 0.048, 0.002])
    new = split_indices(y, 0.2, 0.2, seed, stratify, "t")
    _same(_sklearn_split(y, 0.2, 0.2, seed, stratify), new)
    _same(_sklearn_carve(y, new[0], 0.1, seed, stratify), carve_selection(y, new[0], 0.1, seed, stratify, "t"))


def test_a_split_error_is_one_line_naming_the_rare_class() -> None:
    with pytest.raises(DataError) as info:
        split_indices(np.array([0, 0, 0, 0, 1, 1, 1, 1, 2]), 0.2, 0.2, 0, True, "d.csv")
    msg = str(info.value)
    assert msg.startswith("d.csv: cannot split 9 samples") and "\n" not in msg
    assert "class(es) [2] have a single sample, expected at least 2 per class" in msg


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
@pytest.mark.parametrize("chunk", [2**21, 64])  # 64 bytes: a row or two at a time
def test_standardised_splits_are_todays_bits(
    dtype: type, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scaled a chunk at a time, in place, split by split: the bits of the whole-array formula."""
    from hybrid.tasks import _load

    monkeypatch.setattr(_load, "_CHUNK_BYTES", chunk)
    rng = np.random.default_rng(4)
    X = (rng.normal(size=(1001, 5)) * [1, 1e4, 1e-4, 3, 0] + [0, 7, -2, 1e6, -0.0]).astype(dtype)
    tr, va, te = split_indices(rng.integers(0, 3, 1001), 0.2, 0.2, 9, True, "t")
    mean, std, parts = _load._standardised(X, tr, list("abcde"), "t", (tr, va, te, tr))
    m, s = _load.standardise(X[tr])
    whole = ((X - m) / s).astype(np.float32)
    assert mean.tobytes() == m.tobytes() and std.tobytes() == s.tobytes()
    for rows, part in zip((tr, va, te, tr), parts, strict=True):
        assert part.dtype == np.float32 and part.tobytes() == whole[rows].tobytes()
    (flat,) = _load._standardised(X, tr, list("abcde"), "t")[2]
    assert flat.tobytes() == whole.tobytes()


@pytest.mark.parametrize(
    ("value", "fits"),
    [
        (3.4028234663852886e38, True),  # float32's largest
        (np.nextafter(2.0**128 - 2.0**103, 0.0), True),  # rounds down to it
        (2.0**128 - 2.0**103, False),  # rounds up, to inf
        (1e300, False),
    ],
)
def test_a_feature_beyond_float32_is_refused_at_the_same_bound(value: float, fits: bool) -> None:
    from hybrid.tasks._load import _standardised

    X = np.zeros((6, 3))
    X[:, 1] = [1.0, -1.0, 0.5, 2.0, 0.0, 1.0]
    X[4, 2] = -value
    with np.errstate(over="ignore"):
        assert bool(np.isfinite(np.float32(-value))) == fits
    rows = np.arange(6)
    if fits:
        assert np.isfinite(_standardised(X, rows[:5], ["a", "b", "c"], "t", (rows,))[2][0]).all()
    else:
        with pytest.raises(DataError, match="feature 'c' is not finite in float32"):
            _standardised(X, rows[:5], ["a", "b", "c"], "t", (rows,))


@settings(max_examples=150, deadline=None)
@given(
    rows=st.integers(1, 3000),
    cols=st.integers(1, 12),
    chunk=st.sampled_from([8, 100, 1000, 2**21]),
    scale=st.floats(1e-6, 1e12),
    seed=st.integers(0, 2**32 - 1),
    order=st.sampled_from(["C", "F"]),
)
def test_standardise_is_numpys_mean_and_std_to_the_bit(
    rows: int, cols: int, chunk: int, scale: float, seed: int, order: str
) -> None:
    """The chunked deviations add the same numbers in the same order as ``X.std``."""
    from hybrid.tasks import _load

    rng = np.random.default_rng(seed)
    X = np.asarray(rng.standard_cauchy(size=(rows, cols)) * scale + rng.normal(size=cols), order=order)
    old = _load._CHUNK_BYTES
    _load._CHUNK_BYTES = chunk  # no monkeypatch fixture in @given: restored below
    try:
        mean, std = _load.standardise(X)
    finally:
        _load._CHUNK_BYTES = old
    want_std = X.std(axis=0)
    want_std = np.where(want_std > 1e-12, want_std, 1.0)
    assert mean.tobytes() == X.mean(axis=0).astype(np.float32).tobytes()
    assert std.tobytes() == want_std.astype(np.float32).tobytes()
    if cols >= 2:  # before the float32 rounding too, rows in C order
        Xc = np.ascontiguousarray(X)
        m64, s64 = _load._mean_std(Xc)
        assert m64.tobytes() == Xc.mean(axis=0).tobytes()
        assert s64.tobytes() == Xc.std(axis=0).tobytes()


@pytest.mark.parametrize(
    "y",
    [
        np.random.default_rng(3).integers(0, 3, 1000),  # a few classes: a pass each
        np.random.default_rng(3).integers(0, 40, 5000),  # many: counted, then sorted
        np.random.default_rng(3).integers(-3, 3, 100),  # negative: numpy's unique
        np.array([5, 9, 9, 5, 100, 70_000, 70_000]),  # gaps, and a large id
        np.random.default_rng(3).integers(0, 3, 50).astype(np.uint8),
        np.random.default_rng(3).integers(0, 3, 40).astype(float),
    ],
)
def test_class_rows_are_a_stable_sort_by_class(y: np.ndarray) -> None:
    from hybrid.tasks._split import _class_rows

    classes, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    rows = np.split(np.argsort(codes, kind="stable"), np.cumsum(counts)[:-1])
    got_classes, got_counts, got_rows = _class_rows(y)
    assert got_classes.tolist() == classes.tolist() and got_counts.tolist() == counts.tolist()
    assert len(got_rows) == len(rows)
    for a, b in zip(got_rows, rows, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
