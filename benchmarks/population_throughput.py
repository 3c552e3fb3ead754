"""Member-training-steps per second: a loop over one-member populations vs the batched engine.

Prints one table, both engines measured side by side in the same run on the same
population, at P = 16, 64, 256 in two regimes:

* ``small``: two-spirals size (2 inputs, 2 outputs, hidden widths 1-16, full batch
  of 194). Per-module overhead dominates the loop.
* ``digits``: digits size (64 inputs, 10 outputs, hidden widths 1-64, batch 256).
  The batched step is compute-bound; the figure that matters is useful FLOP/s
  (real edges only, forward + backward = 3 x forward) against the dense float32
  matmul rate measured in this run.

* ``recurrent``: brackets_hard size (4 one-hot inputs, 4 outputs, T = 40 steps, batch
  of 32 sequences, per-step cross-entropy) at P = 64: one tanh hidden node of 1-48
  neurons with a self-loop, a few members with two such nodes and skip edges.
  Loop = a Python loop of ``GenomeNet``s, each with its own ``torch.optim.AdamW``;
  batched = ``hybrid.population.train_sequence_engine`` on a ``RecurrentEngine``.
  Both arms run with denormals flushed to zero (``sequence.flush_denormals``, which
  the sequence training loop always uses: BPTT gradients decay into denormals,
  which CPUs add tens of times slower). Both arms are timed best of N runs (3; 2
  with ``--quick``), the loop over all sampled members each run.

Loop = ``hybrid.population.train_engine`` on a population of one per member (what
``training.engine = "loop"`` and the per-genome joblib/Dask jobs run; packing included,
as there). Batched = ``train_engine`` on the whole population, packed once.
Populations: each member grows from a minimal genome by a few dozen random growth,
skip and pruning mutations (``genomes.MUTATIONS``); ``--quick`` grows 24 founders
and derives the other members from them by 4 more mutations each (members of a
real population are related too) and times the loop on a sample of members.

Usage::

    python benchmarks/population_throughput.py [--quick] [--json] [--threads N] [--device D]
        [--regimes small,digits,recurrent]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from genomes import MUTATIONS, Genome, InnovationTracker, MutationConfig, NotApplicable
from genomes.genome import edge_attrs
from hybrid.batches import minibatch_indices
from hybrid.net import GenomeNet
from hybrid.population import PopulationEngine, RecurrentEngine, train_engine, train_sequence_engine
from hybrid.population.sequence import flush_denormals
from hybrid.train import TrainConfig

#: Growth and skip mutations drawn twice as often as pruning, so genomes grow.
OPS = (
    "add_node",
    "add_node",
    "widen",
    "widen",
    "add_edge",
    "add_edge",
    "prune_neurons",
    "prune_edge",
    "remove_node",
)


@dataclass(frozen=True)
class Regime:
    name: str
    n_in: int
    n_out: int
    max_width: int
    batch: int


REGIMES = (Regime("small", 2, 2, 16, 194), Regime("digits", 64, 10, 64, 256))


def grow(
    rng: np.random.Generator, regime: Regime, size: int, mutations: int, founders: int | None
) -> list[Genome]:
    """Return ``size`` genomes grown by random mutations (see the module docstring)."""
    tracker = InnovationTracker()
    config = MutationConfig(
        max_node_width=regime.max_width,
        max_new_node_width=regime.max_width // 2,
        widen_max=regime.max_width // 4,
    )

    def mutate(g: Genome, n: int) -> Genome:
        for _ in range(n):
            try:
                g, _ = MUTATIONS[OPS[rng.integers(len(OPS))]](g, rng, tracker, config)
            except NotApplicable:
                pass
        return g

    def fresh() -> Genome:
        width = int(rng.integers(1, regime.max_width + 1))
        return mutate(
            Genome.minimal(regime.n_in, regime.n_out, rng, tracker, hidden=[width]), mutations
        )

    if founders is None:
        return [fresh() for _ in range(size)]
    base = [fresh() for _ in range(min(founders, size))]
    return base + [mutate(base[rng.integers(len(base))], 4) for _ in range(size - len(base))]


def matmul_rate(device: torch.device, seconds: float = 0.5) -> float:
    """Return the dense float32 matmul rate (FLOP/s) of this device, best of a few runs."""
    n = 1024
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or best == float("inf"):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_of(repeats: int, device: torch.device, run: Callable[[], object]) -> tuple[float, float]:
    """Run ``run`` ``repeats`` times; return its shortest wall and shortest process CPU time."""
    walls, cpus = [], []
    for _ in range(repeats):
        _sync(device)
        t, c = time.perf_counter(), time.process_time()
        run()
        _sync(device)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def measure(
    regime: Regime,
    genomes: list[Genome],
    steps: int,
    loop_sample: int,
    repeats: int,
    device: torch.device,
    rng: np.random.Generator,
) -> dict:
    """Time both engines on ``genomes``; return one table row."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(regime.batch, regime.n_in, generator=gen).to(device)
    y = torch.randint(0, regime.n_out, (regime.batch,), generator=gen).to(device)
    config = TrainConfig(steps=steps, batch_size=regime.batch, lr=1e-3)
    batches = minibatch_indices(regime.batch, regime.batch, steps, gen).to(device)
    p = len(genomes)
    # Loop: each sampled member trains alone, as the "loop" engine trains it.
    sample = sorted(rng.choice(p, size=min(loop_sample, p), replace=False))
    train_engine(
        PopulationEngine([genomes[sample[0]]], device=device), X, y, config, batches[:2]
    )  # warm-up
    _sync(device)
    t, c = time.perf_counter(), time.process_time()
    for m in sample:
        train_engine(PopulationEngine([genomes[m]], device=device), X, y, config, batches)
    _sync(device)
    loop_wall, loop_cpu = time.perf_counter() - t, time.process_time() - c
    loop_rate, loop_cpu_rate = len(sample) * steps / loop_wall, len(sample) * steps / loop_cpu
    # Batched: pack once (timed apart), then train; best of `repeats` runs.
    t = time.perf_counter()
    engine = PopulationEngine(genomes, config.gate, device=device)
    pack_s = time.perf_counter() - t
    train_engine(engine, X, y, config, batches[:2])  # warm-up (allocates the work buffers)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elapsed, cpu = best_of(repeats, device, lambda: train_engine(engine, X, y, config, batches))
    batched_cpu_rate = p * steps / cpu
    batched_rate = p * steps / elapsed
    useful = 3 * 2 * engine.layout.useful_macs * regime.batch * steps / elapsed
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:  # engine tensors + Adam state (m, v, denom); transients are O(params)
        peak = engine.nbytes() + 3 * sum(t.numel() * t.element_size() for t in engine.params)
    return {
        "regime": regime.name,
        "P": p,
        "loop_steps_per_s": loop_rate,
        "batched_steps_per_s": batched_rate,
        "speedup": batched_rate / loop_rate,
        "loop_cpu_steps_per_s": loop_cpu_rate,
        "batched_cpu_steps_per_s": batched_cpu_rate,
        "cpu_speedup": batched_cpu_rate / loop_cpu_rate,
        "padding_efficiency": engine.padding_efficiency,
        "useful_gflops": useful / 1e9,
        "params_per_member": engine.layout.useful_macs / p,
        "levels": len(engine.layout.levels),
        "buckets": sum(len(lvl) for lvl in engine.layout.levels),
        "peak_mib": peak / 2**20,
        "pack_s": pack_s,
        "loop_members_timed": len(sample),
        "steps": steps,
    }


