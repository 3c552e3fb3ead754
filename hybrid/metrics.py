"""Task losses, the metric registry, data checks and the :class:`Metrics` of a genome.

:data:`METRICS` is the registry of the metrics a user chooses with ``task.metric``
(backed by ``sklearn.metrics``); each knows its task kind, its direction and what
it reads off a network's outputs (argmax labels, softmax probabilities, or the raw
predictions). Internally a fitness is "higher is better": a lower-is-better
metric's value is negated for selection (as scikit-learn's ``neg_`` scorers do,
:func:`fitness`); users see the real value under the registry name.

Evaluation always uses the deterministic gate values, the ones fitness, lineage
figures and export use; it runs through the population engine
(:func:`hybrid.population.evaluate_population`; one genome is a population of one).
Complexity (active parameters, FLOPs) comes from ``genomes.active_structure``:
only open gates count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from genomes import Genome

from .errors import DataError

if TYPE_CHECKING:
    from .train import TrainConfig

__all__ = [
    "DEFAULT_METRIC",
    "LOSSES",
    "METRICS",
    "MetricSpec",
    "Metrics",
    "check_data",
    "check_metric",
    "check_metric_targets",
    "fitness",
    "metric_for_loss",
    "metric_score",
    "metric_value",
    "evaluate_genome",
    "scored_steps",
    "task_loss",
]


def _mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output, target)


def _cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target)


#: Task losses by config name; each is the mean over the batch (MSE: over samples and outputs).
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": _cross_entropy,
    "mse": _mse,
}


def task_loss(output: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Return the mean task loss of a batch.

    Args:
        output: network outputs (logits for ``cross_entropy``).
        target: class ids (``cross_entropy``) or values (``mse``).
        loss: a name in ``LOSSES``.

    Shape:
        output: (B, n_outputs); target: (B,) int64 or (B, n_outputs) float -> () scalar.
    """
    return LOSSES[loss](output, target)


@dataclass(frozen=True)
class MetricSpec:
    """One entry of :data:`METRICS`.

    Attributes:
        name: the registry name (``task.metric``; the name users see everywhere).
        kind: the task kind it fits: ``"classification"`` or ``"regression"``.
        greater_is_better: its direction; a lower-is-better value is negated for selection.
        needs: what it reads off the outputs: ``"labels"`` (argmax), ``"probabilities"``
            (softmax of the logits) or ``"predictions"`` (regression outputs as they are).
        sklearn: the ``sklearn.metrics`` call it is, for the docs.
    """

    name: str
    kind: Literal["classification", "regression"]
    greater_is_better: bool
    needs: Literal["labels", "probabilities", "predictions"]
    sklearn: str


def _spec(name: str, kind: Any, greater: bool, needs: Any, sk: str) -> tuple[str, MetricSpec]:
    return name, MetricSpec(name, kind, greater, needs, sk)


#: The metrics ``task.metric`` can name, by name.
METRICS: dict[str, MetricSpec] = dict(
    [
        _spec("accuracy", "classification", True, "labels", "accuracy_score"),
        _spec("balanced_accuracy", "classification", True, "labels", "balanced_accuracy_score"),
        _spec("f1_macro", "classification", True, "labels", "f1_score(average='macro', zero_division=0)"),
        _spec(
            "roc_auc",
            "classification",
            True,
            "probabilities",
            "roc_auc_score (binary: P(class 1); multiclass: multi_class='ovr', average='macro')",
        ),
        _spec("log_loss", "classification", False, "probabilities", "log_loss(labels=all classes)"),
        _spec(
            "excess_nats",
            "classification",
            False,
            "probabilities",
            "none: mean cross-entropy (nats) over the scored steps minus the split's entropy "
            "floor (the floor 0 where the task has none)",
        ),
        _spec("r2", "regression", True, "predictions", "r2_score (several outputs: uniform average)"),
        _spec("mae", "regression", False, "predictions", "mean_absolute_error"),
        _spec("mse", "regression", False, "predictions", "mean_squared_error"),
    ]
)

#: The metric a task kind gets when ``task.metric`` is not set.
DEFAULT_METRIC: dict[str, str] = {"classification": "accuracy", "regression": "r2"}
#: The default metric of a training loss (``TrainConfig.metric = None``).
_LOSS_DEFAULT = {"cross_entropy": "accuracy", "mse": "r2"}


def check_metric(name: str, kind: str) -> MetricSpec:
    """Return the registry entry of ``name`` for a ``kind`` task.

    Raises:
        ValueError: an unknown name, or a metric of the other task kind (one line).
    """
    spec = METRICS.get(name)
    if spec is None:
        raise ValueError(f"expected one of {', '.join(METRICS)}, got {name!r}")
    if spec.kind != kind:
        fits = ", ".join(n for n, s in METRICS.items() if s.kind == kind)
        raise ValueError(f"expected a {kind} metric ({fits}); {name!r} is a {spec.kind} metric")
    return spec


