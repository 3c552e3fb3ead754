"""Side by side on every built-in task: hybrid search vs fixed MLPs vs neat-python.

For each task and seed, on the same seeded train/validation/test splits:

1. **hybrid**: a search with the task's shipped config (``configs/<task>.toml``);
   the champion is scored on the test split. Its gradient budget is counted from
   the lineage: ``training.steps`` x the genomes on its path to the root (elite
   copies included), i.e. every step its weights received.
2. **fixed MLPs**: a grid (1 and 2 hidden layers, widths 2..64, the config's
   activation) in *plain torch* (``nn.Linear`` + AdamW with the config's lr,
   weight decay on weights only, batch size), each trained for exactly the
   champion's lineage step count; final weights scored on the test split.
3. **neat-python** (``pip install -e ".[bench]"``): fitness = validation
   accuracy, the same wall-clock budget as that seed's hybrid search; its best
   genome is scored on the test split. Parameters = enabled connections + nodes.

Prints one table per task (medians over seeds), writes the quality section of
``RESULTS.md`` and one accuracy-vs-parameters plot per task. ``--quick`` runs one
seed with short budgets (a few minutes) and writes to a temporary folder.

    python benchmarks/quality.py --quick
    python benchmarks/quality.py               # full: about 40 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import hybrid.lineage
from hybrid.activations import TORCH_ACTIVATIONS
from hybrid.backends import evaluate_members
from hybrid.config import load_config
from hybrid.rundir import open_run_dir
from hybrid.search import Search
from hybrid.tasks import Task, load_task
from hybrid.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
TASKS = ("xor", "spirals", "circles", "digits", "breast_cancer", "wine")
#: Seeds per task in the full mode: 3 for the slow tasks keeps it under ~45 minutes on 2 cores.
FULL_SEEDS = {"xor": 5, "spirals": 3, "circles": 3, "digits": 2, "breast_cancer": 3, "wine": 3}
FULL_WIDTHS = (2, 4, 8, 16, 32, 64)
QUICK_WIDTHS = (2, 8, 32)
#: Quick mode caps every hybrid search (and so neat-python's budget) at this.
QUICK_BUDGET_S = 10.0
#: The targets of issue 8: (minimum test accuracy, maximum active parameters).
#: breast_cancer: 97.4% is 111 of the 114 test tumours (0.97368).
TARGETS = {"spirals": (1.0, 300), "digits": (0.975, 1200), "breast_cancer": (0.9736, 68)}


# ----------------------------------------------------------------- machine
def config_override(item: str) -> tuple[str, Any]:
    """Parse one ``--set KEY=VALUE`` (an argparse ``type``): the dotted key and its JSON value."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(
            f"{item!r}: VALUE should be JSON, e.g. 0.5, [4, 16] or '\"text\"'"
        ) from None


def machine_line(threads: int) -> str:
    """Describe the machine, torch and the thread count (printed with every table)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"CPU: {cpu}, {os.cpu_count()} cores (shared with other jobs; load average {load}), "
        f"torch {torch.__version__}, torch threads {threads}, Python {platform.python_version()}"
    )


def write_section(path: Path, name: str, text: str) -> None:
    """Replace (or append) the ``name`` section of a markdown file, between markers."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    old = path.read_text() if path.is_file() else "# Benchmarks: hybrid vs the alternatives\n\n"
    if start in old and end in old:
        pre, rest = old.split(start, 1)
        after = rest.split(end, 1)[1]
        new = pre + block + (after[1:] if after.startswith("\n") else after)  # keeps the blank line after
    else:
        new = old.rstrip() + "\n\n" + block
    path.write_text(new)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


