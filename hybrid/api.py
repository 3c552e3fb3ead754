"""Search on in-memory data: ``hybrid.search(X, y)`` for arrays and DataFrames.

The data goes into the run folder, so the run is an ordinary one: ``hybrid resume``,
``status``, ``lineage``, ``report`` and ``export`` work on it as on any other.
Arrays are written as ``data.npz`` (arrays ``X`` and ``y``); a DataFrame as
``data.csv`` through pandas ``to_csv`` (header kept, the target as the last column,
its object/category/bool columns listed in ``task.categorical``, which the loader
one-hot encodes). The file is staged atomically in ``run.runs_dir`` and moved into the
run folder as it is created (``Search.start(..., adopt_data=True)``), and
``config.toml``'s ``task.path`` names it relative to the folder.

Validation and test splits are carved from ``X`` by the task's own seeded
splitting. With ``eval_set=(X_val, y_val)`` the given data is the validation
split: the NPZ then also holds an array ``split`` (0 train, 1 validation, 2 test
per row), the test split being carved from ``X`` with ``task.test_fraction`` and
the run's seed; the loader takes that array as the split.

Overrides are flat key names (``population=8``, ``lr=0.05``): every config key is
unique across the sections (``name`` is ``run.name``). A dotted key works too,
``**{"evolution.population": 8}``.
"""

from __future__ import annotations

import copy
import difflib
import io
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError, DataError, InputError

if TYPE_CHECKING:
    from .champion import SearchResult
    from .config import Config
    from .reporters import ReporterLike

__all__ = ["flat_keys", "search"]

#: Task keys the array API sets itself (an override of one is refused).
_RESERVED = {
    "task.name",
    "task.path",
    "task.target",
    "task.kind",
    "task.categorical",
    "task.n_samples",
    "task.noise",
}
#: Task keys kept from a given config (the rest describe its own data).
_KEPT_TASK_KEYS = ("val_fraction", "test_fraction", "selection_fraction", "folds", "missing")
_SOURCE = "hybrid.search"


def flat_keys() -> dict[str, str]:
    """Return every flat config key name and its dotted key (``"population"`` -> ``"evolution.population"``).

    ``name`` is ``run.name`` (``task.name`` is set by the array API).

    Example:
        >>> flat_keys()["population"], flat_keys()["name"]
        ('evolution.population', 'run.name')
    """
    from .config import SECTIONS

    out: dict[str, str] = {}
    for section, model in SECTIONS.items():
        for key in model.model_fields:
            out.setdefault(key, f"{section}.{key}")  # run comes first: name -> run.name
    return out


