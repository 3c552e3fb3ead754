"""The ``[task]`` section: a built-in task, or user data from a file."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..metrics import DEFAULT_METRIC, METRICS, check_metric
from ..tasks import KINDS, TASKS
from ._base import KeyedError, Section

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
        description="user data: a .csv (header row, label column = target) or .npz (arrays X, y)",
    )
    target: str | None = Field(
        None, description="CSV only: the label column; every other column is a numeric feature"
    )
    kind: Literal["classification", "regression"] | None = Field(
        None, description="built-ins know theirs; required for user data (cross-entropy vs MSE)"
    )
    metric: str | None = Field(
        None,
        description="the metric that ranks genomes and scores the champion: classification "
        "accuracy (default), balanced_accuracy, f1_macro, roc_auc, log_loss; regression r2 "
        "(default), mae, mse (sklearn.metrics; log_loss, mae and mse: lower is better)",
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
    folds: str | int = Field(
        "auto",
        description="K-fold fitness on the pooled train + validation rows: each member trains "
        "as K columns of the batched engine and scores the mean of its K fold scores; 'auto' = 5 "
        "folds when the pool has fewer than 2,000 rows (never for xor), 'off', or an integer >= 2",
    )
    n_samples: int | None = Field(
        None,
        ge=4,
        le=1_000_000,
        description="synthetic tasks only (spirals, circles): number of points; at most a million: "
        "toy tasks need thousands",
    )
    noise: float | None = Field(
        None,
        ge=0.0,
        le=10.0,
        description="synthetic tasks only: std of the Gaussian noise on the points; at most 10: "
        "the shapes span about 1, so beyond that the points are noise alone",
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
                data.setdefault("noise", spec.default_noise)
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
        if self.val_fraction + self.test_fraction >= 1.0:
            raise KeyedError(
                "test_fraction", self.test_fraction, "expected val_fraction + test_fraction < 1"
            )
        if self.metric is not None and self.kind is not None:
            try:
                check_metric(self.metric, self.kind)
            except ValueError as exc:
                raise KeyedError("metric", self.metric, str(exc)) from None
        if self.name is not None:
            spec = TASKS[self.name]
            if self.kind != spec.kind:
                raise KeyedError(
                    "kind", self.kind, f"expected {spec.kind!r} for built-in task {self.name!r}"
                )
            if self.target is not None:
                raise KeyedError("target", self.target, "expected no target for a built-in task")
            for key in ("n_samples", "noise"):
                if not spec.synthetic and getattr(self, key) is not None:
                    raise KeyedError(
                        key,
                        getattr(self, key),
                        f"expected it unset: {self.name!r} is a fixed data set",
                    )
            return self
        suffix = self.path.rsplit(".", 1)[-1].lower() if "." in self.path else ""
        if suffix not in ("csv", "npz"):
            raise KeyedError("path", self.path, "expected a .csv or .npz file")
        if self.kind is None:
            raise KeyedError(
                "kind", None, f"expected {' or '.join(map(repr, KINDS))} for user data"
            )
        if suffix == "csv" and self.target is None:
            raise KeyedError("target", None, "expected the name of the CSV's label column")
        if suffix == "npz" and self.target is not None:
            raise KeyedError(
                "target", self.target, "expected no target: an NPZ file holds arrays X and y"
            )
        for key in ("n_samples", "noise"):
            if getattr(self, key) is not None:
                raise KeyedError(key, getattr(self, key), "expected it unset for user data")
        return self
