"""scikit-learn estimators: :class:`HybridClassifier` and :class:`HybridRegressor`.

``fit(X, y)`` runs :func:`hybrid.api.search` (a normal run folder: resumable,
``hybrid report`` and ``export`` work on it); ``predict`` runs the champion's
exported module (:func:`hybrid.export.run_module`: gates folded, the task's feature
standardisation inside), the same module ``hybrid export`` writes. Class labels
are encoded ``0..K-1`` in the order of ``classes_`` before the search and mapped
back on the way out, so any labels scikit-learn accepts (text, integers) work.

The run folder is ``run_dir_``: under ``runs_dir`` when given (a new, uniquely
named run per fit), else in a temporary folder that lives as long as the
estimator (removed when it is garbage collected, refitted, or at exit). A copy
made by ``pickle`` or ``copy.deepcopy`` keeps the fitted module, genome and result
but not a temporary folder (its ``run_dir_`` is None: the folder belongs to the
original); ``sklearn.base.clone`` gives an unfitted copy, as always.

Example:
    >>> from sklearn.datasets import load_iris
    >>> from hybrid.sklearn import HybridClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = HybridClassifier(population=4, generations=2, steps=20).fit(X, y)  # doctest: +SKIP
    >>> clf.score(X, y) > 0.5  # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import weakref
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .errors import InputError

__all__ = ["HybridClassifier", "HybridRegressor"]

#: Estimator parameter -> the config key it sets (the rest are the estimator's own).
PARAM_KEYS = {
    "population": "evolution.population",
    "generations": "evolution.generations",
    "steps": "training.steps",
    "batch_size": "training.batch_size",
    "lr": "training.lr",
    "hidden": "genome.hidden",
    "activation": "genome.activation",
    "gate": "training.gate",
    "penalty": "training.penalty",
    "input_noise": "training.input_noise",
    "time_budget_s": "evolution.time_budget_s",
    "patience": "evolution.patience",
    "champion": "selection.champion",
    "epsilon": "selection.epsilon",
    "final_steps": "evolution.final_steps",
    "metric": "task.metric",
    "val_fraction": "task.val_fraction",
    "test_fraction": "task.test_fraction",
    "selection_fraction": "task.selection_fraction",
    "folds": "task.folds",
    "seed": "run.seed",
    "device": "run.device",
}

_DOC_PARAMS = """
    Parameters:
        population: members per generation (``evolution.population``).
        generations: generations at most (``evolution.generations``).
        steps: training steps per member per generation (``training.steps``).
        batch_size: minibatch size (``training.batch_size``).
        lr: AdamW learning rate (``training.lr``).
        hidden: widths of the initial hidden chain; ``()`` wires input to output
            (``genome.hidden``).
        activation: the hidden nodes' activation, or a list that generation 0's
            members take in turn so the search chooses (``genome.activation``).
        gate: ``"sigmoid"`` or ``"hard_concrete"`` (``training.gate``).
        penalty: weight of the structure penalty (``training.penalty``).
        input_noise: std of the Gaussian noise added to each training minibatch's
            standardised inputs, a regulariser (``training.input_noise``; 0: off).
        time_budget_s: stop after this many seconds (None: no limit).
        patience: stop after this many generations without a better champion (None: never).
        champion: ``"best"`` or ``"smallest_within"`` (``selection.champion``).
        epsilon: the slack of ``"smallest_within"`` (``selection.epsilon``).
        final_steps: steps on train + validation for the champion (``evolution.final_steps``).
        metric: ``task.metric`` ranking genomes (None: accuracy / r2).
        val_fraction: share of ``X`` in the validation split (``task.val_fraction``).
        test_fraction: share of ``X`` held out for the champion's test score.
        selection_fraction: share of ``X`` held out to choose the champion from the
            short list (``task.selection_fraction``; 0: choose on validation).
        folds: K-fold fitness on train + validation (``task.folds``): ``"auto"`` (5
            folds under 2,000 rows on a GPU, off on a CPU), ``"off"`` or an integer >= 2.
        seed: ``run.seed``: same seed, same data, same model.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (``run.device``).
        runs_dir: keep the run folders here (one per fit); None: a temporary folder.
        config: every other setting: a TOML file, a TOML-shaped dict or a Config
            (the parameters above win over it).
        verbose: print one progress line per generation on stderr.
