"""Read user data: a table (CSV, TSV, Parquet) with a header, or NPZ with ``X`` and ``y``.

Every problem is a :class:`~hybrid.errors.DataError` of one line naming the file
and, where it applies, the column (or array), the line and what was expected.
Errors never quote the file's content (a cell, a header row): a path that leads
to the wrong file must not print that file into a terminal or a CI log.

Data paths are the user's own, so symbolic links are followed (a data folder
linked to another disk is common); the task records the resolved path as its
``source``. Only regular files are read: a FIFO would block and a device never
end. NPZ files are read with ``allow_pickle=False`` and numpy's own messages
(which suggest loading pickles) are never shown.

Tables are read by pandas (CSV and TSV with the C engine, measured 3x faster than
pyarrow's on 2 cores; Parquet with pyarrow). pandas' and
pyarrow's messages can quote a line of the file, so they are never shown: when
the fast reader fails, the csv module rescans the file to name the line at fault.
"""

from __future__ import annotations

import csv
import difflib
import importlib.util
import math
import os
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from .preprocess import PANDAS_VERSION, category_text, numbers

__all__ = [
    "MASK_ARRAY",
    "MAX_TARGET",
    "PARQUET_SUFFIXES",
    "SPLIT_ARRAY",
    "TABLE_SUFFIXES",
    "TABULAR_INSTALL",
    "csv_engine",
    "encode_targets",
    "read_npz",
    "read_table",
    "read_npz_split",
    "read_npz_mask",
    "resolve_data_path",
    "sequence_targets",
]

#: File suffixes read as tables (by pandas); ``.npz`` is the other data format.
PARQUET_SUFFIXES = (".parquet", ".pq")
TABLE_SUFFIXES = (".csv", ".tsv", *PARQUET_SUFFIXES)
TABULAR_INSTALL = 'pip install "hybrid[tabular]"'

#: Largest |regression target|: MSE squares the error, and above ~5e15 the sum of
#: squared errors over a large batch overflows float32 (max 3.4e38).
MAX_TARGET = 1e15
#: Optional NPZ array giving each row's split: 0 train, 1 validation, 2 test.
SPLIT_ARRAY = "split"


def resolve_data_path(path: Path) -> Path:
    """Return the real path of a data file, following symbolic links.

    Raises:
        DataError: the path does not exist (or is a dangling link), or is not a
            regular file (a folder, FIFO or device).
    """
    try:
        real = Path(os.path.realpath(path))
        mode = real.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL byte
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "invalid path"
        raise DataError(f"{path}: cannot read the data file ({reason})") from None
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise DataError(f"{path}: {what}, expected a data file")
    return real


def csv_engine() -> str:
    """Return the pandas CSV engine: "c", whether or not pyarrow is installed.

    On a quiet 2-core machine the C engine read a 1,000,000 x 20 CSV in 0.71 s against
    pyarrow's 2.78 s (``benchmarks/load_data.py``): pyarrow's threads pay off only
    with more cores. Parquet is still read by pyarrow.
    """
    return "c"


#: Longest cell accepted: a longer one is not a feature value or a class name.
MAX_FIELD = 131_072


def _number(label: str) -> float | None:
    try:
        return float(label)
    except ValueError:
        return None


