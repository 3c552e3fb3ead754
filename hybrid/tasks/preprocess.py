"""Raw table rows -> the network's input: hybrid's tabular encoding, numpy + pandas only.

This module never imports hybrid: ``hybrid export`` copies it next to an exported
model as ``preprocess.py`` with :data:`ENCODING` filled in from the run's
``task.json``, so a model trained on a table (CSV, TSV, Parquet) can be fed the
rows as users have them::

    import sys, torch; sys.path.insert(0, "runs/NAME/best")
    from model import load
    from preprocess import encode
    x = encode(rows)                 # a DataFrame, a list of dicts or a dict of lists
    logits = load()(torch.from_numpy(x))

The training code of hybrid encodes with the same functions, so the two cannot
drift apart. The encoding (``task.json`` key ``encoding``) lists the raw feature
columns in order; each becomes:

* ``numeric``: one input, the value as a number. A missing value (empty, NaN,
  None) stays NaN here; the exported module replaces it with the column's
  ``fill`` (the training split's mean or median, ``task.missing``) before it
  standardises. ``fill`` is null when the run refused missing values.
* ``categorical``: one input per entry of ``categories`` (learned from the
  training split only, sorted by text; ``null`` last stands for "missing", which
  is its own category when ``task.missing`` is "mean" or "median"). A row gets a
  1 in its category's input and 0 elsewhere; a value never seen in the training
  split gets all zeros.

Category values are matched by their text: strings stripped of surrounding
whitespace, integral numbers without a decimal point (``3`` and ``3.0`` are
``"3"``), other numbers as Python's ``repr``, booleans as ``"True"``/``"False"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ENCODING", "category_text", "encode", "numbers", "one_hot"]

#: The run's encoding (``task.json`` key ``encoding``); None in hybrid's own copy.
ENCODING: dict[str, Any] | None = None

#: pandas's (major, minor): the package accepts >= 2.0, and older ones read some numbers
#: differently from pandas 3.1.
PANDAS_VERSION = tuple(int(part) for part in re.findall(r"\d+", pd.__version__)[:2])


def _text(v: Any) -> str | None:
    """Return one category value's text (None for missing).

    Raises:
        TypeError: a value that is neither text, a number, a boolean nor missing.
    """
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, bool | np.bool_):
        return "True" if v else "False"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        f = float(v)
        if f != f:
            return None
        return str(int(f)) if f.is_integer() else repr(f)
    if isinstance(v, str):
        return v.strip()
    raise TypeError(type(v).__name__)


def category_text(values: Iterable[Any]) -> np.ndarray:
    """Return each value's category text (object array of ``str``, None where missing).

    Args:
        values: a pandas Series or any sequence of strings, numbers, booleans and
            missing values (None, NaN).

    Raises:
        TypeError: (the type's name) for any other kind of value.

    Example:
        >>> category_text(["a ", 3, 3.0, 2.5, None, float("nan"), True]).tolist()
        ['a', '3', '3', '2.5', None, None, 'True']
    """
    s = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if pd.api.types.is_string_dtype(s.dtype) and not pd.api.types.is_object_dtype(s.dtype):
        return s.str.strip().to_numpy(dtype=object, na_value=None)
    if s.dtype.kind in "iu":  # no missing values possible: vectorised
        return s.astype(str).to_numpy(dtype=object)
    try:
        codes, uniques = pd.factorize(s.astype(object), use_na_sentinel=True)
    except TypeError:  # unhashable values (lists, dicts): _text names their type
        return np.array([_text(v) for v in s], dtype=object)
    texts = np.array([_text(v) for v in uniques] + [None], dtype=object)
    return texts[codes]  # code -1 (missing) picks the trailing None


def numbers(values: Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(float64 values, bad)``: NaN where missing; ``bad`` marks non-numbers.

    Strings are stripped and parsed (``" 2.5 "`` is 2.5); booleans count as 0/1.

    Example:
        >>> v, bad = numbers(["1", " 2.5", None, "x"])
        >>> v.tolist()[:2], bad.tolist()
        ([1.0, 2.5], [False, False, False, True])
    """
    s = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if s.dtype.kind in "iufb":
        return s.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(len(s), dtype=bool)
    missing = s.isna().to_numpy()
    if pd.api.types.is_string_dtype(s.dtype) and not pd.api.types.is_object_dtype(s.dtype):
        s = s.str.strip()
    else:
        s = s.map(lambda v: v.strip() if isinstance(v, str) else v)
    out = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(out) & ~missing
    if PANDAS_VERSION < (3, 0) and bad.any():  # pandas 2 coerces a number beyond float64 ("1e999") to NaN
        rows = np.flatnonzero(bad)
        text = pd.Series(s.iloc[rows].to_numpy(dtype=object), dtype=object)
        try:
            hit = rows[text.str.fullmatch(_OVERFLOW, na=False).to_numpy(dtype=bool)]
        except AttributeError:  # no text among them (dates, decimals): nothing overflowed
            hit = rows[:0]
        out[hit] = [float(s.iat[i]) for i in hit]  # +-inf, which the callers refuse by name
        bad[hit] = False
    return out, bad


#: A decimal number with an exponent: the only text that can overflow float64.
_OVERFLOW = r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+"


def one_hot(text: np.ndarray, categories: list[str | None], out: np.ndarray) -> None:
    """Write the one-hot block of ``text`` (from :func:`category_text`) into ``out``.

    Args:
        text: one category text (or None) per row.
        categories: the column's categories; a None entry is the "missing" category.
        out: ``[rows, len(categories)]``, zeros; unseen values leave their row zero.
    """
    known = [c for c in categories if c is not None]
    codes = pd.Index(known, dtype=object).get_indexer(pd.Index(text, dtype=object))
    if None in categories:
        codes[pd.isna(text)] = categories.index(None)
    rows = np.flatnonzero(codes >= 0)
    out[rows, codes[rows]] = 1


def _frame(rows: Any) -> pd.DataFrame:
    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, Mapping):
        return pd.DataFrame(dict(rows))
    return pd.DataFrame(list(rows))


