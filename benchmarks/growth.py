"""Growing where the bottleneck is (issue 15): growth methods side by side.

One table, on hybrid's own seeded train/validation/test splits (the shipped
``configs/digits.toml`` and ``configs/spirals.toml`` ``[task]`` tables, features
standardised with training statistics by :func:`hybrid.tasks.load_task`): per task and
method, test accuracy, parameters (weights + biases of the final network), live
parameters (those that can change the output) and the wall time of the whole growth +
training run (data loading excluded), as the median over seeds and per seed.

Methods are entries of :data:`METHODS`, ``run(task_name, seed) -> {"accuracy",
"params", "wall_s", ...}``. Today there are two, both gromo (``gromo`` 0.1.0, the
library of TINY, Verbockhaven et al., TMLR 2024), used the way its tutorials use it
and grown from one hidden neuron:

1. A ``GrowingMLP`` ``in -> 1 hidden (ReLU) -> out`` (one growable layer: the output
   layer, whose new inputs are new hidden neurons), after ``torch.manual_seed(seed)``.
2. Training: Adam (:attr:`GromoRecipe.lr`), shuffled minibatches of the training
   split, mean cross-entropy; :attr:`GromoRecipe.epochs` epochs before each growth step.
3. :attr:`GromoRecipe.growth_steps` growth steps: ``init_computation``; one
   forward/backward pass over a statistics batch (the whole training split) with a
   **sum**-reduced cross-entropy; ``update_computation``; ``compute_optimal_updates``
   with TINY's settings (``compute_delta=False, use_covariance=True,
   use_projection=True``, gromo's default thresholds, at most
   :attr:`GromoRecipe.max_new` neurons); ``reset_computation``.
4. Amplitude: the new neurons' fan-in and fan-out are scaled by ``gamma``
   (``set_scaling_factor``), chosen by a line search over :data:`GAMMAS` on a held-out
   batch (the validation split; ``extended_forward``, mean cross-entropy), then
   ``apply_change`` adds them. ``gromo``: a step whose best ``gamma`` is 0 still adds
   its neurons, with zero weights, as gromo's tutorials do (counted in ``params``,
   not in ``live_params``). ``gromo_capped``: such a step adds nothing, and growth
   stops before the network passes the issue's parameter target (digits 1,300,
   spirals 150). The JSON records every chosen ``gamma``.
5. A fresh Adam after every step that added neurons (the grown layers' tensors are
   new, so no optimiser state carries over), :attr:`GromoRecipe.final_epochs` epochs
   after the last step; the test split is scored once, at the end.

The settings (:data:`RECIPES`, :data:`CAPPED_RECIPES`) are those with the best median
validation accuracy over seeds 0-2 among the ones tried within about 10 s per run
(one torch thread, this 2-core machine); the figures are in ``benchmarks/RESULTS.md``.

    python benchmarks/growth.py --tasks digits spirals --seeds 0 1 2 --methods gromo
    python benchmarks/growth.py --tasks digits --seeds 0 --json /tmp/growth.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import growth_hybrid
import numpy as np
import pandas as pd
import torch
from quality import machine_line
from torch import nn

from genomes.serialize import atomic_write
from hybrid.config import load_config
from hybrid.errors import HybridError
from hybrid.rundir import dumps_json
from hybrid.tasks import Task, load_task

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
#: The tasks: the shipped config whose ``[task]`` table gives the data and split.
TASKS: dict[str, str] = {"digits": "digits.toml", "spirals": "spirals.toml"}
#: The line search's amplitudes for the new neurons (0 = the step changes nothing).
GAMMAS: tuple[float, ...] = (0.0,) + tuple(2.0**k for k in range(-8, 13))


@dataclass(frozen=True)
class GromoRecipe:
    """One task's settings of the gromo baseline (see the module docstring).

    Attributes:
        lr: Adam's learning rate.
        batch_size: training minibatch size.
        epochs: training epochs before each growth step.
        growth_steps: number of growth steps.
        max_new: most neurons one growth step adds.
        final_epochs: training epochs after the last growth step.
        skip_zero: when the line search picks ``gamma = 0``, discard the step's
            neurons (``delete_update``) instead of adding them with zero weights.
        max_params: stop growing before the network's parameters would pass this
            (None: no cap); a step adds at most the neurons that still fit.
    """

    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 2
    growth_steps: int = 10
    max_new: int = 2
    final_epochs: int = 10
    skip_zero: bool = False
    max_params: int | None = None


#: ``gromo``: per task, the settings with gromo's best median validation accuracy
#: (seeds 0-2) among those tried within ~10 s (lr, epochs, growth steps, neurons per
#: step, batch size); exact ties go to fewer parameters, then to the shorter wall time.
RECIPES: dict[str, GromoRecipe] = {
    "digits": GromoRecipe(lr=3e-3, batch_size=64, epochs=1, growth_steps=40, max_new=2,
                          final_epochs=30),
    "spirals": GromoRecipe(lr=3e-2, batch_size=1024, epochs=10, growth_steps=150, max_new=2,
                           final_epochs=500),
}
#: ``gromo_capped``: at most issue 15's parameter target per task (digits 1,300,
#: spirals 150), a gamma = 0 step adding nothing (no budget goes to dead neurons);
#: epochs and neurons per step chosen by the same rule.
CAPPED_RECIPES: dict[str, GromoRecipe] = {
    "digits": GromoRecipe(lr=3e-3, batch_size=64, epochs=1, growth_steps=40, max_new=1,
                          final_epochs=30, skip_zero=True, max_params=1300),
    "spirals": GromoRecipe(lr=3e-2, batch_size=1024, epochs=25, growth_steps=150, max_new=2,
                           final_epochs=500, skip_zero=True, max_params=150),
}


# ------------------------------------------------------------------- data
def load(task_name: str, seed: int) -> Task:
    """Return hybrid's seeded split of a task (the shipped config's ``[task]`` table).

    Args:
        task_name: a key of :data:`TASKS`.
        seed: the run's seed (data noise and split).

    Raises:
        ValueError: the task is not one of :data:`TASKS`.
    """
    if task_name not in TASKS:
        raise ValueError(f"task {task_name!r}: expected one of {', '.join(TASKS)}")
    config = load_config(CONFIGS / TASKS[task_name], {"run.seed": seed})
    return load_task(config.task, seed)


def tensors(task: Task) -> dict[str, torch.Tensor]:
    """Return the task's splits as torch tensors (``X_train``, ``y_train``, ...)."""
    names = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
    return {n: torch.from_numpy(np.array(getattr(task, n))) for n in names}


