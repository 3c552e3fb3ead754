"""How fast ``hybrid lineage`` answers on a large store (100 generations x 100 genomes).

Builds a synthetic run folder (no training): each generation's members descend
from the previous generation's by the real operators (elites, crossover, widen,
add_node, add_edge), written through ``LineageWriter`` exactly as the search writes
them. Then times the command line end to end (a fresh process each time: Python
start-up and imports included, as a user sees it) and the in-process queries.

Usage::

    python benchmarks/lineage_query.py [--generations 100] [--population 100] [--dir /tmp/lineage_bench]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from genomes import (
    Genome,
    InnovationTracker,
    MutationConfig,
    NotApplicable,
    add_edge,
    add_node,
    crossover,
    widen,
)
from hybrid.lineage import GenerationRow, GenomeRow, LineageWriter

OPS = {"widen": widen, "add_node": add_node, "add_edge": add_edge}


def build(run: Path, generations: int, population: int, seed: int = 0) -> float:
    """Write the synthetic store into ``run``; return the seconds it took."""
    t0 = time.perf_counter()
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.toml").write_text("# synthetic run folder for benchmarks/lineage_query.py\n")
    (run / "task.json").write_text(json.dumps({"kind": "classification"}))
    for stale in run.glob("lineage.sqlite*"):
        stale.unlink()
    rng = np.random.default_rng(seed)
    tracker = InnovationTracker()
    config = MutationConfig()
    members = [(i, Genome.minimal(2, 2, rng, tracker, hidden=(4,)), 0.5 + 0.1 * rng.random()) for i in range(population)]
    next_id, champion = population, (0, 0.0)
    writer = LineageWriter(run / "lineage.sqlite")
    writer.set_meta({"seed": seed, "task": "synthetic", "gate": "sigmoid"})
    parents: dict[int, tuple[tuple[int, ...], tuple[dict, ...]]] = {m[0]: ((), ()) for m in members}
    for gen in range(generations):
        best = max(members, key=lambda m: m[2])
        if best[2] > champion[1]:
            champion = (best[0], best[2])
        rows = [
            GenomeRow(gid, gen, parents[gid][0], parents[gid][1], int(gid % 5), "ok", 0.3, 0.3, metric,
                      g.n_parameters(), 2 * g.n_parameters(), g, True)
            for gid, g, metric in members
        ]
        stats = {"generation": gen, "champion_id": champion[0], "champion_metric": champion[1],
                 "species_sizes": {str(s): population // 5 for s in range(5)}}
        writer.write_generation(rows, GenerationRow(gen, best[0], best[2], 0.6, 5, 3.0, 0.1, stats))
        ranked = sorted(members, key=lambda m: -m[2])[: max(2, population // 4)]
        children, parents = [], {}
        for k in range(population):
            if k < 5:  # elites: the genome unchanged under a new id
                pid, g, metric = ranked[k]
                ps, ops = (pid,), ({"op": "elite", "args": {}},)
            else:
                a = ranked[int(rng.integers(len(ranked)))]
                pid, g, metric = a
                ps, ops = (pid,), ()
                if rng.random() < 0.25:
                    b = ranked[int(rng.integers(len(ranked)))]
                    if b[0] != a[0]:
                        g, rec = crossover(a[1], b[1], rng, config)
                        ps, ops = (a[0], b[0]), (rec.to_dict(),)
                name = list(OPS)[int(rng.integers(len(OPS)))]
                try:
                    if g.n_parameters() < 400:
                        g, rec = OPS[name](g, rng, tracker, config)
                        ops = (*ops, rec.to_dict())
                except NotApplicable:
                    pass
            children.append((next_id, g, float(np.clip(metric + rng.normal(0, 0.02), 0, 1))))
            parents[next_id] = (ps, ops)
            next_id += 1
        members = children
        tracker.next_generation()
    writer.close()
    return time.perf_counter() - t0


def _time(argv: list[str], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), max(times)


def main() -> None:
    """Build the store, then print the timing table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generations", type=int, default=100)
    p.add_argument("--population", type=int, default=100)
    p.add_argument("--dir", default="/tmp/lineage_bench")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    run = Path(args.dir)
    built = build(run, args.generations, args.population)
    size = (run / "lineage.sqlite").stat().st_size / 2**20
    print(f"store: {args.generations} generations x {args.population} genomes, {size:.1f} MiB, built in {built:.1f} s")
    hybrid = [sys.executable, "-m", "hybrid"]
    last = args.generations * args.population  # the first id of the last generation: a full-depth path
    rows = [
        ("python -c 'import hybrid.cli' (start-up floor)", [sys.executable, "-c", "import hybrid.cli"]),
        ("hybrid lineage RUN best", [*hybrid, "lineage", str(run), "best"]),
        ("hybrid lineage RUN best --all", [*hybrid, "lineage", str(run), "best", "--all"]),
        ("hybrid lineage RUN LAST (path to gen 0 = all gens)", [*hybrid, "lineage", str(run), str(last - 1)]),
        ("hybrid lineage RUN LAST --all", [*hybrid, "lineage", str(run), str(last - 1), "--all"]),
        ("hybrid lineage RUN LAST --format graphml", [*hybrid, "lineage", str(run), str(last - 1), "--format", "graphml"]),
        ("hybrid lineage RUN best --format graphml", [*hybrid, "lineage", str(run), "--format", "graphml"]),
        ("hybrid lineage RUN best --format json", [*hybrid, "lineage", str(run), "--format", "json"]),
    ]
    print(f"\n{'command (fresh process each run)':<52} {'median s':>9} {'max s':>7}")
    for label, argv in rows:
        med, worst = _time(argv, args.repeat)
        print(f"{label:<52} {med:>9.3f} {worst:>7.3f}")

    import hybrid.lineage as lineage

    t0 = time.perf_counter()
    with lineage.open(run) as lin:
        n = lin.graph.number_of_nodes()
        t1 = time.perf_counter()
        path = lin.path_to_root(last - 1)
        steps = lineage.ancestry(lin, last - 1)
        t2 = time.perf_counter()
    print(f"\nin process: open + graph of {n} genomes {t1 - t0:.3f} s; "
          f"path ({len(path)} genomes) + ancestry ({len(steps)} steps) {t2 - t1:.3f} s")


if __name__ == "__main__":
    main()