"""


class _TempRuns:
    """A temporary folder of run folders, removed when the last reference goes (or at exit)."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="hybrid-sklearn-"))
        self._remove = weakref.finalize(self, shutil.rmtree, str(self.path), ignore_errors=True)

    def cleanup(self) -> None:
        """Remove the folder now."""
        self._remove()


class _HybridEstimator(BaseEstimator):
    """What the classifier and the regressor share: parameters, fit, the module's outputs."""

    _kind = ""

    def __init__(
        self,
        population: int = 64,
        generations: int = 100,
        steps: int = 200,
        batch_size: int = 256,
        lr: float = 0.01,
        hidden: tuple[int, ...] = (),
        activation: str | tuple[str, ...] = "relu",
        gate: str = "sigmoid",
        penalty: float = 0.0,
        input_noise: float = 0.0,
        time_budget_s: float | None = None,
        patience: int | None = None,
        champion: str = "best",
        epsilon: float = 0.005,
        final_steps: int = 0,
        metric: str | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        selection_fraction: float = 0.0,
        folds: str | int = "auto",
        seed: int = 0,
        device: str = "auto",
        runs_dir: str | os.PathLike[str] | None = None,
        config: Any = None,
        verbose: bool = False,
    ) -> None:
        self.population = population
        self.generations = generations
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.hidden = hidden
        self.activation = activation
        self.gate = gate
        self.penalty = penalty
        self.input_noise = input_noise
        self.time_budget_s = time_budget_s
        self.patience = patience
        self.champion = champion
        self.epsilon = epsilon
        self.final_steps = final_steps
        self.metric = metric
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.selection_fraction = selection_fraction
        self.folds = folds
        self.seed = seed
        self.device = device
        self.runs_dir = runs_dir
        self.config = config
        self.verbose = verbose

    # ------------------------------------------------------------ fitting
    def _overrides(self) -> dict[str, Any]:
        out = {}
        for param, key in PARAM_KEYS.items():
            value = getattr(self, param)
            if value is None:
                continue  # unset: the config's (or the default's) value
            if isinstance(value, np.generic):
                value = value.item()
            out[key] = tuple(value) if key == "genome.hidden" else value
        return out

    def _search(self, X: np.ndarray, y: np.ndarray) -> None:
        """Run the search on validated arrays and set the fitted attributes."""
        from .api import search
        from .export import run_module
        from .rundir import open_run_dir

        old = getattr(self, "_tmp_runs_", None)
        if self.runs_dir is None:
            self._tmp_runs_ = _TempRuns()
            runs, name = self._tmp_runs_.path, "run"
        else:
            self._tmp_runs_ = None
            runs, name = Path(self.runs_dir), f"{type(self).__name__}-{uuid.uuid4().hex[:12]}"
        if old is not None:
            old.cleanup()  # a refit replaces the previous temporary run
        overrides = {**self._overrides(), "run.name": name}
        result = search(
            X, y, self.config, kind=self._kind, runs_dir=runs, verbose=self.verbose, **overrides
        )
        self.search_result_ = result
        self.run_dir_ = result.run_dir
        self.genome_ = open_run_dir(result.run_dir).read_best_genome()
        self.module_ = run_module(result.run_dir)

    def _outputs(self, X: Any) -> np.ndarray:
        """Return the exported module's outputs for raw features ``X`` (float64 [N, outputs])."""
        import torch

        check_is_fitted(self, "module_")
        X = validate_data(self, X, reset=False, dtype=np.float32)
        with torch.no_grad():
            out = self.module_(torch.as_tensor(X, dtype=torch.float32))
        return out.numpy().astype(np.float64)

    def _check_frame(self, X: Any) -> None:
        """Refuse a DataFrame column that is not numeric with one line naming it."""
        dtypes = getattr(X, "dtypes", None)
        if dtypes is None or not hasattr(X, "columns"):
            return
        import pandas as pd

        for column, dtype in zip(X.columns, dtypes, strict=True):
            if not pd.api.types.is_numeric_dtype(dtype):  # bool counts as 0/1, as in sklearn
                raise InputError(
                    f"{type(self).__name__}: X column {str(column)!r} is {dtype}, expected numbers "
                    "(encode it first, e.g. with OneHotEncoder in a Pipeline)"
                )

    # ------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        if state.pop("_tmp_runs_", None) is not None:
            state["run_dir_"] = None  # the temporary folder stays with the original estimator
        return state