def _header(path: Path, sep: str) -> list[str]:
    """Return the first non-blank record's names, stripped (the csv module: no pandas mangling).

    Raises:
        DataError: an empty file, not UTF-8, or a row the csv module cannot parse.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            for row in csv.reader(f, delimiter=sep):
                if row:
                    return [h.strip() for h in row]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file, expected CSV") from None
    except csv.Error as exc:  # its messages describe the format, never the content
        raise DataError(f"{path}: cannot read CSV ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read CSV ({exc.strerror or 'read error'})") from None
    raise DataError(f"{path}: empty file, expected a header row naming the columns")


def _check_header(path: Path, header: list[str], target: str) -> None:
    if target not in header:
        near = difflib.get_close_matches(target, header, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise DataError(
            f"{path}: no target column {target!r} among the header's {len(header)} column(s){hint}"
        )
    for i, h in enumerate(header):
        if h == "":
            raise DataError(f"{path}: column {i + 1} has no name in the header row")
        if header.count(h) > 1:
            raise DataError(f"{path}: column {h!r} appears more than once in the header")
    if len(header) < 2:
        raise DataError(f"{path}: no feature columns besides the target {target!r}")


def _records(path: Path, sep: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(first line, fields)`` of every non-blank record, the header included."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=sep)
        start = 1
        for row in reader:
            if row:
                yield start, row
            start = reader.line_num + 1


def _diagnose(path: Path, sep: str, width: int) -> None:
    """Find what the fast reader tripped on, with the csv module; raise it as a DataError.

    Raises:
        DataError: not UTF-8, a row of the wrong length or a field over the limit.
    """
    try:
        for line, row in _records(path, sep):
            if len(row) != width:
                raise DataError(f"{path}: line {line} has {len(row)} fields, the header has {width}")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file, expected CSV") from None
    except csv.Error as exc:
        raise DataError(f"{path}: cannot read CSV ({exc})") from None


def _csv_lines(path: Path, sep: str) -> Callable[[int], str]:
    """Return row index -> "line N", N the row's first line in the file (blank lines count)."""

    def line(row: int) -> str:
        try:
            for k, (n, _) in enumerate(_records(path, sep)):
                if k == row + 1:  # record 0 is the header
                    return f"line {n}"
        except (csv.Error, UnicodeDecodeError, OSError):  # the csv module is stricter
            pass
        return f"data row {row + 1}"

    return line


#: The C parser of pandas < 3.1 reads a float to within an ulp unless asked for
#: "round_trip" (3x slower on pandas 2; a third of random floats were off on 3.0.6);
#: pandas 3.1 reads every float exactly and deprecates the option.
_EXACT_FLOATS = {"float_precision": "round_trip"} if PANDAS_VERSION < (3, 1) else {}


_NUL_CHUNK = 1 << 24  # bytes read at a time looking for NUL (16 MiB)


def _check_no_nul(path: Path) -> None:
    """Refuse a NUL byte: pandas 2's C parser ends a field there, so ``2\\x00`` would read as 2.

    Raises:
        DataError: naming the line of the first NUL byte.
    """
    with open(path, "rb") as f:
        start = 0
        while chunk := f.read(_NUL_CHUNK):
            at = chunk.find(b"\x00")
            if at >= 0:  # rare: only now count the lines before it
                raise DataError(f"{path}: line {_lines_before(f, start + at)} holds a NUL byte, expected text")
            start += len(chunk)


def _lines_before(f: Any, offset: int) -> int:
    """Return the line number of byte ``offset`` of the binary file ``f`` (read again in chunks)."""
    f.seek(0)
    line = 1
    while offset > 0:
        chunk = f.read(min(_NUL_CHUNK, offset))
        line += chunk.count(b"\n")
        offset -= len(chunk)
    return line


def _read_csv_frame(path: Path, target: str) -> tuple[pd.DataFrame, Callable[[int], str]]:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    header = _header(path, sep)
    _check_header(path, header, target)
    _check_no_nul(path)
    engine = csv_engine()
    try:
        # low_memory=False: the C engine would otherwise guess types chunk by chunk
        options = {"low_memory": False, **_EXACT_FLOATS} if engine == "c" else {}
        frame = pd.read_csv(path, sep=sep, header=0, names=header, engine=engine, **options)
    except (ValueError, UnicodeDecodeError, OSError, pd.errors.ParserError) as exc:
        _diagnose(path, sep, len(header))
        raise DataError(f"{path}: cannot read CSV ({type(exc).__name__})") from None
    if engine == "c" and frame.isna().any().any():  # C fills short rows with NaN
        _diagnose(path, sep, len(header))
    for name in frame.columns:
        col = frame[name]
        if col.dtype == object and any(isinstance(v, bytes) for v in col.to_numpy()):
            _diagnose(path, sep, len(header))  # pyarrow keeps invalid UTF-8 as bytes
            raise DataError(f"{path}: not a UTF-8 text file, expected CSV")
    return frame, _csv_lines(path, sep)


