"""Load a task from config: make or read the data, split it, standardise it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from ..folds import assign_folds, resolve_folds
from ._builtin import TASKS
from ._encode import check_missing, encode_columns, encoded_names, fit_encoding, raw_columns
from ._files import (
    encode_targets,
    read_npz,
    read_npz_mask,
    read_npz_split,
    read_table,
    resolve_data_path,
    sequence_targets,
)
from ._sequences import SequenceData
from ._split import shuffle_split
from ._task import Task

if TYPE_CHECKING:
    from ..config import TaskConfig

__all__ = ["carve_selection", "load_task", "split_indices", "standardise"]

# Independent streams from one seed: data generation and splitting must not share
# draws, or changing n_samples would also reshuffle an unrelated split.
_DATA_STREAM = 0
_SPLIT_STREAM = 1
_SELECTION_STREAM = 2


def split_indices(
    y: np.ndarray, val_fraction: float, test_fraction: float, seed: int, stratify: bool, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return seeded, disjoint (train, val, test) index arrays covering ``range(len(y))``.

    Args:
        y: targets; class ids when ``stratify`` (each split keeps class shares).
        val_fraction: share of all samples in the validation split.
        test_fraction: share of all samples in the test split.
        seed: the run's seed; the same seed gives the same split.
        stratify: keep class proportions in every split (classification).
        where: the task or file to name in errors.

    Raises:
        DataError: if the data are too few (or a class too small) to split so.
    """
    state = int(np.random.default_rng([seed, _SPLIT_STREAM]).integers(2**31 - 1))
    n = len(y)
    try:
        rest, test = shuffle_split(n, test_fraction, state, y if stratify else None)
        train, val = shuffle_split(
            len(rest),
            val_fraction / (1.0 - test_fraction),
            state + 1,
            y[rest] if stratify else None,
            ordered=False,
        )
    except ValueError as exc:
        raise DataError(
            f"{where}: cannot split {n} samples with val_fraction={val_fraction}, "
            f"test_fraction={test_fraction} ({exc})"
        ) from None
    train, val = rest[train], rest[val]
    return np.sort(train), np.sort(val), np.sort(test)


