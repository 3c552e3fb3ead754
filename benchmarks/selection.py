"""Champion selection (issue 20): hybrid's selection variants vs an Optuna-tuned MLP.

Issue 20: the champion is the maximum of ~1,400 validation scores, so its validation
score flatters it (winner's curse: on digits 99.2-99.4% validation, 94.7-98.3% test).
For each task and seed, on hybrid's own seeded train/validation/test split:

1. **hybrid**, one run per variant of :data:`VARIANTS` (config overrides on the shipped
   config): ``today`` is today's rule (the best validation score wins); the others use
   a separate selection split, K-fold fitness and a final fit on every non-test sample;
   ``smallest+final`` keeps the smallest net within ``selection.epsilon`` of the best
   validation score (issue 19's rule), then the final fit.
   A variant whose keys this tree's config does not know is reported as
   ``n/a (key missing)``; a key set to the value that means "off" (``OFF_VALUES``) is
   dropped instead, so ``today`` runs on any tree.
2. **Optuna TPE** tuning a plain PyTorch MLP (depth 1-3, widths 2-128 log scale,
   relu/tanh, Adam lr 1e-4..1e-1 log scale, 100..3000 minibatch steps of the config's
   ``training.batch_size``), trained on the training split, chosen on the validation
   split, scored on the test split, for the wall time of the ``kfold+final`` run of the
   same task and seed (else ``smallest+final``'s, else ``today``'s, else the config's
   ``time_budget_s``; ``--optuna-budget shipped``: that whole budget). Two rows
   from one study: *accuracy only* (best validation accuracy, ties to fewer parameters)
   and *accuracy + size* (the fewest parameters within 0.5 pt of the best validation
   accuracy). Parameters = weights + biases.

Prints one table (medians over seeds; the gap is the median of the per-seed
``val - test`` gaps, in points), then the issue's targets as PASS/MISS lines, and writes
every per-seed figure to a JSON file (``--out``).

    python benchmarks/selection.py --quick --tasks spirals200 --variants today   # < 2 min
    python benchmarks/selection.py --tasks spirals breast_cancer --variants today \
        --seeds 0 1 2 --jobs 1
    python benchmarks/selection.py                  # everything: hours on 2 cores
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from traceback import format_exc
from typing import Any

import numpy as np
import torch
from quality import machine_line, median
from sklearn.metrics import accuracy_score
from torch import nn

from genomes.serialize import atomic_write
from hybrid.config import SECTIONS, Config, load_config
from hybrid.errors import ConfigError, HybridError
from hybrid.rundir import dumps_json, open_run_dir
from hybrid.search import Search
from hybrid.tasks import Task, load_task

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


@dataclass(frozen=True)
class TimesSteps:
    """An override value of ``factor`` x the config's ``training.steps`` (resolved per task)."""

    factor: int

    def resolve(self, config: Config) -> int:
        """Return the value for this config."""
        return self.factor * config.training.steps

    def __str__(self) -> str:
        return f"{self.factor} x training.steps"


#: The hybrid variants: config overrides on each task's shipped config. Adjust here.
VARIANTS: dict[str, dict[str, Any]] = {
    "today": {
        "task.selection_fraction": 0.0,
        "task.folds": "off",
        "evolution.final_steps": 0,
        "selection.champion": "best",
    },
    "selection": {
        "task.selection_fraction": 0.1,
        "task.folds": "off",
        "evolution.final_steps": 0,
        "selection.champion": "best",
    },
    "kfold": {
        "task.selection_fraction": 0.1,
        "task.folds": 5,
        "evolution.final_steps": 0,
        "selection.champion": "best",
    },
    "kfold+final": {
        "task.selection_fraction": 0.1,
        "task.folds": 5,
        "evolution.final_steps": TimesSteps(5),
        "selection.champion": "best",
    },
    "smallest+final": {  # issue 19's champion: the smallest within epsilon, then the final fit
        "task.selection_fraction": 0.0,
        "task.folds": "off",
        "evolution.final_steps": TimesSteps(5),
        "selection.champion": "smallest_within",
    },
}
#: Keys whose value here means "off" (today's behaviour): dropped, not fatal, on a tree
#: whose config does not know the key yet.
OFF_VALUES: dict[str, Any] = {"task.selection_fraction": 0.0, "task.folds": "off"}
#: The tasks: (shipped config, overrides).
TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "digits": ("digits.toml", {}),
    "spirals": ("spirals.toml", {"task.n_samples": 1000}),
    "breast_cancer": ("breast_cancer.toml", {}),
    "spirals200": ("spirals.toml", {"task.n_samples": 200}),
}
#: ``--quick``: tiny hybrid budgets, a 20-second Optuna study with shorter trials.
QUICK_OVERRIDES: dict[str, Any] = {
    "evolution.generations": 3,
    "training.steps": 30,
    "evolution.time_budget_s": 30.0,
}
QUICK_OPTUNA_S = 20.0
QUICK_MAX_STEPS = 300
#: Optuna's search space.
DEPTHS, WIDTHS, LRS, STEPS = (1, 3), (2, 128), (1e-4, 1e-1), (100, 3000)
#: "accuracy + size": the fewest parameters within this much of the best validation accuracy.
WITHIN = 0.005
OPTUNA_ROWS = {
    "accuracy_only": "Optuna MLP: accuracy only",
    "smallest_within": "Optuna MLP: acc + size (0.5 pt)",
}
#: Slack on comparisons with a target (metrics are float32 values).
EPS = 1e-6
#: Which variant's wall time is Optuna's budget, in order of preference.
BUDGET_FROM = ("kfold+final", "smallest+final", "today")


