"""The champion chosen on its accuracy-vs-budget curve (issue 17: ``selection.champion_objective``).

``hybrid.budgets.budget_scores`` (the engines' budgeted pass) is replaced by a stub
here: these tests check the choice and what is written, not the engine.
"""

from __future__ import annotations

import json
import math
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hybrid.lineage
import hybrid.search
from genomes import Genome, InnovationTracker
from genomes.complexity import active_structure
from hybrid.champion import budget_curves, check_budget_objective, curve_record
from hybrid.config import loads_config
from hybrid.errors import ConfigError
from hybrid.report import write_report
from hybrid.report.html import _budget_curve
from hybrid.search import Search
from hybrid.shortlist import choose
from hybrid.state import Champion
from hybrid.tasks import load_task
from tests.hybrid.tiny import resume_cut_back, tiny_toml

_GENOME = Genome.minimal(2, 2, np.random.default_rng(0), InnovationTracker(), hidden=[2])
#: Search._finish scores the short list by budget (the hook the search module needs).


def _c(i: int, metric: float, size: int) -> Champion:
    return Champion(i, 0, metric, size, 0, 0.0, _GENOME)


def _config(tmp_path: Path, name: str = "b", **overrides: Any):
    text = tiny_toml(tmp_path, generations=3, steps=10)
    return loads_config(text, source="tiny.toml", overrides={"run.name": name, **overrides})


@dataclass(frozen=True)
class _Scores:
    budgets: tuple[float, ...]
    flops: tuple[int, ...]
    scores: tuple[float, ...]
    auc: float


def _stub_scores(calls: list) -> Any:
    """A ``budget_scores`` whose curve favours small networks: score = 100 / (100 + active parameters)."""

    def budget_scores(genomes, X, y, train_config, budgets, device=None, threads=None):  # noqa: ANN001, ANN202
        calls.append((len(genomes), len(X), tuple(budgets)))
        out = []
        for g in genomes:
            s = active_structure(g, train_config.gate)
            v = 100.0 / (100.0 + s.n_parameters)
            out.append(_Scores(tuple(budgets), tuple(int(b * s.flops) for b in budgets), (v,) * len(budgets), v))
        return out

    return budget_scores


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> list:
    """Replace ``hybrid.budgets.budget_scores`` (a stand-in module if the engines' is not there)."""
    calls: list = []
    try:
        import hybrid.budgets as module
    except ImportError:
        module = types.ModuleType("hybrid.budgets")
        monkeypatch.setitem(sys.modules, "hybrid.budgets", module)
    monkeypatch.setattr(module, "budget_scores", _stub_scores(calls), raising=False)
    return calls


# ------------------------------------------------------------------ config
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([0.5, 0.25], "selection.auc_budgets: got [0.5, 0.25], expected strictly increasing budgets"),
        ([0.5, 0.5], "expected strictly increasing budgets"),
        ([0, 1], "selection.auc_budgets: got [0, 1], expected every budget to be a number in (0, 1], got 0"),
        ([0.5, 1.5], "got 1.5"),
        ([], "expected at least one budget"),
        ([True], "got True"),
        ("x", "expected a list of budgets in (0, 1]"),
    ],
)
def test_bad_budgets_are_refused_in_one_line_naming_the_key(tmp_path: Path, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, **{"selection.auc_budgets": value})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_objective_defaults_to_the_metric_and_takes_budget_auc(tmp_path: Path) -> None:
    sel = _config(tmp_path).selection
    assert (sel.champion_objective, sel.auc_budgets) == ("metric", (0.25, 0.5, 0.75, 1.0))
    sel = _config(tmp_path, **{"selection.champion_objective": "budget_auc", "selection.auc_budgets": [0.1, 1]}).selection
    assert (sel.champion_objective, sel.auc_budgets) == ("budget_auc", (0.1, 1.0))
    with pytest.raises(ConfigError, match=r"selection.champion_objective: got 'auc', expected 'metric' or 'budget_auc'"):
        _config(tmp_path, **{"selection.champion_objective": "auc"})


