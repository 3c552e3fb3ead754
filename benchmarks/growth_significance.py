"""Bottleneck growth events with and without the line batch's significance test (issue 15).

Runs the shipped ``configs/<task>_bottleneck.toml`` search (as ``growth.py``'s
``search_bottleneck`` method does; ``--method hybrid_grow``: the single-network
``configs/<task>_grow.toml``) with ``mutation.bottleneck_significance`` set to
each value given, and prints one JSON line per run and per value (seeds pooled):
test accuracy, live parameters, growth events and the share whose realised drop is
positive on held-out rows (``positive_val``), on the line batch and on the statistics
batch. With ``--pairs``, also issue 15's informed-vs-blind pairs of each run's kept
genomes (``growth_hybrid.pairs``: a pair exists where the bottleneck operator, with the
same ``k``, grows something), as ``growth.py`` counts them.

    python benchmarks/growth_significance.py --task spirals --seeds 0 1 2 --values 0 2 3
"""

from __future__ import annotations

import argparse
import json

import growth_hybrid as gh
import torch
from quality import config_override, machine_line


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=("digits", "spirals"), default="spirals")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--values", type=float, nargs="+", default=[0.0, 2.0, 3.0])
    p.add_argument(
        "--method",
        choices=("search_bottleneck", "hybrid_grow"),
        default="search_bottleneck",
        help="which shipped bottleneck config to run (growth.py's method names)",
    )
    p.add_argument(
        "--pairs", action="store_true", help="also the informed-vs-blind pairs (50 Adam steps)"
    )
    p.add_argument("--set", action="append", default=[], type=config_override, metavar="KEY=VALUE",
                   help="another config override for every run (JSON value), e.g. "
                   "'mutation.bottleneck_stats=\"noisy\"'")  # fmt: skip
    args = p.parse_args(argv)
    extra = dict(args.set)
    torch.set_num_threads(1)
    print(machine_line(1), flush=True)
    load = gh.load_config
    for value in args.values:
        gh.load_config = lambda path, over, v=value: load(
            path, {**over, **extra, "mutation.bottleneck_significance": v}
        )
        pooled, wins = [], {"pairs": 0, "wins": 0, "wins_val": 0}
        for seed in args.seeds:
            r = gh.run_config(args.method, args.task, seed)
            pooled += r["events"]
            row = {
                "significance": value,
                **extra,
                "method": args.method,
                "task": args.task,
                "seed": seed,
                "test": r["accuracy"],
                "params": r["params"],
                "wall_s": round(r["wall_s"], 1),
                **gh.event_summary(r["events"]),
            }
            if args.pairs:
                row["pairs"] = gh.pairs(r["parents"], args.task, seed, args.method)
                wins = {k: wins[k] + row["pairs"][k] for k in wins}
            print(json.dumps(row), flush=True)
        total = {
            "significance": value,
            **extra,
            "method": args.method,
            "task": args.task,
            "pooled": gh.event_summary(pooled),
        }
        print(json.dumps({**total, **({"pairs": wins} if args.pairs else {})}), flush=True)
    gh.load_config = load
    print(machine_line(1), flush=True)


if __name__ == "__main__":
    main()