class HybridClassifier(ClassifierMixin, _HybridEstimator):
    """A classifier found by a hybrid search: evolved architecture, trained weights.

    ``fit`` runs a search on ``X`` (its validation and test splits carved from it)
    and keeps the champion; ``predict`` / ``predict_proba`` run its exported module
    on raw features. Constructor defaults are the config's.
    """

    __doc__ = (
        (__doc__ or "")
        + _DOC_PARAMS
        + """
    Attributes:
        classes_: the class labels, sorted (``predict`` returns these).
        n_features_in_: the number of features seen by ``fit``.
        feature_names_in_: the column names of a DataFrame given to ``fit``.
        run_dir_: the run folder (None in a pickled copy of a temporary run).
        genome_: the champion genome.
        module_: the champion as the exported torch module (raw features in, logits out).
        search_result_: the :class:`~hybrid.champion.SearchResult`.

    Checks skipped in ``sklearn.utils.estimator_checks.check_estimator``: the score
    thresholds of ``check_classifiers_train`` (tag ``poor_score``): a search with
    the few short generations the checks run with is not trained to convergence.
    """
    )

    _kind = "classification"

    def fit(self, X: Any, y: Any) -> HybridClassifier:
        """Run a search on ``X``, ``y`` and keep its champion.

        Raises:
            ValueError: sklearn's own input checks (NaN in ``X``, wrong shapes,
                continuous targets); :class:`~hybrid.errors.InputError` (a
                ValueError) for a non-numeric DataFrame column, fewer than two
                classes or data too small to split.
        """
        self._check_frame(X)
        X, y = validate_data(self, X, y, dtype=np.float64)
        import pandas as pd

        missing = np.flatnonzero(np.asarray(pd.isna(y)))
        if len(missing):
            raise InputError(
                f"{type(self).__name__}: y[{int(missing[0])}] is missing (NaN/None), expected a class "
                "label for every sample"
            )
        check_classification_targets(y)
        self.classes_, ids = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise InputError(
                f"{type(self).__name__}: y has {len(self.classes_)} class, expected at least 2 classes"
            )
        self._search(X, ids.astype(np.int64))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Return class probabilities [N, n_classes] (softmax of the module's logits), columns as ``classes_``."""
        logits = self._outputs(X)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """Return the predicted class labels (values of ``classes_``)."""
        ids = np.argmax(self._outputs(X), axis=1)  # checks fitted first
        return self.classes_[ids]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True
        tags.classifier_tags.multi_label = False
        return tags


class HybridRegressor(RegressorMixin, _HybridEstimator):
    """A regressor found by a hybrid search: evolved architecture, trained weights.

    ``fit`` runs a search on ``X`` (its validation and test splits carved from it)
    and keeps the champion; ``predict`` runs its exported module on raw features.
    ``y`` may have several columns (one output each). Constructor defaults are the
    config's.
    """

    __doc__ = (
        (__doc__ or "")
        + _DOC_PARAMS
        + """
    Attributes:
        n_features_in_: the number of features seen by ``fit``.
        feature_names_in_: the column names of a DataFrame given to ``fit``.
        run_dir_: the run folder (None in a pickled copy of a temporary run).
        genome_: the champion genome.
        module_: the champion as the exported torch module (raw features in, predictions out).
        search_result_: the :class:`~hybrid.champion.SearchResult`.

    Checks skipped in ``sklearn.utils.estimator_checks.check_estimator``: the score
    threshold of ``check_regressors_train`` (tag ``poor_score``): a search with the
    few short generations the checks run with is not trained to convergence.
    """
    )

    _kind = "regression"

    def fit(self, X: Any, y: Any) -> HybridRegressor:
        """Run a search on ``X``, ``y`` and keep its champion.

        Raises:
            ValueError: sklearn's own input checks (NaN in ``X`` or ``y``, wrong
                shapes); :class:`~hybrid.errors.InputError` (a ValueError) for a
                non-numeric DataFrame column or data too small to split.
        """
        self._check_frame(X)
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, multi_output=True)
        self._y_2d_ = y.ndim == 2
        self._search(X, y)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Return predictions: [N], or [N, outputs] when ``y`` had several columns."""
        out = self._outputs(X)
        return out if self._y_2d_ else out[:, 0]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True
        tags.target_tags.multi_output = True
        return tags