def test_budget_auc_is_refused_for_a_sequence_task_and_a_lower_is_better_metric(tmp_path: Path) -> None:
    cfg = _config(tmp_path, **{"selection.champion_objective": "budget_auc", "task.metric": "log_loss"})
    task = load_task(cfg.task, 0)
    with pytest.raises(ConfigError, match=r"^run 'b': selection.champion_objective: expected 'metric' with "
                                          r"task.metric = 'log_loss'.*got 'budget_auc'$"):  # fmt: skip
        check_budget_objective(cfg, task, "run 'b'")
    seq = types.SimpleNamespace(sequence=True, name="parity")
    cfg = _config(tmp_path, **{"selection.champion_objective": "budget_auc"})
    with pytest.raises(ConfigError, match=r"expected 'metric' for the sequence task 'parity'"):
        check_budget_objective(cfg, seq, "run 'b'")  # type: ignore[arg-type]
    check_budget_objective(cfg, task, "run 'b'")  # accuracy on circles: fine
    plain = _config(tmp_path)
    check_budget_objective(plain, seq, "run 'b'")  # type: ignore[arg-type]  # "metric": never refused


# ------------------------------------------------------------------ choose()
def test_the_rule_reads_the_auc_not_the_full_budget_metric() -> None:
    front = [_c(0, 1.0, 300), _c(1, 0.98, 150), _c(2, 0.97, 40), _c(3, 0.99, 150)]
    auc = {0: 0.80, 1: 0.90, 2: 0.89, 3: 0.90}
    assert choose(front, "best", 0.0).id == 0  # today: the best metric
    assert choose(front, "best", 0.0, None, auc).id == 3  # 1 and 3 tie on AUC; 3 has the better metric
    assert choose(front, "smallest_within", 0.01, None, auc).id == 2
    sel = {0: 0.9, 1: 0.95, 2: 0.9, 3: 0.9}
    assert choose(front, "best", 0.0, sel, auc).id == 1  # AUC ties go to the selection score first
    assert choose(front, "best", 0.0, None, {0: math.nan, 1: 0.5, 2: math.nan, 3: 0.4}).id == 1
    assert choose(front, "best", 0.0, None, {0: math.nan}).id == 0  # no finite AUC: the metric decides


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(150, 200), st.integers(0, 200), st.integers(1, 400)), min_size=1, max_size=30),
    st.sampled_from([0.0, 0.005, 0.02]),
)
def test_the_auc_choice_is_within_epsilon_of_the_best_auc_and_nothing_smaller_is(
    raw: list[tuple[int, int, int]], epsilon: float
) -> None:
    front = [_c(i, v / 200, s) for i, (v, _, s) in enumerate(raw)]
    auc = {i: a / 200 for i, (_, a, _) in enumerate(raw)}
    top = max(auc.values())
    assert auc[choose(front, "best", epsilon, None, auc).id] == top
    small = choose(front, "smallest_within", epsilon, None, auc)
    assert auc[small.id] >= top - epsilon - 1e-12
    assert not any(auc[c.id] >= top - epsilon - 1e-12 and c.active_params < small.active_params for c in front)


# -------------------------------------------------------------- the curves
def test_budget_curves_score_the_split_the_rule_reads_and_only_under_budget_auc(tmp_path: Path, stub: list) -> None:
    cfg = _config(tmp_path, **{"selection.champion_objective": "budget_auc", "selection.auc_budgets": [0.5, 1.0]})
    task = load_task(cfg.task, 0)
    from hybrid.train import TrainConfig

    tc = TrainConfig(**cfg.train_kwargs())
    entries = [_c(0, 0.9, 10), _c(1, 0.8, 10)]
    got = budget_curves(entries, task, tc, cfg.selection)
    assert got is not None and got.split == "validation" and set(got.curves) == {0, 1}
    assert stub == [(2, len(task.X_val), (0.5, 1.0))]
    assert budget_curves(entries, task, tc, _config(tmp_path).selection) is None and len(stub) == 1
    with_sel = load_task(_config(tmp_path, **{"task.selection_fraction": 0.2}).task, 0)
    got = budget_curves(entries, with_sel, tc, cfg.selection)
    assert got is not None and got.split == "selection" and stub[-1][1] == len(with_sel.X_sel)
    rec = curve_record(got.curves[0], got.curves[0].flops[-1], got.split)
    assert rec["budgets"] == [0.5, 1.0] and rec["share"][-1] == 1.0 and rec["auc"] == got.auc[0]