# -------------------------------------------------------------- neat-python
_NEAT_CONFIG = """\
[NEAT]
fitness_criterion      = max
fitness_threshold      = {threshold}
pop_size               = {pop}
reset_on_extinction    = True
no_fitness_termination = False

[DefaultGenome]
num_inputs              = {n_in}
num_outputs             = {n_out}
num_hidden              = 0
feed_forward            = True
initial_connection      = full_direct
activation_default      = tanh
activation_mutate_rate  = 0.1
activation_options      = tanh sigmoid relu sin gauss
aggregation_default     = sum
aggregation_mutate_rate = 0.0
aggregation_options     = sum
bias_init_mean          = 0.0
bias_init_stdev         = 1.0
bias_init_type          = gaussian
bias_max_value          = 30.0
bias_min_value          = -30.0
bias_mutate_power       = 0.5
bias_mutate_rate        = 0.7
bias_replace_rate       = 0.1
response_init_mean      = 1.0
response_init_stdev     = 0.0
response_init_type      = gaussian
response_max_value      = 30.0
response_min_value      = -30.0
response_mutate_power   = 0.0
response_mutate_rate    = 0.0
response_replace_rate   = 0.0
weight_init_mean        = 0.0
weight_init_stdev       = 1.0
weight_init_type        = gaussian
weight_max_value        = 30.0
weight_min_value        = -30.0
weight_mutate_power     = 0.5
weight_mutate_rate      = 0.8
weight_replace_rate     = 0.1
enabled_default         = True
enabled_mutate_rate     = 0.01
enabled_rate_to_true_add  = 0.0
enabled_rate_to_false_add = 0.0
compatibility_disjoint_coefficient = 1.0
compatibility_weight_coefficient   = 0.5
conn_add_prob           = 0.5
conn_delete_prob        = 0.5
node_add_prob           = 0.2
node_delete_prob        = 0.2
single_structural_mutation = False
structural_mutation_surer  = default

[DefaultSpeciesSet]
compatibility_threshold = 3.0

[DefaultStagnation]
species_fitness_func = max
max_stagnation       = 20
species_elitism      = 2

[DefaultReproduction]
elitism            = 2
survival_threshold = 0.2
min_species_size   = 2
"""


@dataclass
class NeatResult:
    """What one neat-python run reached."""

    fitness: float  # best fitness (accuracy on the fitness split)
    test: float
    params: int
    wall_s: float
    generations: int
    evaluations: int
    solved_s: float | None = None  # wall time when fitness first reached the threshold


def _neat():
    try:
        import neat
    except ImportError:
        sys.exit('neat-python is missing: pip install -c constraints.txt -e ".[bench]"')
    return neat


def _accuracy(neat, genome, config, X: list[list[float]], y: np.ndarray) -> float:
    net = neat.nn.FeedForwardNetwork.create(genome, config)
    hits = sum(int(np.argmax(net.activate(x))) == t for x, t in zip(X, y.tolist(), strict=True))
    return hits / len(X)


