"""The ``[task]`` section: a built-in task, or user data from a file."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from ..metrics import DEFAULT_METRIC, METRICS, check_metric
from ..tasks import KINDS, TASKS
from ._base import KeyedError, Section, as_tuple

__all__ = ["TaskConfig"]


class TaskConfig(Section):
    """``[task]``: a built-in task by ``name``, or user data by ``path``.

    Built-ins know their kind. User data must state ``kind``: whether integer
    labels are classes or quantities cannot be guessed safely. A relative ``path``
    is relative to the config file (``load_config`` makes it absolute).
    """

    name: str | None = Field(None, description="a built-in task (see `hybrid tasks`); or set path")
    path: str | None = Field(
        None,
        description="user data: a table, .csv / .tsv / .parquet / .pq (header row, label column "
        "= target), or .npz (arrays X, y)",
    )
    target: str | None = Field(
        None,
        description="tables only: the label column; every other column is a feature (text and "
        "boolean columns are one-hot encoded)",
    )
    categorical: Annotated[tuple[str, ...], BeforeValidator(as_tuple)] = Field(
        (),
        description="tables only: columns to one-hot encode although they hold numbers (integer "
        "codes); text and boolean columns are categorical anyway",
    )
    missing: Literal["error", "mean", "median"] = Field(
        "error",
        description="tables only: a missing feature value is an error, or numeric columns are "
        "filled with the training split's mean or median (a missing category is its own "
        "category); refusing is the default so that gaps are noticed",
    )
    kind: Literal["classification", "regression"] | None = Field(
        None, description="built-ins know theirs; required for user data (cross-entropy vs MSE)"
    )
    metric: str | None = Field(
        None,
        description="the metric that ranks genomes and scores the champion: classification "
        "accuracy (default), balanced_accuracy, f1_macro, roc_auc, log_loss, excess_nats "
        "(default of the brackets tasks); regression r2 (default), mae, mse (sklearn.metrics; "
        "log_loss, excess_nats, mae and mse: lower is better)",
    )
    val_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="share of samples that rank genomes during the search"
    )
    test_fraction: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="share held out until the champion is scored once at the end",
    )
    selection_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="share held out to choose the champion from the short list (0: off, the "
        "champion is chosen on the validation split that ranked every genome); never used for "
        "fitness, so the chosen champion's score on it is not inflated by the search",
    )
    folds: str | int = Field(
        "auto",
        description="K-fold fitness on the pooled train + validation rows: each member trains "
        "as K columns of the batched engine and scores the mean of its K fold scores; 'auto' = 5 "
        "folds on a GPU when the pool has fewer than 2,000 rows (off on a CPU, where the columns "
        "cost what they compute; never for xor), 'off', or an integer >= 2",
    )
    n_samples: int | None = Field(
        None,
        ge=4,
        le=1_000_000,
        description="synthetic tasks only (spirals, circles): number of points; brackets_easy, "
        "brackets_hard: training characters in all (32 streams); parity: training sequences; at "
        "most a million: toy tasks need thousands",
    )
    noise: float | None = Field(
        None,
        ge=0.0,
        le=10.0,
        description="synthetic tasks only: std of the Gaussian noise on the points; at most 10: "
        "the shapes span about 1, so beyond that the points are noise alone",
    )

    schedule: Annotated[
        tuple[Annotated[tuple[str, Annotated[int, Field(ge=1)]], BeforeValidator(as_tuple)], ...],
        BeforeValidator(as_tuple),
    ] = Field(
        (),
        description="a task that changes during the run: [[name, generations], ...], built-in tasks "
        "run in turn for that many generations each (the last one until the run stops); the first "
        "is task.name, all of one kind and shape; each change starts a new champion",
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_builtin(cls, data: Any) -> Any:
        # Resolve a built-in's kind and synthetic defaults so config.toml shows them.
        if isinstance(data, dict) and isinstance(data.get("name"), str) and data["name"] in TASKS:
            spec, data = TASKS[data["name"]], dict(data)
            data.setdefault("kind", spec.kind)
            if spec.synthetic:
                data.setdefault("n_samples", spec.default_n_samples)
                if not spec.sequence:
                    data.setdefault("noise", spec.default_noise)
            if spec.default_metric is not None and data.get("metric") is None:
                data["metric"] = spec.default_metric
        if isinstance(data, dict) and data.get("metric") is None and data.get("kind") in DEFAULT_METRIC:
            data = {**data, "metric": DEFAULT_METRIC[data["kind"]]}
        return data

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str | None) -> str | None:
        if v is not None and v not in METRICS:
            raise ValueError(f"expected one of {', '.join(map(repr, METRICS))}")
        return v

    @field_validator("folds", mode="before")
    @classmethod
    def _folds(cls, v: Any) -> Any:
        if v in ("auto", "off") or (type(v) is int and v >= 2):
            return v
        raise ValueError('expected "auto", "off" or an integer >= 2')

    @field_validator("name")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        if v is not None and v not in TASKS:
            raise ValueError(f"expected a built-in task: {', '.join(map(repr, TASKS))}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TaskConfig:
        if (self.name is None) == (self.path is None):
            raise KeyedError(
                "name",
                self.name,
                "expected exactly one of task.name (built-in) or task.path (user data)",
            )
        if self.val_fraction + self.test_fraction + self.selection_fraction >= 1.0:
            key = "selection_fraction" if self.selection_fraction else "test_fraction"
            raise KeyedError(
                key,
                getattr(self, key),
                "expected val_fraction + test_fraction + selection_fraction < 1 "
                "(the rest is the training split)",
            )
        if self.metric is not None and self.kind is not None:
            try:
                check_metric(self.metric, self.kind)
            except ValueError as exc:
                raise KeyedError("metric", self.metric, str(exc)) from None
        if self.schedule:
            self._check_schedule()
        if self.name is not None:
            spec = TASKS[self.name]
            if self.kind != spec.kind:
                raise KeyedError(
                    "kind", self.kind, f"expected {spec.kind!r} for built-in task {self.name!r}"
                )
            if self.target is not None:
                raise KeyedError("target", self.target, "expected no target for a built-in task")
            self._table_only(f"{self.name!r} is a built-in task")
            if spec.sequence and self.noise is not None:
                raise KeyedError(
                    "noise", self.noise, f"expected it unset: {self.name!r} is a sequence task"
                )
            for key in ("n_samples", "noise"):
                if not spec.synthetic and getattr(self, key) is not None:
                    raise KeyedError(
                        key,
                        getattr(self, key),
                        f"expected it unset: {self.name!r} is a fixed data set",
                    )
            return self
        suffix = self.path.rsplit(".", 1)[-1].lower() if "." in self.path else ""
        if suffix not in ("csv", "tsv", "parquet", "pq", "npz"):
            raise KeyedError("path", self.path, "expected a .csv, .tsv, .parquet, .pq or .npz file")
        if self.kind is None:
            raise KeyedError(
                "kind", None, f"expected {' or '.join(map(repr, KINDS))} for user data"
            )
        if suffix != "npz" and self.target is None:
            raise KeyedError("target", None, "expected the name of the table's label column")
        if suffix == "npz":
            if self.target is not None:
                raise KeyedError(
                    "target", self.target, "expected no target: an NPZ file holds arrays X and y"
                )
            self._table_only("an NPZ file holds numeric arrays X and y")
        if self.target is not None and self.target in self.categorical:
            raise KeyedError(
                "categorical", list(self.categorical), f"expected feature columns, not the target {self.target!r}"
            )
        for key in ("n_samples", "noise"):
            if getattr(self, key) is not None:
                raise KeyedError(key, getattr(self, key), "expected it unset for user data")
        return self

    def _table_only(self, why: str) -> None:
        """Refuse the table keys (``categorical``, ``missing``) for other data."""
        if self.categorical:
            raise KeyedError("categorical", list(self.categorical), f"expected it unset: {why}")
        if self.missing != "error":
            raise KeyedError("missing", self.missing, f"expected 'error' (the default): {why}")

    def _check_schedule(self) -> None:
        """A schedule names built-in tasks of this task's kind, starting with ``task.name``."""
        names = [name for name, _ in self.schedule]
        if self.name is None or names[0] != self.name:
            raise KeyedError("schedule", [list(p) for p in self.schedule], f"expected task.name ({self.name!r}) first")
        for name in names:
            if name not in TASKS:
                raise KeyedError("schedule", name, f"expected a built-in task: {', '.join(map(repr, TASKS))}")
            if TASKS[name].kind != TASKS[self.name].kind:
                raise KeyedError("schedule", name, f"expected a {TASKS[self.name].kind} task like {self.name!r}")