def _dotted_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``overrides`` with flat names turned into dotted keys.

    Raises:
        ConfigError: an unknown flat name, or a key the array API sets itself.
    """
    flat, out = flat_keys(), {}
    for key, value in overrides.items():
        if "." not in key:
            if key not in flat:
                near = difflib.get_close_matches(key, list(flat), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ConfigError(
                    f"{_SOURCE}: unknown key {key!r}{hint}, expected a config key name"
                )
            key = flat[key]
        if key in _RESERVED:
            raise ConfigError(
                f"{_SOURCE}: override {key!r}: set by hybrid.search from the data (use kind= for task.kind)"
            )
        out[key] = value
    return out


def _base_config(
    config: str | os.PathLike[str] | Mapping[str, Any] | Config | None,
) -> dict[str, Any]:
    """Return a TOML-shaped dict of ``config`` (a path, a dict or a Config), ``training.loss`` dropped.

    Raises:
        ConfigError: an unreadable or invalid TOML file, or a value of another type.
    """
    from .config import Config

    if config is None:
        data: dict[str, Any] = {}
    elif isinstance(config, Config):
        data = config.model_dump()
    elif isinstance(config, Mapping):
        data = copy.deepcopy(dict(config))
    elif isinstance(config, (str, os.PathLike)):
        data = _read_toml(Path(config))
    else:
        raise ConfigError(
            f"{_SOURCE}: config is a {type(config).__name__}, expected a path, a dict or a hybrid Config"
        )
    for section, value in data.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{_SOURCE}: config [{section}] is {value!r}, expected a table")
    data = {section: dict(value) for section, value in data.items()}
    data.get("training", {}).pop("loss", None)  # derived from the kind, which may change here
    return data


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


# ----------------------------------------------------------------- the data
def _is_frame(X: Any) -> bool:
    return (
        type(X).__module__.startswith("pandas") and hasattr(X, "dtypes") and hasattr(X, "columns")
    )


def _features(X: Any, what: str) -> np.ndarray:
    """Return ``X`` as a finite float64 [N, F] array.

    Raises:
        InputError: not 2-D numbers, no rows or columns, or NaN/inf (naming the cell).
    """
    arr = np.asarray(X)
    if arr.ndim != 2 or arr.dtype.kind not in "biuf":
        raise InputError(
            f"{_SOURCE}: {what} is {arr.dtype} of shape {arr.shape}, expected numbers of shape [samples, features]"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(
            f"{_SOURCE}: {what} has shape {arr.shape}, expected at least 1 sample and 1 feature"
        )
    out = arr.astype(np.float64)
    bad = np.argwhere(~np.isfinite(out))
    if len(bad):
        r, c = (int(v) for v in bad[0])
        raise InputError(
            f"{_SOURCE}: {what}[{r}, {c}] is {out[r, c]}, expected a finite number (impute or drop missing values)"
        )
    return out


def _targets(y: Any, kind: str, n: int, what: str) -> np.ndarray:
    """Return the targets as an array NPZ can hold: numbers, or text class labels.

    Raises:
        InputError: a length other than ``n``, a missing (NaN/None) target, a
            non-numeric regression target, or labels that differ only by type.
    """
    import pandas as pd

    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1 and kind == "classification":
        arr = arr[:, 0]
    if arr.ndim not in (1, 2) or len(arr) != n:
        raise InputError(
            f"{_SOURCE}: {what} has shape {arr.shape}, expected {n} targets (one per row of X)"
        )
    missing = np.flatnonzero(np.asarray(pd.isna(arr)).reshape(n, -1).any(axis=1))
    if len(missing):
        raise InputError(
            f"{_SOURCE}: {what}[{int(missing[0])}] is missing (NaN/None), expected a target for every sample"
        )
    if kind == "regression":
        if arr.dtype.kind not in "biuf":
            raise InputError(
                f"{_SOURCE}: {what} is {arr.dtype}, expected numbers for a regression task"
            )
        return arr.astype(np.float64)
    if arr.ndim != 1:
        raise InputError(
            f"{_SOURCE}: {what} has shape {arr.shape}, expected one class label per sample"
        )
    if arr.dtype.kind in "biu":
        return arr
    if arr.dtype.kind == "f":
        return arr  # the loader refuses non-integer labels with its own message
    labels = [str(v) for v in arr]
    if len(set(labels)) != len(set(arr.tolist())):
        raise InputError(
            f"{_SOURCE}: {what} holds labels that differ only by type (such as 1 and '1'), expected "
            "distinct class labels"
        )
    return np.array(labels, dtype=str)


def _column_kinds(X: Any) -> tuple[list[str], list[str]]:
    """Return a DataFrame's column names (as text) and its categorical ones.

    Raises:
        InputError: a column of a type that is neither numeric nor categorical,
            missing values, or names the CSV header cannot carry.
    """
    import pandas as pd

    names = [str(c) for c in X.columns]
    if len(X.columns) == 0 or len(X) == 0:
        raise InputError(
            f"{_SOURCE}: X has shape {X.shape}, expected at least 1 sample and 1 feature"
        )
    for name in names:
        if name == "" or name != name.strip() or names.count(name) > 1 or not name.isprintable():
            raise InputError(
                f"{_SOURCE}: X column {name!r}: expected unique, non-empty column names without "
                "surrounding spaces (they become the CSV header)"
            )
    categorical = []
    for name, column in zip(names, X.columns, strict=True):
        dtype = X[column].dtype
        if (
            pd.api.types.is_bool_dtype(dtype)
            or isinstance(dtype, pd.CategoricalDtype)
            or dtype.kind in "OSU"
        ):
            categorical.append(name)
        elif not pd.api.types.is_numeric_dtype(dtype) or dtype.kind == "c":
            raise InputError(
                f"{_SOURCE}: X column {name!r} is {dtype}, expected numbers or categories "
                "(object, category or bool)"
            )
        missing = np.flatnonzero(np.asarray(X[column].isna()))
        if len(missing):
            raise InputError(
                f"{_SOURCE}: X column {name!r}, position {int(missing[0])}: missing value, expected a value "
                "in every cell (impute or drop missing values)"
            )
        if name not in categorical:
            values = X[column].to_numpy(dtype=np.float64)
            if not np.isfinite(values).all():
                row = int(np.flatnonzero(~np.isfinite(values))[0])
                raise InputError(
                    f"{_SOURCE}: X column {name!r}, position {row}: infinite value, expected a finite number"
                )
    return names, categorical


def _target_name(y: Any, names: Sequence[str]) -> str:
    """Return the CSV's target column name: ``y.name`` if it makes a good header, else "target"."""
    given = getattr(y, "name", None)
    text = "" if given is None else str(given)
    base = text if text and text == text.strip() and text.isprintable() else "target"
    name, k = base, 1
    while name in names:
        name, k = f"{base}_{k}", k + 1
    return name