def run_neat(
    task: Task,
    seed: int,
    budget_s: float,
    fit_split: str = "val",
    threshold: float | None = None,
    pop: int = 150,
) -> NeatResult:
    """Evolve with neat-python for ``budget_s`` wall seconds (or until ``threshold``).

    Args:
        fit_split: ``"val"`` (fitness = validation accuracy) or ``"train"``.
        threshold: stop once the best fitness reaches this (None: use the whole budget).
    """
    neat = _neat()
    n_out = max(task.n_outputs, 2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "neat.ini"
        path.write_text(
            _NEAT_CONFIG.format(threshold=2.0, pop=pop, n_in=task.n_inputs, n_out=n_out)
        )
        config = neat.Config(
            neat.DefaultGenome,
            neat.DefaultReproduction,
            neat.DefaultSpeciesSet,
            neat.DefaultStagnation,
            str(path),
        )
    Xf = getattr(task, f"X_{fit_split}").astype(float).tolist()
    yf = getattr(task, f"y_{fit_split}")

    def fitness(genomes, cfg) -> None:
        for _, g in genomes:
            g.fitness = _accuracy(neat, g, cfg, Xf, yf)

    t0 = time.perf_counter()
    population = neat.Population(config, seed=seed)
    generations = evaluations = 0
    solved_s = None
    while True:
        evaluations += len(population.population)
        population.run(fitness, 1)
        generations += 1
        best = population.best_genome
        elapsed = time.perf_counter() - t0
        if threshold is not None and best.fitness >= threshold:
            solved_s = elapsed
            break
        if elapsed >= budget_s:
            break
    wall = time.perf_counter() - t0
    best = population.best_genome
    test = _accuracy(neat, best, config, task.X_test.astype(float).tolist(), task.y_test)
    nodes, conns = best.size()
    return NeatResult(best.fitness, test, nodes + conns, wall, generations, evaluations, solved_s)


# ------------------------------------------------------------------- hybrid
@dataclass
class HybridResult:
    """One hybrid search, its champion and its lineage's accuracy-vs-size front."""

    test: float
    params: int
    wall_s: float
    generations: int
    lineage_steps: int
    front: list[tuple[int, float, float]] = field(default_factory=list)  # (params, val, test)
    activation: str = "relu"  # the champion's most common hidden activation


def hybrid_config(task: str, seed: int, runs_dir: Path, threads: int, budget_s: float | None):
    """Load ``configs/<task>.toml`` for this seed (quick mode caps the time budget)."""
    overrides = {
        "run.seed": seed,
        "run.runs_dir": str(runs_dir),
        "run.name": f"{task}-s{seed}",
        "run.threads": threads,
        "run.device": "cpu",
    }
    config = load_config(CONFIGS / f"{task}.toml", overrides)
    if budget_s is not None:
        shipped = config.evolution.time_budget_s
        cap = budget_s if shipped is None else min(shipped, budget_s)
        config = load_config(CONFIGS / f"{task}.toml", {**overrides, "evolution.time_budget_s": cap})
    return config


def pareto(points: list[tuple[int, float]]) -> list[int]:
    """Return the indices of the points no other point beats on both (size down, metric up)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def run_hybrid(config, task: Task) -> HybridResult:
    """Run one search, then read the champion's lineage and the run's Pareto front."""
    t0 = time.perf_counter()
    result = Search.start(config, overwrite=True).run()
    wall = time.perf_counter() - t0
    tc = TrainConfig(**config.train_kwargs())
    with hybrid.lineage.open(result.run_dir) as lin:
        steps = len(lin.path_to_root(result.champion_id)) * config.training.steps
        recs = [r for r in lin.records() if r.val_metric is not None and r.active_params is not None]
        idx = pareto([(r.active_params, r.val_metric) for r in recs])
        front_recs = [recs[i] for i in idx if recs[i].has_weights]
        genomes = [lin.genome(r.id) for r in front_recs]
    evals = evaluate_members(genomes, task.X_test, task.y_test, tc, engine="loop") if genomes else []
    front = [
        (e.active_parameters, float(r.val_metric), float(e.accuracy))
        for r, e in zip(front_recs, evals, strict=True)
    ]
    return HybridResult(
        result.test_metric, result.active_parameters, wall, result.generations, steps, front,
        champion_activation(open_run_dir(result.run_dir).read_best_genome(), config),
    )


def champion_activation(genome, config) -> str:
    """The activation a fixed MLP gets: the config's, or, when ``genome.activation`` lists
    several (the search chooses), the champion's most common hidden activation."""
    listed = config.genome.activations
    names = [genome.graph.nodes[n]["activation"] for n in genome.hidden_nodes()]
    if len(listed) == 1 or not names:
        return listed[0]
    return max(sorted(set(names)), key=names.count)


# --------------------------------------------------------------- fixed MLPs
def mlp_params(n_in: int, hidden: tuple[int, ...], n_out: int) -> int:
    widths = (n_in, *hidden, n_out)
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))


