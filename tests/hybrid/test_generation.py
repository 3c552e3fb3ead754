"""The pure step: equal states give equal generations; stop conditions; inheritance; failures."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest

from genomes.genome import branch_name
from hybrid.config import loads_config
from hybrid.generation import FAILED_METRIC, StepContext, initial_state, step
from hybrid.tasks import load_task
from tests.hybrid.tiny import tiny_toml


def _context(tmp_path: Path, clock=None, **overrides) -> StepContext:
    text = tiny_toml(tmp_path, steps=5, gate="sigmoid")
    config = loads_config(text, source="tiny.toml", overrides=overrides)
    task = load_task(config.task, config.run.seed)
    if clock is None:
        ticks = itertools.count()
        clock = lambda: float(next(ticks))  # noqa: E731  (one second per reading)
    return StepContext(config, task, "cpu", clock=clock)


def _fixed_clock() -> float:
    return 0.0


def test_step_from_equal_states_gives_equal_states_and_reports(tmp_path: Path) -> None:
    ctx = _context(tmp_path, clock=_fixed_clock)
    s0 = initial_state(ctx.config, ctx.task)
    a_state, a_report = step(s0, ctx)
    b_state, b_report = step(s0, ctx)
    assert a_report == b_report and a_state == b_state
    assert a_state.generation == 1 and len(a_state.members) == 8
    assert [r.id for r in a_report.genomes] == [m.id for m in s0.members]
    a2, r2 = step(a_state, ctx)
    assert r2.generation == 1 and a2.generation == 2
    assert {m.id for m in a2.members}.isdisjoint(m.id for m in a_state.members)


@pytest.mark.parametrize("activation", ["sin", ["tanh", "sin", "gauss"]])
def test_generation_0_spreads_a_list_of_activations_over_the_members(tmp_path: Path, activation) -> None:
    ctx = _context(tmp_path, **{"genome.activation": activation, "genome.hidden": [3, 2]})
    names = [activation] if isinstance(activation, str) else activation
    assert ctx.config.genome.activation == (activation if isinstance(activation, str) else tuple(activation))
    s0 = initial_state(ctx.config, ctx.task)
    for m in s0.members:  # member i: every hidden node takes the list's (i mod length)-th
        g = m.genome
        assert [g.graph.nodes[n]["activation"] for n in g.hidden_nodes()] == [names[m.id % len(names)]] * 2
    shares = Counter(m.genome.graph.nodes[m.genome.hidden_nodes()[0]]["activation"] for m in s0.members)
    assert max(shares.values()) - min(shares.values()) <= 1 and set(shares) == set(names)


def test_generation_0_can_start_from_branches_with_an_exit_on_the_first(tmp_path: Path) -> None:
    from genomes import evaluate
    from genomes.adaptive import EXIT, evaluate_adaptive

    ctx = _context(tmp_path, **{"genome.hidden": [], "genome.branches": [2, 6], "genome.branch_exit": True,
                                "mutation.add_exit": 0.1})  # fmt: skip
    s0 = initial_state(ctx.config, ctx.task)
    x = ctx.task.X_val.astype("float64")
    for m in s0.members:
        g = m.genome.validate()
        tracker = s0.tracker
        cheap, costly = tracker.named_node(branch_name(0, 2)), tracker.named_node(branch_name(1, 6))
        assert sorted(g.hidden_nodes()) == sorted([cheap, costly])
        exits = [n for n, r in g.graph.nodes(data="role") if r == EXIT]
        assert exits == [tracker.named_node(f"exit_of_{cheap}")]
        assert list(g.graph.predecessors(exits[0])) == [cheap]
        assert not g.edge(cheap, exits[0])["weight"].any() and g.node(exits[0])["threshold"] == 1.0
        # function preserving: under the exit rule every sample reaches the output
        r = evaluate_adaptive(g, x, ctx.config.training.gate)
        plain = g.copy()
        plain.graph.remove_node(exits[0])
        assert (r.exit == len(r.plan.exits)).all()
        assert abs(r.outputs - evaluate(plain, x, ctx.config.training.gate)).max() < 1e-6


def test_step_leaves_its_input_state_as_it_was(tmp_path: Path) -> None:
    ctx = _context(tmp_path, clock=_fixed_clock)
    s0 = initial_state(ctx.config, ctx.task)
    tracker_before = s0.tracker.to_dict()
    snapshot = s0.to_dict()
    step(s0, ctx)
    assert s0.tracker.to_dict() == tracker_before
    assert s0.to_dict() == snapshot


def test_time_budget_stops_the_search_after_the_generation_that_spends_it(tmp_path: Path) -> None:
    # the fake clock advances one second per reading: a generation costs 3 s of budget
    # (training with its validation pass, selection, breeding); the stop is decided
    # before breeding, on 2 s of this generation and all of the earlier ones
    ctx = _context(tmp_path, **{"evolution.time_budget_s": 4.5, "evolution.generations": 100})
    s1, r1 = step(initial_state(ctx.config, ctx.task), ctx)
    assert r1.stop_reason is None and s1.elapsed_s == 3.0  # 2 s < 4.5: it breeds
    s2, r2 = step(s1, ctx)
    assert r2.stop_reason == "time_budget" and s2.finished == "time_budget" and s2.elapsed_s == 6.0
    assert s2.members == s1.members  # a stopped search breeds no next generation


def test_generation_count_and_target_metric_stop(tmp_path: Path) -> None:
    ctx = _context(tmp_path, **{"evolution.generations": 1})
    s1, r1 = step(initial_state(ctx.config, ctx.task), ctx)
    assert (r1.stop_reason, s1.finished) == ("generations", "generations")
    ctx = _context(tmp_path, **{"evolution.target_metric": 0.01})
    s1, r1 = step(initial_state(ctx.config, ctx.task), ctx)
    assert r1.stop_reason == "target_metric"
    assert s1.champion is not None and s1.champion.metric >= 0.01


@pytest.mark.parametrize("inheritance", ["lamarckian", "baldwinian"])
def test_elites_inherit_trained_weights_only_when_lamarckian(tmp_path: Path, inheritance: str) -> None:
    ctx = _context(tmp_path, clock=_fixed_clock, **{"training.inheritance": inheritance})
    s0 = initial_state(ctx.config, ctx.task)
    s1, report = step(s0, ctx)
    before = {m.id: m.genome for m in s0.members}
    trained = {r.id: r.genome for r in report.genomes}
    elites = [m for m in s1.members if m.operators and m.operators[0]["op"] == "elite"]
    assert elites
    for e in elites:
        (parent,) = e.parents
        assert trained[parent] != before[parent]  # training changed the weights
        expected = trained[parent] if inheritance == "lamarckian" else before[parent]
        assert e.genome == expected


def test_a_generation_where_every_member_fails_reports_no_metric_and_no_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hybrid.generation._metric", lambda task, result, ev: FAILED_METRIC)
    ctx = _context(tmp_path, clock=_fixed_clock)
    s1, report = step(initial_state(ctx.config, ctx.task), ctx)
    assert report.all_failed and report.n_failed == 8
    assert s1.champion is None
    stats = report.stats
    assert stats["best_metric"] is None and stats["mean_metric"] is None and stats["champion_metric"] is None
    assert FAILED_METRIC not in stats.values()
    assert all(r.status == "failed" and r.val_metric is None for r in report.genomes)


def test_the_champion_is_the_best_finite_member_and_is_kept_until_beaten(tmp_path: Path) -> None:
    ctx = _context(tmp_path, clock=_fixed_clock)
    s1, r1 = step(initial_state(ctx.config, ctx.task), ctx)
    scored = [(r.val_metric, -r.active_params, r.id) for r in r1.genomes if r.val_metric is not None]
    metric, neg_size, gid = max(scored)
    assert (s1.champion.id, s1.champion.metric, s1.champion.active_params) == (gid, metric, -neg_size)
    assert r1.stats["champion_id"] == gid
    s2, _ = step(s1, ctx)
    assert s2.champion.metric >= s1.champion.metric


def test_the_public_names_are_the_step_api() -> None:
    import hybrid
    import hybrid.search  # noqa: F401  (imports the generation module: it must not shadow hybrid.step)

    assert hybrid.step is step and hybrid.StepContext is StepContext
    assert hybrid.SearchState.__dataclass_params__.frozen and hybrid.GenerationReport.__dataclass_params__.frozen