def _carve_test(y: np.ndarray, fraction: float, seed: int, stratify: bool) -> np.ndarray:
    """Return the indices of ``y`` held out as the test split (seeded, stratified for classes).

    Raises:
        InputError: the data are too few (or a class too small) to hold a test split out.
    """
    from sklearn.model_selection import train_test_split

    state = int(np.random.default_rng([seed, 1]).integers(2**31 - 1))  # the loader's split stream
    try:
        _, test = train_test_split(
            np.arange(len(y)),
            test_size=fraction,
            random_state=state,
            stratify=y if stratify else None,
        )
    except ValueError as exc:
        raise InputError(
            f"{_SOURCE}: cannot hold a test split (test_fraction={fraction}) out of {len(y)} samples "
            f"({str(exc).splitlines()[0]})"
        ) from None
    return np.sort(test)


@dataclass(frozen=True)
class _Data:
    """The data of one search, ready to be written: NPZ arrays or a CSV table."""

    suffix: str
    payload: bytes
    target: str | None = None
    categorical: tuple[str, ...] = ()


def _npz(arrays: Mapping[str, np.ndarray]) -> _Data:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return _Data(".npz", buffer.getvalue())


def _prepare(
    X: Any, y: Any, kind: str, eval_set: tuple[Any, Any] | None, test_fraction: float, seed: int
) -> _Data:
    """Check the data and return what to write: a CSV for a DataFrame, else an NPZ.

    A DataFrame becomes ``data.csv`` unless ``eval_set`` is given or ``y`` has
    several columns (a CSV holds one target): then, numeric, it goes to the NPZ.

    Raises:
        InputError: naming the array, cell or column at fault.
    """
    frame = _is_frame(X)
    y_arr = _targets(y, kind, len(X), "y")
    if frame:
        names, categorical = _column_kinds(X)
        if eval_set is None and y_arr.ndim == 1:
            target = _target_name(y, names)
            table = X.copy()
            table.columns = names
            table[target] = y_arr
            return _Data(".csv", table.to_csv(index=False).encode(), target, tuple(categorical))
        if categorical:
            why = "eval_set" if eval_set is not None else "several target columns"
            raise InputError(
                f"{_SOURCE}: X column {categorical[0]!r} is categorical, but with {why} the data go to "
                "an NPZ file, which holds numbers only; expected numeric columns (encode it first)"
            )
    features = _features(X, "X")
    if eval_set is None:
        return _npz({"X": features, "y": y_arr})
    if not isinstance(eval_set, (tuple, list)) or len(eval_set) != 2:
        raise InputError(
            f"{_SOURCE}: eval_set is {type(eval_set).__name__}, expected a pair (X_val, y_val)"
        )
    if _is_frame(eval_set[0]):
        _column_kinds(eval_set[0])
    X_val = _features(eval_set[0], "eval_set X")
    if X_val.shape[1] != features.shape[1]:
        raise InputError(
            f"{_SOURCE}: eval_set X has {X_val.shape[1]} features, expected {features.shape[1]} as in X"
        )
    y_val = _targets(eval_set[1], kind, len(X_val), "eval_set y")
    if y_val.ndim != y_arr.ndim or (y_arr.ndim == 2 and y_val.shape[1] != y_arr.shape[1]):
        raise InputError(
            f"{_SOURCE}: eval_set y has shape {y_val.shape}, expected targets shaped like y {y_arr.shape}"
        )
    if y_arr.dtype.kind != y_val.dtype.kind and "U" in (y_arr.dtype.kind, y_val.dtype.kind):
        y_arr, y_val = y_arr.astype(str), y_val.astype(str)
    split = np.zeros(len(features) + len(X_val), dtype=np.int8)
    split[_carve_test(y_arr, test_fraction, seed, kind == "classification")] = 2
    split[len(features) :] = 1
    return _npz(
        {
            "X": np.concatenate([features, X_val]),
            "y": np.concatenate([y_arr, y_val]),
            "split": split,
        }
    )


