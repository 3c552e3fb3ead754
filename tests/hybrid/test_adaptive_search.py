"""Exit heads and skip gates in the search (issue 16): config, NSGA-II on average FLOPs, records.

The engines' oracle tests live in test_adaptive_engine.py, test_net_adaptive.py and
test_export_adaptive.py; here: what a user configures and what a run writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hybrid.lineage
from genomes.adaptive import evaluate_adaptive, is_adaptive
from hybrid.adaptive import adaptive_record
from hybrid.cli import main
from hybrid.config import loads_config
from hybrid.errors import ConfigError
from hybrid.report import write_report
from hybrid.search import Search
from hybrid.tasks import load_task
from tests.adaptive_cases import adaptive_genome
from tests.hybrid.tiny import resume_cut_back, tiny_toml

#: An adaptive search ranked by NSGA-II on (metric, FLOPs per validation input), sigmoid gates.
BY_FLOPS = {"selection.method": "nsga2", "selection.cost": "average_flops", "training.gate": "sigmoid"}


def _config(tmp_path: Path, **overrides: Any):
    text = tiny_toml(tmp_path, generations=3, steps=10)
    return loads_config(text, source="tiny.toml", overrides={"run.name": "a", **overrides})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"selection.cost": "average_flops"},
            "selection.cost: got 'average_flops', expected selection.method = 'nsga2'",
        ),
        (
            {"selection.method": "nsga2", "selection.cost": "flops"},
            "selection.cost: got 'flops', expected 'parameters' or",
        ),
        (
            {
                "mutation.add_exit": 0.1,
                "task.name": None,
                "task.path": "d.csv",
                "task.kind": "regression",
                "task.target": "y",
                "task.n_samples": None,
            },
            "mutation.add_exit: got 0.1, expected 0 for a regression task",
        ),
        (
            {"mutation.add_skip": 0.1, "mutation.add_recurrent_edge": 0.1},
            "mutation.add_skip: got 0.1, expected 0 for recurrent",
        ),
        (
            {"mutation.add_exit": 0.1, "training.budgets": "sandwich"},
            "expected 0 with training.budgets = 'sandwich'",
        ),
        ({"mutation.add_exit": 0.1, "task.folds": 3}, "expected 0 with task.folds set"),
        ({"mutation.add_exit": 1.5}, "mutation.add_exit: got 1.5"),
        ({"mutation.add_skip": 0.1, "mutation.grow_bottleneck": 0.1}, "expected 0 with mutation.grow_bottleneck > 0"),
    ],
)
def test_bad_adaptive_settings_are_refused_in_one_line_naming_the_key(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, **overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_adaptive_settings_default_off_and_resolve(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    assert (cfg.mutation.add_exit, cfg.mutation.add_skip, cfg.selection.cost) == (
        0.0,
        0.0,
        "parameters",
    )
    cfg = _config(
        tmp_path,
        **{
            "mutation.add_exit": 0.2,
            "selection.method": "nsga2",
            "selection.cost": "average_flops",
        },
    )
    kw = cfg.train_kwargs()
    assert (
        kw["exit_weight"],
        kw["exit_distill"],
        kw["skip_target"],
        kw["skip_penalty"],
        kw["threshold_tolerance"],
    ) == (1.0, 0.0, 0.7, 1.0, 0.005)
    assert cfg.mutation.rates()["add_exit"] == 0.2


def test_the_record_counts_where_inputs_leave_and_what_they_cost() -> None:
    g = adaptive_genome(3)
    X = np.random.default_rng(0).normal(size=(64, 4))
    y = np.random.default_rng(1).integers(0, 3, 64)
    rec = adaptive_record(g, X, y, "sigmoid")
    r = evaluate_adaptive(g, X)
    assert rec is not None
    assert rec["average_flops"] == pytest.approx(r.flops.mean())
    assert sum(e["share"] for e in rec["exits"]) == pytest.approx(1.0)
    assert [e["node"] for e in rec["exits"][:-1]] == list(r.plan.exits)
    assert rec["accuracy"] == pytest.approx((r.outputs.argmax(1) == y).mean())
    assert 1 <= rec["gate_patterns"] <= 64
    assert adaptive_record(adaptive_genome(3, exits=0, skips=0), X, y, "sigmoid") is None


def test_an_adaptive_search_grows_exits_and_skip_gates_and_records_their_cost(
    tmp_path: Path, capsys
) -> None:
    cfg = _config(
        tmp_path, **{**BY_FLOPS, "mutation.add_exit": 0.6, "mutation.add_skip": 0.4, "evolution.generations": 4}
    )
    result = Search.start(cfg, overwrite=True).run()
    with hybrid.lineage.open(result.run_dir) as lin:
        gens = lin.generations()
        adaptive_ids = [
            r.id for r in lin.records() if r.has_weights and is_adaptive(lin.genome(r.id))
        ]
        assert adaptive_ids, "no member grew an exit head or a skip gate"
        recorded = {int(k) for gen in gens for k in (gen.stats.get("average_flops") or {})}
        assert set(adaptive_ids) <= recorded | {r.id for r in lin.records() if r.status == "failed"}
        genome = lin.genome(adaptive_ids[-1])
        task = load_task(cfg.task, cfg.run.seed)
        gen_of = {r.id: r.generation for r in lin.records()}
        avg = dict(gens[gen_of[adaptive_ids[-1]]].stats["average_flops"])[str(adaptive_ids[-1])]
        # the recorded average is the reference's on the validation split, thresholds as written back
        ref = evaluate_adaptive(genome, np.asarray(task.X_val, np.float64), cfg.training.gate)
        assert avg == pytest.approx(float(ref.flops.mean()), rel=1e-9)
    metrics = json.loads((result.run_dir / "best" / "metrics.json").read_text())
    if "adaptive" in metrics:  # the champion has adaptive genes
        assert metrics["average_flops"] == metrics["adaptive"]["average_flops"]
        assert main(["status", str(result.run_dir)]) == 0
        assert "FLOPs per test input on average" in capsys.readouterr().out
    page = write_report(result.run_dir).read_text()
    assert "Compute that adapts to each input" in page


def test_a_search_from_two_branches_keeps_an_exit_on_the_cheap_one_and_records_its_cost(tmp_path: Path) -> None:
    # genome.branches + branch_exit: every member of generation 0 is a cascade start (an
    # exit on the cheap branch, a costly branch beside it); training fits its threshold
    branches = {"genome.hidden": [], "genome.branches": [2, 8], "genome.branch_exit": True}
    cfg = _config(tmp_path, **{**BY_FLOPS, **branches, "mutation.add_exit": 0.1, "evolution.generations": 2})
    result = Search.start(cfg, overwrite=True).run()
    with hybrid.lineage.open(result.run_dir) as lin:
        first = [r for r in lin.records() if r.generation == 0 and r.has_weights]
        assert first and all(is_adaptive(lin.genome(r.id)) for r in first)
        averages = dict(lin.generations()[0].stats["average_flops"])
        task = load_task(cfg.task, cfg.run.seed)
        for r in first:
            ref = evaluate_adaptive(lin.genome(r.id), np.asarray(task.X_val, np.float64), cfg.training.gate)
            assert averages[str(r.id)] == pytest.approx(float(ref.flops.mean()), rel=1e-9)
            assert float(ref.flops.mean()) <= float(ref.plan.full_flops)


def test_an_adaptive_run_cut_back_to_a_checkpoint_resumes_byte_identical(tmp_path: Path) -> None:
    from genomes import load

    over = {"mutation.add_exit": 0.6, "mutation.add_skip": 0.5, "selection.method": "nsga2",
            "selection.cost": "average_flops", "evolution.generations": 4,
            "selection.champion": "smallest_within", "selection.epsilon": 0.05}  # fmt: skip
    config = loads_config(tiny_toml(tmp_path, steps=10), source="t.toml", overrides={"run.name": "ref", **over})
    result = Search.start(config).run()
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    resumed = resume_cut_back(ref, cut)
    stats = [(r / "stats.jsonl").read_text() for r in (ref, cut)]
    assert stats[0] == stats[1] and '"average_flops"' in stats[0]  # skip noise and thresholds replay
    assert resumed.champion_id == result.champion_id and resumed.test_metric == result.test_metric
    assert load(cut / "best" / "genome.json") == load(ref / "best" / "genome.json")


def test_with_average_flops_the_short_list_and_smallest_within_read_flops_per_input(
    tmp_path: Path,
) -> None:
    over = {"mutation.add_exit": 0.6, "mutation.add_skip": 0.3, "selection.method": "nsga2",
            "selection.cost": "average_flops", "evolution.generations": 4,
            "selection.champion": "smallest_within", "selection.epsilon": 0.1}  # fmt: skip
    config = loads_config(tiny_toml(tmp_path, steps=10), source="t.toml", overrides={"run.name": "r", **over})
    result = Search.start(config).run()
    stats = [json.loads(line) for line in (result.run_dir / "stats.jsonl").read_text().splitlines()]
    average = {int(k): v for row in stats for k, v in (row.get("average_flops") or {}).items()}
    with hybrid.lineage.open(result.run_dir) as lin:  # a generation with no adaptive member: full FLOPs
        full = {r.id: r.flops for r in lin.records()}
    average = {i: average.get(i, full[i]) for i in full}
    metrics = json.loads((result.run_dir / "best" / "metrics.json").read_text())
    entries = metrics["shortlist"]
    assert entries and all(e["average_flops"] == pytest.approx(average[e["id"]]) for e in entries)
    best = max(e["val_metric"] for e in entries)
    within = [e for e in entries if e["val_metric"] >= best - 0.1 - 1e-12]
    cheapest = min(within, key=lambda e: (e["average_flops"], -e["val_metric"], e["id"]))
    assert result.champion_id == cheapest["id"]


# ------------------------------------------------- budget AUC by dialling the exits
def test_dial_scores_are_the_dialled_accuracy_at_each_budget() -> None:
    from genomes.adaptive import threshold_for_flops
    from hybrid.champion import dial_scores

    g = adaptive_genome(3)
    X = np.random.default_rng(0).normal(size=(96, 4))
    y = np.random.default_rng(1).integers(0, 3, 96)
    budgets = (0.25, 0.5, 0.75, 1.0)
    got = dial_scores(g, X, y, "sigmoid", budgets)
    r = evaluate_adaptive(g, X)
    for b, flops, score in zip(budgets, got.flops, got.scores, strict=True):
        fit = threshold_for_flops(r.heads, r.output, y, r.stage_flops, b * r.plan.full_flops)
        assert (score, flops) == ((0.0, 0) if fit is None else (fit[1], round(fit[2])))
    assert got.auc == pytest.approx(np.mean(got.scores))
    # a genome without exits cannot be dialled: 0 below its full path, its accuracy at 1
    plain = dial_scores(adaptive_genome(3, exits=0, skips=0), X, y, "sigmoid", budgets)
    full = float((evaluate_adaptive(adaptive_genome(3, exits=0, skips=0), X).output.argmax(-1) == y).mean())
    assert plain.scores == (0.0, 0.0, 0.0, full) and plain.auc == pytest.approx(full / 4)


def test_an_adaptive_run_chooses_the_champion_that_dials_best(tmp_path: Path) -> None:
    over = {"mutation.add_exit": 0.6, "mutation.add_skip": 0.3, "selection.method": "nsga2",
            "selection.cost": "average_flops", "evolution.generations": 4,
            "selection.champion_objective": "budget_auc"}  # fmt: skip
    config = loads_config(tiny_toml(tmp_path, steps=10), source="t.toml", overrides={"run.name": "r", **over})
    result = Search.start(config).run()
    metrics = json.loads((result.run_dir / "best" / "metrics.json").read_text())
    listed = metrics["shortlist"]
    top = max(e["budget_auc"] for e in listed)
    assert metrics["budget_curve"]["auc"] == pytest.approx(top)
    assert result.champion_id in {e["id"] for e in listed if e["budget_auc"] == top}
    assert metrics["budget_curve"]["budgets"] == [0.25, 0.5, 0.75, 1.0]


def test_budget_auc_with_adaptive_genes_needs_accuracy(tmp_path: Path) -> None:
    over = {"mutation.add_exit": 0.6, "selection.champion_objective": "budget_auc",
            "task.metric": "balanced_accuracy"}  # fmt: skip
    config = loads_config(tiny_toml(tmp_path, steps=10), source="t.toml", overrides={"run.name": "r", **over})
    with pytest.raises(ConfigError) as exc:
        Search.start(config)
    msg = str(exc.value)
    assert "\n" not in msg and "selection.champion_objective" in msg and "'balanced_accuracy'" in msg