# ------------------------------------------------------------------ configs
def known_key(dotted: str) -> bool:
    """Return True if ``section.key`` is a key of this tree's config.

    >>> known_key("evolution.final_steps"), known_key("task.no_such_key")
    (True, False)
    """
    section, _, key = dotted.partition(".")
    model = SECTIONS.get(section)
    return model is not None and key in model.model_fields


def variant_config(
    task: str, variant: str, seed: int, runs_dir: Path, quick: bool, device: str
) -> tuple[Config | None, list[str]]:
    """Load the task's shipped config with the variant's overrides for this seed.

    Returns:
        ``(config, [])``, or ``(None, missing)`` when the variant needs keys this
        tree's config lacks (keys at their "off" value are dropped instead).

    Raises:
        ConfigError: any other problem with the overrides.
    """
    file, task_overrides = TASKS[task]
    base = {
        **task_overrides,
        **(QUICK_OVERRIDES if quick else {}),
        "run.seed": seed,
        "run.runs_dir": str(runs_dir),
        "run.name": f"{task}-{variant.replace('+', '_')}-s{seed}",
        "run.threads": 1,
        "run.device": device,
    }
    config = load_config(CONFIGS / file, base)
    extra: dict[str, Any] = {}
    missing: list[str] = []
    for key, value in VARIANTS[variant].items():
        if known_key(key):
            extra[key] = value.resolve(config) if isinstance(value, TimesSteps) else value
        elif key not in OFF_VALUES or OFF_VALUES[key] != value:
            missing.append(key)
    if missing:
        return None, missing
    return load_config(CONFIGS / file, {**base, **extra}), []


# ------------------------------------------------------------------- hybrid
def run_hybrid(job: dict[str, Any]) -> dict[str, Any]:
    """Run one hybrid search (``job``: task, variant, seed, runs_dir, quick, device).

    Returns:
        The job plus ``status`` ("ok", "n/a (key missing)" or "error: ...") and, when
        ok, the champion's test/validation/selection metric, active parameters, wall
        time, generations and stop reason read back from ``best/metrics.json``.
    """
    torch.set_num_threads(1)
    out = dict(job)
    try:
        config, missing = variant_config(
            job["task"],
            job["variant"],
            job["seed"],
            Path(job["runs_dir"]),
            job["quick"],
            job["device"],
        )
    except ConfigError as exc:
        return {**out, "status": f"error: {exc}"}
    if config is None:
        return {**out, "status": "n/a (key missing)", "missing_keys": missing}
    t0 = time.perf_counter()
    try:
        result = Search.start(config, overwrite=True).run()
    except HybridError as exc:
        return {**out, "status": f"error: {exc}"}
    wall = time.perf_counter() - t0
    run = open_run_dir(result.run_dir)
    best = run.read_best_metrics()
    raw = json.loads(run.best_metrics_path.read_text(encoding="utf-8"))
    assert best is not None  # the search has just written it
    return {
        **out,
        "status": "ok",
        "run_dir": str(result.run_dir),
        "metric": best.metric,
        "test": best.test_metric,
        "val": best.val_metric,
        "selection": raw.get("selection_metric"),  # written once task.selection_fraction exists
        "params": best.active_parameters,
        "wall_s": wall,
        "generations": best.generations,
        "stop_reason": best.stop_reason,
        "final_steps": best.final_steps,
    }


