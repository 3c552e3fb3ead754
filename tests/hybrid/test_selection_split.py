"""Fitness and choice on different data: the selection split and the champion chosen on it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import Genome, InnovationTracker, load
from hybrid.backends import evaluate_members
from hybrid.config import loads_config
from hybrid.errors import ConfigError, DataError
from hybrid.search import Search
from hybrid.shortlist import choose
from hybrid.state import Champion
from hybrid.tasks import load_task, split_indices
from hybrid.train import TrainConfig
from tests.hybrid.tiny import tiny_toml

_GENOME = Genome.minimal(2, 2, np.random.default_rng(0), InnovationTracker(), hidden=[2])


def _config(tmp_path: Path, name: str, seed: int = 0, **overrides: Any):
    text = tiny_toml(tmp_path, seed=seed, generations=4, steps=20)
    return loads_config(
        text, source="tiny.toml", overrides={"run.name": name, "task.n_samples": 200, **overrides}
    )


def _metrics(run: Path) -> dict:
    return json.loads((run / "best" / "metrics.json").read_text())


# ---------------------------------------------------------------- the split
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), fraction=st.sampled_from([0.05, 0.1, 0.2, 0.3]))
def test_the_selection_split_comes_out_of_training_rows_and_leaves_val_and_test_alone(
    tmp_path_factory: pytest.TempPathFactory, seed: int, fraction: float
) -> None:
    tmp = tmp_path_factory.mktemp("split")
    plain = load_task(_config(tmp, "a").task, seed)
    with_sel = load_task(_config(tmp, "b", **{"task.selection_fraction": fraction}).task, seed)
    assert plain.X_sel is None and with_sel.X_sel is not None
    np.testing.assert_array_equal(plain.y_val, with_sel.y_val)
    np.testing.assert_array_equal(plain.y_test, with_sel.y_test)
    # the selection and the new training rows are exactly the old training rows
    n = len(plain.y_train)
    assert len(with_sel.y_train) + len(with_sel.y_sel) == n
    assert abs(len(with_sel.y_sel) - fraction * 200) <= 1
    # stratified: each class's share within one sample of its share in the whole
    for c in (0, 1):
        assert abs((with_sel.y_sel == c).sum() - len(with_sel.y_sel) * (plain.y_train == c).mean()) <= 1
    info = with_sel.info()["sizes"]
    assert info == {"train": len(with_sel.y_train), "val": len(with_sel.y_val),
                    "selection": len(with_sel.y_sel), "test": len(with_sel.y_test)}


def test_a_zero_selection_fraction_keeps_todays_split(tmp_path: Path) -> None:
    task = load_task(_config(tmp_path, "a").task, 3)
    tr, va, te = split_indices(np.repeat([0, 1], 100), 0.2, 0.2, 3, True, "x")
    assert (len(task.y_train), len(task.y_val), len(task.y_test)) == (len(tr), len(va), len(te))
    assert task.info()["sizes"]["selection"] == 0


# ------------------------------------------------------------------ choose()
def _c(i: int, val: float, size: int) -> Champion:
    return Champion(i, 0, val, size, 0, 0.0, _GENOME)


def test_the_rule_reads_the_selection_scores_and_ties_go_to_validation() -> None:
    front = [_c(0, 1.0, 300), _c(1, 0.98, 150), _c(2, 0.97, 40), _c(3, 0.99, 150)]
    sel = {0: 0.90, 1: 0.95, 2: 0.94, 3: 0.95}
    assert choose(front, "best", 0.0, sel).id == 3  # 1 and 3 tie on selection; 3 is better on validation
    assert choose(front, "smallest_within", 0.01, sel).id == 2
    assert choose(front, "best", 0.0, None).id == 0  # no selection split: validation decides
    assert choose(front, "best", 0.0, {0: math.nan, 1: 0.5, 2: 0.6, 3: math.nan}).id == 2
    with pytest.raises(ValueError, match="rule"):
        choose(front, "median", 0.0, sel)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(150, 200), st.integers(150, 200), st.integers(1, 400)), min_size=1, max_size=40),
    st.sampled_from([0.0, 0.005, 0.02]),
)
def test_the_choice_is_within_epsilon_of_the_best_selection_score_and_nothing_smaller_is(
    raw: list[tuple[int, int, int]], epsilon: float
) -> None:
    front = [_c(i, v / 200, s) for i, (v, _, s) in enumerate(raw)]
    sel = {i: t / 200 for i, (_, t, _) in enumerate(raw)}
    top = max(sel.values())
    best = choose(front, "best", epsilon, sel)
    assert sel[best.id] == top
    small = choose(front, "smallest_within", epsilon, sel)
    assert sel[small.id] >= top - epsilon - 1e-12
    assert not any(sel[c.id] >= top - epsilon - 1e-12 and c.active_params < small.active_params for c in front)


# ------------------------------------------------------------- end to end
def test_the_champion_is_the_short_lists_best_on_the_selection_split(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "sel", **{"task.selection_fraction": 0.2})
    result = Search.start(cfg).run()
    m = _metrics(result.run_dir)
    listed = m["shortlist"]
    assert listed and all(e["selection_metric"] is not None for e in listed)
    top = max(e["selection_metric"] for e in listed)
    assert m["selection_metric"] == top == result.selection_metric
    assert m["genome_id"] in {e["id"] for e in listed if e["selection_metric"] == top}
    # the recorded selection score is the written champion's score on the selection split
    task = load_task(cfg.task, cfg.run.seed)
    (ev,) = evaluate_members([load(result.run_dir / "best" / "genome.json")], task.X_sel, task.y_sel,
                             TrainConfig(**cfg.train_kwargs()))
    assert ev.score == pytest.approx(m["selection_metric"], abs=1e-6)
    assert json.loads((result.run_dir / "task.json").read_text())["sizes"]["selection"] == len(task.y_sel)


def test_the_final_fit_trains_on_train_validation_and_selection(tmp_path: Path, monkeypatch) -> None:
    import hybrid.search as search_mod

    seen: list[int] = []
    real = search_mod.train_one

    def spy(genome, X, y, *args, **kwargs):
        seen.append(len(X))
        return real(genome, X, y, *args, **kwargs)

    monkeypatch.setattr(search_mod, "train_one", spy)
    cfg = _config(tmp_path, "fit", **{"task.selection_fraction": 0.2, "evolution.final_steps": 10})
    Search.start(cfg).run()
    task = load_task(cfg.task, cfg.run.seed)
    assert seen == [len(task.y_train) + len(task.y_val) + len(task.y_sel)]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"task.selection_fraction": 0.6}, "task.selection_fraction"),
        ({"task.selection_fraction": -0.1}, "task.selection_fraction"),
        ({"task.selection_fraction": 1.0}, "task.selection_fraction"),
    ],
)
def test_fractions_that_leave_no_training_split_are_one_config_error(
    tmp_path: Path, overrides: dict, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, "bad", **overrides)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_selection_split_of_an_unsplit_task_or_of_too_few_rows_is_one_data_error(tmp_path: Path) -> None:
    text = tiny_toml(tmp_path).replace('name = "circles"\nn_samples = 120', 'name = "xor"')
    cfg = loads_config(text, source="t.toml", overrides={"task.selection_fraction": 0.2})
    with pytest.raises(DataError, match="selection_fraction") as info:
        load_task(cfg.task, 0)
    assert "\n" not in str(info.value)
    cfg = _config(tmp_path, "few", **{"task.n_samples": 8, "task.selection_fraction": 0.5,
                                      "task.val_fraction": 0.2, "task.test_fraction": 0.25})
    with pytest.raises(DataError, match="selection") as info:
        load_task(cfg.task, 0)
    assert "\n" not in str(info.value)


def test_the_final_fit_trains_weights_but_keeps_the_chosen_gates_and_size(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "keep", **{"task.selection_fraction": 0.2, "evolution.final_steps": 30})
    result = Search.start(cfg).run()
    m = _metrics(result.run_dir)
    fitted = load(result.run_dir / "best" / "genome.json")
    from hybrid.lineage import open as open_lineage

    with open_lineage(result.run_dir) as lin:
        chosen = lin.genome(m["genome_id"])
    gates = lambda g: {k: v for k, v in g.iter_arrays() if k.endswith("gate")}  # noqa: E731
    weights = lambda g: {k: v for k, v in g.iter_arrays() if k.endswith("weight")}  # noqa: E731
    assert gates(fitted).keys() == gates(chosen).keys()
    for k, v in gates(chosen).items():
        np.testing.assert_array_equal(gates(fitted)[k], v)
    assert any(not np.array_equal(weights(fitted)[k], v) for k, v in weights(chosen).items())
    listed = {e["id"]: e for e in m["shortlist"]}
    assert m["active_parameters"] == listed[m["genome_id"]]["active_parameters"]