def encode(
    rows: Any, encoding: Mapping[str, Any] | None = None, dtype: Any = np.float32
) -> np.ndarray:
    """Return the network input ``[len(rows), n_inputs]`` for raw table rows.

    Args:
        rows: a pandas DataFrame, a list of dicts (one per row) or a dict of
            columns; columns are found by name, extra columns (the target) are
            ignored.
        encoding: default :data:`ENCODING`.
        dtype: of the result (hybrid trains from float64).

    Returns:
        Numeric columns as numbers (NaN where missing: the exported module fills
        them), categorical columns one-hot, in the encoding's column order.

    Raises:
        ValueError: no encoding, a column missing from ``rows``, a numeric column
            holding something that is not a number, or a categorical value that is
            neither text, number nor boolean.
    """
    enc = ENCODING if encoding is None else encoding
    if enc is None:
        raise ValueError("no encoding: pass encoding= (task.json key 'encoding')")
    frame = _frame(rows)
    columns = enc["columns"]
    absent = [c["name"] for c in columns if c["name"] not in frame.columns]
    if absent:
        raise ValueError(f"rows lack column(s) {', '.join(map(repr, absent))}")
    width = sum(1 if c["kind"] == "numeric" else len(c["categories"]) for c in columns)
    out = np.zeros((len(frame), width), dtype=dtype)
    j = 0
    for col in columns:
        name, values = col["name"], frame[col["name"]]
        if col["kind"] == "numeric":
            v, bad = numbers(values)
            if bad.any():
                raise ValueError(f"column {name!r}, row {int(np.flatnonzero(bad)[0])}: not a number")
            out[:, j] = v
            j += 1
            continue
        try:
            text = category_text(values)
        except TypeError as exc:
            raise ValueError(f"column {name!r}: a {exc} value, expected text or a number") from None
        n = len(col["categories"])
        one_hot(text, list(col["categories"]), out[:, j : j + n])
        j += n
    return out