# ------------------------------------------------------------------- optuna
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def make_mlp(n_in: int, widths: Iterable[int], n_out: int, activation: str) -> nn.Sequential:
    """Return ``Linear -> act -> ... -> Linear`` with these hidden widths."""
    layers: list[nn.Module] = []
    prev = n_in
    for w in widths:
        layers += [nn.Linear(prev, w), _ACTIVATIONS[activation]()]
        prev = w
    return nn.Sequential(*layers, nn.Linear(prev, n_out))


def n_parameters(model: nn.Module) -> int:
    """Return the model's weights + biases."""
    return sum(p.numel() for p in model.parameters())


def _accuracy(model: nn.Module, X: torch.Tensor, y: np.ndarray) -> float:
    with torch.no_grad():
        return float(accuracy_score(y, model(X).argmax(dim=1).numpy()))


def train_mlp(
    task: Task,
    params: Mapping[str, Any],
    batch_size: int,
    seed: int,
    deadline: float | None = None,
) -> dict[str, Any] | None:
    """Train one MLP with Adam on the training split; score it on validation and test.

    Args:
        task: hybrid's split (standardised features, int class ids).
        params: ``depth``, ``width_0``.., ``activation``, ``lr``, ``steps``.
        batch_size: minibatch size (the whole split if it is smaller).
        seed: seeds the initial weights and the minibatch order.
        deadline: a ``time.perf_counter()`` value; past it training stops unscored.

    Returns:
        ``val``, ``test`` (accuracy) and ``params`` (weights + biases); None if the
        deadline passed first.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    widths = [params[f"width_{i}"] for i in range(params["depth"])]
    model = make_mlp(task.n_inputs, widths, task.n_outputs, params["activation"])
    opt = torch.optim.Adam(model.parameters(), lr=params["lr"])
    X, y = torch.tensor(task.X_train), torch.tensor(task.y_train)  # copies: arrays are read-only
    n, b = len(X), min(batch_size, len(X))
    order = torch.randperm(n, generator=gen)
    pos = 0
    for i in range(params["steps"]):
        if deadline is not None and i % 50 == 0 and time.perf_counter() > deadline:
            return None
        if pos + b > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + b]
        pos += b
        opt.zero_grad()
        nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()
    model.eval()
    return {
        "val": _accuracy(model, torch.tensor(task.X_val), task.y_val),
        "test": _accuracy(model, torch.tensor(task.X_test), task.y_test),
        "params": n_parameters(model),
    }


def choose_trials(trials: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return the two Optuna rows' choices: best validation accuracy, and smallest within 0.5 pt.

    >>> t = [{"val": 0.9, "params": 50, "n": 0}, {"val": 0.904, "params": 900, "n": 1},
    ...      {"val": 0.904, "params": 400, "n": 2}]
    >>> {k: v["n"] for k, v in choose_trials(t).items()}
    {'accuracy_only': 2, 'smallest_within': 0}
    """
    best = max(trials, key=lambda t: (t["val"], -t["params"]))
    near = [t for t in trials if t["val"] >= best["val"] - WITHIN - 1e-12]
    small = min(near, key=lambda t: (t["params"], -t["val"]))
    return {"accuracy_only": best, "smallest_within": small}


