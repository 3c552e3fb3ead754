"""The scikit-learn estimators: the sklearn contract, pipelines and searches, labels, run folders."""

from __future__ import annotations

import copy
import gc
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_iris, make_regression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from hybrid.config import SECTIONS
from hybrid.errors import ConfigError, InputError
from hybrid.export import export_run
from hybrid.sklearn import PARAM_KEYS, HybridClassifier, HybridRegressor

#: The smallest search there is: 2 members, 1 generation of 5 steps (~0.2 s a fit).
FAST = {
    "population": 2,
    "generations": 1,
    "steps": 5,
    "device": "cpu",
    "config": {"selection": {"tournament_size": 2}},
}
#: Small but enough to learn iris (a few seconds a fit).
SMALL = {"population": 4, "generations": 3, "steps": 60, "lr": 0.05, "device": "cpu"}


def iris_words() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return X, np.array(["setosa", "versicolor", "virginica"])[y]


@pytest.mark.parametrize(
    "estimator", [HybridClassifier(**FAST), HybridRegressor(**FAST)], ids=lambda e: type(e).__name__
)
def test_estimators_pass_sklearns_checks(estimator: HybridClassifier | HybridRegressor) -> None:
    check_estimator(estimator)  # skipped: only the poor_score thresholds (tags), see the docstrings


def test_constructor_defaults_are_the_configs() -> None:
    for cls in (HybridClassifier, HybridRegressor):
        est = cls()
        for param, key in PARAM_KEYS.items():
            section, name = key.split(".")
            default = SECTIONS[section].model_fields[name].default
            assert getattr(est, param) == default, (cls.__name__, param)
        assert est.runs_dir is None and est.config is None and est.verbose is False


def test_in_a_pipeline_cross_val_score_and_grid_search() -> None:
    X, y = iris_words()
    pipe = make_pipeline(StandardScaler(), HybridClassifier(**SMALL))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.7
    grid = GridSearchCV(HybridClassifier(**SMALL), {"lr": [0.01, 0.05]}, cv=2).fit(X, y)
    assert grid.best_params_["lr"] in (0.01, 0.05)
    assert set(grid.predict(X)) <= set(y)
    Xr, yr = make_regression(120, 3, noise=1.0, random_state=0)
    reg = make_pipeline(StandardScaler(), HybridRegressor(**SMALL)).fit(Xr, yr)
    assert reg.score(Xr, yr) > 0.5


def test_labels_come_back_as_given_and_predictions_are_the_exported_modules(tmp_path: Path) -> None:
    X, words = iris_words()
    clf = HybridClassifier(**SMALL).fit(X, words)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert set(clf.predict(X)) <= set(words) and clf.score(X, words) > 0.7
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X))
    written = export_run(clf.run_dir_, out=tmp_path / "model.py")  # what `hybrid export` writes
    spec = importlib.util.spec_from_file_location("exported_model", written.path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    with torch.no_grad():
        logits = module.load()(torch.as_tensor(X, dtype=torch.float32)).numpy()
    np.testing.assert_array_equal(clf.classes_[logits.argmax(axis=1)], clf.predict(X))
    ints = np.where(words == "setosa", -1, 7)  # integer labels, not 0..K-1
    assert set(HybridClassifier(**FAST).fit(X, ints).predict(X)) <= {-1, 7}


def test_a_list_of_activations_reaches_generation_0(tmp_path: Path) -> None:
    X, y = iris_words()
    clf = HybridClassifier(**{**FAST, "population": 4}, hidden=(3,), activation=["tanh", "sin"],
                           runs_dir=tmp_path).fit(X, y)  # fmt: skip
    assert clf.get_params()["activation"] == ["tanh", "sin"]  # kept as given (sklearn's clone)
    text = (Path(clf.run_dir_) / "config.toml").read_text()
    assert 'activation = ["tanh", "sin"]' in text
    with pytest.raises(ConfigError, match="genome.activation: got 'swish'"):
        HybridClassifier(**FAST, activation="swish").fit(X, y)


def test_a_dataframe_gives_feature_names_and_a_bad_column_is_named() -> None:
    X, y = iris_words()
    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    clf = HybridClassifier(**FAST).fit(frame, y)
    assert list(clf.feature_names_in_) == ["sl", "sw", "pl", "pw"] and clf.n_features_in_ == 4
    assert clf.predict(frame).shape == (150,)
    frame["colour"] = "red"
    with pytest.raises(
        InputError, match=r"^HybridClassifier: X column 'colour' is (object|str), expected numbers"
    ):
        HybridClassifier(**FAST).fit(frame, y)


def test_bad_input_is_one_value_error() -> None:
    X, y = iris_words()
    labels = y.astype(object)
    labels[3] = None
    with pytest.raises(InputError, match=r"^HybridClassifier: y\[3\] is missing \(NaN/None\)"):
        HybridClassifier(**FAST).fit(X, labels)
    with pytest.raises(ValueError, match="Input y contains NaN"):
        HybridRegressor(**FAST).fit(X, np.where(np.arange(150) == 5, np.nan, 1.0))
    with pytest.raises(InputError, match="y has 1 class, expected at least 2"):
        HybridClassifier(**FAST).fit(X, np.zeros(150))
    clf = HybridClassifier(**FAST).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but HybridClassifier is expecting 4"):
        clf.predict(X[:, :3])


def test_a_temporary_run_folder_lives_as_long_as_the_estimator() -> None:
    X, y = iris_words()
    clf = HybridClassifier(**FAST).fit(X, y)
    first = clf.run_dir_
    assert (first / "best" / "genome.json").is_file() and (first / "data.npz").is_file()
    clf.fit(X, y)
    assert not first.exists() and clf.run_dir_.is_dir()  # a refit replaces it
    for twin in (pickle.loads(pickle.dumps(clf)), copy.deepcopy(clf)):
        assert twin.run_dir_ is None and twin.genome_ == clf.genome_
        np.testing.assert_array_equal(twin.predict_proba(X), clf.predict_proba(X))
    assert clf.run_dir_.is_dir()  # copies do not take the folder away
    second = clf.run_dir_
    del clf, twin
    gc.collect()
    assert not second.exists()


def test_runs_dir_keeps_one_named_run_per_fit(tmp_path: Path) -> None:
    X, y = iris_words()
    clf = HybridClassifier(runs_dir=tmp_path, **FAST).fit(X, y)
    first = clf.run_dir_
    clf.fit(X, y)
    assert first != clf.run_dir_ and first.parent == clf.run_dir_.parent == tmp_path
    assert pickle.loads(pickle.dumps(clf)).run_dir_ == clf.run_dir_
    del clf
    gc.collect()
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == ["HybridClassifier"] * 2


def test_verbose_prints_one_line_per_generation(capsys: pytest.CaptureFixture[str]) -> None:
    X, y = iris_words()
    HybridClassifier(**{**FAST, "generations": 2}, verbose=True).fit(X, y)
    err = capsys.readouterr().err
    assert err.count("\ngen ") + err.startswith("gen ") == 2 and "run folder: " in err


def test_the_readme_examples_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## From Python: scikit-learn and arrays", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    assert len(blocks) == 2 and len(blocks[0].strip().splitlines()) == 5  # the five-line example
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["clf"].score(namespace["X"], namespace["y"]) > 0.7
    assert namespace["result"].run_dir == tmp_path / "runs" / "iris"