#: The recurrent regime: brackets_hard-sized sequences.
RECURRENT = Regime("recurrent", 4, 4, 48, 32)
RECURRENT_T = 40
RECURRENT_P = 64


def recurrent_population(rng: np.random.Generator, size: int) -> list[Genome]:
    """Return brackets_hard-like genomes (see the module docstring): every 8th has two nodes."""
    tracker = InnovationTracker()
    out = []
    for k in range(size):
        widths = [int(rng.integers(1, RECURRENT.max_width + 1))]
        if k % 8 == 7:
            widths.append(int(rng.integers(1, RECURRENT.max_width // 2 + 1)))
        g = Genome.minimal(4, 4, rng, tracker, hidden=widths, activation="tanh").copy()
        graph = g.graph
        for n in g.hidden_nodes():
            w = graph.nodes[n]["width"]
            weight = rng.normal(0.0, 1.0 / np.sqrt(w), (w, w))
            graph.add_edge(n, n, **edge_attrs(tracker.edge(n, n), weight, recurrent=True))
        skips = [(g.input_id, g.output_id)] + (
            [(g.input_id, g.hidden_nodes()[1])] if len(widths) > 1 else []
        )
        for s, d in skips:
            shape = (graph.nodes[d]["width"], graph.nodes[s]["width"])
            graph.add_edge(s, d, **edge_attrs(tracker.edge(s, d), rng.normal(0.0, 0.3, shape)))
        out.append(g.validate())
    return out


def _net_step(net: GenomeNet, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    out = net(x)
    out = out[0] if isinstance(out, tuple) else out  # (B, T, n_out) [, final state]
    loss = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def measure_recurrent(
    genomes: list[Genome],
    steps: int,
    loop_sample: int,
    repeats: int,
    device: torch.device,
    rng: np.random.Generator,
) -> dict:
    """Time a loop of GenomeNets against the RecurrentEngine on ``genomes``; return one table row."""
    gen = torch.Generator().manual_seed(0)
    n, t = RECURRENT.batch, RECURRENT_T
    X = (
        torch.nn.functional.one_hot(torch.randint(0, 4, (n, t), generator=gen), 4)
        .float()
        .to(device)
    )
    y = torch.randint(0, 4, (n, t), generator=gen).to(device)
    config = TrainConfig(steps=steps, batch_size=n, lr=1e-3)
    batches = minibatch_indices(n, n, steps, gen).to(device)
    p = len(genomes)
    sample = sorted(rng.choice(p, size=min(loop_sample, p), replace=False))
    nets = [GenomeNet(genomes[m]).to(device) for m in sample]
    opts = [torch.optim.AdamW(net.parameters(), lr=config.lr) for net in nets]

    def loop() -> None:
        for _ in range(steps):
            for net, opt in zip(nets, opts, strict=True):
                _net_step(net, opt, X, y)

    with flush_denormals():
        _net_step(nets[0], opts[0], X, y)  # warm-up
        loop_wall, loop_cpu = best_of(repeats, device, loop)  # best-of-N, as the batched arm
    loop_rate, loop_cpu_rate = len(sample) * steps / loop_wall, len(sample) * steps / loop_cpu
    w = time.perf_counter()
    engine = RecurrentEngine(genomes, config.gate, device=device)
    pack_s = time.perf_counter() - w
    train_sequence_engine(engine, X, y, None, config, batches[:2])  # warm-up
    wall, cpu = best_of(repeats, device, lambda: train_sequence_engine(engine, X, y, None, config, batches))
    batched_rate, batched_cpu_rate = p * steps / wall, p * steps / cpu
    useful = sum(
        int(a["weight"].size)
        for g in genomes
        for _, _, a in g.graph.edges(data=True)
        if a["enabled"]
    )
    executed = sum(
        len(g.ids) * (r1 - r0) * (engine.n_inputs + r0 + g.n_core)
        for g in engine.groups
        for r0, r1 in g.blocks
    )
    flops = 3 * 2 * useful * n * t * steps / wall
    return {
        "regime": RECURRENT.name,
        "P": p,
        "loop_steps_per_s": loop_rate,
        "batched_steps_per_s": batched_rate,
        "speedup": batched_rate / loop_rate,
        "loop_cpu_steps_per_s": loop_cpu_rate,
        "batched_cpu_steps_per_s": batched_cpu_rate,
        "cpu_speedup": batched_cpu_rate / loop_cpu_rate,
        "padding_efficiency": useful / executed,
        "useful_gflops": flops / 1e9,
        "params_per_member": useful / p,
        "levels": max(len(g.blocks) for g in engine.groups),
        "buckets": sum(len(g.blocks) for g in engine.groups),
        "peak_mib": 4 * sum(t_.numel() for t_ in engine.params) * 4 / 2**20,
        "pack_s": pack_s,
        "loop_members_timed": len(sample),
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small step counts, founders + offspring, loop on a sample",
    )
    parser.add_argument(
        "--json", action="store_true", help="also print each row as one JSON object per line"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (machines are shared)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--sizes", default="16,64,256", help="population sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--regimes", default="small,digits,recurrent", help="which regimes (recurrent: P = 64 only)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rng = np.random.default_rng(args.seed)
    sizes = [int(s) for s in args.sizes.split(",")]
    steps = {"small": 20, "digits": 5} if args.quick else {"small": 100, "digits": 20}
    loop_sample = 16 if args.quick else max(sizes)
    founders = 24 if args.quick else None
    repeats = 2 if args.quick else 3
    rate = matmul_rate(device)
    rows = []
    chosen = args.regimes.split(",")
    for regime in (r for r in REGIMES if r.name in chosen):
        population = grow(rng, regime, max(sizes), 30, founders)
        for p in sizes:
            row = measure(
                regime, population[:p], steps[regime.name], loop_sample, repeats, device, rng
            )
            row.update(
                useful_flops_fraction=row["useful_gflops"] * 1e9 / rate,
                matmul_gflops=rate / 1e9,
                device=str(device),
                threads=torch.get_num_threads(),
            )
            rows.append(row)
    if RECURRENT.name in chosen:
        row = measure_recurrent(
            recurrent_population(rng, RECURRENT_P),
            5 if args.quick else 20,
            16 if args.quick else RECURRENT_P,
            repeats,
            device,
            rng,
        )
        row.update(
            useful_flops_fraction=row["useful_gflops"] * 1e9 / rate,
            matmul_gflops=rate / 1e9,
            device=str(device),
            threads=torch.get_num_threads(),
        )
        rows.append(row)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"device={device} torch_threads={torch.get_num_threads()} torch={torch.__version__} "
        f"dense fp32 matmul={rate / 1e9:.1f} GFLOP/s load_avg(1,5,15 min)={load} "
        f"cpus={os.cpu_count()}{' (quick)' if args.quick else ''}"
    )
    print(
        "st/s = member-training-steps per second (wall clock; cpu spdup: same on process CPU "
        "time, robust to other load); useful GF/s = real-edge FLOPs (fwd+bwd = 3x fwd) per "
        "second; of matmul = useful / dense matmul rate; pad eff = real-edge MACs / executed MACs"
    )
    head = (
        "regime",
        "P",
        "loop st/s",
        "batched st/s",
        "speedup",
        "cpu spdup",
        "pad eff",
        "useful GF/s",
        "of matmul",
        "levels",
        "buckets",
        "params/mbr",
        "peak MiB",
        "pack s",
    )
    print(" | ".join(f"{h:>10}" for h in head))
    for r in rows:
        cells = (
            r["regime"],
            r["P"],
            f"{r['loop_steps_per_s']:.0f}",
            f"{r['batched_steps_per_s']:.0f}",
            f"{r['speedup']:.1f}x",
            f"{r['cpu_speedup']:.1f}x",
            f"{r['padding_efficiency']:.0%}",
            f"{r['useful_gflops']:.2f}",
            f"{r['useful_flops_fraction']:.0%}",
            r["levels"],
            r["buckets"],
            f"{r['params_per_member']:.0f}",
            f"{r['peak_mib']:.1f}",
            f"{r['pack_s']:.2f}",
        )
        print(" | ".join(f"{c:>10}" for c in cells))
    if args.json:
        for r in rows:
            print(json.dumps(r))


if __name__ == "__main__":
    main()