class Activation(nn.Module):
    """One of hybrid's activations (``hybrid.activations``) as a layer of a plain MLP."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return TORCH_ACTIVATIONS[self.name](x)


def _mlp(n_in: int, hidden: tuple[int, ...], n_out: int, act: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    widths = (n_in, *hidden)
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b), Activation(act)]
    layers.append(nn.Linear(widths[-1], n_out))
    return nn.Sequential(*layers)


def minibatches(task: Task, batch_size: int, steps: int, gen: torch.Generator):
    """Yield ``steps`` (X, y) minibatches of the training split: reshuffled epochs, full batch if it fits."""
    X = torch.tensor(np.asarray(task.X_train, dtype=np.float32))
    y = torch.tensor(np.asarray(task.y_train)).long()
    n = len(X)
    order, pos = torch.randperm(n, generator=gen), 0
    for _ in range(steps):
        if batch_size >= n:
            yield X, y
            continue
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        yield X[idx], y[idx]


def training_minibatches(task: Task, training, steps: int, gen: torch.Generator):
    """:func:`minibatches` of ``training.batch_size`` rows plus ``training.input_noise`` Gaussian noise.

    The baselines train with the regulariser the search's members use (none at 0).
    """
    for xb, yb in minibatches(task, training.batch_size, steps, gen):
        if training.input_noise:
            xb = xb + training.input_noise * torch.randn(xb.shape, generator=gen)
        yield xb, yb


def train_mlps(
    task: Task, grid: list[tuple[int, ...]], steps: int, config, seed: int, activation: str | None = None
) -> list[tuple[float, float]]:
    """Train one plain torch MLP per grid entry for ``steps`` AdamW steps; return (val, test) each.

    The nets are :func:`train_mlp_nets`'; each is scored by its accuracy on the
    validation and the test split.
    """
    nets = train_mlp_nets(task, grid, steps, config, seed, activation)
    out = []
    with torch.no_grad():
        Xv = torch.tensor(np.array(task.X_val, dtype=np.float32))
        Xt = torch.tensor(np.array(task.X_test, dtype=np.float32))
        for net in nets:
            val = (net(Xv).argmax(1).numpy() == task.y_val).mean()
            test = (net(Xt).argmax(1).numpy() == task.y_test).mean()
            out.append((float(val), float(test)))
    return out


def train_mlp_nets(
    task: Task, grid: list[tuple[int, ...]], steps: int, config, seed: int, activation: str | None = None
) -> list[nn.Sequential]:
    """Train one plain torch MLP per grid entry for ``steps`` AdamW steps; return the nets.

    The hidden activation is ``activation``, else the config's (the first of a list).

    The nets share minibatches and one optimiser over the sum of their losses: their
    parameters are disjoint and AdamW is elementwise, so each net trains exactly as it
    would alone (one step per net per step), only with less Python overhead. With the
    config's ``training.input_noise`` on, each minibatch gets that Gaussian noise, as
    hybrid's members do: the baselines train with the regulariser the search uses.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    act = activation or config.genome.activations[0]
    nets = [_mlp(task.n_inputs, k, task.n_outputs, act) for k in grid]
    tr = config.training
    named = [(n, p) for net in nets for n, p in net.named_parameters()]
    opt = torch.optim.AdamW(
        [
            {"params": [p for n, p in named if n.endswith("weight")], "weight_decay": tr.weight_decay},
            {"params": [p for n, p in named if n.endswith("bias")], "weight_decay": 0.0},
        ],
        lr=tr.lr,
        foreach=True,
    )
    for xb, yb in training_minibatches(task, tr, steps, gen):
        loss = sum(nn.functional.cross_entropy(net(xb), yb) for net in nets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return nets


def mlp_grid(widths: tuple[int, ...]) -> list[tuple[int, ...]]:
    return [(w,) for w in widths] + [(w, w) for w in widths]


# -------------------------------------------------------------------- report
@dataclass
class TaskReport:
    name: str
    seeds: list[int]
    hybrid: list[HybridResult]
    neat: list[NeatResult]
    mlp: dict[tuple[int, ...], list[float]]  # hidden -> test accuracy per seed
    mlp_steps: list[int]
    n_in: int
    n_out: int
    command: str = ""  # the command line that produced these results
    machine: str = ""  # machine_line() when they were produced


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}"


