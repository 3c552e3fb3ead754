"""hybrid's rows of ``benchmarks/growth.py`` (issue 15): grow mode and two searches.

Methods (``run(task_name, seed) -> dict``), each a run of a shipped config in a
temporary run folder, scored as the search scores its champion (test split):

* ``hybrid_grow``: ``hybrid grow configs/<task>_grow.toml``: one network from one
  hidden neuron, bottleneck growth and training in turn;
* ``search_blind``: the shipped search (``configs/<task>.toml``): blind growth;
* ``search_bottleneck``: ``configs/<task>_bottleneck.toml``: the same kind of search
  with the bottleneck operators instead of the blind ones.

Each result also carries the growth events from the lineage (every
``grow_bottleneck`` / ``add_node_bottleneck`` / ``add_edge_bottleneck`` record: its
``gamma``, ``predicted``, ``realised`` (line batch), ``realised_val`` (held-out rows
used for nothing else), ``realised_stats`` (the statistics batch) and, on the noiseless
spirals, ``realised_fresh``: the drop of the mean loss over :data:`FRESH_POINTS` new
points of the same two curves (the task's distribution; the held-out record's 100 rows
cannot resolve drops of 1e-8)), the seconds the
statistics passes with their solves and the line searches took, and the search's
own wall time, for the event and cost parts of the table.

:func:`pairs` is the informed-vs-blind comparison: for trained parents (the last
generation of a run), the bottleneck child (``grow_bottleneck``) and a blind child of
the same parent with the same node widened by the same number of neurons (``widen``'s
LeCun fan-in, zero fan-out), both trained 50 Adam steps on the same batches in one
engine; the bottleneck child wins a pair when its loss is lower.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genomes import InnovationTracker, NotApplicable
from genomes.mutations._neurons import append_neurons
from hybrid import bottleneck
from hybrid.bottleneck import BottleneckGrowth, bottleneck_data, bottleneck_settings, stats_noise
from hybrid.config import load_config
from hybrid.lineage.reader import LineageError
from hybrid.lineage.reader import open as open_lineage
from hybrid.population import PopulationEngine
from hybrid.population.engine import sample_losses
from hybrid.population.train import train_population
from hybrid.search import Search
from hybrid.tasks import load_task
from hybrid.tasks._builtin import _spirals
from hybrid.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
OPS = set(bottleneck.OPERATORS.values())
#: Config of each (method, task).
CONFIG = {
    "hybrid_grow": "{task}_grow.toml",
    "search_blind": "{task}.toml",
    "search_bottleneck": "{task}_bottleneck.toml",
}

_INSTANCES: list[BottleneckGrowth] = []
_init = BottleneckGrowth.__init__
_line_search = BottleneckGrowth._line_search

#: Points of the two curves each spirals growth event is also scored on (``realised_fresh``).
FRESH_POINTS = 100_000
#: The current run's fresh rows (standardised as the task's) and each grown event's drop
#: on them, keyed by the event's recorded figures.
_FRESH: dict[str, Any] = {"rows": None, "drops": {}}


def _recording_init(self: BottleneckGrowth, *args: Any, **kwargs: Any) -> None:
    _init(self, *args, **kwargs)
    _INSTANCES.append(self)


BottleneckGrowth.__init__ = _recording_init  # type: ignore[method-assign]


def _figures_key(figures: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(figures.get(k) for k in ("gamma", "predicted", "realised", "realised_val", "realised_stats"))


def _scoring_line_search(self: BottleneckGrowth, genome: Any, cand: Any, *args: Any) -> Any:
    child, figures = _line_search(self, genome, cand, *args)
    rows = _FRESH["rows"]
    if rows is not None:  # the parent and the grown child on the fresh rows, float64
        engine = PopulationEngine([genome, child], gate=self.gate, dtype=torch.float64)
        with torch.no_grad():
            out = engine.forward(torch.as_tensor(rows[0], dtype=torch.float64))
        losses = sample_losses(out, torch.as_tensor(rows[1]), "cross_entropy").double().mean(1)
        _FRESH["drops"][_figures_key(figures)] = float(losses[0] - losses[1])
    return child, figures


BottleneckGrowth._line_search = _scoring_line_search  # type: ignore[method-assign]


def fresh_rows(config: Any, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """:data:`FRESH_POINTS` points of the noiseless two spirals, standardised as the run's
    task's features; None for any other task (its distribution is not known here)."""
    if config.task.name != "spirals" or config.task.noise:
        return None
    task = load_task(config.task, seed)
    X, y, _, _ = _spirals(FRESH_POINTS, None, np.random.default_rng(0))
    mean, std = task.feature_mean.astype(np.float64), task.feature_std.astype(np.float64)
    return ((X - mean) / std).astype(np.float32), y


