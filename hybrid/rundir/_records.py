"""What the run folder's JSON files hold: pydantic models the readers validate against."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from ..errors import RunDirError

__all__ = ["BestMetrics", "ColumnEncoding", "ShortlistRecord", "StatsRecord", "TaskEncoding", "TaskInfo"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")


class ColumnEncoding(_Model):
    """One raw column of a table task: numeric (with its fill value) or categorical."""

    name: str
    kind: Literal["numeric", "categorical"]
    fill: float | None = None  # numeric: the training mean/median for missing values
    categories: list[str | None] = []  # categorical: one input each; None = "missing"

    @field_validator("fill")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("should be a finite number or null")
        return v

    @property
    def width(self) -> int:
        """Network inputs this column becomes."""
        return 1 if self.kind == "numeric" else len(self.categories)


class TaskEncoding(_Model):
    """How a raw table row becomes the network input (``task.json`` key ``encoding``)."""

    format: Literal["hybrid.encoding"]
    version: Literal[1]
    missing: Literal["error", "mean", "median"]
    columns: list[ColumnEncoding]


class FoldsInfo(_Model):
    """``task.json``'s ``folds``: K-fold fitness's fold count and rows per fold."""

    k: int
    sizes: list[int]


class TaskInfo(_Model):
    """What ``task.json`` holds (written from ``Task.info()``)."""

    name: str
    kind: Literal["classification", "regression"]
    n_inputs: int
    n_outputs: int
    feature_mean: list[float]
    feature_std: list[float]
    class_labels: list[str | int | float]
    source: str = ""
    encoding: TaskEncoding | None = None  # table tasks only (runs before it: none)
    folds: FoldsInfo | None = None  # None: no K-fold fitness (and files from before it)
    # Sequence tasks only (Task.info() writes them when sequence is True):
    sequence: bool = False
    per_step: bool | None = None
    stream: bool | None = None
    T: int | None = None
    floor_val: float | None = None
    floor_test: float | None = None

    @field_validator("n_inputs", "n_outputs")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("should be >= 1")
        return v

    @field_validator("T")
    @classmethod
    def _positive_length(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("should be >= 1")
        return v

    @field_validator("floor_val", "floor_test")
    @classmethod
    def _floor(cls, v: float | None) -> float | None:
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise ValueError("should be a finite number >= 0 or null")
        return v

    @field_validator("feature_mean", "feature_std", "class_labels")
    @classmethod
    def _all_finite(cls, v: list[Any]) -> list[Any]:
        if any(isinstance(x, float) and not math.isfinite(x) for x in v):
            raise ValueError("should hold finite values only (no NaN or inf)")
        return v

    def check(self, path: Path) -> TaskInfo:
        """Check the lengths against the sizes; return self."""
        for key in ("feature_mean", "feature_std"):
            if len(getattr(self, key)) != self.n_inputs:
                raise RunDirError(f"{path}: key {key!r} should have n_inputs = {self.n_inputs} entries")
        if self.encoding is not None:
            width = sum(c.width for c in self.encoding.columns)
            if width != self.n_inputs:
                raise RunDirError(
                    f"{path}: key 'encoding' describes {width} inputs, expected n_inputs = {self.n_inputs}"
                )
        if any(s <= 0 for s in self.feature_std):
            raise RunDirError(f"{path}: key 'feature_std' should hold positive values")
        f = self.folds
        if f is not None and (f.k < 2 or len(f.sizes) != f.k or any(n < 1 for n in f.sizes)):
            raise RunDirError(f"{path}: key 'folds' should hold k >= 2 and k positive fold sizes")
        want = self.n_outputs if self.kind == "classification" else 0
        if len(self.class_labels) != want:
            raise RunDirError(f"{path}: key 'class_labels' should have {want} entries for a {self.kind} task")
        return self


class ShortlistRecord(_Model):
    """One entry of the short list in ``best/metrics.json``."""

    id: int
    generation: int
    val_metric: float
    selection_metric: float | None
    active_parameters: int


class BestMetrics(_Model):
    """What ``best/metrics.json`` holds (written when a search finishes)."""

    genome_id: int
    generation: int
    val_metric: float | None
    val_loss: float | None
    test_metric: float | None
    test_loss: float | None
    #: a name in ``hybrid.metrics.METRICS`` (kept in step by a test); ``neg_mse``: runs written
    #: before the registry (regression scored by negated MSE)
    metric: Literal[
        "accuracy",
        "balanced_accuracy",
        "f1_macro",
        "roc_auc",
        "log_loss",
        "excess_nats",
        "r2",
        "mae",
        "mse",
        "neg_mse",
    ]
    greater_is_better: bool = True  # the metric's direction (files written before it: accuracy or fitness)
    active_parameters: int
    flops: int
    generations: int
    stop_reason: str
    elapsed_s: float
    not_finite: dict[str, str] = {}
    # Older runs leave these out: their champion was the best, not fine-tuned.
    selected_by: Literal["best", "smallest_within"] = "best"
    epsilon: float | None = None  # smallest_within's slack
    best_val_metric: float | None = None  # the best validation metric on the short list
    final_steps: int = 0  # steps on train + validation (+ selection) before the test score
    # With a selection split: the champion's score on it, and the short list it was chosen from.
    selection_metric: float | None = None
    shortlist: list[ShortlistRecord] = []


class StatsRecord(_Model):
    """The keys of a ``stats.jsonl`` line that readers (``hybrid status``) rely on."""

    generation: int
    best_metric: float | None
    mean_metric: float | None
    n_species: int
    champion_id: int | None  # None until some member had a finite score
    champion_metric: float | None
    champion_active_params: int | None


