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
used for nothing else) and ``realised_stats`` (the statistics batch)), the seconds the
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
from hybrid.population.train import train_population
from hybrid.search import Search
from hybrid.tasks import load_task
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


def _recording_init(self: BottleneckGrowth, *args: Any, **kwargs: Any) -> None:
    _init(self, *args, **kwargs)
    _INSTANCES.append(self)


BottleneckGrowth.__init__ = _recording_init  # type: ignore[method-assign]


def run_config(method: str, task_name: str, seed: int) -> dict[str, Any]:
    """Run one method's config on ``task_name`` with ``seed``; return its figures."""
    path = CONFIGS / CONFIG[method].format(task=task_name)
    _INSTANCES.clear()
    with tempfile.TemporaryDirectory(prefix="growth-") as tmp:
        over = {"run.seed": seed, "run.runs_dir": tmp, "run.name": f"{method}-{task_name}-{seed}", "run.threads": 1}
        config = load_config(path, over)
        t0 = time.perf_counter()
        result = Search.start(config, overwrite=True).run()
        wall = time.perf_counter() - t0
        lineage = open_lineage(result.run_dir)
        events = [
            {"op": op.op, **dict(op.args)}
            for rec in lineage.records()
            for op in rec.operators
            if op.op in OPS
        ]
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
    safe = np.where(pred > 0, pred, np.nan)
    return {
        "events": len(events),
        "positive_line": float(np.mean(line > 0)),
        "positive_val": float(np.nanmean(val > 0)),
        "positive_stats": float(np.nanmean(on_stats > 0)),
        "median_ratio_line": float(np.nanmedian(line / safe)),
        "median_ratio_val": float(np.nanmedian(val / safe)),
        "median_ratio_stats": float(np.nanmedian(on_stats / safe)),
    }