# ---------------------------------------------------------------- the search
def _config(
    base: dict[str, Any],
    kind: str | None,
    runs_dir: str | os.PathLike[str] | None,
    overrides: Mapping[str, Any],
) -> tuple[dict[str, Any], set[str]]:
    """Return the TOML-shaped config dict of the search (task.path still unset) and the overridden keys."""
    given_task = base.get("task", {})
    kind = kind if kind is not None else given_task.get("kind")
    if kind not in ("classification", "regression"):
        raise ConfigError(
            f"{_SOURCE}: kind: got {kind!r}, expected 'classification' or 'regression' "
            "(kind= or the config's task.kind)"
        )
    task = {k: given_task[k] for k in _KEPT_TASK_KEYS if k in given_task}
    if given_task.get("metric") is not None and given_task.get("kind") in (None, kind):
        task["metric"] = given_task["metric"]
    data = {**base, "task": {**task, "kind": kind}}
    if runs_dir is not None:
        data.setdefault("run", {})["runs_dir"] = os.fspath(runs_dir)
    dotted = _dotted_overrides(overrides)
    for key, value in dotted.items():
        section, _, name = key.partition(".")
        if "." in name:
            raise ConfigError(f"{_SOURCE}: override {key!r}: expected 'section.key'")
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{_SOURCE}: override {key!r}: '{section}' is not a table")
        table[name] = tuple(value) if isinstance(value, list) else value
    return data, set(dotted)


def search(
    X: Any,
    y: Any,
    config: str | os.PathLike[str] | Mapping[str, Any] | Config | None = None,
    *,
    kind: str | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    eval_set: tuple[Any, Any] | None = None,
    overwrite: bool = False,
    verbose: bool = False,
    reporters: Sequence[ReporterLike] = (),
    **overrides: Any,
) -> SearchResult:
    """Run a search on in-memory data and return its result; the run folder is a normal one.

    Args:
        X: features, a [samples, features] array of numbers or a pandas DataFrame
            (numeric columns; object/category/bool ones need ``task.categorical``).
        y: targets, [samples] (class labels: numbers or text; or regression
            values) or [samples, outputs] (regression).
        config: the rest of the settings: a TOML file, a TOML-shaped dict
            (``{"evolution": {"population": 16}}``) or a :class:`~hybrid.config.Config`;
            its ``[task]`` keeps only ``val_fraction``, ``test_fraction``, ``selection_fraction``, ``folds``,
            ``missing``, ``metric``
            and ``kind``. Default: every key's default.
        kind: "classification" or "regression" (default: the config's ``task.kind``).
        runs_dir: folder that holds the run folder (``run.runs_dir``; default "runs").
        eval_set: ``(X_val, y_val)``: the validation split (ranks genomes and stops
            the search); the test split is still carved from ``X``.
        overwrite: replace a run folder of the same name (``run.name``, default "run").
        verbose: print one progress line per generation on stderr.
        reporters: more reporters (:mod:`hybrid.reporters`).
        **overrides: config keys by flat name (``population=16``, ``generations=5``,
            ``name="iris"``) or dotted (``**{"training.lr": 0.05}``).

    Returns:
        The :class:`~hybrid.champion.SearchResult` (``run_dir``: the run folder).

    Raises:
        InputError: the data cannot be used (one line naming the array, cell or
            column); it is a ``ValueError`` and a ``DataError``.
        ConfigError: an unknown or invalid key, value or config file.
        RunDirError: the run folder exists and ``overwrite`` is False.
        NoChampionError: every member of every generation failed.
    """
    from .config import config_from_dict
    from .search import Search

    data, overridden = _config(_base_config(config), kind, runs_dir, overrides)
    runs = Path(data.get("run", {}).get("runs_dir", "runs"))
    staged = (
        runs.absolute() / f".{data.get('run', {}).get('name', 'run')}.{uuid.uuid4().hex[:8]}.data"
    )
    data["task"]["path"] = str(staged) + ".npz"
    cfg = config_from_dict(
        data, _SOURCE, overridden
    )  # every key checked before any data is written
    prepared = _prepare(X, y, cfg.task.kind, eval_set, cfg.task.test_fraction, cfg.run.seed)
    if prepared.suffix == ".csv":
        task = {**data["task"], "path": str(staged) + ".csv", "target": prepared.target}
        if prepared.categorical:
            task["categorical"] = list(prepared.categorical)
        cfg = config_from_dict({**data, "task": task}, _SOURCE, overridden)
    path = Path(cfg.task.path)  # type: ignore[arg-type]
    from genomes.serialize import atomic_write

    try:
        atomic_write(path, prepared.payload)
        try:
            found = Search.start(cfg, overwrite=overwrite, adopt_data=True)
        except DataError as exc:  # the staged file's name means nothing to the caller
            raise InputError(str(exc).replace(str(path), f"{_SOURCE} data")) from None
    finally:
        path.unlink(missing_ok=True)  # moved into the run folder unless creation failed
    extra = list(reporters)
    if verbose:
        from .progress import Progress

        print(f"run folder: {found.run_dir.path}", file=sys.stderr)
        extra.append(Progress(found, plain=True))
    return found.run(reporters=extra)
