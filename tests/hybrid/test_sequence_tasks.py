"""Sequence tasks: the bracket languages and parity, their entropy floors, NPZ sequences.

Floors are checked three ways: against the closed forms stated in
:mod:`hybrid.tasks._sequences`, by Monte Carlo (the true laws' cross-entropy on sampled
characters), and per position (the law puts mass on the character that came).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy.special import entr

from hybrid.cli import main
from hybrid.config import TaskConfig, loads_config
from hybrid.errors import ConfigError, DataError, HybridError
from hybrid.metrics import METRICS, check_metric, metric_score, scored_steps
from hybrid.rundir import TaskInfo
from hybrid.tasks import SEQUENCE_TASKS, TASKS, load_task
from hybrid.tasks._sequences import (
    ALPHABET,
    BURN_IN,
    EVAL_LENGTH,
    EVAL_PIECES,
    P_CONTINUE,
    STREAMS,
    brackets_easy,
    brackets_hard,
    entropy_floor,
    sample_floor,
)

A, B, OPEN, CLOSE = range(4)
H_EASY = float(entr(P_CONTINUE) + entr(1 - P_CONTINUE))
EASY_FLOOR = H_EASY / (2 * (2 - P_CONTINUE))  # E[k] H(p) / E[2k + 2], k ~ Geometric(1 - p)
HARD_FLOOR = float(np.log(6) / 8)  # a group's entropy is its flip position's, ln 6, per 8 chars


def _text(chars: np.ndarray) -> str:
    return "".join(ALPHABET[c] for c in chars)


def _splits(task) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    return [
        (task.X_train, task.y_train, task.mask_train),
        (task.X_val, task.y_val, task.mask_val),
        (task.X_test, task.y_test, task.mask_test),
    ]


# --- built-ins: registry, shapes, seeding -------------------------------------------------


def test_sequence_tasks_are_registered_and_load_by_name() -> None:
    assert set(SEQUENCE_TASKS) == {"brackets_easy", "brackets_hard", "parity"}
    assert all(TASKS[n] is s for n, s in SEQUENCE_TASKS.items())
    assert "0.75" in TASKS["brackets_easy"].description
    for name in ("brackets_easy", "brackets_hard"):
        config = TaskConfig(name=name)
        assert config.metric == "excess_nats" and config.n_samples == 80_000
    assert TaskConfig(name="parity").metric == "accuracy"


def test_a_sequence_task_refuses_noise() -> None:
    with pytest.raises(ConfigError, match="task.noise.*expected it unset: 'brackets_hard' is a sequence"):
        loads_config('[task]\nname = "brackets_hard"\nnoise = 0.1\n')


@pytest.mark.parametrize("name", ["brackets_easy", "brackets_hard"])
def test_bracket_task_shapes_masks_and_one_hot_inputs(name: str) -> None:
    task = load_task(TaskConfig(name=name, n_samples=32 * 100), seed=0)
    assert task.sequence and task.per_step and task.stream
    assert task.X_train.shape == (STREAMS, 100, 4) and task.y_train.shape == (STREAMS, 100)
    assert task.mask_train is None
    for X, y, mask in _splits(task)[1:]:
        assert X.shape == (EVAL_PIECES, EVAL_LENGTH, 4) and X.dtype == np.float32
        assert y.shape == (EVAL_PIECES, EVAL_LENGTH) and y.dtype == np.int64
        assert mask.dtype == bool and not mask[:, :BURN_IN].any() and mask[:, BURN_IN:].all()
    for X, y, _ in _splits(task):
        np.testing.assert_array_equal(X.sum(axis=2), 1.0)  # one-hot, not standardised
        np.testing.assert_array_equal(X[:, 1:].argmax(axis=2), y[:, :-1])  # y = next input
        assert (X[:, 0].argmax(axis=1) == OPEN).all() and not X.flags.writeable
    np.testing.assert_array_equal(task.feature_mean, 0.0)
    np.testing.assert_array_equal(task.feature_std, 1.0)
    assert task.n_inputs == task.n_outputs == 4 and task.class_labels == ALPHABET


@pytest.mark.parametrize("name", sorted(SEQUENCE_TASKS))
def test_same_seed_same_data_other_seed_other_data(name: str) -> None:
    a, b, c = (load_task(TaskConfig(name=name, n_samples=3_200), seed=s) for s in (4, 4, 5))
    for (xa, ya, ma), (xb, yb, mb) in zip(_splits(a), _splits(b), strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
        assert (ma is None and mb is None) or np.array_equal(ma, mb)
    assert a.floor_val == b.floor_val and a.floor_test == b.floor_test
    assert not np.array_equal(a.X_val, c.X_val)


def test_training_size_leaves_the_held_out_splits_alone() -> None:
    small, large = (load_task(TaskConfig(name="brackets_hard", n_samples=n), seed=1) for n in (3_200, 6_400))
    np.testing.assert_array_equal(small.X_val, large.X_val)
    np.testing.assert_array_equal(small.y_test, large.y_test)
    assert small.X_train.shape[1] == 100 and large.X_train.shape[1] == 200


def test_too_few_training_characters_is_one_line() -> None:
    with pytest.raises(DataError, match=r"task 'brackets_easy': task.n_samples = 40 .* expected n_samples >= 64"):
        load_task(TaskConfig(name="brackets_easy", n_samples=40), seed=0)


def test_parity_is_padded_masked_and_labelled_by_its_real_bits() -> None:
    task = load_task(TaskConfig(name="parity"), seed=2)
    assert task.sequence and not task.per_step and not task.stream
    assert task.X_train.shape == (1000, 10, 1) and task.y_train.shape == (1000,)
    for X, y, mask in _splits(task):
        lengths = mask.sum(axis=1)
        assert lengths.min() == 2 and lengths.max() == 10
        assert (mask == (np.arange(10) < lengths[:, None])).all()  # right-padded
        bits = np.rint(X[..., 0] * task.feature_std[0] + task.feature_mean[0]).astype(int)
        np.testing.assert_array_equal(bits[~mask], 0)
        np.testing.assert_array_equal(y, (bits * mask).sum(axis=1) % 2)
    real = task.X_train[task.mask_train]
    assert abs(real.mean()) < 1e-5 and abs(real.std() - 1.0) < 1e-4  # standardised on real steps


# --- the generators' rules and their floors -----------------------------------------------


def test_easy_generator_follows_its_grammar_and_laws() -> None:
    chars, probs = brackets_easy(50, 400, np.random.default_rng(0))
    text = _text(chars[0])
    for group in text.split(")")[:-1]:
        assert group.startswith("(ab") and group[1:] == "ab" * (len(group) // 2)
    h = entr(probs).sum(axis=2)
    np.testing.assert_allclose(h, np.where(chars[:, :-1] == B, H_EASY, 0.0), atol=1e-12)
    np.testing.assert_allclose(probs.sum(axis=2), 1.0)
    got = np.take_along_axis(probs, chars[:, 1:, None], axis=2)[..., 0]
    assert (got > 0).all()  # the law never excludes what came


def test_hard_generator_reverses_each_group_with_exactly_one_flip() -> None:
    chars, probs = brackets_hard(20, 8 * 30 - 1, np.random.default_rng(1))
    groups = chars.reshape(20, 30, 8)
    assert (groups[:, :, 0] == OPEN).all() and (groups[:, :, 7] == CLOSE).all()
    letters = groups[:, :, 1:7]
    assert set(np.unique(letters)) <= {A, B}
    flips = (letters[:, 1:] != letters[:, :-1, ::-1]).sum(axis=2)
    assert (flips == 1).all()
    positions = np.argmax(letters[:, 1:] != letters[:, :-1, ::-1], axis=2)
    assert set(np.unique(positions)) == set(range(6))
    got = np.take_along_axis(probs, chars[:, 1:, None], axis=2)[..., 0]
    assert (got > 0).all()
    np.testing.assert_allclose(probs.sum(axis=2), 1.0)
    # Inside a group (past the first), the entropies sum to ln 6 over the group.
    h = entr(probs).sum(axis=2)[:, 7:].reshape(20, 29, 8).sum(axis=2)
    np.testing.assert_allclose(h.mean(), np.log(6), rtol=0.05)


@pytest.mark.parametrize(
    ("generate", "closed_form"), [(brackets_easy, EASY_FLOOR), (brackets_hard, HARD_FLOOR)]
)
def test_floor_matches_the_closed_form_and_monte_carlo(
    generate: Callable[..., tuple[np.ndarray, np.ndarray]], closed_form: float
) -> None:
    chars, probs = generate(400, 2_000, np.random.default_rng(7))
    mask = np.zeros((400, 2_000), dtype=bool)
    mask[:, 200:] = True  # far from the start: the renewal process is stationary there
    floor = entropy_floor(probs, mask)
    assert floor == pytest.approx(closed_form, abs=2e-3)
    true_nll = -np.log(np.take_along_axis(probs, chars[:, 1:, None], axis=2)[..., 0])
    assert true_nll[mask].mean() == pytest.approx(closed_form, abs=3e-3)


@pytest.mark.parametrize(("name", "closed_form"), [("brackets_easy", EASY_FLOOR), ("brackets_hard", HARD_FLOOR)])
def test_task_floors_are_near_the_closed_form(name: str, closed_form: float) -> None:
    floors = [load_task(TaskConfig(name=name, n_samples=3_200), seed=s).floor_val for s in range(6)]
    assert np.mean(floors) == pytest.approx(closed_form, abs=0.015)
    if name == "brackets_easy":  # each split's own floor, not the asymptotic constant
        assert len(set(floors)) > 1
    # brackets_hard: a whole group's true probability is always 1/6 (the flip's position),
    # so a split of whole groups has the floor ln(6)/8 exactly, whatever its letters.


# --- excess_nats ---------------------------------------------------------------------------


def test_excess_nats_is_registered_lower_is_better() -> None:
    spec = METRICS["excess_nats"]
    assert spec.kind == "classification" and not spec.greater_is_better
    assert check_metric("excess_nats", "classification") is spec


def test_excess_nats_of_the_true_laws_is_zero_when_targets_follow_them() -> None:
    # Each position repeated once per outcome in proportion to its law: the empirical
    # cross-entropy of the true laws is then exactly their entropy, the floor.
    _, probs = brackets_easy(4, 64, np.random.default_rng(3))
    law = probs.reshape(-1, 4)
    reps = np.rint(law * 4).astype(int)  # p = 0.75 / 0.25 / 1: integer multiples of 1/4
    rows = np.repeat(np.arange(len(law)), reps.sum(axis=1))
    targets = np.concatenate([np.repeat(np.arange(4), r) for r in reps])
    with np.errstate(divide="ignore"):
        logits = np.log(law[rows])[None]  # -inf where the law is 0
    mask = np.ones((1, len(rows)), dtype=bool)
    floor = entropy_floor(law[rows][None], mask)
    score = metric_score("excess_nats", targets[None], logits + 5.0, mask=mask, floor=floor)
    assert abs(score) < 1e-6


@pytest.mark.parametrize("generate", [brackets_easy, brackets_hard])
def test_excess_nats_of_the_true_laws_is_zero_by_monte_carlo(generate: Callable) -> None:
    chars, probs = generate(256, 1_024, np.random.default_rng(11))
    mask = np.ones((256, 1_024), dtype=bool)
    mask[:, :BURN_IN] = False
    with np.errstate(divide="ignore"):
        logits = np.log(probs)
    floor = entropy_floor(probs, mask)
    assert abs(metric_score("excess_nats", chars[:, 1:], logits, mask=mask, floor=floor)) < 3e-3
    # The splits' floor is the true laws' cross-entropy on the characters that came:
    # against it the true laws score exactly 0, whatever the sample's luck.
    exact = sample_floor(probs, chars[:, 1:], mask)
    assert abs(metric_score("excess_nats", chars[:, 1:], logits, mask=mask, floor=exact)) < 1e-9
    assert exact == pytest.approx(floor, abs=3e-3)
    uniform = metric_score("excess_nats", chars[:, 1:], np.zeros_like(logits), mask=mask, floor=floor)
    assert uniform == pytest.approx(np.log(4) - floor, abs=1e-9)


def test_scored_steps_reads_per_sequence_targets_at_the_last_real_step() -> None:
    outputs = np.arange(2 * 3 * 2, dtype=float).reshape(2, 3, 2)
    mask = np.array([[True, True, False], [True, True, True]])
    y, out = scored_steps(np.array([0, 1]), outputs, mask, classification=True)
    np.testing.assert_array_equal(out, [outputs[0, 1], outputs[1, 2]])
    y, out = scored_steps(np.array([[0, 1, 1], [1, 0, 0]]), outputs, mask, classification=True)
    assert out.shape == (5, 2) and y.tolist() == [0, 1, 1, 0, 0]
    assert metric_score("accuracy", np.array([[1, 1, 0], [1, 1, 1]]), outputs, mask=mask) == 1.0
    with pytest.raises(ValueError, match=r"should have shape \(2, 3\)"):
        scored_steps(np.zeros((2, 4), int), outputs, mask, classification=True)


# --- task.json -----------------------------------------------------------------------------


def test_info_records_the_sequence_facts_and_reads_back() -> None:
    task = load_task(TaskConfig(name="brackets_easy", n_samples=3_200), seed=0)
    info = json.loads(json.dumps(task.info()))
    assert info["sequence"] is True and info["per_step"] is True and info["stream"] is True
    assert info["T"] == EVAL_LENGTH and info["floor_val"] == task.floor_val
    read = TaskInfo.model_validate(info).check(Path("task.json"))
    assert read.floor_test == task.floor_test and read.T == EVAL_LENGTH


def test_info_of_a_feed_forward_task_has_no_sequence_keys() -> None:
    info = load_task(TaskConfig(name="xor"), seed=0).info()
    assert not {"sequence", "per_step", "stream", "T", "floor_val", "floor_test"} & set(info)
    assert TaskInfo.model_validate(json.loads(json.dumps(info))).sequence is False


# --- NPZ sequences -------------------------------------------------------------------------


def _save(folder: Path, **arrays: np.ndarray) -> Path:
    path = folder / "seq.npz"
    np.savez(path, **arrays)
    return path


def _npz_config(path: Path, kind: str = "classification", **extra: object) -> TaskConfig:
    return TaskConfig(path=str(path), kind=kind, **extra)


def _padded(n: int = 60, t: int = 7, f: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, t + 1, size=n)
    mask = np.arange(t) < lengths[:, None]
    X = rng.normal(2.0, 3.0, size=(n, t, f))
    X[~mask] = 1000.0  # padding: must not reach the statistics
    return X, mask


def test_npz_per_step_classes_round_trip_with_mask(tmp_path: Path) -> None:
    X, mask = _padded()
    y = np.where(mask, (X[..., 0] > 2).astype(int) + 5, -1)  # labels 5/6; -1 on padding
    task = load_task(_npz_config(_save(tmp_path, X=X, y=y, mask=mask.astype(np.uint8))), seed=0)
    assert task.sequence and task.per_step and not task.stream and task.class_labels == ("5", "6")
    assert task.X_train.shape[1:] == (7, 3) and task.y_train.shape[1:] == (7,)
    assert sum(len(s[0]) for s in _splits(task)) == 60
    for Xs, ys, ms in _splits(task):
        assert ms.dtype == bool and ms.shape == ys.shape
        np.testing.assert_array_equal(ys[~ms], 0)
        raw = Xs * task.feature_std + task.feature_mean
        rows = [int(np.flatnonzero(np.abs(X - r).max(axis=(1, 2)) < 1e-2)[0]) for r in raw]
        np.testing.assert_array_equal(ms, mask[rows])
        np.testing.assert_array_equal(ys[ms], y[rows][ms] - 5)
    train_real = task.X_train[task.mask_train]
    np.testing.assert_allclose(train_real.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train_real.std(axis=0), 1.0, atol=1e-4)
    assert task.info()["T"] == 7 and task.floor_val is None


def test_npz_per_sequence_and_regression_targets(tmp_path: Path) -> None:
    X, mask = _padded(seed=1)
    per_seq = load_task(_npz_config(_save(tmp_path, X=X, y=np.arange(60) % 3, mask=mask)), seed=0)
    assert not per_seq.per_step and per_seq.y_train.ndim == 1 and per_seq.n_outputs == 3
    shares = [np.bincount(y, minlength=3) / len(y) for _, y, _ in _splits(per_seq)]
    assert np.ptp(shares, axis=0).max() < 0.1  # stratified by sequence class
    reg = load_task(_npz_config(_save(tmp_path, X=X, y=X[..., :2] * 0.5), "regression"), seed=0)
    assert reg.per_step and reg.y_val.shape[1:] == (7, 2) and reg.n_outputs == 2 and reg.mask_val is None
    seq_reg = load_task(_npz_config(_save(tmp_path, X=X, y=np.ones((60, 4))), "regression"), seed=0)
    assert not seq_reg.per_step and seq_reg.y_test.shape[1:] == (4,)


def test_npz_sequences_keep_an_explicit_split(tmp_path: Path) -> None:
    X, _ = _padded(n=12, seed=2)
    split = np.array([0] * 8 + [1] * 2 + [2] * 2)
    task = load_task(_npz_config(_save(tmp_path, X=X, y=np.arange(12) % 2, split=split)), seed=0)
    assert (len(task.X_train), len(task.X_val), len(task.X_test)) == (8, 2, 2)


X3 = np.random.default_rng(0).normal(size=(30, 5, 2))
M3 = np.ones((30, 5), dtype=bool)
Y_STEP = np.random.default_rng(1).integers(2, size=(30, 5))
Y_SEQ = np.arange(30) % 2
CLS, REG = "classification", "regression"


def _nan_at(a: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    out = a.astype(float).copy()
    out[index] = np.nan
    return out


def _row_off(mask: np.ndarray, row: int) -> np.ndarray:
    out = mask.copy()
    out[row] = False
    return out


#: case -> (arrays, kind, message fragment)
BAD: dict[str, tuple[dict[str, np.ndarray], str, str]] = {
    "y steps differ from X's": (dict(X=X3, y=Y_STEP[:, :4]), CLS, "array 'y' has shape (30, 4), expected (30, 5) class ids per step"),
    "y rows differ from X's": (dict(X=X3, y=Y_SEQ[:29]), CLS, "X has 30 rows but y has 29"),
    "regression y steps differ": (dict(X=X3, y=np.zeros((30, 6, 1))), REG, "expected (30, 5, outputs) per step"),
    "y of four dimensions": (dict(X=X3, y=np.zeros((30, 5, 1, 1))), REG, "array 'y' has shape (30, 5, 1, 1)"),
    "mask of the wrong shape": (dict(X=X3, y=Y_STEP, mask=M3[:, :4]), CLS, "array 'mask' has shape (30, 4), expected (30, 5)"),
    "mask transposed": (dict(X=X3, y=Y_STEP, mask=M3.T), CLS, "array 'mask' has shape (5, 30)"),
    "mask of twos": (dict(X=X3, y=Y_STEP, mask=M3 * 2), CLS, "array 'mask' is int64 with values other than 0 and 1"),
    "mask of halves": (dict(X=X3, y=Y_STEP, mask=M3 * 0.5), CLS, "values other than 0 and 1"),
    "mask of text": (dict(X=X3, y=Y_STEP, mask=np.full((30, 5), "1")), CLS, "array 'mask' is <U1"),
    "a sequence all padding": (dict(X=X3, y=Y_SEQ, mask=_row_off(M3, 4)), CLS, "array 'mask' row 4 is all False"),
    "NaN in X": (dict(X=_nan_at(X3, (3, 2, 1)), y=Y_SEQ), CLS, "X[3, 2, 1] is nan, expected a finite number"),
    "inf in X": (dict(X=np.where(X3 > 2.5, np.inf, X3), y=Y_SEQ), CLS, "is inf, expected a finite number"),
    "NaN in regression y": (dict(X=X3, y=_nan_at(np.zeros((30, 5, 1)), (2, 1, 0))), REG, "regression targets hold NaN/inf"),
    "inf in per-sequence y": (dict(X=X3, y=np.where(Y_SEQ[:, None] > 0, np.inf, 0.0)), REG, "NaN/inf"),
    "NaN class label": (dict(X=X3, y=_nan_at(Y_STEP, (0, 0))), CLS, "is NaN or infinite"),
    "no steps": (dict(X=np.zeros((30, 0, 2)), y=Y_SEQ), CLS, "no steps, expected T >= 1"),
    "no features": (dict(X=np.zeros((30, 5, 0)), y=Y_SEQ), CLS, "no feature columns"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_sequence_npz_is_one_line_naming_the_file_and_array(case: str, tmp_path: Path) -> None:
    arrays, kind, fragment = BAD[case]
    path = _save(tmp_path, **arrays)
    with pytest.raises(HybridError) as err:
        load_task(_npz_config(path, kind), seed=0)
    message = str(err.value)
    assert isinstance(err.value, DataError) and err.value.exit_code == 2
    assert message.startswith(f"{path}: ") and fragment in message, message
    assert "\n" not in message and len(message) < 400


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [({"selection_fraction": 0.1}, "has no selection split"), ({"folds": 3}, "has no K-fold fitness")],
)
def test_sequence_tasks_refuse_selection_and_folds(extra: dict, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=fragment):
        load_task(TaskConfig(name="parity", **extra), seed=0)
    path = _save(tmp_path, X=X3, y=Y_SEQ)
    with pytest.raises(DataError, match=fragment):
        load_task(_npz_config(path, **extra), seed=0)


def test_hybrid_run_on_a_bad_sequence_npz_exits_2_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    np.savez(tmp_path / "d.npz", X=X3, y=Y_STEP[:, :3])
    (tmp_path / "bad.toml").write_text('[task]\npath = "d.npz"\nkind = "classification"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["run", "bad.toml", "--plain"]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("hybrid run: error: "), err
    assert "array 'y' has shape (30, 3), expected (30, 5)" in lines[0] and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml", "d.npz"]
