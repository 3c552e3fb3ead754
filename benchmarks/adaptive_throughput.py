"""Member-training-steps per second of the adaptive engine (issue 16) against the plain one.

Prints one table (torch threads set, printed with the load average): for digits-sized
genomes (64 inputs, 10 classes, one or two hidden nodes of 16-64 neurons, batch 256)
at P = 32 and 128,

* ``plain/PopulationEngine``: a plain population through ``train_engine`` (what a
  population without adaptive genes runs: the "no slowdown" reference);
* ``plain/AdaptiveEngine``: the same population through ``train_adaptive``;
* ``adaptive/AdaptiveEngine``: the same genomes after ``add_exit`` and ``add_skip``
  mutations (about one exit and one skip gate each) through ``train_adaptive``.

Each arm: packing excluded, one warm-up step, then the best of ``--repeats`` timed
runs of ``--steps`` steps. Member-steps/s = P * steps / seconds.

Usage::

    python benchmarks/adaptive_throughput.py [--steps 20] [--repeats 2] [--threads 1] [--sizes 32,128]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from genomes import Genome, InnovationTracker, MutationConfig, NotApplicable
from genomes.mutations import add_edge, add_exit, add_node, add_skip
from hybrid.batches import minibatch_indices
from hybrid.population import AdaptiveEngine, PopulationEngine, train_adaptive, train_engine
from hybrid.train import TrainConfig


def populations(p: int, seed: int = 0) -> tuple[list[Genome], list[Genome]]:
    """Digits-sized genomes (hidden widths 16-64, a few growth mutations) and the same
    genomes with an exit head and a skip gate each (where the graph allows)."""
    rng = np.random.default_rng(seed)
    tracker, config = InnovationTracker(), MutationConfig()
    plain = []
    for _ in range(p):
        g = Genome.minimal(64, 10, rng, tracker, hidden=(int(rng.integers(16, 65)),))
        for _ in range(int(rng.integers(0, 3))):
            op = (add_node, add_edge)[int(rng.integers(2))]
            try:
                g, _ = op(g, rng, tracker, config)
            except NotApplicable:
                pass
        plain.append(g)
    adaptive = []
    for g in plain:
        for op in (add_exit, add_skip):
            try:
                g, _ = op(g, rng, tracker, config)
            except NotApplicable:
                pass
        adaptive.append(g)
    return plain, adaptive


def best_time(run: Callable[[], object], repeats: int) -> float:
    run_times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        run_times.append(time.perf_counter() - t)
    return min(run_times)


def measure(genomes: list[Genome], engine_kind: str, steps: int, repeats: int) -> float:
    """Member-steps per second of one arm."""
    rng = np.random.default_rng(0)
    X = torch.tensor(rng.normal(size=(1024, 64)), dtype=torch.float32)
    y = torch.as_tensor(rng.integers(0, 10, 1024))
    config = TrainConfig(steps=steps, batch_size=256)
    gen = torch.Generator().manual_seed(0)
    batches = minibatch_indices(1024, 256, steps, gen)
    if engine_kind == "population":
        engine = PopulationEngine(genomes, "sigmoid")
        train_engine(engine, X, y, config, batches[:1])  # warm-up

        def run() -> object:
            return train_engine(engine, X, y, config, batches)
    else:
        adaptive = AdaptiveEngine(genomes, "sigmoid")
        skip_gen = torch.Generator().manual_seed(1)
        train_adaptive(adaptive, X, y, config, batches[:1], skip_generator=skip_gen)

        def run() -> object:
            return train_adaptive(adaptive, X, y, config, batches, skip_generator=skip_gen)

    return len(genomes) * steps / best_time(run, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", default="32,128")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()}")
    print(f"{'P':>5} {'arm':<36} {'member-steps/s':>15} {'vs plain':>9}")
    for p in (int(s) for s in args.sizes.split(",")):
        plain, adaptive = populations(p)
        n_exit = sum(1 for g in adaptive for _, r in g.graph.nodes(data="role") if r == "exit")
        n_skip = sum(
            1 for g in adaptive for _, a in g.graph.nodes(data=True) if a.get("skip") is not None
        )
        base = measure(plain, "population", args.steps, args.repeats)
        rows = [
            ("plain/PopulationEngine", base),
            ("plain/AdaptiveEngine", measure(plain, "adaptive", args.steps, args.repeats)),
            (
                f"adaptive/AdaptiveEngine ({n_exit}e,{n_skip}s)",
                measure(adaptive, "adaptive", args.steps, args.repeats),
            ),
        ]
        for name, rate in rows:
            print(f"{p:>5} {name:<36} {rate:>15.0f} {rate / base:>8.2f}x")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
