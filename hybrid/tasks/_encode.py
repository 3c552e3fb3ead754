"""Encode a table's raw feature columns: numbers as they are, categories one-hot.

Three steps, so that nothing learned from held-out rows reaches the network:

1. :func:`raw_columns` (all rows, before the split) decides each column's kind and
   refuses what cannot be encoded: a dtype the encoder does not handle, a column
   mixing numbers and words, infinities, control characters in a category;
   :func:`check_missing` refuses missing values unless ``task.missing`` imputes.
2. :func:`fit_encoding` learns, from the training rows only, each numeric
   column's fill value (mean or median) and each categorical column's categories.
3. :func:`encode_columns` turns every row into the network's input with them.

The encoding is a JSON-ready dict kept in ``task.json`` (see
:mod:`hybrid.tasks.preprocess`, which the export copies beside the model and which
holds the per-row conversions used here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import DataError
from .preprocess import category_text, numbers, one_hot

__all__ = [
    "ENCODING_FORMAT",
    "MAX_CATEGORIES",
    "MISSING",
    "RawColumn",
    "check_missing",
    "encode_columns",
    "encoded_names",
    "fit_encoding",
    "input_fill",
    "raw_columns",
]

#: ``task.missing``: refuse missing feature values, or fill numeric ones.
MISSING = ("error", "mean", "median")
ENCODING_FORMAT = "hybrid.encoding"
#: Most categories one column may have in the training rows: each is one network
#: input, and a column of ids or free text would make thousands.
MAX_CATEGORIES = 1000


@dataclass(frozen=True, eq=False)
class RawColumn:
    """One feature column, converted but not yet encoded.

    Attributes:
        name: the column's name in the file.
        kind: "numeric" (``values`` float64, NaN where missing) or "categorical"
            (``values`` an object array of category texts, None where missing).
        values: one entry per row of the file.
    """

    name: str
    kind: Literal["numeric", "categorical"]
    values: np.ndarray


class _CellError(DataError):
    """A problem at one row of a column; :func:`raw_columns` reports the first row's."""

    def __init__(self, message: str, row: int) -> None:
        super().__init__(message)
        self.row = row


def _is_text(dtype: Any) -> bool:
    return pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)


def _categorical(name: str, s: pd.Series, where: str, line: Callable[[int], str]) -> RawColumn:
    try:
        text = category_text(s)
    except TypeError as exc:
        raise DataError(
            f"{where}: column {name!r} holds {exc} values among others ({s.dtype}), expected "
            "text, numbers or booleans"
        ) from None
    codes, uniques = pd.factorize(text)
    for k, v in enumerate(uniques):
        if v is not None and not v.isprintable():
            row = int(np.flatnonzero(codes == k)[0])
            raise _CellError(
                f"{where}: column {name!r}, {line(row)}: not a number and not a category name "
                "(holds control characters)",
                row,
            )
    return RawColumn(name, "categorical", text)


def _numeric(name: str, values: np.ndarray, where: str, line: Callable[[int], str]) -> RawColumn:
    inf = np.flatnonzero(np.isinf(values))
    if len(inf):
        raise _CellError(
            f"{where}: column {name!r}, {line(int(inf[0]))}: infinite value, expected a finite "
            "number",
            int(inf[0]),
        )
    return RawColumn(name, "numeric", values)


def _column(
    name: str, s: pd.Series, listed: bool, where: str, line: Callable[[int], str]
) -> RawColumn:
    dtype = s.dtype
    supported = dtype.kind in "iufb" or _is_text(dtype) or isinstance(dtype, pd.CategoricalDtype)
    if not supported:
        raise DataError(
            f"{where}: column {name!r} has dtype {dtype}, which cannot be encoded; expected "
            "numbers, text, booleans or categories (convert or drop the column)"
        )
    if listed or dtype.kind == "b" or isinstance(dtype, pd.CategoricalDtype):
        return _categorical(name, s, where, line)
    if dtype.kind in "iuf":
        return _numeric(name, s.to_numpy(dtype=np.float64, na_value=np.nan), where, line)
    values, bad = numbers(s)
    if not bad.any():
        return _numeric(name, values, where, line)
    present = ~np.isnan(values)
    if not present.any():
        return _categorical(name, s, where, line)
    # Numbers and words in one column: a typo, or categories that look like numbers.
    row, numeric = int(np.flatnonzero(bad)[0]), int(np.flatnonzero(present)[0])
    raise _CellError(
        f"{where}: column {name!r}, {line(row)}: not a number, but {line(numeric)} is one; "
        "expected numbers only or words only (list the column in task.categorical to treat "
        "every value as a category)",
        row,
    )


def raw_columns(
    frame: pd.DataFrame, categorical: Sequence[str], where: str, line: Callable[[int], str]
) -> list[RawColumn]:
    """Return the feature columns of ``frame``, each numeric or categorical.

    Numeric: integer and float columns, and text columns whose every value is a
    number. Categorical: the columns named in ``categorical`` (e.g. integer
    codes), booleans, pandas categories and text columns of words.

    Args:
        frame: the feature columns, in file order (the target removed).
        categorical: ``task.categorical``.
        where: the file, for messages.
        line: row index -> "line N" (or "row N"), for messages.

    Raises:
        DataError: a name in ``categorical`` that is not a feature column, a dtype
            that cannot be encoded (dates, durations, complex numbers, objects that
            are not text), a column mixing numbers and words, an infinite number or
            a category holding control characters.
    """
    unknown = [c for c in categorical if c not in frame.columns]
    if unknown:
        raise DataError(
            f"{where}: task.categorical names {unknown[0]!r}, which is not a feature column "
            f"(feature columns: {', '.join(map(repr, list(frame.columns)[:20]))})"
        )
    listed, columns, first = set(categorical), [], None
    for name in frame.columns:
        try:
            columns.append(_column(name, frame[name], name in listed, where, line))
        except _CellError as exc:  # the first bad row of the file, as a reader meets it
            first = exc if first is None or exc.row < first.row else first
    if first is not None:
        raise DataError(str(first)) from None
    return columns


