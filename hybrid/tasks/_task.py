"""The loaded task: seeded, standardised train/validation/test splits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["KINDS", "Task"]

#: What a task asks of a network; decides the loss and the metric.
KINDS = ("classification", "regression")


@dataclass(frozen=True, eq=False)
class Task:
    """A data set split three ways, features standardised with training statistics.

    Arrays are read-only. Features are float32 ``[N, n_inputs]``. Targets are int64
    class ids ``[N]`` (classification; ``class_labels[i]`` is the original label of
    id ``i``) or float32 ``[N, n_outputs]`` (regression; ``class_labels`` is empty).
    ``feature_mean`` and ``feature_std`` (float32 ``[n_inputs]``) come from the
    training split only and were applied to every split: ``X = (raw - mean) / std``.
    ``source`` says where the data came from (a built-in generator or a file path).
    ``X_sel``/``y_sel`` are the selection split (``task.selection_fraction``), carved
    from the training rows, on which the champion is chosen from the short list; None
    when the task has none.
    ``encoding`` (tables only, else None) says how a raw row became the features:
    the raw columns in order, each numeric (with its fill value) or categorical
    (with its categories); see :mod:`hybrid.tasks.preprocess`.
    ``fold_ids`` (K-fold fitness, :mod:`hybrid.folds`) gives each row of the pool
    (the training rows, then the validation rows) its fold, or is None when the
    task is scored on the validation split alone.

    Sequence tasks (``sequence`` True; :mod:`hybrid.tasks._sequences`, or an NPZ whose
    ``X`` is 3-D): features are float32 ``[N, T, n_inputs]``; targets are int64 class
    ids ``[N, T]`` or float32 ``[N, T, n_outputs]`` per step (``per_step`` True), or
    ``[N]`` / ``[N, n_outputs]`` per sequence, read off the output at each sequence's
    last unmasked step. ``mask_*`` (bool ``[N, T]``, None = all True) is True where a
    step is scored and, for padded sequences, real. ``stream`` True: the training split
    is ``S`` parallel streams ``[S, L, F]`` to be trained on in windows with the state
    carried across them. ``floor_val``/``floor_test``: the split's entropy floor (nats
    per scored character, exact from the generator's true next-character laws), or None.
    The feature statistics are per feature, over the training split's unmasked steps.
    """

    name: str
    kind: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_inputs: int
    n_outputs: int
    feature_mean: np.ndarray
    feature_std: np.ndarray
    class_labels: tuple[str, ...]
    source: str
    X_sel: np.ndarray | None = None
    y_sel: np.ndarray | None = None
    encoding: dict[str, Any] | None = None
    fold_ids: np.ndarray | None = None
    sequence: bool = False
    per_step: bool = False
    stream: bool = False
    mask_train: np.ndarray | None = None
    mask_val: np.ndarray | None = None
    mask_test: np.ndarray | None = None
    floor_val: float | None = None
    floor_test: float | None = None

    @property
    def folds(self) -> int:
        """Return the number of folds of K-fold fitness, 0 when it is off."""
        return 0 if self.fold_ids is None else int(self.fold_ids.max()) + 1

    def info(self) -> dict[str, object]:
        """Return the JSON-ready facts a run keeps in ``task.json`` (no data arrays)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "n_inputs": self.n_inputs,
            "n_outputs": self.n_outputs,
            "feature_mean": [float(v) for v in self.feature_mean],
            "feature_std": [float(v) for v in self.feature_std],
            "class_labels": list(self.class_labels),
            "source": self.source,
            "sizes": {
                "train": len(self.X_train),
                "val": len(self.X_val),
                "selection": 0 if self.X_sel is None else len(self.X_sel),
                "test": len(self.X_test),
            },
            **({} if self.encoding is None else {"encoding": self.encoding}),
            "folds": None
            if self.fold_ids is None
            else {"k": self.folds, "sizes": [int(c) for c in np.bincount(self.fold_ids)]},
            **(self._sequence_info() if self.sequence else {}),
        }

    def _sequence_info(self) -> dict[str, object]:
        """Return the sequence facts of ``task.json`` (``T``: the held-out splits' length)."""
        return {
            "sequence": True,
            "per_step": self.per_step,
            "stream": self.stream,
            "T": int(self.X_val.shape[1]),
            "floor_val": self.floor_val,
            "floor_test": self.floor_test,
        }

    def __repr__(self) -> str:
        sel = "" if self.X_sel is None else f", selection={len(self.X_sel)}"
        sizes = f"train={len(self.X_train)}, val={len(self.X_val)}{sel}, test={len(self.X_test)}"
        return (
            f"Task(name={self.name!r}, kind={self.kind!r}, n_inputs={self.n_inputs}, "
            f"n_outputs={self.n_outputs}, {sizes}, source={self.source!r})"
        )