def test_with_the_engines_budget_scores_the_full_budget_scores_as_the_search_does(tmp_path: Path) -> None:
    from hybrid.backends import evaluate_members
    from hybrid.train import TrainConfig

    cfg = _config(tmp_path, **{"selection.champion_objective": "budget_auc", "selection.auc_budgets": [0.5, 1.0]})
    task = load_task(cfg.task, 0)
    tc = TrainConfig(**cfg.train_kwargs())
    genomes = [Genome.minimal(2, 2, np.random.default_rng(s), InnovationTracker(), hidden=[4]) for s in (1, 2)]
    got = budget_curves([Champion(i, 0, 0.0, 1, 0, 0.0, g) for i, g in enumerate(genomes)], task, tc, cfg.selection)
    assert got is not None
    for i, ev in enumerate(evaluate_members(genomes, task.X_val, task.y_val, tc)):
        curve = got.curves[i]
        assert curve.budgets == (0.5, 1.0) and curve.scores[-1] == pytest.approx(ev.score, abs=1e-6)
        assert curve.flops[0] <= curve.flops[1] == ev.flops


def test_the_report_shows_a_written_curve_and_skips_a_malformed_one(tmp_path: Path) -> None:
    result = Search.start(_config(tmp_path, **{"evolution.generations": 1})).run()
    path = result.run_dir / "best" / "metrics.json"
    m = json.loads(path.read_text())
    scores = _Scores((0.5, 1.0), (10, 20), (0.75, 0.5), 0.625)
    m["budget_curve"] = curve_record(scores, 20, "validation") | {"split": "<b>validation</b>"}
    path.write_text(json.dumps(m))
    page = write_report(result.run_dir).read_text()
    assert "accuracy vs share of FLOPs" in page and "its budget AUC on &lt;b&gt;validation" in page
    assert "<b>validation</b>" not in page  # every value from the run folder is escaped
    assert "<td class=num>50.0%</td><td class=num>0.7500</td>" in page
    for key, bad in (("scores", ["x", 0.5]), ("flops", [10]), ("auc", "high"), ("budgets", None)):
        path.write_text(json.dumps(m | {"budget_curve": m["budget_curve"] | {key: bad}}))
        with hybrid.lineage.open(result.run_dir) as lin:
            assert _budget_curve(lin) is None, key  # no section rather than a broken page


# ------------------------------------------------------------- end to end
def test_a_budget_auc_search_picks_the_best_auc_and_writes_its_curve(tmp_path: Path, stub: list) -> None:
    cfg = _config(tmp_path, **{"selection.champion_objective": "budget_auc"})
    result = Search.start(cfg).run()
    m = json.loads((result.run_dir / "best" / "metrics.json").read_text())
    listed = m["shortlist"]
    assert len(stub) == 1 and stub[0][0] == len(listed)
    top = max(e["budget_auc"] for e in listed)
    assert m["genome_id"] in {e["id"] for e in listed if e["budget_auc"] == top}
    mine = next(e for e in listed if e["id"] == m["genome_id"])
    assert mine["budget_auc"] == pytest.approx(100 / (100 + mine["active_parameters"]))  # the stub's curve
    assert mine["val_metric"] < max(e["val_metric"] for e in listed)  # not the champion of "metric"
    curve = m["budget_curve"]
    assert m["champion_objective"] == "budget_auc" and curve["split"] == "validation"
    assert curve["budgets"] == [0.25, 0.5, 0.75, 1.0] and len(curve["flops"]) == len(curve["scores"]) == 4
    assert curve["auc"] == top == result.budget_auc
    assert "accuracy vs share of FLOPs" in write_report(result.run_dir).read_text()


def test_the_default_objective_writes_no_curve_and_never_scores_by_budget(tmp_path: Path, stub: list) -> None:
    result = Search.start(_config(tmp_path)).run()
    m = json.loads((result.run_dir / "best" / "metrics.json").read_text())
    assert stub == [] and "budget_curve" not in m and "champion_objective" not in m
    assert all("budget_auc" not in e for e in m["shortlist"]) and result.budget_auc is None
    assert "accuracy vs share of FLOPs" not in write_report(result.run_dir).read_text()


# ------------------------------------------------------ fitness = budget_auc
def _a(i: int, metric: float, auc: float | None, size: int) -> Champion:
    return Champion(i, 0, metric, size, 0, 0.0, _GENOME, auc=auc)