def _read_parquet_frame(path: Path, target: str) -> tuple[pd.DataFrame, Callable[[int], str]]:
    if importlib.util.find_spec("pyarrow") is None:
        raise DataError(f"{path}: reading Parquet needs pyarrow: {TABULAR_INSTALL}")
    import pyarrow

    try:
        frame = pd.read_parquet(path, engine="pyarrow")
    except (OSError, ValueError, TypeError, pyarrow.ArrowException) as exc:
        raise DataError(
            f"{path}: cannot read Parquet ({type(exc).__name__}), expected a Parquet table"
        ) from None
    header = list(frame.columns)
    bad = [h for h in header if not isinstance(h, str)]
    if bad:
        raise DataError(f"{path}: column names should be text, got a {type(bad[0]).__name__}")
    _check_header(path, [h.strip() for h in header], target)
    frame.columns = [h.strip() for h in header]
    return frame.reset_index(drop=True), lambda row: f"row {row + 1}"


def _first_rows(codes: np.ndarray, k: int) -> np.ndarray:
    """Return the first row of each of the ``k`` values that ``pd.factorize`` gave ``codes``.

    factorize numbers values in order of first appearance, so value ``j``'s first row
    is where the running maximum of ``codes`` reaches ``j``: one pass, not a sort of
    every row (a million labels: 5 ms against 60 ms).
    """
    if len(codes) and codes.min() < 0:  # missing values (code -1): the general way
        present = np.flatnonzero(codes >= 0)
        return present[np.unique(codes[present], return_index=True)[1]]
    running = np.maximum.accumulate(codes)
    first = np.flatnonzero(np.diff(running, prepend=-1) > 0)
    assert len(first) == k, "codes must come from pd.factorize"
    return first


