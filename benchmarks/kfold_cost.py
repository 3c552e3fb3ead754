"""What does K-fold fitness cost per generation? (issue 20)

Spirals with 500 points (pool: 400 train + validation rows, 100 test) under the
shipped ``configs/spirals.toml`` training settings (16 members, 300 full-batch
steps, tanh, NSGA-II), no time budget or patience. For ``task.folds`` = off, 2, 3
and 5 it runs the same search generation by generation (``hybrid.generation.step``,
no run folder: only the generation is timed) and prints one table: the median wall
time of a generation over the measured generations (the first is a warm-up and is
dropped) and its ratio to the single-split generation. The settings alternate
generation by generation, so a change in the machine's load hits all of them alike.

    python benchmarks/kfold_cost.py                 # 6 generations each
    python benchmarks/kfold_cost.py --generations 4 --threads 2
    python benchmarks/kfold_cost.py --batch-size 64     # minibatches: per-step overheads weigh more
    python benchmarks/kfold_cost.py --device cuda       # the batched engine on a GPU
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from hybrid.config import load_config, resolve_device
from hybrid.generation import StepContext, initial_state, step
from hybrid.search import reproducible
from hybrid.tasks import load_task

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "spirals.toml"
SETTINGS: tuple[str | int, ...] = ("off", 2, 3, 5)


def _context(
    folds: str | int, n_samples: int, seed: int, batch_size: int | None, device: str
) -> StepContext:
    config = load_config(CONFIG)
    if batch_size is not None:
        config = config.model_copy(
            update={"training": config.training.model_copy(update={"batch_size": batch_size})}
        )
    evo = config.evolution.model_copy(
        update={"generations": 10_000, "time_budget_s": None, "patience": None}
    )
    task = config.task.model_copy(update={"n_samples": n_samples, "folds": folds})
    run = config.run.model_copy(update={"seed": seed})
    config = config.model_copy(update={"evolution": evo, "task": task, "run": run})
    return StepContext(config, load_task(config.task, seed), device=device)


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=6, help="generations per setting (+1 warm-up)")
    parser.add_argument("--n-samples", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--batch-size", type=int, default=None, help="instead of the config's 1024 (full batch)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the engine's device)")
    parser.add_argument(
        "--nondeterministic",
        dest="deterministic",
        action="store_false",
        help="on CUDA, torch's default kernels (run.deterministic = false)",
    )
    args = parser.parse_args()
    args.device = resolve_device(args.device)  # as a search does (sets cuBLAS up for determinism)
    torch.set_num_threads(args.threads)
    contexts = {
        f: _context(f, args.n_samples, args.seed, args.batch_size, args.device) for f in SETTINGS
    }
    states = {f: initial_state(c.config, c.task) for f, c in contexts.items()}
    times: dict[str | int, list[float]] = {f: [] for f in SETTINGS}
    with reproducible(args.device, args.deterministic):  # as a search runs (run.deterministic)
        for g in range(args.generations + 1):
            for f in SETTINGS:
                t0 = time.perf_counter()
                states[f], _ = step(states[f], contexts[f])
                if g:  # generation 0 warms up
                    times[f].append(time.perf_counter() - t0)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"spirals, {args.n_samples} points; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load}; torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}; device {_device_name(args.device)}"
        f"{'' if args.deterministic or args.device == 'cpu' else ', nondeterministic kernels'}; median of {args.generations} generations; "
        f"batch size {contexts['off'].config.training.batch_size}, "
        f"{contexts['off'].config.training.steps} steps"
    )
    base = statistics.median(times["off"])
    print("| task.folds | columns (members x folds) | train rows per column | s / generation | x single split |")
    print("|---|---|---|---|---|")
    for f in SETTINGS:
        task, pop = contexts[f].task, contexts[f].config.evolution.population
        k = task.folds
        pool = len(task.X_train) + len(task.X_val)
        rows = len(task.X_train) if not k else pool - pool // k
        med = statistics.median(times[f])
        print(f"| {f} | {pop * max(k, 1)} | ~{rows} | {med:.3f} | {med / base:.2f} |")


if __name__ == "__main__":
    main()