def run_optuna(job: dict[str, Any]) -> dict[str, Any]:
    """Tune an MLP with Optuna TPE on hybrid's split (``job``: task, seed, budget_s, quick).

    The budget is kept to the second: ``study.optimize``'s timeout only stops new
    trials, so a trial still training at the deadline is stopped and pruned (unless
    none has finished yet: the first trial always counts).

    Returns:
        The job plus every finished trial (parameters, val, test, size), the study's
        wall time, the pruned trials and the two rows' choices.
    """
    import optuna

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    file, task_overrides = TASKS[job["task"]]
    config = load_config(CONFIGS / file, {**task_overrides, "run.seed": job["seed"]})
    task = load_task(config.task, job["seed"])
    if task.kind != "classification":
        raise ValueError(
            f"{job['task']}: the Optuna baseline scores accuracy; expected a classification task"
        )
    max_steps = QUICK_MAX_STEPS if job["quick"] else STEPS[1]
    trials: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        depth = trial.suggest_int("depth", *DEPTHS)
        for i in range(depth):
            trial.suggest_int(f"width_{i}", *WIDTHS, log=True)
        trial.suggest_categorical("activation", list(_ACTIVATIONS))
        trial.suggest_float("lr", *LRS, log=True)
        trial.suggest_int("steps", STEPS[0], max_steps)
        seed = job["seed"] * 100_003 + trial.number
        deadline = t0 + job["budget_s"] if trials else None
        scores = train_mlp(task, trial.params, config.training.batch_size, seed, deadline)
        if scores is None:
            raise optuna.TrialPruned()
        trials.append({"n": trial.number, **trial.params, **scores})
        return scores["val"]

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=job["seed"])
    )
    study.optimize(objective, timeout=job["budget_s"])
    wall = time.perf_counter() - t0
    return {
        **job,
        "status": "ok",
        "wall_s": wall,
        "n_trials": len(trials),
        "n_pruned": len(study.trials) - len(trials),
        "trials": trials,
        "chosen": choose_trials(trials),
    }


# ------------------------------------------------------------------ running
def _init_worker() -> None:
    torch.set_num_threads(1)
    logging.getLogger("optuna").setLevel(logging.WARNING)


def _guarded(fn: Callable[[dict[str, Any]], dict[str, Any]], job: dict[str, Any]) -> dict[str, Any]:
    """Return ``fn(job)``; an unexpected exception becomes an error row, not a lost benchmark.

    The row's ``status`` names the exception; ``traceback`` holds it for the JSON.
    """
    try:
        return fn(job)
    except Exception as exc:  # a bug in one run must not discard hours of others' results
        return {**job, "status": f"error: {type(exc).__name__}: {exc}", "traceback": format_exc()}


def run_jobs(
    fn: Callable[[dict[str, Any]], dict[str, Any]], jobs: list[dict[str, Any]], n: int
) -> list[dict[str, Any]]:
    """Run ``fn`` over ``jobs``: in ``n`` spawned processes, or here if ``n`` or the jobs are 1."""
    results = []
    if n <= 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(_guarded(fn, job))
            _log(results[-1])
        return results
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker) as pool:
        for r in pool.map(partial(_guarded, fn), jobs):
            results.append(r)
            _log(r)
    return results


def _log(r: dict[str, Any]) -> None:
    what = r.get("variant", "optuna")
    if r.get("status") != "ok":
        msg = r.get("status")
    elif what == "optuna":
        msg = (
            f"{r['n_trials']} trials (+{r['n_pruned']} cut at the deadline) in {r['wall_s']:.0f} s"
        )
    else:
        msg = f"test {_pct(r['test'])}%, {r['params']} params, {r['wall_s']:.0f} s"
    print(f"  {r['task']} {what} seed {r['seed']}: {msg}", file=sys.stderr, flush=True)


def optuna_budget(
    hybrid: list[dict[str, Any]], task: str, seed: int, quick: bool, shipped_budget: bool = False
) -> tuple[float | None, str]:
    """Return Optuna's wall budget for one task and seed, and where it came from.

    The wall time of the ``kfold+final`` run of that task and seed, else
    ``smallest+final``'s, else ``today``'s (:data:`BUDGET_FROM`); else the shipped
    config's ``evolution.time_budget_s`` (no variant ran, or ``--optuna-budget
    shipped``: Optuna gets the whole time the config allows the search, however soon
    the search stops); ``--quick``: :data:`QUICK_OPTUNA_S`. None when there is none.
    """
    if quick:
        return QUICK_OPTUNA_S, "--quick"
    walls = {
        r["variant"]: r["wall_s"]
        for r in hybrid
        if r["task"] == task and r["seed"] == seed and r["status"] == "ok" and not shipped_budget
    }
    for v in BUDGET_FROM:
        if v in walls:
            return walls[v], f"hybrid {v} wall time"
    file, task_overrides = TASKS[task]
    shipped = load_config(CONFIGS / file, task_overrides).evolution.time_budget_s
    why = "--optuna-budget shipped" if shipped_budget else "no hybrid wall time"
    return shipped, f"evolution.time_budget_s ({why})"