def carve_selection(
    y: np.ndarray, train: np.ndarray, fraction: float, seed: int, stratify: bool, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(train, selection)``: a seeded ``fraction`` of all samples carved out of ``train``.

    The validation and test splits are those of :func:`split_indices` whatever the
    fraction, so turning the selection split on changes only the training rows.

    Args:
        y: all targets; class ids when ``stratify``.
        train: the training split's indices.
        fraction: share of *all* samples (``len(y)``) in the selection split; > 0.
        seed: the run's seed.
        stratify: keep class proportions (classification).
        where: the task or file to name in errors.

    Raises:
        DataError: if the training split is too small (or a class too rare) to carve it.
    """
    state = int(np.random.default_rng([seed, _SELECTION_STREAM]).integers(2**31 - 1))
    size = fraction * len(y) / len(train)
    try:
        if size >= 1.0:
            raise ValueError(f"it would take {fraction * len(y):.0f} of the {len(train)} training samples")
        rest, sel = shuffle_split(
            len(train), size, state, y[train] if stratify else None, ordered=False
        )
    except ValueError as exc:
        raise DataError(
            f"{where}: cannot carve a selection split of selection_fraction={fraction} from "
            f"{len(train)} training samples ({exc}); expected a smaller task.selection_fraction"
        ) from None
    rest, sel = train[rest], train[sel]
    return np.sort(rest), np.sort(sel)


#: Bytes of raw rows scaled at a time: the chunk's float64 copy stays in cache.
_CHUNK_BYTES = 2**21


def standardise(X_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return float32 (mean, std) of each feature; constant features get std 1.

    Args:
        X_train: the training split only: statistics of held-out data must not leak
            into the features a network trains on.
    """
    c_rows = X_train.ndim == 2 and X_train.flags.c_contiguous and len(X_train) > 0
    if c_rows and X_train.dtype == np.float64 and X_train.shape[1] >= 2:
        mean, std = _mean_std(X_train)
    else:
        mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def _mean_std(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(X.mean(axis=0), X.std(axis=0))``, the same bits, without a copy of ``X``.

    numpy sums a C-ordered ``[rows, >= 2 columns]`` array over axis 0 one row after
    another, in order (its inner loop runs along a row). So the squared deviations
    can be made a chunk of rows at a time, the running sum carried in as the chunk's
    first row: the same additions in the same order as ``X.std``, which makes all
    the deviations at once (a temporary the size of ``X``). One column, or a
    column-major array, is summed pairwise instead: :func:`standardise` leaves
    those to numpy.
    """
    n, step = len(X), max(1, _CHUNK_BYTES // (8 * X.shape[1]))
    mean = np.add.reduce(X, axis=0) / n
    buf = np.empty((min(n, step) + 1, X.shape[1]))
    total = None
    for start in range(0, n, step):
        chunk = X[start : start + step]
        head = 0 if total is None else 1  # buf[0]: the sum so far
        if total is not None:
            buf[0] = total
        dev = np.subtract(chunk, mean, out=buf[head : head + len(chunk)])
        np.multiply(dev, dev, out=dev)
        total = np.add.reduce(buf[: head + len(chunk)], axis=0)
    return mean, np.sqrt(total / n)


def _frozen(a: np.ndarray, dtype: type) -> np.ndarray:
    out = np.ascontiguousarray(a, dtype=dtype)
    out.setflags(write=False)
    return out


def _scaled(Z: np.ndarray, mean: np.ndarray, std: np.ndarray, own: bool) -> np.ndarray:
    """Return ``(Z - mean) / std`` in ``Z``'s precision (float64 for integers), as ever.

    ``own``: ``Z`` is the caller's to overwrite (a copy fancy indexing made), so the
    arithmetic happens in place: the same operations on the same dtypes, hence the
    same bits, without a temporary the size of ``Z``.
    """
    if own and np.result_type(Z.dtype, mean.dtype) == Z.dtype:
        Z -= mean
    else:
        Z = Z - mean
    Z /= std
    return Z


def _scaled_rows(
    X: np.ndarray, rows: np.ndarray | None, mean: np.ndarray, std: np.ndarray, own: bool
) -> np.ndarray:
    """Return float32 ``(X[rows] - mean) / std``, a few thousand rows at a time.

    The same values as scaling all rows at once (each row is computed alone), but
    every temporary stays in cache and the only large array made is the result.

    Args:
        rows: the rows to scale; None: every row of ``X``.
        own: with ``rows`` None, ``X`` may be overwritten (fancy indexing copies anyway).
    """
    n = len(X) if rows is None else len(rows)
    out = np.empty((n, X.shape[1]), np.float32)
    step = max(1, _CHUNK_BYTES // (8 * max(1, X.shape[1])))
    for start in range(0, n, step):
        stop = min(start + step, n)
        if rows is None:
            out[start:stop] = _scaled(X[start:stop], mean, std, own)
        else:
            out[start:stop] = _scaled(X[rows[start:stop]], mean, std, True)
    return out


def _fits_float32(a: np.ndarray) -> bool:
    """Return whether every value of ``a`` is finite in float32 (NaN is not).

    Two reductions over the flat array: the smallest and largest value round to
    finite float32 values, so do all between them (a NaN makes both NaN). Per column
    (``a.min(axis=0)``) the same takes 5x longer: an inner loop per row.
    """
    flat = a.reshape(-1)
    if flat.size == 0:
        return True
    return bool(np.isfinite(np.array([flat.min(), flat.max()]).astype(np.float32)).all())


def _standardised(
    X: np.ndarray,
    train: np.ndarray,
    columns: list[str],
    where: str,
    parts: tuple[np.ndarray, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Return float32 ``(mean, std, standardised parts)``, all of it finite.

    Raw features that are finite in float64 (``1e300``) can still overflow: their
    spread squared, their float32 mean or std (which the exported module applies to
    raw inputs) or the raw value itself in float32. Such a column is refused rather
    than turned into NaN for every sample.

    Args:
        X: the raw features ``[rows, features]``.
        train: the rows the statistics come from.
        columns: the feature names, for the message.
        where: the task or file, for the message.
        parts: the row indices of each part to return (a split; together they cover
            every row, as the check of finiteness must); the first that is ``train``
            itself reuses the rows gathered for the statistics. None: one part, every
            row in order.

    Raises:
        DataError: naming the first feature column that does not fit float32.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        X_train = X[train]
        mean, std = standardise(X_train)
        if parts is None:
            out = [_scaled_rows(X, None, mean, std, own=False)]
        else:  # the training rows' copy is scaled once, in place (xor's splits are one array)
            first = next((k for k, rows in enumerate(parts) if rows is train), None)
            out = [
                _scaled_rows(X_train, None, mean, std, own=True)
                if k == first
                else _scaled_rows(X, rows, mean, std, own=True)
                for k, rows in enumerate(parts)
            ]
        ok = np.isfinite(mean) & np.isfinite(std)
        if not (ok.all() and _fits_float32(X) and all(_fits_float32(Z) for Z in out)):
            for extreme in (X.min(axis=0), X.max(axis=0)):  # float32 rounding is monotonic
                ok &= np.isfinite(extreme.astype(np.float32))
            for Z in out:
                ok &= np.isfinite(Z).all(axis=0)
    if not ok.all():
        j = int(np.flatnonzero(~ok)[0])
        raise DataError(
            f"{where}: feature {columns[j]!r} is not finite in float32 after standardisation "
            "(its values or their spread exceed float32's range), expected values within "
            "about +-1e38; rescale that column"
        )
    return mean, std, out


def load_task(task_cfg: TaskConfig, seed: int, *, accelerated: bool = False) -> Task:
    """Make or read a task's data and split and standardise it, all seeded.

    A built-in task (``task_cfg.name``) comes from :data:`TASKS`; user data from
    ``task_cfg.path``: a table (CSV, TSV or Parquet; ``task_cfg.target`` names the
    label column, every other column is a feature: numeric, or categorical and
    one-hot encoded with categories of the training split, see
    :mod:`hybrid.tasks._encode`; missing values follow ``task_cfg.missing``) or an
    NPZ file with arrays ``X`` [N, F] and ``y`` [N] (or [N, k] for regression). Splits are
    stratified for classification. ``xor`` is not split: all three splits are its
    4 points, since the task is to represent XOR, not to generalise from 3 points.
    A data path may be a symbolic link: it is followed, and ``Task.source`` is the
    real path. Features must stay finite in float32 once standardised. With K-fold
    fitness (``task.folds``, :mod:`hybrid.folds`) every row of the pooled training and
    validation splits gets a seeded, stratified fold id. Sequence tasks (the built-ins
    of :mod:`hybrid.tasks._sequences`, or an NPZ whose ``X`` is 3-D ``[N, T, F]``, with
    optional ``mask`` ``[N, T]``) give a :class:`Task` with ``sequence`` True; they
    have no selection split and no K-fold fitness.

    Args:
        task_cfg: the ``[task]`` section of a validated config.
        seed: the run's seed (synthetic noise and the split).
        accelerated: the search runs on a GPU (``task.folds = "auto"`` turns K-fold
            fitness on only there: :func:`hybrid.folds.resolve_folds`).

    Returns:
        The :class:`Task`, features standardised with training-split statistics.

    Raises:
        DataError: one line naming the file, column or value at fault (or the class
            too small for ``task.folds``).
    """
    explicit = None  # an NPZ's own split (array "split"), if it holds one
    table, encoding = None, None  # a table's raw columns and their encoding
    if task_cfg.name is not None:
        if task_cfg.name not in TASKS:
            raise DataError(
                f"task {task_cfg.name!r}: no such built-in task (tasks: {', '.join(TASKS)})"
            )
        spec = TASKS[task_cfg.name]
        rng = np.random.default_rng([seed, _DATA_STREAM])
        made = spec.make(task_cfg.n_samples, task_cfg.noise, rng)
        if isinstance(made, SequenceData):
            _check_sequence_config(task_cfg, f"task {spec.name!r}")
            return _sequence_builtin(spec.name, spec.kind, made)
        X, y, labels, source = made
        name, kind, where, do_split = spec.name, spec.kind, f"task {spec.name!r}", spec.split
        columns = [f"feature {j}" for j in range(X.shape[1])]
    else:
        path = Path(task_cfg.path)
        real = resolve_data_path(path)  # links are followed; the task records where to
        kind, where, do_split = task_cfg.kind, str(path), True
        if path.suffix.lower() == ".npz":
            X, raw, columns = read_npz(path)
            explicit = read_npz_split(path, len(X))
            if X.ndim == 3:
                _check_sequence_config(task_cfg, where)
                return _npz_sequences(task_cfg, seed, path, real, X, raw, explicit)
        else:
            frame, raw, line = read_table(path, task_cfg.target, kind)
            table = raw_columns(frame, task_cfg.categorical, where, line)
            check_missing(table, task_cfg.missing, where)
        y, labels = encode_targets(raw, kind, where)
        name, source = path.stem, str(real)
    if explicit is not None:
        tr, va, te = explicit
    elif do_split:
        tr, va, te = split_indices(
            y, task_cfg.val_fraction, task_cfg.test_fraction, seed, kind == "classification", where
        )
    else:
        tr = va = te = np.arange(len(y))
    se = None
    if task_cfg.selection_fraction > 0:
        if not do_split:
            raise DataError(
                f"{where}: task.selection_fraction = {task_cfg.selection_fraction}: this task is "
                "not split (its splits are all its points), expected selection_fraction = 0"
            )
        tr, se = carve_selection(
            y, tr, task_cfg.selection_fraction, seed, kind == "classification", where
        )
    if table is not None:  # categories and fill values from the training rows only
        encoding = fit_encoding(table, tr, task_cfg.missing, where)
        X, columns = encode_columns(table, encoding), encoded_names(encoding)
    rows = (tr, va, te) if se is None else (tr, va, te, se)
    mean, std, parts = _standardised(X, tr, columns, where, rows)
    y_dtype = np.int64 if kind == "classification" else np.float32
    classification = kind == "classification"
    y_pool = np.concatenate([y[tr], y[va]])
    k = resolve_folds(
        task_cfg.folds,
        y_pool,
        tuple(labels) if classification else None,
        do_split,
        where,
        accelerated=accelerated,
    )
    fold_ids = assign_folds(y_pool, k, seed, classification) if k else None
    return Task(
        name=name,
        kind=kind,
        **_splits(parts[:3], y, (tr, va, te), y_dtype),
        X_sel=None if se is None else _frozen(parts[3], np.float32),
        y_sel=None if se is None else _frozen(y[se], y_dtype),
        n_inputs=int(X.shape[1]),
        n_outputs=len(labels) if kind == "classification" else int(y.shape[1]),
        feature_mean=_frozen(mean, np.float32),
        feature_std=_frozen(std, np.float32),
        class_labels=tuple(labels),
        source=source,
        encoding=encoding,
        fold_ids=fold_ids,
    )


def _check_sequence_config(task_cfg: TaskConfig, where: str) -> None:
    """Refuse what sequence tasks do not have yet: a selection split, K-fold fitness.

    Raises:
        DataError: ``task.selection_fraction > 0`` or an integer ``task.folds``.
    """
    if task_cfg.selection_fraction > 0:
        raise DataError(
            f"{where}: task.selection_fraction = {task_cfg.selection_fraction}: a sequence task "
            "has no selection split, expected selection_fraction = 0"
        )
    if task_cfg.folds not in ("auto", "off"):
        raise DataError(
            f"{where}: task.folds = {task_cfg.folds}: a sequence task has no K-fold fitness, "
            'expected "auto" or "off"'
        )


def _splits(
    X: list[np.ndarray], y: np.ndarray, rows: tuple[np.ndarray, np.ndarray, np.ndarray], y_dtype: type
) -> dict[str, np.ndarray]:
    """A ``Task``'s six split arrays (``X_train`` ... ``y_test``), frozen: features, each split's rows."""
    out = {}
    for split, X_split, r in zip(("train", "val", "test"), X, rows, strict=True):
        out[f"X_{split}"], out[f"y_{split}"] = _frozen(X_split, np.float32), _frozen(y[r], y_dtype)
    return out


def _frozen_mask(mask: np.ndarray | None) -> np.ndarray | None:
    return None if mask is None else _frozen(mask, np.bool_)


def _sequence_builtin(name: str, kind: str, data: SequenceData) -> Task:
    """Freeze a built-in sequence task (its own splits; parity is standardised, brackets not)."""
    n_features = data.X_train.shape[-1]
    mean, std = np.zeros(n_features, np.float32), np.ones(n_features, np.float32)
    if data.standardise:
        real = np.ones(data.X_train.shape[:2], bool) if data.mask_train is None else data.mask_train
        mean, std = standardise(data.X_train[real].astype(np.float64))

    def features(X: np.ndarray) -> np.ndarray:
        return _frozen((X - mean) / std, np.float32)

    return Task(
        name=name,
        kind=kind,
        X_train=features(data.X_train),
        y_train=_frozen(data.y_train, np.int64),
        X_val=features(data.X_val),
        y_val=_frozen(data.y_val, np.int64),
        X_test=features(data.X_test),
        y_test=_frozen(data.y_test, np.int64),
        n_inputs=int(n_features),
        n_outputs=len(data.labels),
        feature_mean=_frozen(mean, np.float32),
        feature_std=_frozen(std, np.float32),
        class_labels=data.labels,
        source=data.source,
        sequence=True,
        per_step=data.per_step,
        stream=data.stream,
        mask_train=_frozen_mask(data.mask_train),
        mask_val=_frozen_mask(data.mask_val),
        mask_test=_frozen_mask(data.mask_test),
        floor_val=data.floor_val,
        floor_test=data.floor_test,
    )


def _npz_sequences(
    task_cfg: TaskConfig,
    seed: int,
    path: Path,
    real: Path,
    X: np.ndarray,
    raw: np.ndarray,
    explicit: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
) -> Task:
    """Split an NPZ of sequences by sequence; standardise over the training split's real steps.

    Raises:
        DataError: a bad ``y`` or ``mask`` (see :func:`~hybrid.tasks._files.sequence_targets`,
            :func:`~hybrid.tasks._files.read_npz_mask`), too few sequences to split, or
            features that do not fit float32.
    """
    kind, where = task_cfg.kind, str(path)
    mask = read_npz_mask(path, X.shape)
    y, labels, per_step = sequence_targets(path, raw, X.shape, mask, kind)
    classification = kind == "classification"
    if explicit is not None:
        tr, va, te = explicit
    else:
        stratify = classification and not per_step
        tr, va, te = split_indices(
            y if not per_step else np.zeros(len(y)),
            task_cfg.val_fraction,
            task_cfg.test_fraction,
            seed,
            stratify,
            where,
        )
    n, t, f = X.shape
    real_steps = np.ones((n, t), dtype=bool) if mask is None else mask
    train_steps = np.flatnonzero((real_steps & np.isin(np.arange(n), tr)[:, None]).ravel())
    columns = [f"X[:, :, {j}]" for j in range(f)]
    mean, std, (flat,) = _standardised(X.reshape(n * t, f), train_steps, columns, where)
    Xs = flat.reshape(n, t, f)
    y_dtype = np.int64 if classification else np.float32

    return Task(
        name=path.stem,
        kind=kind,
        **_splits([Xs[r] for r in (tr, va, te)], y, (tr, va, te), y_dtype),
        n_inputs=int(f),
        n_outputs=len(labels) if classification else int(y.shape[-1]),
        feature_mean=_frozen(mean, np.float32),
        feature_std=_frozen(std, np.float32),
        class_labels=tuple(labels),
        source=str(real),
        sequence=True,
        per_step=per_step,
        mask_train=None if mask is None else _frozen_mask(mask[tr]),
        mask_val=None if mask is None else _frozen_mask(mask[va]),
        mask_test=None if mask is None else _frozen_mask(mask[te]),
    )