def run_config(method: str, task_name: str, seed: int) -> dict[str, Any]:
    """Run one method's config on ``task_name`` with ``seed``; return its figures."""
    path = CONFIGS / CONFIG[method].format(task=task_name)
    _INSTANCES.clear()
    with tempfile.TemporaryDirectory(prefix="growth-") as tmp:
        over = {"run.seed": seed, "run.runs_dir": tmp, "run.name": f"{method}-{task_name}-{seed}", "run.threads": 1}
        config = load_config(path, over)
        _FRESH["rows"], _FRESH["drops"] = fresh_rows(config, seed), {}
        t0 = time.perf_counter()
        try:
            result = Search.start(config, overwrite=True).run()
        finally:
            rows, _FRESH["rows"] = _FRESH["rows"], None
        wall = time.perf_counter() - t0
        lineage = open_lineage(result.run_dir)
        events = [
            {"op": op.op, **dict(op.args)}
            for rec in lineage.records()
            for op in rec.operators
            if op.op in OPS
        ]
        if rows is not None:
            for e in events:
                e["realised_fresh"] = _FRESH["drops"].get(_figures_key(e))
        parents = _kept_genomes(lineage)
    stats_s = sum(g.seconds["statistics"] for g in _INSTANCES)
    line_s = sum(g.seconds["line_search"] for g in _INSTANCES)
    # every amplitude line search, grown or refused: an operator call tries up to 3 candidates,
    # so this counts candidates, where gromo's gamma = 0 count is per growth step
    attempts = [a for g in _INSTANCES for a in g.log]
    return {
        "accuracy": float(result.test_metric),
        "params": int(result.active_parameters),
        "wall_s": wall,
        "search_s": float(result.elapsed_s),
        "generations": int(result.generations),
        "events": events,
        "statistics_s": stats_s,
        "line_search_s": line_s,
        "line_searches": len(attempts),
        "line_searches_grown": sum(bool(a["grown"]) for a in attempts),
        "config": str(path.relative_to(ROOT)),
        "parents": parents,
    }


def _kept_genomes(lineage: Any) -> list[Any]:
    """Every trained genome the lineage kept weights for: each generation's champion and
    the whole last generation."""
    out = []
    for r in lineage.records():
        if r.status != "ok":
            continue
        try:
            out.append(lineage.genome(r.id))
        except LineageError:
            continue
    return out


def method(name: str):
    """Return ``run(task_name, seed)`` for one of :data:`CONFIG`'s methods."""

    def run(task_name: str, seed: int) -> dict[str, Any]:
        return run_config(name, task_name, seed)

    run.__name__ = f"run_{name}"
    return run


def pairs(
    parents: list[Any], task_name: str, seed: int, method: str, steps: int = 50, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Informed vs blind children of the same parents (see the module docstring), grown and
    trained with the settings of ``method``'s config (the run the parents come from), with
    ``overrides`` (dotted config keys) on top."""
    config = load_config(CONFIGS / CONFIG[method].format(task=task_name), {"run.seed": seed, **(overrides or {})})
    task = load_task(config.task, seed)
    rng = np.random.default_rng(seed)
    mc = config.mutation_config()
    informed, blind = [], []
    for i, parent in enumerate(parents):
        if parent.is_recurrent or not parent.hidden_nodes():
            continue
        data = bottleneck_data(task, config.mutation.bottleneck_batch, 10_000 + i, config.training.loss,
                               config.mutation.bottleneck_line, stats_noise(config))  # fmt: skip
        growth = BottleneckGrowth(data, bottleneck_settings(config), config.training.gate)
        try:
            child, rec = growth.operator("widen")(parent, rng, InnovationTracker(next_id=100_000), mc)
        except NotApplicable:
            continue
        other = parent.copy()
        append_neurons(other, rec.args["node"], rec.args["added"], rng, mc.gate_init)
        informed.append(child)
        blind.append(other.validate())
    n = len(informed)
    if not n:
        return {"pairs": 0, "wins": 0, "wins_val": 0}
    tc = TrainConfig(**{**config.train_kwargs(), "steps": steps})
    out = train_population(
        informed + blind,
        torch.as_tensor(np.array(task.X_train)),
        torch.as_tensor(np.array(task.y_train)),
        tc,
        torch.Generator().manual_seed(seed),
        X_val=torch.as_tensor(np.array(task.X_val)),
        y_val=torch.as_tensor(np.array(task.y_val)),
    )
    train = [r.metrics.loss if r.metrics is not None else r.train_loss for r in out.results]
    val = [m.loss for m in out.validation]
    return {
        "pairs": n,
        "wins": sum(train[k] < train[n + k] for k in range(n)),
        "wins_val": sum(val[k] < val[n + k] for k in range(n)),
    }


def event_summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Share of events with a positive realised drop, and the median realised/predicted."""
    if not events:
        return {"events": 0}
    pred = np.array([e["predicted"] for e in events], dtype=float)
    line = np.array([e["realised"] for e in events], dtype=float)
    val = np.array([e["realised_val"] if e["realised_val"] is not None else np.nan for e in events], dtype=float)
    on_stats = np.array([e.get("realised_stats", np.nan) for e in events], dtype=float)
    fresh = np.array([np.nan if e.get("realised_fresh") is None else e["realised_fresh"] for e in events])
    safe = np.where(pred > 0, pred, np.nan)
    scored = ~np.isnan(fresh)
    return {
        "events_fresh": int(scored.sum()),
        "positive_fresh": float(np.mean(fresh[scored] > 0)) if scored.any() else None,
        "median_ratio_fresh": float(np.nanmedian(fresh / safe)) if scored.any() else None,
        "events": len(events),
        "positive_line": float(np.mean(line > 0)),
        "positive_val": float(np.nanmean(val > 0)),
        "positive_stats": float(np.nanmean(on_stats > 0)),
        "median_ratio_line": float(np.nanmedian(line / safe)),
        "median_ratio_val": float(np.nanmedian(val / safe)),
        "median_ratio_stats": float(np.nanmedian(on_stats / safe)),
    }
