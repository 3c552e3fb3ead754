"""Read user data: CSV with a header row, or NPZ with arrays ``X`` and ``y``.

Every problem is a :class:`~hybrid.errors.DataError` of one line naming the file
and, where it applies, the column (or array), the line and the value seen.
"""

from __future__ import annotations

import csv
import math
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["encode_targets", "read_csv", "read_npz"]


def _float(cell: str, where: str) -> float:
    if cell == "":
        raise DataError(
            f"{where}: empty value, expected a number (missing values are not supported)"
        )
    try:
        v = float(cell)
    except ValueError:
        raise DataError(f"{where}: non-numeric value {cell!r}, expected a number") from None
    if not math.isfinite(v):
        raise DataError(f"{where}: value {cell!r} is not finite, expected a number without NaN/inf")
    return v


def read_csv(path: Path, target: str, kind: str) -> tuple[np.ndarray, np.ndarray | list[str]]:
    """Read features and the ``target`` column from a CSV file with a header row.

    Args:
        path: the CSV file (UTF-8, comma-separated, first row names the columns).
        target: the label column; every other column is a numeric feature.
        kind: "classification" (labels kept as strings) or "regression" (numbers).

    Returns:
        ``(X, y)``: float64 features ``[N, F]`` and the target column (strings for
        classification, float64 ``[N]`` for regression).

    Raises:
        DataError: missing or empty file, no such target column, a non-numeric,
            empty or NaN feature value, a ragged row, or no data rows.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [(n, row) for n, row in enumerate(csv.reader(f), start=1) if row]
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file, expected CSV") from None
    except (OSError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path}: empty file, expected a header row naming the columns")
    header = [h.strip() for h in rows[0][1]]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError(f"{path}: column {dupes[0]!r} appears more than once in the header")
    if target not in header:
        raise DataError(f"{path}: no target column {target!r} (columns: {', '.join(header)})")
    if len(header) < 2:
        raise DataError(f"{path}: no feature columns besides the target {target!r}")
    if len(rows) == 1:
        raise DataError(f"{path}: no data rows below the header")
    t = header.index(target)
    features = [i for i in range(len(header)) if i != t]
    X = np.empty((len(rows) - 1, len(features)), dtype=np.float64)
    labels: list[str] = []
    for r, (line, row) in enumerate(rows[1:]):
        if len(row) != len(header):
            raise DataError(
                f"{path}: line {line} has {len(row)} fields, the header has {len(header)}"
            )
        cells = [c.strip() for c in row]
        for j, i in enumerate(features):
            X[r, j] = _float(cells[i], f"{path}: column {header[i]!r}, line {line}")
        if cells[t] == "":
            raise DataError(f"{path}: column {target!r}, line {line}: empty target value")
        labels.append(cells[t])
    if kind == "regression":
        lines = [n for n, _ in rows[1:]]
        y = np.array(
            [
                _float(v, f"{path}: column {target!r}, line {n}")
                for v, n in zip(labels, lines, strict=True)
            ]
        )
        return X, y
    return X, labels


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read arrays ``X`` ([N, F] numbers) and ``y`` ([N] or [N, k]) from an NPZ file.

    Raises:
        DataError: missing file, not an NPZ archive, object arrays (no pickle), no
            ``X`` or ``y``, ``X`` not 2-D numeric, NaN/inf in ``X``, or lengths that
            differ.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            missing = [k for k in ("X", "y") if k not in names]
            if missing:
                raise DataError(
                    f"{path}: no array {missing[0]!r} (arrays: {', '.join(names) or 'none'}); expected X and y"
                )
            X, y = npz["X"], npz["y"]
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except DataError:
        raise
    except ValueError as exc:  # object arrays need pickle, which we never allow
        raise DataError(f"{path}: cannot read arrays without pickle ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a valid NPZ archive ({exc})") from None
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: array 'X' is {X.dtype} with shape {X.shape}, expected numbers of shape [samples, features]"
        )
    X = X.astype(np.float64)
    bad = np.argwhere(~np.isfinite(X))
    if len(bad):
        r, c = bad[0]
        raise DataError(f"{path}: X[{r}, {c}] is {X[r, c]}, expected a finite number")
    if len(y) != len(X):
        raise DataError(f"{path}: X has {len(X)} rows but y has {len(y)}, expected the same")
    if len(X) == 0:
        raise DataError(f"{path}: X has no rows")
    return X, y


def _label_sort_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def encode_targets(
    y: np.ndarray | list[str], kind: str, where: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Turn raw targets into int64 class ids (with their labels) or float32 [N, k].

    Numeric class labels are normalised (``1`` and ``1.0`` are one class) and ordered
    numerically, others alphabetically.

    Args:
        y: raw targets, strings or numbers.
        kind: "classification" or "regression".
        where: the file (or task) to name in errors.

    Returns:
        ``(y, class_labels)``; ``class_labels`` is empty for regression.

    Raises:
        DataError: non-numeric or non-finite regression targets, non-integer numeric
            class labels, or fewer than two classes.
    """
    arr = np.asarray(y)
    if kind == "regression":
        if arr.dtype.kind not in "biuf":
            raise DataError(f"{where}: regression targets are {arr.dtype}, expected numbers")
        out = arr.astype(np.float32).reshape(len(arr), -1)
        if not np.isfinite(out).all():
            raise DataError(f"{where}: regression targets hold NaN/inf, expected finite numbers")
        return out, ()
    if arr.ndim != 1:
        raise DataError(
            f"{where}: class labels have shape {arr.shape}, expected one label per sample"
        )
    if arr.dtype.kind in "fc" or arr.dtype.kind in "biu":
        values = arr.astype(np.float64)
        if not np.isfinite(values).all() or not np.all(values == np.round(values)):
            bad = values[~np.isfinite(values) | (values != np.round(values))][0]
            raise DataError(
                f"{where}: class label {bad} is not an integer, expected integer or string labels "
                '(set task.kind = "regression" for numeric targets)'
            )
        labels = [str(int(v)) for v in values]
    else:
        labels = [str(v) for v in arr]
        numeric = []
        for v in labels:
            try:
                numeric.append(float(v))
            except ValueError:
                break
        else:  # every label is a number: "1" and "1.0" are the same class
            if all(math.isfinite(v) and v == round(v) for v in numeric):
                labels = [str(int(v)) for v in numeric]
    classes = tuple(sorted(set(labels), key=_label_sort_key))
    if len(classes) < 2:
        raise DataError(f"{where}: only one class ({classes[0]!r}), expected at least 2")
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in labels], dtype=np.int64), classes