# ------------------------------------------------------------------- report
def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _med(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return median(vals) if vals else None


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the medians over seeds of one method on one task (rows: one per seed, status ok)."""
    gaps = [
        r["val"] - r["test"] for r in rows if r.get("val") is not None and r.get("test") is not None
    ]
    return {
        "test": _med([r.get("test") for r in rows]),
        "params": _med([r.get("params") for r in rows]),
        "val": _med([r.get("val") for r in rows]),
        "selection": _med([r.get("selection") for r in rows]),
        "gap_pt": _med([100 * g for g in gaps]),
        "wall_s": _med([r.get("wall_s") for r in rows]),
        "seeds": [r["seed"] for r in rows],
    }


def method_rows(
    hybrid: list[dict[str, Any]], optuna: list[dict[str, Any]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Return ``(task, method) -> summary`` (``{"status": ...}`` for one that did not run).

    Task by task: the hybrid variants in the order run, then the two Optuna rows.
    """
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for task in dict.fromkeys(r["task"] for r in [*hybrid, *optuna]):
        for variant in dict.fromkeys(r["variant"] for r in hybrid if r["task"] == task):
            runs = [r for r in hybrid if (r["task"], r["variant"]) == (task, variant)]
            ok = [r for r in runs if r["status"] == "ok"]
            out[(task, variant)] = summarise(ok) if ok else {"status": runs[0]["status"]}
        runs = [r for r in optuna if r["task"] == task]
        ok = [r for r in runs if r["status"] == "ok"]
        for row in OPTUNA_ROWS if runs else ():
            per_seed = [{**r["chosen"][row], "seed": r["seed"], "wall_s": r["wall_s"]} for r in ok]
            out[(task, row)] = summarise(per_seed) if ok else {"status": runs[0]["status"]}
    return out


def table(summary: dict[tuple[str, str], dict[str, Any]]) -> str:
    """Return the markdown table of every task x method."""
    lines = [
        "| task | method | test % | active params | val % | sel % | gap (val-test) pt | wall s "
        "| seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, method), s in summary.items():
        name = OPTUNA_ROWS.get(method, f"hybrid {method}")
        if "status" in s:
            lines.append(
                f"| {task} | {name} | {s['status'][:60]} | | | | | | |"
            )  # errors: see the JSON
            continue
        gap = "n/a" if s["gap_pt"] is None else f"{s['gap_pt']:+.1f}"
        lines.append(
            f"| {task} | {name} | {_pct(s['test'])} | {s['params']:,.0f} | {_pct(s['val'])} | "
            f"{_pct(s['selection'])} | {gap} | {s['wall_s']:.0f} | {len(s['seeds'])} |"
        )
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def targets(summary: dict[tuple[str, str], dict[str, Any]], variants: list[str]) -> list[str]:
    """Return issue 20's targets, one PASS/MISS line each (medians over seeds)."""
    got = {k: s for k, s in summary.items() if "status" not in s}
    ran = [v for v in variants if any((t, v) in got for t in TASKS)]
    lines = []
    for v in ran:
        for t in ("digits", "spirals"):
            s = got.get((t, v))
            if s is not None and s["gap_pt"] is not None:
                lines.append(
                    f"{_verdict(s['gap_pt'] <= 1.0 + 100 * EPS)} gap <= 1.0 pt, {t}, hybrid {v}: "
                    f"{s['gap_pt']:+.1f} pt"
                )
        s = got.get(("digits", v))
        if s is not None:
            ok = s["test"] >= 0.98 - EPS and s["params"] <= 1000
            lines.append(
                f"{_verdict(ok)} digits >= 98.0% test with <= 1,000 params, hybrid {v}: "
                f"{_pct(s['test'])}% with {s['params']:,.0f}"
            )
        for t in ("digits", "spirals"):
            s = got.get((t, v))
            for row, label in OPTUNA_ROWS.items():
                o = got.get((t, row))
                if s is None or o is None:
                    continue
                ok = s["test"] >= o["test"] - EPS and s["params"] <= o["params"] / 3
                lines.append(
                    f"{_verdict(ok)} {t}, hybrid {v} >= {label} with <= 1/3 params: "
                    f"{_pct(s['test'])}% / {s['params']:,.0f} vs "
                    f"{_pct(o['test'])}% / {o['params']:,.0f}"
                )
        if v != "today":
            pairs = [
                (t, got[(t, v)], got[(t, "today")])
                for t in TASKS
                if (t, v) in got and (t, "today") in got
            ]
            if pairs:
                ok = all(s["test"] >= b["test"] - EPS for _, s, b in pairs)
                per = ", ".join(f"{t} {_pct(s['test'])} vs {_pct(b['test'])}" for t, s, b in pairs)
                lines.append(
                    f"{_verdict(ok)} hybrid {v} test >= today on all four tasks "
                    f"({len(pairs)} of {len(TASKS)} run): {per}"
                )
    return lines or ["(no target applies to the tasks and variants run)"]


# --------------------------------------------------------------------- main
def _known(choices: Iterable[str], what: str) -> Callable[[str], str]:
    names = list(choices)

    def check(v: str) -> str:
        if v not in names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {v!r}: expected one of {', '.join(names)}"
            )
        return v

    return check


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", type=_known(TASKS, "task"), default=list(TASKS))
    p.add_argument(
        "--variants", nargs="+", type=_known(VARIANTS, "variant"), default=list(VARIANTS)
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument(
        "--jobs", type=int, default=2, help="parallel processes, torch threads 1 each (default 2)"
    )
    p.add_argument(
        "--runs-dir", type=Path, default=None, help="where the hybrid runs go (default: a temp dir)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the JSON of raw results (default benchmarks/selection.json; --quick: the runs dir)",
    )
    p.add_argument(
        "--device", default="cpu", help="hybrid's run.device (default cpu; the MLPs run on cpu)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 3 generations, 30 steps, 1 seed, 20 s Optuna",
    )
    p.add_argument("--no-optuna", action="store_true", help="hybrid variants only")
    p.add_argument(
        "--optuna-budget",
        choices=("hybrid", "shipped"),
        default="hybrid",
        help="Optuna's wall time: the hybrid run's (default) or the config's whole time_budget_s",
    )
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs: expected an integer >= 1, got {args.jobs}")
    seeds = args.seeds[:1] if args.quick else args.seeds
    torch.set_num_threads(1)
    start_line = machine_line(torch.get_num_threads())
    print(start_line, flush=True)
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="selbench-"))
    out = args.out or (
        runs_dir / "selection.json" if args.quick else ROOT / "benchmarks" / "selection.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)  # a bad --out fails now, not after hours
    order = [v for v in VARIANTS if v in args.variants]
    jobs = [
        {
            "task": t,
            "variant": v,
            "seed": s,
            "runs_dir": str(runs_dir),
            "quick": args.quick,
            "device": args.device,
        }
        for t in args.tasks
        for s in seeds
        for v in order
    ]
    hybrid = run_jobs(run_hybrid, jobs, args.jobs)
    optuna: list[dict[str, Any]] = []
    if not args.no_optuna:
        ojobs, skipped = [], []
        for t in args.tasks:
            for s in seeds:
                budget, source = optuna_budget(hybrid, t, s, args.quick, args.optuna_budget == "shipped")
                job = {"task": t, "seed": s, "budget_s": budget, "budget_from": source}
                job["quick"] = args.quick
                (ojobs if budget is not None else skipped).append(job)
        optuna = run_jobs(run_optuna, ojobs, args.jobs)
        optuna += [{**j, "status": "n/a (no budget)"} for j in skipped]
    summary = method_rows(hybrid, optuna)
    text = table(summary)
    target_lines = targets(summary, order)
    end_line = machine_line(torch.get_num_threads())
    print(text)
    print("\ntargets (issue 20; medians over seeds):")
    print("\n".join(f"  {line}" for line in target_lines))
    print(end_line)
    record = {
        "command": " ".join(
            ["python", "benchmarks/selection.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine_start": start_line,
        "machine_end": end_line,
        "seeds": seeds,
        "quick": args.quick,
        "variants": {
            v: {k: str(x) if isinstance(x, TimesSteps) else x for k, x in VARIANTS[v].items()}
            for v in order
        },
        "tasks": {t: {"config": TASKS[t][0], "overrides": TASKS[t][1]} for t in args.tasks},
        "hybrid": hybrid,
        "optuna": optuna,
        "summary": [{"task": t, "method": m, **s} for (t, m), s in summary.items()],
        "targets": target_lines,
    }
    atomic_write(out, dumps_json(record) + "\n")
    print(f"raw results: {out}")


if __name__ == "__main__":
    main()