def metric_for_loss(metric: str | None, loss: str) -> str:
    """Return the metric a ``TrainConfig`` scores: ``metric``, or the loss's default."""
    return _LOSS_DEFAULT[loss] if metric is None else metric


def fitness(name: str, value: float) -> float:
    """Return the selection fitness (higher is better) of a ``name`` value."""
    return value if METRICS[name].greater_is_better else -value


def metric_value(name: str, fit: float) -> float:
    """Return the real value of a ``name`` metric from its fitness (the inverse of :func:`fitness`)."""
    return fitness(name, fit)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def check_metric_targets(name: str, y: np.ndarray, n_outputs: int, split: str = "the split") -> None:
    """Raise ``DataError`` if ``y`` cannot be scored by ``name`` (ROC AUC needs every class present)."""
    if name != "roc_auc":
        return
    present = np.unique(y)
    if len(present) < 2 or (n_outputs > 2 and len(present) < n_outputs):
        raise DataError(
            f"task.metric = 'roc_auc' needs every class in {split}, which holds only classes "
            f"{present.tolist()} of {n_outputs}; choose another task.metric or a larger split"
        )


def scored_steps(
    y: np.ndarray, outputs: np.ndarray, mask: np.ndarray | None, classification: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Return a sequence split's scored ``(y, outputs)`` as flat per-sample arrays.

    Per-step targets (``y`` with the outputs' ``(N, T)`` leading shape) keep the steps
    where ``mask`` is True (all steps when it is None). Per-sequence targets (``(N,)``
    class ids, ``(N, n_outputs)`` values) are scored on the output at each sequence's
    last True step (the last step when ``mask`` is None).

    Args:
        y: per-step or per-sequence targets.
        outputs: (N, T, n_outputs) logits or predictions.
        mask: bool (N, T), or None.
        classification: ``y`` holds class ids (else values, one per output).

    Returns:
        ``(y, outputs)`` of shapes (M,) or (M, n_outputs), and (M, n_outputs).

    Raises:
        ValueError: shapes that fit neither form (one line).
    """
    n, t, n_out = outputs.shape
    keep = np.ones((n, t), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if keep.shape != (n, t):
        raise ValueError(f"mask should have shape ({n}, {t}), got {keep.shape}")
    step_ndim = 2 if classification else 3
    if y.ndim == step_ndim and y.shape[:2] == (n, t):
        return y[keep], outputs[keep]
    if y.ndim == step_ndim - 1 and len(y) == n:
        last = t - 1 - np.argmax(keep[:, ::-1], axis=1)
        return y, outputs[np.arange(n), last]
    raise ValueError(
        f"sequence targets should have shape ({n}, {t}{'' if classification else ', k'}) per step "
        f"or ({n}{'' if classification else ', k'},) per sequence, got {y.shape}"
    )


def _excess_nats(y: np.ndarray, logits: np.ndarray, floor: float | None) -> float:
    """Mean -log softmax(logits)[y] (nats) minus ``floor``; -inf logits (probability 0) allowed."""
    z = logits.astype(np.float64)
    top = z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    nll = log_norm - z[np.arange(len(y)), y]
    return float(nll.mean() - (floor or 0.0))


def metric_score(
    name: str,
    y: np.ndarray,
    outputs: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    floor: float | None = None,
) -> float:
    """Return the ``name`` metric (real sign) of one network's outputs, by ``sklearn.metrics``.

    Sequence outputs (3-D) are first reduced to their scored samples by
    :func:`scored_steps` (``mask``: the split's ``Task.mask_*``), then scored like any
    other. ``excess_nats`` is the mean cross-entropy in nats over the scored samples
    minus ``floor`` (the split's ``Task.floor_*``; None counts as 0): 0 for a network
    that outputs the true next-character laws' log-probabilities, the excess over the
    best any predictor can do.

    Args:
        name: a name in :data:`METRICS`.
        y: class ids (classification) or targets (regression).
        outputs: the network's outputs: logits, or regression predictions.
        mask: sequences only: bool (N, T), True where a step is scored; None = all.
        floor: ``excess_nats`` only: the split's entropy floor in nats.

    Raises:
        DataError: for ``roc_auc`` on a split missing a class.
        ValueError: sequence targets whose shape fits neither form.

    Shape:
        y: (N,) or (N, n_outputs); outputs: (N, n_outputs). Sequences: y (N, T) or
        (N, T, n_outputs) per step, (N,) or (N, n_outputs) per sequence; outputs
        (N, T, n_outputs).
    """
    import warnings

    from sklearn import metrics as skm

    spec = METRICS[name]
    if outputs.ndim == 3:
        y, outputs = scored_steps(y, outputs, mask, spec.kind == "classification")
    if name == "excess_nats":
        return _excess_nats(y, outputs, floor)
    n_out = outputs.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "y_pred contains classes not in y_true"
        if spec.needs == "predictions":
            fn = {"r2": skm.r2_score, "mae": skm.mean_absolute_error, "mse": skm.mean_squared_error}[name]
            return float(fn(y, outputs))
        if spec.needs == "labels":
            pred = outputs.argmax(axis=1)
            if name == "accuracy":
                return float(skm.accuracy_score(y, pred))
            if name == "balanced_accuracy":
                return float(skm.balanced_accuracy_score(y, pred))
            return float(skm.f1_score(y, pred, average="macro", zero_division=0))
        prob = _softmax(outputs.astype(np.float64))
        if name == "log_loss":
            return float(skm.log_loss(y, prob, labels=np.arange(n_out)))
        check_metric_targets(name, y, n_out)
        if n_out == 2:
            return float(skm.roc_auc_score(y, prob[:, 1]))
        return float(skm.roc_auc_score(y, prob, multi_class="ovr", average="macro", labels=np.arange(n_out)))


@dataclass(frozen=True)
class Metrics:
    """How a genome does on a data split (deterministic gates).

    Attributes:
        loss: mean task loss.
        accuracy: share of correct argmax predictions (classification), else None.
        active_parameters: live weights and biases (``ActiveStructure.n_parameters``).
        flops: floating-point operations per sample (``ActiveStructure.flops``).
        metric: the registry name of ``score`` (None where no metric was asked for:
            the training split).
        score: the ``metric`` value, real sign (log loss, MAE, MSE: lower is better).
        average_flops: mean FLOPs per sample under the exit rule and skip gates
            (``genomes.adaptive``; set for every member of a population that the
            adaptive engine ran, plain members included: there it equals ``flops``);
            None for populations without adaptive genes.
    """

    loss: float
    accuracy: float | None
    active_parameters: int
    flops: int
    metric: str | None = None
    score: float | None = None
    average_flops: float | None = None

    @property
    def fitness(self) -> float | None:
        """Return ``score`` as a selection fitness (higher is better), None without one."""
        if self.metric is None or self.score is None:
            return None
        return fitness(self.metric, self.score)


def _writable(a: Any) -> Any:
    """``a``, copied if it is a read-only numpy array (torch shares memory only with writable ones)."""
    return a.copy() if isinstance(a, np.ndarray) and not a.flags.writeable else a


def check_data(
    X: Any, y: Any, n_inputs: int, n_outputs: int, loss: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(X, y)`` as tensors of the dtypes training expects.

    Args:
        X: inputs, float.
        y: class ids (``cross_entropy``) or targets (``mse``).
        n_inputs, n_outputs: the genome's widths.
        loss: a name in ``LOSSES``.

    Returns:
        ``X`` float32 (float64 kept); ``y`` int64 for ``cross_entropy``, else
        ``X``'s dtype. Same device as given.

    Raises:
        DataError: if a shape or a class id does not fit.

    Shape:
        X: (N, n_inputs); y: (N,) for ``cross_entropy``, (N, n_outputs) for ``mse``.
    """
    X, y = _writable(X), _writable(y)  # a Task's frozen arrays: torch would warn on sharing them
    X = torch.as_tensor(X)
    if not X.is_floating_point() or X.dtype not in (torch.float32, torch.float64):
        X = X.to(torch.float32)
    y = torch.as_tensor(y, device=X.device)
    if X.dim() != 2 or X.shape[1] != n_inputs or X.shape[0] < 1:
        raise DataError(f"inputs should have shape (N >= 1, {n_inputs}), got {tuple(X.shape)}")
    if loss == "cross_entropy":
        if y.shape != (X.shape[0],) or y.is_floating_point():
            raise DataError(
                f"classification targets should be int class ids of shape ({X.shape[0]},), "
                f"got {y.dtype} of shape {tuple(y.shape)}"
            )
        y = y.to(torch.int64)
        if y.min() < 0 or y.max() >= n_outputs:
            raise DataError(f"class ids should lie in [0, {n_outputs}), got [{y.min()}, {y.max()}]")
    elif y.shape != (X.shape[0], n_outputs):
        raise DataError(
            f"regression targets should have shape ({X.shape[0]}, {n_outputs}), got {tuple(y.shape)}"
        )
    else:
        y = y.to(X.dtype)
    return X, y


def evaluate_genome(genome: Genome, X: Any, y: Any, config: TrainConfig) -> Metrics:
    """Return the metrics of ``genome`` on ``(X, y)`` with deterministic gates.

    A population of one through :func:`hybrid.population.evaluate_population`.

    Args:
        genome: a valid genome (not modified).
        X, y: a data split (see :func:`check_data`); evaluated on ``X``'s device.
        config: gives the gate kind and the loss.

    Raises:
        DataError: if the data does not fit the genome or the loss.
    """
    from .population import evaluate_population  # the population package imports this module

    return evaluate_population([genome], X, y, config)[0]