def count_params(model: nn.Module) -> int:
    """Return the weights + biases of a network's layers (gromo: the layers' own tensors)."""
    return sum(p.numel() for p in model.parameters())


def live_params(model: Any) -> int:
    """Return the parameters of a one-hidden-layer gromo MLP that can change its output.

    A hidden neuron is dead when its fan-out is all zero, or its fan-in is all zero
    and its bias is <= 0 (a ReLU that outputs 0 for every input). The output biases
    always count.
    """
    hidden, out = model.layers[0], model.layers[1]
    fan_in_zero = (hidden.weight == 0).all(dim=1) & (hidden.bias <= 0)
    alive = (out.weight != 0).any(dim=0) & ~fan_in_zero
    per_neuron = hidden.in_features + 1 + out.out_features
    return int(alive.sum()) * per_neuron + out.out_features


# ------------------------------------------------------------------ gromo
def _train_epochs(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    X: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    batch_size: int,
    gen: torch.Generator,
) -> None:
    """Train ``epochs`` epochs of shuffled minibatches with mean cross-entropy."""
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=gen)
        for start in range(0, len(X), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad()
            loss_fn(model(X[idx]), y[idx]).backward()
            opt.step()


def _gromo_grow(
    model: Any, data: dict[str, torch.Tensor], max_new: int, skip_zero: bool
) -> tuple[float, bool]:
    """Run one TINY growth step on a gromo ``GrowingMLP``.

    Statistics on the whole training split (sum-reduced loss), new neurons in closed
    form, gamma by a line search on the validation split, then ``apply_change``.

    Returns:
        ``(gamma, grown)``: the chosen amplitude and whether neurons were added.
    """
    model.eval()
    model.init_computation()
    model.zero_grad()
    loss = nn.CrossEntropyLoss(reduction="sum")(model(data["X_train"]), data["y_train"])
    loss.backward()
    model.update_computation()
    model.compute_optimal_updates(
        compute_delta=False,
        use_covariance=True,
        use_projection=True,
        maximum_added_neurons=max_new,
    )
    model.reset_computation()
    model.select_best_update()
    model.zero_grad()
    best_gamma, best_loss = 0.0, float("inf")
    loss_fn = nn.CrossEntropyLoss()
    with torch.no_grad():
        for gamma in GAMMAS:
            model.set_scaling_factor(gamma)
            val = loss_fn(model.extended_forward(data["X_val"]), data["y_val"]).item()
            if val < best_loss:
                best_gamma, best_loss = gamma, val
    if best_gamma == 0.0 and skip_zero:
        model.currently_updated_layer.delete_update()
        model.currently_updated_layer_index = None
        return best_gamma, False
    model.set_scaling_factor(best_gamma)
    model.apply_change()
    return best_gamma, True


def _room(model: Any, recipe: GromoRecipe) -> int:
    """Return how many neurons the next growth step may add under the recipe's caps."""
    if recipe.max_params is None:
        return recipe.max_new
    hidden, out = model.layers[0], model.layers[1]
    per_neuron = hidden.in_features + 1 + out.out_features
    return max(0, min(recipe.max_new, (recipe.max_params - count_params(model)) // per_neuron))


def grow_gromo(task_name: str, seed: int, recipe: GromoRecipe) -> dict[str, Any]:
    """Grow and train one gromo ``GrowingMLP`` from one hidden neuron (the module's recipe).

    Args:
        task_name: a key of :data:`TASKS`.
        seed: the split's and the network's seed.
        recipe: the schedule and settings.

    Returns:
        ``accuracy`` (test), ``params``, ``live_params`` (:func:`live_params`),
        ``wall_s`` (growth + training + the test forward; data loading excluded),
        ``val_accuracy``, ``hidden`` (final hidden neurons), ``gammas`` (chosen per
        growth step), ``gamma_zero`` (steps that chose 0) and ``recipe``.

    Raises:
        ValueError: an unknown task.
        HybridError: gromo is not installed.
    """
    try:
        from gromo.containers.growing_mlp import GrowingMLP
    except ImportError:
        raise HybridError("method gromo: package gromo is missing; expected pip install gromo==0.1.0") from None

    task = load(task_name, seed)
    data = tensors(task)
    X, y = data["X_train"], data["y_train"]
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = GrowingMLP(
        task.n_inputs, task.n_outputs, hidden_size=1, number_hidden_layers=1, activation=nn.ReLU()
    )
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    gammas: list[float] = []
    for _ in range(recipe.growth_steps):
        _train_epochs(model, opt, X, y, recipe.epochs, recipe.batch_size, gen)
        room = _room(model, recipe)
        if room == 0:
            continue
        gamma, grown = _gromo_grow(model, data, room, recipe.skip_zero)
        gammas.append(gamma)
        if grown:  # the grown layers' tensors are new: fresh optimiser state
            opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    _train_epochs(model, opt, X, y, recipe.final_epochs, recipe.batch_size, gen)
    model.eval()
    with torch.no_grad():
        test_pred = model(data["X_test"]).argmax(dim=1)
        wall = time.perf_counter() - t0
        val_pred = model(data["X_val"]).argmax(dim=1)
    return {
        "accuracy": float((test_pred == data["y_test"]).float().mean()),
        "params": count_params(model),
        "live_params": live_params(model),
        "wall_s": wall,
        "val_accuracy": float((val_pred == data["y_val"]).float().mean()),
        "hidden": int(model.layers[0].out_features),
        "gammas": gammas,
        "gamma_zero": sum(g == 0.0 for g in gammas),
        "recipe": asdict(recipe),
    }


def run_gromo(task_name: str, seed: int) -> dict[str, Any]:
    """Run gromo with the task's :data:`RECIPES` entry (see :func:`grow_gromo`)."""
    return grow_gromo(task_name, seed, RECIPES.get(task_name, GromoRecipe()))


def run_gromo_capped(task_name: str, seed: int) -> dict[str, Any]:
    """Run gromo with the task's :data:`CAPPED_RECIPES` entry (see :func:`grow_gromo`)."""
    return grow_gromo(task_name, seed, CAPPED_RECIPES.get(task_name, GromoRecipe()))


#: The methods: ``run(task_name, seed) -> {"accuracy", "params", "wall_s", ...}``; hybrid's
#: (grow mode, blind search, bottleneck search) come from :mod:`growth_hybrid`.
METHODS: dict[str, Callable[[str, int], dict[str, Any]]] = {
    "gromo": run_gromo,
    "gromo_capped": run_gromo_capped,
    **{name: growth_hybrid.method(name) for name in growth_hybrid.CONFIG},
}


# ------------------------------------------------------------------- table
def _warm_up() -> None:
    """Run one tiny Adam step so torch's first-call set-up is not timed in the first run."""
    layer = nn.Linear(4, 2)
    opt = torch.optim.Adam(layer.parameters())
    nn.functional.cross_entropy(layer(torch.zeros(8, 4)), torch.zeros(8, dtype=torch.long)).backward()
    opt.step()


def _per_seed(values: pd.Series, fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Return one row per task and method: medians over seeds, then the per-seed values.

    Args:
        records: one dict per run with ``task``, ``method``, ``seed`` and the method's
            ``accuracy``, ``params``, ``wall_s`` (``live_params`` when it has one).
    """
    df = pd.DataFrame(records).sort_values(["task", "method", "seed"])
    df["live_params"] = df["live_params"].fillna(df["params"]) if "live_params" in df else df["params"]
    rows = []
    for (task, method), g in df.groupby(["task", "method"], sort=False):
        acc = 100.0 * g["accuracy"]
        rows.append({
            "task": task,
            "method": method,
            "seeds": " ".join(str(s) for s in g["seed"]),
            "test acc %": round(float(acc.median()), 1),
            "acc per seed": _per_seed(acc, ".1f"),
            "params": int(g["params"].median()),
            "params per seed": _per_seed(g["params"], "d"),
            "live params": int(g["live_params"].median()),
            "wall s": round(float(g["wall_s"].median()), 2),
            "wall per seed": _per_seed(g["wall_s"], ".2f"),
            **_growth_columns(g),
        })
    return pd.DataFrame(rows)


def _growth_columns(g: pd.DataFrame) -> dict[str, Any]:
    """Bottleneck growth events (all seeds pooled) and the statistics' share of the search."""
    if "events" not in g or g["events"].isna().all():
        return {}
    events = [e for ev in g["events"] if isinstance(ev, list) for e in ev]
    s = growth_hybrid.event_summary(events)
    out: dict[str, Any] = {"events": s["events"]}
    if s["events"]:
        out.update({
            "drop>0 held-out %": round(100 * s["positive_val"], 1),
            "drop>0 stats %": round(100 * s["positive_stats"], 1),
            # the noiseless spirals: the drop over 100,000 new points of the curves
            "drop>0 fresh %": None if s["positive_fresh"] is None else round(100 * s["positive_fresh"], 1),
            "real/pred fresh": None if s["median_ratio_fresh"] is None else round(s["median_ratio_fresh"], 2),
            "real/pred held-out": round(s["median_ratio_val"], 2),
            "real/pred stats": round(s["median_ratio_stats"], 2),
            "real/pred line": round(s["median_ratio_line"], 2),
        })
    if "line_searches" in g and g["line_searches"].notna().any():
        out["grown / line searches"] = f"{int(g['line_searches_grown'].sum())} / {int(g['line_searches'].sum())}"
    search = g["search_s"].sum()
    out["stats+solve % of search"] = round(100 * g["statistics_s"].sum() / search, 1) if search else None
    out["line search % of search"] = round(100 * g["line_search_s"].sum() / search, 1) if search else None
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(
        description="Growth methods side by side on hybrid's splits (issue 15): test "
        "accuracy, parameters, wall time; median and per seed."
    )
    p.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=sorted(METHODS))
    p.add_argument("--json", type=Path, default=None, help="also write every run's figures here")
    p.add_argument("--no-pairs", action="store_true", help="skip the informed-vs-blind pairs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every method on every task and seed, one at a time; print one table.

    Returns:
        The exit status: 0, or a ``HybridError``'s exit code after one line on stderr.
    """
    args = parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning, module="gromo")
    load_before = os.getloadavg()
    _warm_up()
    records: list[dict[str, Any]] = []
    try:
        for task in args.tasks:
            for method in args.methods:
                for seed in args.seeds:
                    result = METHODS[method](task, seed)
                    records.append({"task": task, "method": method, "seed": seed, **result})
                    print(f"  {task} {method} seed {seed}: test {100 * result['accuracy']:.1f}% "
                          f"at {result['params']} params, {result['wall_s']:.2f} s", flush=True)
    except HybridError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    pairs = []
    if not args.no_pairs:
        for rec in records:
            parents = rec.get("parents")
            if rec["method"] in ("search_bottleneck", "hybrid_grow") and parents:
                res = growth_hybrid.pairs(parents, rec["task"], rec["seed"], rec["method"])
                pairs.append({"task": rec["task"], "parents from": rec["method"], "seed": rec["seed"], **res})
    for rec in records:
        rec.pop("parents", None)
    load_after = os.getloadavg()
    threads = torch.get_num_threads()
    if args.json is not None:
        out = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "torch_threads": threads,
            "load_average_before": list(load_before),
            "load_average_after": list(load_after),
            "runs": records,
            "pairs": pairs,
        }
        atomic_write(args.json, dumps_json(out))
        print(f"wrote {args.json}")
    print(table(records).to_string(index=False))
    if pairs:
        print("informed vs blind (same parent, node and added width; 50 Adam steps; the bottleneck "
              "child's loss lower; wins: training loss, wins_val: validation loss):")
        print(pd.DataFrame(pairs).to_string(index=False))
    print(f"torch threads {threads}; load average before "
          f"{', '.join(f'{v:.2f}' for v in load_before)}, after "
          f"{', '.join(f'{v:.2f}' for v in load_after)}")
    print(machine_line(threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
