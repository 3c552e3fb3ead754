"""Malformed CSV and NPZ data: each is one ``DataError`` line naming the file.

Each case writes a file under ``tmp_path`` and loads it as a task. The message must
start with the path, hold the expected fragment, be one line, quote no content of
the file, and nothing besides the data file may be written.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from hybrid.config import TaskConfig
from hybrid.errors import DataError, HybridError
from hybrid.tasks import load_task

SECRET = "s3cr3t-token"  # written into files whose content must never reach a message


def _rows(n: int, cell: Callable[[int], str]) -> str:
    return "".join(f"{i},{(i * 7) % 5},{cell(i)}\n" for i in range(n))


def _labels(i: int) -> str:
    return "ab"[i % 2]


def _csv(text: str | bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "d.csv"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return make


def _with_cell(row: int, column: int, value: str) -> str:
    lines = ["a,b,label"] + [line for line in _rows(30, _labels).splitlines()]
    cells = lines[row].split(",")
    cells[column] = value
    lines[row] = ",".join(cells)
    return "\n".join(lines) + "\n"


def _npz(**arrays: np.ndarray) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "d.npz"
        np.savez(path, **arrays)
        return path

    return make


def _raw_npz(content: Callable[[], bytes]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "d.npz"
        path.write_bytes(content())
        return path

    return make


def _zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def _huge_header() -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 2)}
    )
    return _zip_of({"X.npy": buf.getvalue() + b"\0" * 64, "y.npy": _npy(np.zeros(4))})


def _good_npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, X=np.random.default_rng(0).normal(size=(40, 3)), y=np.arange(40) % 2)
    return buf.getvalue()


def _link(target: Callable[[Path], Path] | str, name: str = "link.csv") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        dest = target if isinstance(target, str) else str(target(folder))
        path = folder / name
        os.symlink(dest, path)
        return path

    return make


def _folder(folder: Path) -> Path:
    path = folder / "d.csv"
    path.mkdir()
    return path


def _fifo(folder: Path) -> Path:
    path = folder / "d.csv"
    os.mkfifo(path)
    return path


def _secret_file(folder: Path) -> Path:
    path = folder / "notes.txt"
    path.write_text(f"{SECRET}:x:0:0\nmore {SECRET}\n")
    return path


R = np.random.default_rng(1)
X40 = R.normal(size=(40, 3))
Y40 = np.arange(40) % 2
CLS, REG = "classification", "regression"

#: case id -> (make the file, task kind, CSV target, fragment of the message)
CASES: dict[str, tuple[Callable[[Path], Path], str, str | None, str]] = {
    # CSV structure
    "csv empty": (_csv(""), CLS, "label", "empty file"),
    "csv only blank lines": (_csv("\n\n\n"), CLS, "label", "empty file"),
    "csv header only": (_csv("a,b,label\n"), CLS, "label", "no data rows"),
    "csv only the target": (_csv("label\n1\n0\n"), CLS, "label", "no feature columns"),
    "csv no such target": (_csv("a,b,c\n" + _rows(30, _labels)), CLS, "label", "no target column 'label'"),
    "csv target differs in case": (_csv("a,b,Label\n" + _rows(30, _labels)), CLS, "label", "did you mean 'Label'"),
    "csv duplicate column": (_csv("a,a,label\n" + _rows(30, _labels)), CLS, "label", "column 'a' appears more than once"),
    "csv unnamed column": (_csv("a,,label\n" + _rows(30, _labels)), CLS, "label", "column 2 has no name"),
    "csv longer row": (_csv(_with_cell(5, 2, "a,9")), CLS, "label", "line 6 has 4 fields"),
    "csv shorter row": (_csv("a,b,label\n1,2,a\n3,b\n"), CLS, "label", "line 3 has 2 fields"),
    "csv non-UTF-8 bytes": (_csv(b"a,b,label\n1,2,\xff\xfe\n"), CLS, "label", "not a UTF-8 text file"),
    "csv NUL byte": (_csv(b"a,b,label\n1,2\x00,a\n"), CLS, "label", "line 2 holds a NUL byte, expected text"),
    "csv NUL byte far in": (_csv(("a,b,label\n" + "1,2,a\n3,4,b\n" * 40).encode() + b"5,6\x00,a\n"), CLS, "label", "line 82 holds a NUL byte"),
    "csv field over the size limit": (_csv("a,b,label\n1,2," + "z" * 200_000 + "\n"), CLS, "label", "cannot read CSV"),
    # CSV feature values
    "csv word as feature": (_csv(_with_cell(3, 1, SECRET)), CLS, "label", "column 'b', line 4: not a number"),
    "csv empty feature": (_csv(_with_cell(3, 0, "")), CLS, "label", "missing values in column 'a' (1); set task.missing"),
    "csv nan feature": (_csv(_with_cell(2, 1, "NaN")), CLS, "label", "missing values in column 'b' (1)"),
    "csv inf feature": (_csv(_with_cell(2, 1, "-inf")), CLS, "label", "column 'b', line 3: infinite value"),
    "csv feature beyond float64": (_csv(_with_cell(2, 0, "1e999")), CLS, "label", "infinite value"),
    "csv number with a unit": (_csv(_with_cell(2, 0, "12kg")), CLS, "label", "column 'a', line 3: not a number"),
    "csv feature spread beyond float32": (_csv(_with_cell(4, 0, "4e250")), CLS, "label", "feature 'a' is not finite in float32"),
    "csv constant feature beyond float32": (_csv("a,b,label\n" + "".join(f"{i},5e39,{_labels(i)}\n" for i in range(30))), CLS, "label", "feature 'b' is not finite in float32"),
    # CSV labels
    "csv empty label": (_csv(_with_cell(7, 2, "")), CLS, "label", "line 8: empty or NaN target value (1 row(s) in all)"),
    "csv fractional labels": (_csv("a,b,label\n" + _rows(30, lambda i: ("0.25", "0.75")[i % 2])), CLS, "label", "class label is not an integer"),
    "csv one fractional label among integers": (_csv("a,b,label\n" + _rows(30, lambda i: str(i % 2) if i != 9 else "2.5")), CLS, "label", "line 11: class label is not an integer"),
    "csv nan label": (_csv("a,b,label\n" + _rows(30, lambda i: ("nan", "1")[i % 2])), CLS, "label", "line 2: empty or NaN target value (15 row(s) in all)"),
    "csv infinite label among words": (_csv("a,b,label\n" + _rows(30, lambda i: ("cat", "-Infinity")[i % 2])), CLS, "label", "class label is NaN or infinite"),
    "csv label with control character": (_csv("a,b,label\n" + _rows(30, lambda i: ("x\x07", "y")[i % 2])), CLS, "label", "control characters"),
    "csv single class": (_csv("a,b,label\n" + _rows(30, lambda i: "same")), CLS, "label", "only one class"),
    "csv class too small to split": (_csv("a,b,label\n" + _rows(30, lambda i: "rare" if i == 0 else "common")), CLS, "label", "cannot split 30 samples"),
    "csv regression word target": (_csv("a,b,y\n" + _rows(30, lambda i: "heavy" if i == 3 else str(i))), REG, "y", "column 'y', line 5: not a number"),
    "csv regression target nan": (_csv("a,b,y\n" + _rows(30, lambda i: "nan" if i == 3 else str(i))), REG, "y", "line 5: empty or NaN target value"),
    "csv regression target 1e20": (_csv("a,b,y\n" + _rows(30, lambda i: "1e20" if i == 3 else str(i))), REG, "y", "regression targets reach"),
    "csv regression target beyond float32": (_csv("a,b,y\n" + _rows(30, lambda i: "1e39" if i == 3 else str(i))), REG, "y", "NaN/inf (in float32)"),
    # paths that are not regular files
    "path missing": (lambda folder: folder / "absent.csv", CLS, "label", "file not found"),
    "path is a folder": (_folder, CLS, "label", "a folder, expected a data file"),
    "path is a FIFO": (_fifo, CLS, "label", "not a regular file"),
    "dangling symlink": (_link(lambda folder: folder / "gone.csv"), CLS, "label", "file not found"),
    "symlink to a device": (_link("/dev/zero"), CLS, "label", "not a regular file"),
    "symlink to an unrelated text file": (_link(_secret_file), CLS, "label", "no target column 'label'"),
    # NPZ containers
    "npz that is CSV text": (_raw_npz(lambda: b"a,b\n1,2\n"), CLS, None, "not an NPZ archive"),
    "npz that is a bare npy": (_raw_npz(lambda: _npy(np.zeros((4, 2)))), CLS, None, "not an NPZ archive"),
    "npz that is a pickle": (_raw_npz(lambda: pickle.dumps({"X": [[1.0]], "y": [0]})), CLS, None, "not an NPZ archive"),
    "npz empty file": (_raw_npz(lambda: b""), CLS, None, "not an NPZ archive"),
    "npz truncated": (_raw_npz(lambda: _good_npz_bytes()[:300]), CLS, None, "not an NPZ archive"),
    "npz member of garbage": (_raw_npz(lambda: _zip_of({"X.npy": b"garbage!" * 8, "y.npy": _npy(Y40)})), CLS, None, "array 'X' cannot be read"),
    "npz header claiming 10**12 rows": (_raw_npz(_huge_header), CLS, None, "array 'X' claims shape"),
    "npz pickled object X": (_raw_npz(lambda: _zip_of({"X.npy": _npy(np.array([[1, None]] * 4, dtype=object)), "y.npy": _npy(np.zeros(4))})), CLS, None, "array 'X' holds Python objects"),
    "npz pickled object y": (_raw_npz(lambda: _zip_of({"X.npy": _npy(np.zeros((4, 2))), "y.npy": _npy(np.array(["a", 1, None, 2.0], dtype=object))})), CLS, None, "array 'y' holds Python objects"),
    "npz zip without arrays": (_raw_npz(lambda: _zip_of({"readme.txt": SECRET.encode()})), CLS, None, "no array 'X'"),
    "npz no X": (_npz(features=X40, y=Y40), CLS, None, "no array 'X'"),
    "npz no y": (_npz(X=X40, labels=Y40), CLS, None, "no array 'y'"),
    # NPZ shapes and dtypes
    "npz X one-dimensional": (_npz(X=X40[:, 0], y=Y40), CLS, None, "array 'X' is float64 with shape (40,)"),
    "npz X four-dimensional": (_npz(X=X40.reshape(40, 3, 1, 1), y=Y40), CLS, None, "array 'X'"),
    "npz X zero-dimensional": (_npz(X=np.array(1.0), y=Y40), CLS, None, "array 'X'"),
    "npz X without columns": (_npz(X=np.zeros((40, 0)), y=Y40), CLS, None, "no feature columns"),
    "npz X of text": (_npz(X=X40.astype(str), y=Y40), CLS, None, "array 'X' is <U"),
    "npz X complex": (_npz(X=X40 + 1j, y=Y40), CLS, None, "array 'X' is complex128"),
    "npz X structured": (_npz(X=np.zeros(40, dtype=[("a", "f8"), ("b", "f8")]), y=Y40), CLS, None, "array 'X'"),
    "npz X nan": (_npz(X=np.where(np.arange(120).reshape(40, 3) == 61, np.nan, X40), y=Y40), CLS, None, "X[20, 1] is nan"),
    "npz X inf": (_npz(X=np.where(np.arange(120).reshape(40, 3) == 5, -np.inf, X40), y=Y40), CLS, None, "X[1, 2] is -inf"),
    "npz X spread beyond float32": (_npz(X=X40 * np.array([1.0, 1e250, 1.0]), y=Y40), CLS, None, "feature 'X[:, 1]' is not finite in float32"),
    "npz X constant 1e300": (_npz(X=np.column_stack([X40[:, 0], np.full(40, 1e300)]), y=Y40), CLS, None, "feature 'X[:, 1]' is not finite in float32"),
    "npz no rows": (_npz(X=np.zeros((0, 3)), y=np.zeros(0)), CLS, None, "X has no rows"),
    "npz lengths differ": (_npz(X=X40, y=Y40[:39]), CLS, None, "X has 40 rows but y has 39"),
    "npz y zero-dimensional": (_npz(X=X40, y=np.array(1)), CLS, None, "array 'y' has shape ()"),
    "npz y three-dimensional regression": (_npz(X=X40, y=np.zeros((40, 3, 1))), REG, None, "array 'y' has shape (40, 3, 1)"),
    "npz y two-dimensional classes": (_npz(X=X40, y=np.zeros((40, 2))), CLS, None, "class labels have shape (40, 2)"),
    "npz y complex": (_npz(X=X40, y=Y40 + 0j), CLS, None, "array 'y' is complex128"),
    "npz y datetimes": (_npz(X=X40, y=np.array(["2024-01-01"] * 40, dtype="datetime64[D]")), CLS, None, "array 'y' is datetime64"),
    "npz y bytes": (_npz(X=X40, y=np.array([b"a", b"b"] * 20)), CLS, None, "array 'y' is |S1"),
    "npz y fractional classes": (_npz(X=X40, y=Y40 + 0.5), CLS, None, "class label y[0] is not an integer"),
    "npz y nan class": (_npz(X=X40, y=np.where(Y40 == 1, np.nan, 0.0)), CLS, None, "class label y[1] is NaN or infinite"),
    "npz y text nan class": (_npz(X=X40, y=np.array(["nan", "b"] * 20)), CLS, None, "class label y[0] is NaN"),
    "npz y one class": (_npz(X=X40, y=np.ones(40)), CLS, None, "only one class"),
    "npz y text regression": (_npz(X=X40, y=np.array(["1.5"] * 40)), REG, None, "regression targets are <U3"),
    "npz y inf regression": (_npz(X=X40, y=np.where(Y40 == 1, np.inf, 1.0)), REG, None, "NaN/inf"),
    "npz y 1e30 regression": (_npz(X=X40, y=np.full(40, 1e30)), REG, None, "regression targets reach"),
    "npz y beyond float32": (_npz(X=X40, y=np.full((40, 2), 1e300)), REG, None, "NaN/inf (in float32)"),
    "npz y without outputs": (_npz(X=X40, y=np.zeros((40, 0))), REG, None, "no outputs"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_data_is_one_line_naming_the_file(case: str, tmp_path: Path) -> None:
    make, kind, target, fragment = CASES[case]
    path = make(tmp_path)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(HybridError) as err:
        load_task(TaskConfig(path=str(path), kind=kind, target=target), seed=0)
    message = str(err.value)
    assert isinstance(err.value, DataError) and err.value.exit_code == 2
    assert message.startswith(f"{path}: ") and fragment in message, message
    assert "\n" not in message and len(message) < 400
    assert SECRET not in message and "pickle" not in message.lower()
    assert sorted(tmp_path.iterdir()) == before


def test_there_are_at_least_seventy_malformed_data_files() -> None:
    assert len(CASES) >= 70


def test_a_symlinked_data_file_is_followed_and_its_real_path_recorded(tmp_path: Path) -> None:
    real = tmp_path / "data" / "d.csv"
    real.parent.mkdir()
    real.write_text("a,b,label\n" + _rows(30, _labels))
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    task = load_task(TaskConfig(path=str(link), kind=CLS, target="label"), seed=0)
    assert task.source == str(real.resolve()) and task.n_inputs == 2


def test_csv_and_npz_agree_on_fractional_class_labels(tmp_path: Path) -> None:
    labels = np.array([0.5, 1.5] * 20)
    np.savez(tmp_path / "d.npz", X=X40, y=labels)
    (tmp_path / "d.csv").write_text(
        "a,b,c,label\n" + "".join(f"{r[0]},{r[1]},{r[2]},{v}\n" for r, v in zip(X40, labels, strict=True))
    )
    for cfg in (
        TaskConfig(path=str(tmp_path / "d.npz"), kind=CLS),
        TaskConfig(path=str(tmp_path / "d.csv"), kind=CLS, target="label"),
    ):
        with pytest.raises(DataError, match="is not an integer"):
            load_task(cfg, seed=0)
        load_task(cfg.model_copy(update={"kind": REG}), seed=0)  # fine as regression


def test_large_but_float32_safe_features_are_standardised(tmp_path: Path) -> None:
    X = X40 * np.array([1.0, 1e30, 1e-30])
    np.savez(tmp_path / "d.npz", X=X, y=Y40)
    task = load_task(TaskConfig(path=str(tmp_path / "d.npz"), kind=CLS), seed=0)
    assert np.isfinite(task.X_train).all() and abs(task.X_train[:, 1]).max() < 10