def _label_text(col: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(text, codes, uniques)``: each label's text, factorized (order of appearance).

    Integers and booleans are factorized as they are and only the distinct values
    made text (``str`` of each, as ``Series.astype(str)`` writes it): the same text
    as converting every row, without a million Python strings to hash.

    Raises:
        TypeError: labels that are neither text, numbers nor booleans.
    """
    if col.dtype.kind in "iub":
        codes, distinct = pd.factorize(col)
        uniques = pd.Series(distinct).astype(str).to_numpy(dtype=object)
        return uniques[codes], codes, uniques
    text = col.astype(str).to_numpy(dtype=object) if col.dtype.kind == "f" else category_text(col)
    codes, uniques = pd.factorize(text)
    return text, codes, uniques


def _labels(path: Path, target: str, col: pd.Series, line: Callable[[int], str]) -> np.ndarray:
    """Return the class labels as text, refusing NaN/inf, control characters, fractions."""
    try:
        text, codes, uniques = _label_text(col)
    except TypeError:
        raise DataError(f"{path}: column {target!r}: class labels should be text or numbers") from None
    first = dict(enumerate(_first_rows(codes, len(uniques)).tolist()))
    numeric = [_number(v) for v in uniques]
    order = sorted(range(len(uniques)), key=lambda k: first[k])
    for k in order:
        v, x, where = uniques[k], numeric[k], f"{path}: column {target!r}, {line(first[k])}"
        if x is not None and not math.isfinite(x):
            raise DataError(f"{where}: class label is NaN or infinite, expected a class name")
        if not v.isprintable():
            raise DataError(f"{where}: class label holds control characters, expected text")
    if all(x is not None for x in numeric):  # numeric labels: the same rule as NPZ
        for k in order:
            if numeric[k] != round(numeric[k]):  # type: ignore[arg-type]
                raise DataError(
                    f"{path}: column {target!r}, {line(first[k])}: class label is not an integer, "
                    'expected integer or text labels (set task.kind = "regression" for numeric targets)'
                )
    return text


def _text_lengths(col: pd.Series) -> pd.Series | None:
    """Return each cell's length (NaN where it is not text), or None for a column with no text.

    An object column holds text (CSV under pandas 2) or other Python objects (Parquet
    dates and decimals under any pandas), where ``.str`` raises: nothing to measure.
    """
    try:
        return col.str.len()
    except AttributeError:
        return None


def read_table(
    path: Path, target: str, kind: str
) -> tuple[pd.DataFrame, np.ndarray, Callable[[int], str]]:
    """Read a CSV (``.csv``), TSV (``.tsv``) or Parquet (``.parquet``, ``.pq``) table.

    CSV and TSV need a header row; they are read by pandas' C engine (see
    :func:`csv_engine`); Parquet needs pyarrow.
    Empty cells and pandas' missing-value spellings (``NA``, ``NaN``, ``null``, ...)
    are missing values.

    Args:
        path: the file.
        target: the label column; every other column is a feature.
        kind: "classification" (labels as text) or "regression" (numbers).

    Returns:
        ``(features, y, line)``: the feature columns as read (file order), the
        targets (object array of label texts, or float64 ``[N]``) and a function
        naming row ``i`` in messages ("line 12" for CSV, "row 11" for Parquet).

    Raises:
        DataError: unreadable or empty file, a header without the target, with an
            unnamed or repeated column or nothing but the target, a ragged row, no
            data rows, a field over ``MAX_FIELD`` characters, a missing target,
            non-numeric regression targets, or class labels that are NaN/inf,
            control characters or non-integer numbers.
    """
    if path.suffix.lower() in PARQUET_SUFFIXES:
        frame, line = _read_parquet_frame(path, target)
    else:
        frame, line = _read_csv_frame(path, target)
    if len(frame) == 0:
        raise DataError(f"{path}: no data rows below the header")
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_string_dtype(col.dtype):
            lengths = _text_lengths(col)  # pandas 3 reads text as str, pandas 2 as object
            if lengths is not None and lengths.max() > MAX_FIELD:
                row = int(np.flatnonzero(lengths.to_numpy(na_value=0) > MAX_FIELD)[0])
                what = "Parquet" if path.suffix.lower() in PARQUET_SUFFIXES else "CSV"
                raise DataError(
                    f"{path}: cannot read {what} (column {name!r}, {line(row)}: field larger "
                    f"than {MAX_FIELD} characters)"
                )
    raw = frame.pop(target)
    absent = np.flatnonzero(raw.isna().to_numpy())
    if len(absent):
        raise DataError(
            f"{path}: column {target!r}, {line(int(absent[0]))}: empty or NaN target value "
            f"({len(absent)} row(s) in all), expected a target in every row"
        )
    if kind == "regression":
        y, bad = numbers(raw)
        if bad.any():
            raise DataError(
                f"{path}: column {target!r}, {line(int(np.flatnonzero(bad)[0]))}: not a number"
            )
        inf = np.flatnonzero(~np.isfinite(y))
        if len(inf):
            raise DataError(
                f"{path}: column {target!r}, {line(int(inf[0]))}: NaN or infinite, expected a "
                "finite number"
            )
        return frame, y, line
    return frame, _labels(path, target, raw, line), line


_NPZ_READ_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    OSError,
    EOFError,
    SyntaxError,  # a .npy header is parsed as a Python literal
    UnicodeDecodeError,
    MemoryError,  # a header that claims a huge shape
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,  # e.g. an unsupported zip compression method
)


def _npz_array(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """Return ``npz[key]`` after checking its header: no objects, no oversized shape."""
    fmt = np.lib.format
    try:
        info = npz.zip.getinfo(f"{key}.npy")
        with npz.zip.open(info) as member:
            version = fmt.read_magic(member)
            if version not in ((1, 0), (2, 0)):  # 3.0 exists only for unicode field names
                raise DataError(
                    f"{path}: array {key!r} is .npy version {version}, expected 1.0 or 2.0"
                )
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(member)
        if dtype.hasobject:
            raise DataError(
                f"{path}: array {key!r} holds Python objects, expected numbers "
                "(object arrays are never loaded)"
            )
        if math.prod(shape) * dtype.itemsize > info.file_size:
            raise DataError(
                f"{path}: array {key!r} claims shape {shape} but holds fewer values, expected "
                "an intact .npy array"
            )
        return npz[key]
    except DataError:
        raise
    except _NPZ_READ_ERRORS as exc:  # numpy's messages suggest unpickling: never shown
        raise DataError(
            f"{path}: array {key!r} cannot be read ({type(exc).__name__}), expected a .npy "
            "array of numbers"
        ) from None


@contextmanager
def _open_npz(path: Path) -> Iterator[Any]:
    """``np.load(path)`` without pickles; any failure to read it is one ``DataError`` line."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            yield npz
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except DataError:
        raise
    except _NPZ_READ_ERRORS as exc:
        raise DataError(
            f"{path}: not a valid NPZ archive ({type(exc).__name__}), expected numpy.savez output"
        ) from None


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read arrays ``X`` ([N, F] numbers) and ``y`` ([N] or [N, k]) from an NPZ file.

    A 3-D ``X`` ([N, T, F]) is a sequence data set; its ``y`` ([N, T], [N, T, k],
    [N] or [N, k]) is checked by :func:`sequence_targets`, its ``mask`` by
    :func:`read_npz_mask`.

    Returns:
        ``(X, y, names)``: float64 ``X``, ``y`` as stored, and feature names
        (``X[:, j]``).

    Raises:
        DataError: missing file, not an NPZ archive, object arrays (no pickle), no
            ``X`` or ``y``, ``X`` not 2-D (or 3-D) numeric or with no columns (or no
            steps), NaN/inf in ``X``, ``y`` not 1-D or 2-D (sequences: up to 3-D), or
            lengths that differ.
    """
    if not zipfile.is_zipfile(path):  # a .npy or pickle renamed: numpy would hint at pickle
        raise DataError(f"{path}: not an NPZ archive, expected a zip of .npy arrays (numpy.savez)")
    with _open_npz(path) as npz:
        names = list(npz.files)
        missing = [k for k in ("X", "y") if k not in names]
        if missing:
            shown = ", ".join(repr(n) for n in names[:10]) or "none"
            raise DataError(f"{path}: no array {missing[0]!r} (arrays: {shown}); expected X and y")
        X, y = _npz_array(npz, "X", path), _npz_array(npz, "y", path)
    if X.ndim not in (2, 3) or X.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: array 'X' is {X.dtype} with shape {X.shape}, expected numbers of shape "
            "[samples, features] (or [sequences, steps, features])"
        )
    if X.shape[-1] == 0:
        raise DataError(f"{path}: array 'X' has shape {X.shape}: no feature columns, expected at least 1")
    if X.ndim == 3 and X.shape[1] == 0:
        raise DataError(f"{path}: array 'X' has shape {X.shape}: no steps, expected T >= 1")
    if y.ndim not in ((1, 2) if X.ndim == 2 else (1, 2, 3)):
        want = "[samples] or [samples, outputs]" if X.ndim == 2 else _sequence_shapes(X.shape)
        raise DataError(f"{path}: array 'y' has shape {y.shape}, expected {want}")
    if y.dtype.kind not in "biufU":
        raise DataError(
            f"{path}: array 'y' is {y.dtype}, expected numbers (or text class labels)"
        )
    X = X.astype(np.float64)
    bad = np.argwhere(~np.isfinite(X))
    if len(bad):
        at = ", ".join(str(int(i)) for i in bad[0])
        raise DataError(f"{path}: X[{at}] is {X[tuple(bad[0])]}, expected a finite number")
    if len(y) != len(X):
        raise DataError(f"{path}: X has {len(X)} rows but y has {len(y)}, expected the same")
    if len(X) == 0:
        raise DataError(f"{path}: X has no rows")
    lead = ":, " * (X.ndim - 1)
    return X, y, [f"X[{lead}{j}]" for j in range(X.shape[-1])]


#: Optional array of a sequence NPZ: True (or 1) where a step is real and scored.
MASK_ARRAY = "mask"


def _sequence_shapes(shape: tuple[int, ...]) -> str:
    n, t = shape[0], shape[1]
    return (
        f"({n}, {t}) or ({n}, {t}, outputs) per step (T = {t} as in X), "
        f"or ({n},) / ({n}, outputs) per sequence"
    )


def read_npz_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """Return a sequence NPZ's ``mask`` as bool ``[N, T]``, or None without one.

    Args:
        path: the NPZ file (already read by :func:`read_npz`).
        shape: ``X``'s shape ``(N, T, F)``.

    Raises:
        DataError: a mask of another shape, of values other than 0/1 (or
            False/True), or a sequence whose mask is all False.
    """
    with _open_npz(path) as npz:
        if MASK_ARRAY not in npz.files:
            return None
        mask = _npz_array(npz, MASK_ARRAY, path)
    n, t = shape[0], shape[1]
    if mask.shape != (n, t):
        raise DataError(
            f"{path}: array {MASK_ARRAY!r} has shape {mask.shape}, expected ({n}, {t}) as X's "
            "first two dimensions"
        )
    if mask.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: array {MASK_ARRAY!r} is {mask.dtype}, expected booleans (or 0/1) of shape "
            f"({n}, {t}): True where a step is real"
        )
    if not np.isin(mask, (0, 1)).all():
        raise DataError(
            f"{path}: array {MASK_ARRAY!r} is {mask.dtype} with values other than 0 and 1, "
            f"expected booleans of shape ({n}, {t}): True where a step is real"
        )
    mask = mask.astype(bool)
    empty = np.flatnonzero(~mask.any(axis=1))
    if len(empty):
        raise DataError(
            f"{path}: array {MASK_ARRAY!r} row {int(empty[0])} is all False ({len(empty)} "
            "sequence(s) in all), expected at least one real step per sequence"
        )
    return mask


def sequence_targets(
    path: Path, y: np.ndarray, shape: tuple[int, ...], mask: np.ndarray | None, kind: str
) -> tuple[np.ndarray, tuple[str, ...], bool]:
    """Encode a sequence NPZ's ``y``: per step ``[N, T]`` / ``[N, T, k]`` or per sequence.

    Class labels and regression values are checked and encoded as
    :func:`encode_targets` does, over the real steps only (``mask``); padded steps
    get 0.

    Args:
        path: the NPZ file, for messages.
        y: the raw targets.
        shape: ``X``'s shape ``(N, T, F)``.
        mask: the bool ``[N, T]`` mask, or None (every step real).
        kind: "classification" or "regression".

    Returns:
        ``(y, class_labels, per_step)``: int64 class ids or float32 values.

    Raises:
        DataError: a shape that fits neither form (naming the expected shapes) or a
            target that :func:`encode_targets` refuses.
    """
    n, t = shape[0], shape[1]
    classification = kind == "classification"
    per_step = y.shape[:2] == (n, t) and y.ndim == (2 if classification else 3)
    per_sequence = y.shape[:1] == (n,) and y.ndim == (1 if classification else 2)
    if not (per_step or per_sequence):
        want = (
            f"({n}, {t}) class ids per step (T = {t} as in X) or ({n},) per sequence"
            if classification
            else f"({n}, {t}, outputs) per step (T = {t} as in X) or ({n}, outputs) per sequence"
        )
        raise DataError(f"{path}: array 'y' has shape {y.shape}, expected {want}")
    if not per_step:
        out, labels = encode_targets(y, kind, str(path))
        return out, labels, False
    real = np.ones((n, t), dtype=bool) if mask is None else mask
    flat, labels = encode_targets(y[real], kind, str(path))
    out = np.zeros((n, t, *flat.shape[1:]), dtype=flat.dtype)
    out[real] = flat
    return out, labels, True


def read_npz_split(path: Path, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Return the explicit (train, val, test) row indices an NPZ file holds, if any.

    An NPZ may hold an integer array ``split`` beside ``X`` and ``y``: one value
    per row, 0 (train), 1 (validation) or 2 (test). It then is the split, and
    ``task.val_fraction`` / ``task.test_fraction`` are not used (``hybrid.search``
    writes one for ``eval_set``).

    Args:
        path: the NPZ file (already read by :func:`read_npz`).
        n_rows: the number of rows of ``X``.

    Returns:
        Sorted index arrays ``(train, val, test)``, or None without a ``split`` array.

    Raises:
        DataError: ``split`` is not integers of shape [rows], holds a value other than
            0, 1 or 2, or leaves a split empty.
    """
    with _open_npz(path) as npz:
        if SPLIT_ARRAY not in npz.files:
            return None
        split = _npz_array(npz, SPLIT_ARRAY, path)
    if split.shape != (n_rows,) or split.dtype.kind not in "iu":
        raise DataError(
            f"{path}: array {SPLIT_ARRAY!r} is {split.dtype} with shape {split.shape}, expected "
            f"integers of shape ({n_rows},): 0 train, 1 validation, 2 test per row"
        )
    bad = np.flatnonzero((split < 0) | (split > 2))
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{path}: {SPLIT_ARRAY}[{i}] is {int(split[i])}, expected 0 (train), 1 (validation) "
            "or 2 (test)"
        )
    parts = tuple(np.flatnonzero(split == k) for k in (0, 1, 2))
    for k, name in enumerate(("train", "validation", "test")):
        if len(parts[k]) == 0:
            raise DataError(f"{path}: array {SPLIT_ARRAY!r} puts no row in the {name} split ({k})")
    return parts  # type: ignore[return-value]


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
    numerically, others alphabetically. Non-integer numbers are refused as class
    labels, from CSV and NPZ alike: they almost always mean a regression target.

    Args:
        y: raw targets, strings or numbers.
        kind: "classification" or "regression".
        where: the file (or task) to name in errors.

    Returns:
        ``(y, class_labels)``; ``class_labels`` is empty for regression.

    Raises:
        DataError: non-numeric, non-finite or huge regression targets, targets of
            more than 2 dimensions, non-integer or NaN numeric class labels, or
            fewer than two classes.
    """
    arr = np.asarray(y)
    if kind == "regression":
        if arr.dtype.kind not in "biuf":
            raise DataError(f"{where}: regression targets are {arr.dtype}, expected numbers")
        if arr.ndim not in (1, 2):
            raise DataError(
                f"{where}: regression targets have shape {arr.shape}, expected [samples] or "
                "[samples, outputs]"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            out = arr.astype(np.float32).reshape(len(arr), -1)
        if out.shape[1] == 0:
            raise DataError(f"{where}: regression targets have shape {arr.shape}: no outputs")
        if not np.isfinite(out).all():
            raise DataError(
                f"{where}: regression targets hold NaN/inf (in float32), expected finite numbers"
            )
        if np.abs(out).max() > MAX_TARGET:
            raise DataError(
                f"{where}: regression targets reach |y| > {MAX_TARGET:g}, expected smaller "
                "numbers (the squared error would overflow float32); rescale the targets"
            )
        return out, ()
    if arr.ndim != 1:
        raise DataError(
            f"{where}: class labels have shape {arr.shape}, expected one label per sample"
        )
    if arr.dtype.kind in "biuf":
        values = arr.astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
        if len(bad):
            i = int(bad[0])
            what = "is NaN or infinite" if not np.isfinite(values[i]) else "is not an integer"
            raise DataError(
                f"{where}: class label y[{i}] {what}, expected integer or string labels "
                '(set task.kind = "regression" for numeric targets)'
            )
        codes, uniques = pd.factorize(values)
        labels = [str(int(v)) for v in uniques]
    else:  # checked once per distinct label; errors name its first row
        codes, uniques = pd.factorize(arr.astype(object))
        labels = [str(v) for v in uniques]
        numeric = [_number(v) for v in labels]
        first = _first_rows(codes, len(uniques))
        order = np.argsort(first)
        for k in order:
            v, x = labels[k], numeric[k]
            if (x is not None and not math.isfinite(x)) or not v.isprintable():
                raise DataError(
                    f"{where}: class label y[{first[k]}] is NaN, infinite or holds control "
                    "characters, expected a class name"
                )
        if all(x is not None for x in numeric):  # "1" and "1.0" are the same class
            fractional = [k for k in order if numeric[k] != round(numeric[k])]  # type: ignore[arg-type]
            if fractional:
                raise DataError(
                    f"{where}: class label y[{first[fractional[0]]}] is not an integer, expected "
                    'integer or string labels (set task.kind = "regression" for numeric targets)'
                )
            labels = [str(int(x)) for x in numeric]  # type: ignore[arg-type]
    classes = tuple(sorted(set(labels), key=_label_sort_key))
    if len(classes) < 2:
        raise DataError(f"{where}: only one class ({classes[0]!r}), expected at least 2")
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in labels], dtype=np.int64)[codes], classes
