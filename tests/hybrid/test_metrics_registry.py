"""``task.metric``: the registry against ``sklearn.metrics``, direction, searches and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from genomes import Genome, InnovationTracker
from hybrid.cli import main
from hybrid.config import Config, load_config
from hybrid.errors import ConfigError, DataError
from hybrid.generation import _metric
from hybrid.metrics import DEFAULT_METRIC, METRICS, Metrics, check_metric, fitness, metric_score
from hybrid.population import PopulationEngine, engine_metrics, evaluate_population
from hybrid.search import Search
from hybrid.train import TrainConfig, TrainResult
from tests.hybrid.tiny import tiny_toml
from tests.strategies import populations_strategy

CLASSIFICATION = [n for n, s in METRICS.items() if s.kind == "classification"]
REGRESSION = [n for n, s in METRICS.items() if s.kind == "regression"]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _sklearn(name: str, y: np.ndarray, out: np.ndarray) -> float:
    """The metric straight from sklearn.metrics, written out independently of the registry."""
    if name in REGRESSION:
        fn = {"r2": skm.r2_score, "mae": skm.mean_absolute_error, "mse": skm.mean_squared_error}[name]
        return float(fn(y, out))
    pred, prob, labels = out.argmax(1), _softmax(out), np.arange(out.shape[1])
    if name == "accuracy":
        return float(skm.accuracy_score(y, pred))
    if name == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(y, pred))
    if name == "f1_macro":
        return float(skm.f1_score(y, pred, average="macro", zero_division=0))
    if name in ("log_loss", "excess_nats"):  # excess_nats: the floor is 0 without a sequence task
        return float(skm.log_loss(y, prob, labels=labels))
    if out.shape[1] == 2:
        return float(skm.roc_auc_score(y, prob[:, 1]))
    return float(skm.roc_auc_score(y, prob, multi_class="ovr", labels=labels))


def _targets(n_out: int, n: int, seed: int, regression: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if regression:
        return torch.randn(n, n_out, generator=g)
    # every class present (roc_auc needs them): a permutation of a full cycle of labels
    return torch.arange(n)[torch.randperm(n, generator=g)] % n_out


@settings(max_examples=8, deadline=None)
@given(populations_strategy(n_outputs=st.integers(2, 4)), st.integers(0, 2**16), st.booleans())
def test_every_registry_metric_equals_sklearn_on_the_members_outputs(pop, seed, regression):
    n = 40
    X = torch.randn(n, pop[0].n_inputs, generator=torch.Generator().manual_seed(seed + 1))
    y = _targets(pop[0].n_outputs, n, seed, regression)
    engine = PopulationEngine(pop)
    with torch.no_grad():
        outputs = engine.forward(X).double().numpy()  # (P, N, n_out): one pass, no chunks
    loss = "mse" if regression else "cross_entropy"
    for name in REGRESSION if regression else CLASSIFICATION:
        got = engine_metrics(engine, pop, X, y, "sigmoid", loss, name)
        for m, out in zip(got, outputs, strict=True):
            want = _sklearn(name, y.numpy(), out)
            assert m.metric == name
            assert m.score == pytest.approx(want, rel=1e-5, abs=1e-6), name


def test_chunked_scores_equal_one_pass(monkeypatch):
    import hybrid.population.train as population_train

    rng, tracker = np.random.default_rng(0), InnovationTracker()
    pop = [Genome.minimal(3, 3, rng, tracker, hidden=[w]) for w in (1, 3, 5)]
    X, y = torch.randn(50, 3, generator=torch.Generator().manual_seed(0)), _targets(3, 50, 0, False)
    engine = PopulationEngine(pop)
    whole = engine_metrics(engine, pop, X, y, "sigmoid", "cross_entropy", "roc_auc")
    monkeypatch.setattr(population_train, "EVAL_CHUNK", 7)
    chunked = engine_metrics(engine, pop, X, y, "sigmoid", "cross_entropy", "roc_auc")
    assert [m.score for m in whole] == pytest.approx([m.score for m in chunked], rel=1e-6)


def test_the_default_metric_is_accuracy_and_equals_the_accuracy_field():
    rng, tracker = np.random.default_rng(1), InnovationTracker()
    pop = [Genome.minimal(2, 3, rng, tracker, hidden=[2]) for _ in range(3)]
    X, y = torch.randn(30, 2), _targets(3, 30, 1, False)
    for m in evaluate_population(pop, X, y, TrainConfig()):
        assert m.metric == "accuracy" and m.score == m.accuracy


def test_a_lower_is_better_metric_selects_the_member_with_the_lower_value():
    ok = TrainResult(status="ok", steps=1, train_loss=0.0)
    low, high = (Metrics(0.5, None, 3, 3, metric="mae", score=v) for v in (0.1, 0.2))
    assert _metric(None, ok, low) > _metric(None, ok, high)  # type: ignore[arg-type]
    assert fitness("log_loss", 0.3) == -0.3 and fitness("r2", 0.3) == 0.3
    a, b = (Metrics(0.5, 0.9, 3, 3, metric="balanced_accuracy", score=v) for v in (0.6, 0.7))
    assert _metric(None, ok, b) > _metric(None, ok, a)  # type: ignore[arg-type]
    for name, spec in METRICS.items():
        assert spec.greater_is_better == (name not in ("log_loss", "excess_nats", "mae", "mse"))


def test_defaults_per_kind_and_the_config_dump_shows_the_metric():
    assert DEFAULT_METRIC == {"classification": "accuracy", "regression": "r2"}
    assert Config(task={"name": "xor"}).task.metric == "accuracy"
    c = Config(task={"path": "/x/d.npz", "kind": "regression"})
    assert c.task.metric == "r2" and c.train_kwargs()["metric"] == "r2"


@pytest.mark.parametrize(
    ("metric", "fragment"),
    [
        ("auc", "task.metric: got 'auc'"),  # unknown: the key, the value, the allowed names
        ("r2", "task.metric: got 'r2', expected a classification metric (accuracy, balanced_accuracy"),
        ("mse", "'mse' is a regression metric"),
    ],
)
def test_a_bad_metric_is_one_line_naming_the_key_and_exit_2(metric, fragment, tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text(f'[task]\nname = "xor"\nmetric = "{metric}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert fragment in msg and "\n" not in msg
    if metric == "auc":
        assert all(n in msg for n in METRICS)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "task.metric" in err


def test_a_classification_metric_for_a_regression_task_is_refused():
    with pytest.raises(ValueError, match=r"expected a regression metric \(r2, mae, mse\); 'f1_macro' is a classification metric"):
        check_metric("f1_macro", "regression")
    with pytest.raises(ConfigError, match="train.metric"):
        TrainConfig(loss="mse", metric="accuracy")


def test_roc_auc_on_a_split_with_one_class_is_a_one_line_data_error():
    out = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(DataError, match=r"task.metric = 'roc_auc' needs every class in the split") as info:
        metric_score("roc_auc", np.zeros(10, dtype=np.int64), out)
    assert "\n" not in str(info.value)


def test_target_metric_of_a_lower_is_better_metric_must_not_be_negative(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[task]\nname = "xor"\nmetric = "log_loss"\n[evolution]\ntarget_metric = -0.1\n')
    with pytest.raises(ConfigError, match="evolution.target_metric: got -0.1, expected a log_loss >= 0"):
        load_config(path)


def _run(toml: str, tmp_path: Path) -> tuple[Search, dict]:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    search = Search.start(load_config(path))
    search.run()
    best = json.loads((search.run_dir.path / "best" / "metrics.json").read_text())
    return search, best


def test_a_tiny_search_with_balanced_accuracy(tmp_path):
    toml = tiny_toml(tmp_path, generations=2, steps=10).replace(
        'n_samples = 120', 'n_samples = 120\nmetric = "balanced_accuracy"'
    )
    search, best = _run(toml, tmp_path)
    assert best["metric"] == "balanced_accuracy" and best["greater_is_better"] is True
    assert 0.0 <= best["test_metric"] <= 1.0
    stats = [json.loads(line) for line in (search.run_dir.path / "stats.jsonl").read_text().splitlines()]
    assert stats[-1]["champion_metric"] == best["val_metric"]


def test_a_regression_search_with_r2_and_with_mae(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2)).astype(np.float32)
    y = (X[:, 0] * 0.8 - X[:, 1] ** 2 * 0.3).astype(np.float32)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    base = '[run]\nseed = 0\nruns_dir = "{r}"\n[task]\npath = "d.npz"\nkind = "regression"\n{m}'
    base += "[training]\nsteps = 20\n[evolution]\npopulation = 6\ngenerations = 2\n"
    _, best = _run(base.format(r=(tmp_path / "a").as_posix(), m=""), tmp_path)
    assert best["metric"] == "r2" and best["greater_is_better"] is True
    assert best["test_metric"] <= 1.0
    search, best = _run(base.format(r=(tmp_path / "b").as_posix(), m='metric = "mae"\n'), tmp_path)
    assert best["metric"] == "mae" and best["greater_is_better"] is False
    assert best["test_metric"] > 0 and best["val_metric"] > 0  # real sign, not the fitness
    stats = [json.loads(line) for line in (search.run_dir.path / "stats.jsonl").read_text().splitlines()]
    assert stats[-1]["champion_metric"] == -best["val_metric"]  # stats hold the fitness



def test_status_and_report_show_a_lower_is_better_metric_by_name_with_its_real_sign(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 2)).astype(np.float32)
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] - X[:, 1]).astype(np.float32))
    toml = f'[run]\nruns_dir = "{(tmp_path / "r").as_posix()}"\n[task]\npath = "d.npz"\nkind = "regression"\n'
    toml += 'metric = "log_loss"\n'
    with pytest.raises(ConfigError, match="task.metric: got 'log_loss', expected a regression metric"):
        _run(toml, tmp_path)
    toml = toml.replace("log_loss", "mae") + "[training]\nsteps = 10\n[evolution]\npopulation = 4\ngenerations = 2\n"
    search, best = _run(toml, tmp_path)
    capsys.readouterr()
    assert main(["status", str(search.run_dir.path)]) == 0
    out = capsys.readouterr().out
    champ = f"{best['val_metric']:.4f}"
    assert "validation mae: best 0." in out and f"({champ}, " in out  # real sign: positive
    assert f"test mae {best['test_metric']:.4f}" in out
    from hybrid.report import write_report

    html = write_report(search.run_dir.path, None).read_text()
    assert f"validation mae {champ}" in html and "-MSE" not in html and "neg_mse" not in html


def test_the_default_metric_gives_the_same_stats_as_naming_accuracy(tmp_path):
    a, _ = _run(tiny_toml(tmp_path / "a", generations=2, steps=10), tmp_path)
    toml = tiny_toml(tmp_path / "b", generations=2, steps=10).replace(
        'n_samples = 120', 'n_samples = 120\nmetric = "accuracy"'
    )
    b, _ = _run(toml, tmp_path)
    assert (a.run_dir.path / "stats.jsonl").read_bytes() == (b.run_dir.path / "stats.jsonl").read_bytes()


def test_roc_auc_with_a_class_missing_from_a_split_fails_before_the_run_folder(tmp_path, capsys):
    X = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    y = np.zeros(40, dtype=np.int64)
    y[:2] = 1  # two positives: stratified, one split of three lacks class 1
    np.savez(tmp_path / "d.npz", X=X, y=y)
    runs = tmp_path / "runs"
    (tmp_path / "c.toml").write_text(
        f'[run]\nruns_dir = "{runs.as_posix()}"\n[task]\npath = "d.npz"\nkind = "classification"\n'
        'metric = "roc_auc"\n'
    )
    assert main(["run", str(tmp_path / "c.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "task.metric = 'roc_auc' needs every class in the" in err
    assert not runs.exists() or list(runs.iterdir()) == []


def test_best_metrics_json_accepts_every_registry_name():
    from typing import get_args

    from hybrid.rundir._records import BestMetrics

    assert set(get_args(BestMetrics.model_fields["metric"].annotation)) == {*METRICS, "neg_mse"}


def test_a_regression_run_from_before_task_metric_reads_as_mse(tmp_path):
    from hybrid.rundir import open_run_dir

    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 2)).astype(np.float32)
    np.savez(tmp_path / "d.npz", X=X, y=X[:, 0].astype(np.float32))
    toml = f'[run]\nruns_dir = "{(tmp_path / "r").as_posix()}"\n[task]\npath = "d.npz"\nkind = "regression"\n'
    toml += "[training]\nsteps = 5\n[evolution]\npopulation = 4\ngenerations = 1\n"
    search, _ = _run(toml, tmp_path)
    path = search.run_dir.path
    assert open_run_dir(path).load_config().task.metric == "r2"
    cfg = path / "config.toml"
    cfg.write_text("".join(line for line in cfg.read_text().splitlines(True) if not line.startswith("metric")))
    assert open_run_dir(path).load_config().task.metric == "mse"