def task_rows(r: TaskReport) -> tuple[list[str], dict[str, str]]:
    """Return the markdown table rows for one task and a few facts for the targets."""
    h_test = median([h.test for h in r.hybrid])
    h_par = median([h.params for h in r.hybrid])
    h_wall = median([h.wall_s for h in r.hybrid])
    rows = [
        f"| {r.name} | hybrid (shipped config) | {_pct(h_test)} "
        f"({', '.join(_pct(h.test) for h in r.hybrid)}) | {h_par:,.0f} | {h_wall:.0f} s | "
        f"{median(r.mlp_steps):,.0f} steps (lineage), {median([h.generations for h in r.hybrid]):.0f} gens |"
    ]
    med = {k: median(v) for k, v in r.mlp.items()}
    best_k = max(med, key=lambda k: (med[k], -mlp_params(r.n_in, k, r.n_out)))
    ok = [k for k in med if med[k] >= med[best_k] - 0.005]
    small_k = min(ok, key=lambda k: mlp_params(r.n_in, k, r.n_out))
    for label, k in (("best fixed MLP", best_k), ("smallest MLP within 0.5 pt of best", small_k)):
        hidden = "x".join(map(str, k))
        rows.append(
            f"| {r.name} | {label}: hidden {hidden} | {_pct(med[k])} "
            f"({', '.join(_pct(v) for v in r.mlp[k])}) | {mlp_params(r.n_in, k, r.n_out):,} | "
            f"- | {median(r.mlp_steps):,.0f} Adam steps each |"
        )
    if r.neat:
        rows.append(
            f"| {r.name} | neat-python (fitness = val acc) | {_pct(median([n.test for n in r.neat]))} "
            f"({', '.join(_pct(n.test) for n in r.neat)}) | {median([n.params for n in r.neat]):,.0f} | "
            f"{median([n.wall_s for n in r.neat]):.0f} s | "
            f"{median([n.generations for n in r.neat]):.0f} gens, {median([n.evaluations for n in r.neat]):,.0f} evals |"
        )
    facts = {"test": _pct(h_test), "params": f"{h_par:,.0f}"}
    return rows, facts


HEADER = (
    "| task | system | test acc % median (per seed) | active params (median) | wall (median) | budget |\n"
    "|---|---|---|---|---|---|"
)


def target_lines(reports: dict[str, TaskReport]) -> list[str]:
    lines = []
    for name, (acc, size) in TARGETS.items():
        r = reports.get(name)
        if r is None:
            continue
        got = [(h.test, h.params) for h in r.hybrid]
        hits = sum(t >= acc - 1e-9 and p <= size for t, p in got)
        t_med, p_med = median([t for t, _ in got]), median([p for _, p in got])
        verdict = "HIT" if t_med >= acc - 1e-9 and p_med <= size else "MISS"
        lines.append(
            f"- {name}: target >= {100 * acc:.1f}% test with <= {size:,} active params -> "
            f"{verdict}: median {100 * t_med:.1f}% at {p_med:,.0f} params ({hits}/{len(got)} seeds meet both)"
        )
    return lines


def plot(r: TaskReport, out: Path) -> Path:
    """Accuracy vs active parameters: hybrid front + champions over the MLP grid and neat."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.6))
    for depth, marker, color in ((1, "o", "tab:blue"), (2, "s", "tab:cyan")):
        ks = sorted((k for k in r.mlp if len(k) == depth), key=lambda k: k[0])
        xs = [mlp_params(r.n_in, k, r.n_out) for k in ks]
        ys = [100 * median(r.mlp[k]) for k in ks]
        ax.plot(xs, ys, marker=marker, color=color, lw=1.2, label=f"fixed MLP, {depth} hidden layer{'s' * (depth > 1)} (median)")
        for k, x, y in zip(ks, xs, ys, strict=True):
            ax.annotate("x".join(map(str, k)), (x, y), textcoords="offset points", xytext=(3, -10), fontsize=7, color=color)
    for i, h in enumerate(r.hybrid):
        if h.front:
            pts = sorted(h.front)
            ax.step([p for p, _, _ in pts], [100 * t for _, _, t in pts], where="post", color="tab:red",
                     alpha=0.6, lw=1, marker=".", ms=5,
                     label="hybrid lineage Pareto front per seed (chosen on val, test acc)" if i == 0 else None)
    ax.scatter([h.params for h in r.hybrid], [100 * h.test for h in r.hybrid], marker="*", s=180,
               color="tab:red", edgecolor="k", zorder=5, label="hybrid champion (per seed)")
    if r.neat:
        ax.scatter([n.params for n in r.neat], [100 * n.test for n in r.neat], marker="^", s=70,
                   color="tab:green", edgecolor="k", zorder=4, label="neat-python best (per seed)")
    if r.name in TARGETS:
        acc, size = TARGETS[r.name]
        ax.axhline(100 * acc, color="grey", ls=":", lw=1)
        ax.axvline(size, color="grey", ls=":", lw=1)
        ax.annotate(f"target: >= {100 * acc:.1f}% at <= {size} params", (size, 100 * acc),
                    textcoords="offset points", xytext=(-4, -12), ha="right", fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("active parameters (log scale)")
    ax.set_ylabel("test accuracy (%)")
    all_y = [100 * h.test for h in r.hybrid] + [100 * median(v) for v in r.mlp.values()]
    all_y += [100 * n.test for n in r.neat]
    lo = max(0.0, min(all_y) - 5)
    ax.set_ylim(lo, 100.5 + (100.5 - lo) * 0.02)
    ax.set_title(f"{r.name}: test accuracy vs size ({len(r.seeds)} seed{'s' * (len(r.seeds) > 1)})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = out / f"quality_{r.name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def dump_report(r: TaskReport) -> str:
    """Serialise a task's results (so ``--replot`` can redraw its plot)."""
    d = asdict(r)
    d["mlp"] = {"x".join(map(str, k)): v for k, v in r.mlp.items()}
    return json.dumps(d, indent=0)