def _missing(column: RawColumn) -> np.ndarray:
    if column.kind == "numeric":
        return np.isnan(column.values)
    return pd.isna(column.values)


def check_missing(columns: Sequence[RawColumn], missing: str, where: str) -> None:
    """Refuse missing feature values when ``task.missing`` is "error".

    Raises:
        DataError: naming every column with missing values and how many, e.g.
            ``d.csv: missing values in columns 'age' (3), 'city' (1); set
            task.missing = "mean" or "median"``.
    """
    if missing != "error":
        return
    counts = [(c.name, int(_missing(c).sum())) for c in columns]
    counts = [(name, n) for name, n in counts if n]
    if counts:
        listed = ", ".join(f"{name!r} ({n})" for name, n in counts)
        noun = "column" if len(counts) == 1 else "columns"
        raise DataError(
            f'{where}: missing values in {noun} {listed}; set task.missing = "mean" or "median"'
        )


def fit_encoding(
    columns: Sequence[RawColumn], train: np.ndarray, missing: str, where: str
) -> dict[str, Any]:
    """Learn the encoding from the training rows only.

    Args:
        columns: from :func:`raw_columns`.
        train: indices of the training rows.
        missing: ``task.missing``: "error", "mean" or "median".
        where: the file, for messages.

    Returns:
        ``{"format", "version", "missing", "columns": [...]}``; each column is
        ``{"name", "kind": "numeric", "fill"}`` (``fill`` None with "error") or
        ``{"name", "kind": "categorical", "categories"}`` (sorted texts of the
        training rows' values; None last if a training row misses the value).

    Raises:
        DataError: a numeric column with no value in the training rows to take the
            mean or median of, or a column with more than ``MAX_CATEGORIES``.
    """
    out = []
    for c in columns:
        if c.kind == "numeric":
            fill = None
            if missing != "error":  # else the training rows are not needed: not gathered
                values = c.values[train]
                present = values[~np.isnan(values)]
                if present.size == 0:
                    raise DataError(
                        f"{where}: column {c.name!r} has no values in the training rows, "
                        f"expected some to take the {missing} of"
                    )
                fill = float(np.mean(present) if missing == "mean" else np.median(present))
            out.append({"name": c.name, "kind": "numeric", "fill": fill})
            continue
        seen = pd.unique(c.values[train])
        categories: list[str | None] = sorted(v for v in seen if v is not None)
        if len(categories) < len(seen):
            categories.append(None)
        if len(categories) > MAX_CATEGORIES:
            raise DataError(
                f"{where}: column {c.name!r} has {len(categories)} categories in the training "
                f"rows, expected at most {MAX_CATEGORIES} (each is one network input); drop "
                "the column or encode it yourself"
            )
        out.append({"name": c.name, "kind": "categorical", "categories": categories})
    return {"format": ENCODING_FORMAT, "version": 1, "missing": missing, "columns": out}


def encoded_names(encoding: dict[str, Any]) -> list[str]:
    """Return one name per network input: ``age``, ``city=Paris``, ``city (missing)``."""
    names = []
    for c in encoding["columns"]:
        if c["kind"] == "numeric":
            names.append(c["name"])
        else:
            names += [f"{c['name']} (missing)" if v is None else f"{c['name']}={v}" for v in c["categories"]]
    return names


def input_fill(encoding: dict[str, Any]) -> list[float | None]:
    """Return one fill value per network input: a numeric column's fill, else None."""
    fill: list[float | None] = []
    for c in encoding["columns"]:
        if c["kind"] == "numeric":
            fill.append(c["fill"])
        else:
            fill += [None] * len(c["categories"])
    return fill


#: Rows of numeric columns copied at a time: the block of X written stays in cache.
_ROWS_AT_ONCE = 4096


def encode_columns(columns: Sequence[RawColumn], encoding: dict[str, Any]) -> np.ndarray:
    """Return float64 ``[rows, n_inputs]``: numeric values (missing ones filled), one-hots."""
    n = len(columns[0].values)
    X = np.zeros((n, len(input_fill(encoding))))
    numeric, j = [], 0
    for c, spec in zip(columns, encoding["columns"], strict=True):
        if c.kind == "numeric":
            numeric.append((j, c.values, spec["fill"]))
            j += 1
        else:
            width = len(spec["categories"])
            one_hot(c.values, spec["categories"], X[:, j : j + width])
            j += width
    # Written a block of rows at a time: column by column over all rows would write
    # one value per 160-byte row, evicting each line before the next column fills it.
    for start in range(0, n, _ROWS_AT_ONCE):
        block = X[start : start + _ROWS_AT_ONCE]
        for k, values, _ in numeric:
            block[:, k] = values[start : start + _ROWS_AT_ONCE]
    for k, values, fill in numeric:
        if fill is not None:
            X[np.isnan(values), k] = fill
    return X