def test_fitness_defaults_to_the_metric_and_refuses_what_has_no_budget_auc(tmp_path: Path) -> None:
    assert _config(tmp_path).selection.fitness == "metric"
    assert _config(tmp_path, **{"selection.fitness": "budget_auc"}).selection.fitness == "budget_auc"
    with pytest.raises(ConfigError, match=r"selection.fitness: got 'auc', expected 'metric' or 'budget_auc'"):
        _config(tmp_path, **{"selection.fitness": "auc"})
    cases = [
        ({"task.metric": "log_loss"}, r"with task.metric = 'log_loss'"),
        ({"task.folds": 2}, r"with task.folds = 2"),
        ({"mutation.add_exit": 0.1}, r"with mutation.add_exit or mutation.add_skip > 0"),
    ]
    for over, why in cases:
        cfg = _config(tmp_path, **{"selection.fitness": "budget_auc", **over})
        task = load_task(cfg.task, 0)
        with pytest.raises(ConfigError, match=rf"^run 'b': selection.fitness: expected 'metric' {why}.*got 'budget_auc'$") as err:
            check_budget_objective(cfg, task, "run 'b'")
        assert "\n" not in str(err.value)
    seq = types.SimpleNamespace(sequence=True, name="parity", folds=0)
    with pytest.raises(ConfigError, match=r"selection.fitness: expected 'metric' for the sequence task 'parity'"):
        check_budget_objective(_config(tmp_path, **{"selection.fitness": "budget_auc"}), seq, "run 'b'")  # type: ignore[arg-type]


def test_a_champion_keeps_its_auc_through_a_checkpoint() -> None:
    c = _a(3, 0.9, 0.7, 12)
    assert Champion.from_dict(c.to_dict()) == c and c.score == 0.7
    plain = _c(4, 0.9, 12)
    assert "auc" not in plain.to_dict() and plain.score == 0.9  # a metric run writes what it wrote


def test_under_budget_auc_the_front_ranks_the_auc_so_an_undiallable_net_cannot_hide_a_diallable_one() -> None:
    from hybrid.shortlist import update_front

    linear = _a(1, 0.98, 0.245, 650)  # best at full cost, nothing to dial: 0 below its own cost
    hidden = _a(2, 0.97, 0.90, 1200)  # dials down well
    front = update_front((), (linear, hidden))
    assert {c.id for c in front} == {1, 2} and front[0].id == 2  # sorted by score
    plain = update_front((), (_c(1, 0.98, 650), _c(2, 0.97, 1200)))
    assert [c.id for c in plain] == [1]  # by the metric alone the diallable one is dominated


def test_a_budget_auc_fitness_search_ranks_members_on_their_auc_and_records_their_metric(
    tmp_path: Path, stub: list
) -> None:
    cfg = _config(tmp_path, **{"selection.fitness": "budget_auc", "selection.champion_objective": "budget_auc"})
    result = Search.start(cfg).run()
    rows = [json.loads(line) for line in (result.run_dir / "stats.jsonl").read_text().splitlines()]
    assert len(stub) == len(rows) + 1  # one pass of members per generation, one of the short list at the end
    with hybrid.lineage.open(result.run_dir) as lin:
        records = {r.id: r for r in lin.records()}
        for row in rows:
            auc = {int(k): v for k, v in row["budget_auc"].items()}
            for i, v in auc.items():
                assert v == pytest.approx(100 / (100 + records[i].active_params))  # the stub's AUC
                assert records[i].val_metric is not None and records[i].val_metric <= 1.0  # the real metric
            best = max(auc.values())
            assert row["best_budget_auc"] == best and auc[row["best_id"]] == best
    m = json.loads((result.run_dir / "best" / "metrics.json").read_text())
    assert m["budget_curve"]["auc"] == max(e["budget_auc"] for e in m["shortlist"])
    assert all(e["val_metric"] == pytest.approx(records[e["id"]].val_metric) for e in m["shortlist"])


def test_a_budget_auc_fitness_run_cut_back_to_a_checkpoint_resumes_byte_identical(tmp_path: Path) -> None:
    from genomes import load

    over = {"selection.fitness": "budget_auc", "selection.champion_objective": "budget_auc",
            "training.budgets": "sandwich", "evolution.generations": 4, "run.name": "ref"}  # fmt: skip
    config = loads_config(tiny_toml(tmp_path, steps=10), source="t.toml", overrides=over)
    result = Search.start(config).run()
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    resumed = resume_cut_back(ref, cut)
    stats = [(r / "stats.jsonl").read_text() for r in (ref, cut)]
    assert stats[0] == stats[1] and '"budget_auc"' in stats[0]
    assert resumed.champion_id == result.champion_id and resumed.test_metric == result.test_metric
    assert load(cut / "best" / "genome.json") == load(ref / "best" / "genome.json")