def load_report(path: Path) -> TaskReport:
    d = json.loads(path.read_text())
    d["hybrid"] = [HybridResult(**{**h, "front": [tuple(p) for p in h["front"]]}) for h in d["hybrid"]]
    d["neat"] = [NeatResult(**n) for n in d["neat"]]
    d["mlp"] = {tuple(int(w) for w in k.split("x")): v for k, v in d["mlp"].items()}
    return TaskReport(**d)


def write_results(out: Path, reports: dict[str, TaskReport], mode: str, threads: int) -> None:
    """Write the quality section of ``out/RESULTS.md`` from these results plus older ones.

    Tasks not in ``reports`` keep the results (and command) of the run that made them,
    read back from ``out/quality_<task>.json``.
    """
    reports = dict(reports)
    # Tasks this run did not redo keep the results (and command) of the run that made them.
    for name in TASKS:
        path = out / f"quality_{name}.json"
        if name not in reports and path.is_file():
            reports[name] = load_report(path)
    reports = {k: reports[k] for k in TASKS if k in reports}
    rows = [row for r in reports.values() for row in task_rows(r)[0]]
    commands: dict[tuple[str, str], list[str]] = {}
    for k, r in reports.items():
        commands.setdefault((r.command, r.machine), []).append(k)
    seeds = ", ".join(f"{k} {len(r.seeds)}" for k, r in reports.items())
    text = "\n".join([
        f"## Quality: hybrid vs fixed MLPs vs neat-python ({mode} run)",
        "",
        "Runs (each task's rows come from one of them):",
        "",
        *[f"- `{c}` ({', '.join(ks)}); machine: {m}" for (c, m), ks in commands.items()],
        "",
        f"Seeds per task: {seeds}. torch threads: {threads}. Wall times are on a shared, "
        "busy 2-core machine: compare them with each other, not with a quiet machine.",
        "",
        "Hybrid: the shipped `configs/<task>.toml`, champion scored once on the test split. Fixed "
        "MLPs: plain torch `nn.Linear` stacks (the config's activation; when it lists several, the champion's), AdamW with the config's lr, "
        "weight decay and batch size, trained for the champion's lineage step count "
        "(`training.steps` x genomes on its path to the root), final weights scored. neat-python "
        "2.x: pop 150, fitness = validation accuracy, the same wall-clock budget as that seed's "
        "search; params = nodes + enabled connections.",
        "",
        HEADER,
        *rows,
        "",
        "Targets:",
        *target_lines(reports),
        "",
        *[f"![{k}](quality_{k}.png)" for k in reports],
    ])
    write_section(out / "RESULTS.md", "quality", text)
    print("\n".join(target_lines(reports)))


