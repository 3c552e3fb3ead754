"""Time to solve XOR and two spirals: hybrid vs neat-python, 10 seeds.

"Solved" = some genome reaches 100% accuracy on the *training* split. For each
seed and system it records the wall time, the gradient steps and the evaluations
(genomes scored) until then, and prints medians over the solved seeds and the
success rate.

- hybrid: the shipped config with its stop target removed; after every
  generation the population's trained genomes are read back from the lineage and
  scored on the training split (that check's time counts). Gradient steps = the
  solver's lineage (``training.steps`` x genomes on its path to the root);
  "population steps" = every member's steps until then.
- neat-python: pop 150, tanh/sigmoid/relu/sin/gauss nodes, two fitness choices:
  training accuracy (argmax over one output per class), and for XOR also
  neat-python's own example (one sigmoid output, fitness 4 - squared error; solved
  when all four outputs fall on the right side of 0.5).

    python benchmarks/time_to_solve.py --quick   # 3 seeds, short caps
    python benchmarks/time_to_solve.py           # 10 seeds
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import (  # noqa: E402
    _NEAT_CONFIG,
    ROOT,
    _neat,
    hybrid_config,
    machine_line,
    median,
    run_neat,
    write_section,
)

import hybrid.lineage  # noqa: E402
from hybrid.backends import evaluate_members  # noqa: E402
from hybrid.config import load_config  # noqa: E402
from hybrid.search import Search  # noqa: E402
from hybrid.tasks import load_task  # noqa: E402
from hybrid.train import TrainConfig  # noqa: E402

#: Per task: (hybrid cap s, neat cap s) in (full, quick) mode.
CAPS = {"xor": ((60, 60), (20, 20)), "spirals": ((120, 45), (40, 15))}


@dataclass
class Solve:
    """One attempt: solved or not, and what it cost until then (or until the cap)."""

    solved: bool
    wall_s: float
    steps: int  # gradient steps the solver's weights received (0 for neat)
    pop_steps: int  # gradient steps over the whole population (0 for neat)
    evaluations: int
    best_train: float


def hybrid_solve(task_name: str, seed: int, cap_s: float, runs_dir: Path, threads: int) -> Solve:
    """Run the shipped config until a member reaches 100% training accuracy (or the cap)."""
    config = load_config(
        ROOT / "configs" / f"{task_name}.toml",
        {
            "run.seed": seed, "run.runs_dir": str(runs_dir), "run.name": f"tts-{task_name}-s{seed}",
            "run.threads": threads, "run.device": "cpu", "evolution.target_metric": None,
            "evolution.time_budget_s": cap_s, "evolution.generations": 10_000,
        },
    )
    task = load_task(config.task, seed)
    tc = TrainConfig(**config.train_kwargs())
    t0 = time.perf_counter()
    search = Search.start(config, overwrite=True)
    state = {"solver": None, "best": 0.0, "evaluations": 0}
    lin = None

    def check(stats: dict) -> None:
        nonlocal lin
        if lin is None:
            lin = hybrid.lineage.open(search.run_dir.path)
        recs = lin.records(generation=stats["generation"])
        state["evaluations"] += len(recs)
        recs = [r for r in recs if r.has_weights and r.status == "ok"]
        genomes = [lin.genome(r.id) for r in recs]
        evals = evaluate_members(genomes, task.X_train, task.y_train, tc) if genomes else []
        accs = [float(e.accuracy) for e in evals]
        if accs:
            state["best"] = max(state["best"], max(accs))
            if max(accs) >= 1.0:
                state["solver"] = recs[int(np.argmax(accs))].id
                state["wall"] = time.perf_counter() - t0
                search.finished = "train_solved"

    search.run(on_generation=check)
    wall = state.get("wall", time.perf_counter() - t0)
    steps = 0
    if state["solver"] is not None and lin is not None:
        steps = len(lin.path_to_root(state["solver"])) * config.training.steps
    if lin is not None:
        lin.close()
    return Solve(
        state["solver"] is not None, wall, steps, state["evaluations"] * config.training.steps,
        state["evaluations"], state["best"],
    )


def neat_solve(task_name: str, seed: int, cap_s: float) -> Solve:
    """neat-python with fitness = training accuracy, until 100% (or the cap)."""
    config = hybrid_config(task_name, seed, Path(tempfile.gettempdir()), 1, None)
    task = load_task(config.task, seed)
    r = run_neat(task, seed, cap_s, fit_split="train", threshold=1.0)
    wall = r.solved_s if r.solved_s is not None else r.wall_s
    return Solve(r.solved_s is not None, wall, 0, 0, r.evaluations, r.fitness)


def neat_xor_classic(seed: int, cap_s: float) -> Solve:
    """neat-python's own XOR example: one sigmoid output, fitness = 4 - squared error."""
    neat = _neat()
    X = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    Y = [0.0, 1.0, 1.0, 0.0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "neat.ini"
        text = _NEAT_CONFIG.format(threshold=5.0, pop=150, n_in=2, n_out=1)
        text = text.replace("activation_default      = tanh", "activation_default      = sigmoid")
        path.write_text(text)
        config = neat.Config(neat.DefaultGenome, neat.DefaultReproduction, neat.DefaultSpeciesSet,
                             neat.DefaultStagnation, str(path))
    state = {"solved": False, "best": 0.0}

    def fitness(genomes, cfg) -> None:
        for _, g in genomes:
            net = neat.nn.FeedForwardNetwork.create(g, cfg)
            outs = [net.activate(x)[0] for x in X]
            g.fitness = 4.0 - sum((o - t) ** 2 for o, t in zip(outs, Y, strict=True))
            acc = sum((o > 0.5) == (t > 0.5) for o, t in zip(outs, Y, strict=True)) / 4
            state["best"] = max(state["best"], acc)
            state["solved"] |= acc >= 1.0

    t0 = time.perf_counter()
    pop = neat.Population(config, seed=seed)
    evaluations = 0
    while not state["solved"] and time.perf_counter() - t0 < cap_s:
        evaluations += len(pop.population)
        pop.run(fitness, 1)
    return Solve(state["solved"], time.perf_counter() - t0, 0, 0, evaluations, state["best"])


def summary_row(task: str, system: str, runs: list[Solve], cap: float) -> str:
    ok = [r for r in runs if r.solved]

    def med(xs: list[float], fmt: str) -> str:
        m = median(xs)
        return "-" if math.isnan(m) else format(m, fmt)

    per_seed = ", ".join(f"{r.wall_s:.1f}" if r.solved else f">{cap:.0f}" for r in runs)
    return (
        f"| {task} | {system} | {len(ok)}/{len(runs)} | {med([r.wall_s for r in ok], '.2f')} s "
        f"({per_seed}) | {med([r.steps for r in ok], ',.0f')} | {med([r.pop_steps for r in ok], ',.0f')} | "
        f"{med([r.evaluations for r in ok], ',.0f')} | {100 * median([r.best_train for r in runs]):.1f} |"
    )


HEADER = (
    "| task | system | solved | wall to 100% train acc, median over solved (per seed) | "
    "gradient steps (solver's lineage) | gradient steps (population) | evaluations | "
    "best train acc % (median) |\n|---|---|---|---|---|---|---|---|"
)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 seeds, short caps")
    p.add_argument("--seeds", type=int, default=None, help="seeds (default 10 full, 3 quick)")
    p.add_argument("--tasks", nargs="+", choices=tuple(CAPS), default=list(CAPS))
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--out", type=Path, default=None,
                   help="where RESULTS.md goes (default: benchmarks/ full, a temp folder quick)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_seeds = args.seeds or (3 if args.quick else 10)
    out = args.out or (Path(tempfile.mkdtemp(prefix="hybrid-tts-")) if args.quick else ROOT / "benchmarks")
    out.mkdir(parents=True, exist_ok=True)
    runs_dir = Path(tempfile.mkdtemp(prefix="hybrid-tts-runs-"))
    machine = machine_line(args.threads)
    mode = "quick" if args.quick else "full"
    print(f"time to solve ({mode}); {machine}", flush=True)
    rows = []
    t_start = time.perf_counter()
    for task in args.tasks:
        h_cap, n_cap = CAPS[task][1 if args.quick else 0]
        results: dict[str, list[Solve]] = {"hybrid (shipped config)": [],
                                           "neat-python (fitness = train acc)": []}
        if task == "xor":
            results["neat-python (XOR example: 4 - SSE, 1 output)"] = []
        for seed in range(n_seeds):
            torch.set_num_threads(args.threads)
            h = hybrid_solve(task, seed, h_cap, runs_dir, args.threads)
            results["hybrid (shipped config)"].append(h)
            n = neat_solve(task, seed, n_cap)
            results["neat-python (fitness = train acc)"].append(n)
            line = f"  {task} seed {seed}: hybrid {h.solved} {h.wall_s:.1f} s; neat {n.solved} {n.wall_s:.1f} s"
            if task == "xor":
                c = neat_xor_classic(seed, n_cap)
                results["neat-python (XOR example: 4 - SSE, 1 output)"].append(c)
                line += f"; neat classic {c.solved} {c.wall_s:.1f} s"
            print(line, flush=True)
        for system, runs in results.items():
            cap = h_cap if system.startswith("hybrid") else n_cap
            rows.append(summary_row(task, system, runs, cap))
        print(f"\ntorch threads: {args.threads}\n{HEADER}\n" + "\n".join(rows) + "\n", flush=True)
    total = time.perf_counter() - t_start
    caps = "; ".join(f"{t}: hybrid {CAPS[t][args.quick][0]} s, neat {CAPS[t][args.quick][1]} s" for t in args.tasks)
    cmd = "python benchmarks/time_to_solve.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = "\n".join([
        f"## Time to solve: 100% training accuracy ({mode} run, {n_seeds} seeds)",
        "",
        f"Command: `{cmd.strip()}` (total {total / 60:.0f} min).",
        "",
        f"Machine: {machine}. Shared, busy 2-core machine: wall times are inflated and noisy.",
        "",
        f"Caps per attempt: {caps} (an unsolved seed shows as `>cap`). torch threads: {args.threads}.",
        "Hybrid wall time includes creating the run directory, the lineage store, checkpoints and "
        "the per-generation training-accuracy check.",
        "",
        HEADER,
        *rows,
    ])
    write_section(out / "RESULTS.md", "time_to_solve", text)
    print(f"wrote {out / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