# ---------------------------------------------------------------------- main
def run_task(name: str, seeds: list[int], args, runs_dir: Path) -> TaskReport:
    widths = QUICK_WIDTHS if args.quick else FULL_WIDTHS
    hybrids, neats, steps_list = [], [], []
    mlp: dict[tuple[int, ...], list[float]] = {k: [] for k in mlp_grid(widths)}
    task = None
    for seed in seeds:
        config = hybrid_config(name, seed, runs_dir, args.threads, QUICK_BUDGET_S if args.quick else None)
        task = load_task(config.task, seed)
        torch.set_num_threads(args.threads)
        h = run_hybrid(config, task)
        hybrids.append(h)
        steps_list.append(h.lineage_steps)
        print(f"  {name} seed {seed}: hybrid test {_pct(h.test)}% at {h.params} params, "
              f"{h.wall_s:.0f} s, {h.generations} gens, lineage {h.lineage_steps} steps", flush=True)
        torch.set_num_threads(args.threads)
        t0 = time.perf_counter()
        grid = list(mlp)
        for k, (_, test) in zip(grid, train_mlps(task, grid, h.lineage_steps, config, seed, h.activation), strict=True):
            mlp[k].append(test)
        print(f"  {name} seed {seed}: MLP grid done in {time.perf_counter() - t0:.0f} s", flush=True)
        if not args.no_neat:
            n = run_neat(task, seed, budget_s=h.wall_s, fit_split="val",
                         threshold=config.evolution.target_metric)
            neats.append(n)
            print(f"  {name} seed {seed}: neat test {_pct(n.test)}% at {n.params} params, "
                  f"{n.wall_s:.0f} s, {n.generations} gens", flush=True)
    assert task is not None
    return TaskReport(name, seeds, hybrids, neats, mlp, steps_list, task.n_inputs, task.n_outputs)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one seed, 10 s searches, a small grid")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--seeds", type=int, default=None, help="seeds per task (default: 1 quick, per task full)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--no-neat", action="store_true", help="skip neat-python")
    p.add_argument("--out", type=Path, default=None,
                   help="where RESULTS.md and the PNGs go (default: benchmarks/ full, a temp folder quick)")
    p.add_argument("--runs-dir", type=Path, default=None, help="where searches write (default: a temp folder)")
    p.add_argument("--replot", type=Path, default=None, metavar="DIR",
                   help="only redraw the plots from DIR/quality_<task>.json")
    args = p.parse_args(argv)
    if args.replot is not None:
        reports = {}
        for path in sorted(args.replot.glob("quality_*.json")):
            reports[path.stem.removeprefix("quality_")] = r = load_report(path)
            print(f"wrote {plot(r, args.replot)}")
        write_results(args.replot, reports, "full" if args.replot.resolve() == ROOT / "benchmarks" else "quick", args.threads)
        return
    torch.set_num_threads(args.threads)
    out = args.out or (Path(tempfile.mkdtemp(prefix="hybrid-quality-")) if args.quick else ROOT / "benchmarks")
    out.mkdir(parents=True, exist_ok=True)
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="hybrid-quality-runs-"))
    machine = machine_line(args.threads)
    mode = "quick" if args.quick else "full"
    print(f"quality benchmark ({mode}); {machine}\nruns in {runs_dir}", flush=True)
    t_start = time.perf_counter()
    cmd = ("python benchmarks/quality.py " + " ".join(sys.argv[1:] if argv is None else argv)).strip()
    reports: dict[str, TaskReport] = {}
    rows: list[str] = []
    for name in args.tasks:
        n = args.seeds or (1 if args.quick else FULL_SEEDS[name])
        print(f"{name}: {n} seed(s)", flush=True)
        reports[name] = run_task(name, list(range(n)), args, runs_dir)
        reports[name].command, reports[name].machine = cmd, machine
        rows += task_rows(reports[name])[0]
        plot(reports[name], out)
        (out / f"quality_{name}.json").write_text(dump_report(reports[name]))
        print(f"\ntorch threads: {args.threads}\n{HEADER}\n" + "\n".join(rows) + "\n", flush=True)
    total = time.perf_counter() - t_start
    print(f"this run: {total / 60:.0f} min")
    write_results(out, reports, mode, args.threads)
    print(f"wrote {out / 'RESULTS.md'} and {len(reports)} plot(s) in {out}")


if __name__ == "__main__":
    main()
