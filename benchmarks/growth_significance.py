"""Bottleneck growth events with and without the line batch's significance test (issue 15).

Runs the shipped ``configs/<task>_bottleneck.toml`` search (as ``growth.py``'s
``search_bottleneck`` method does) with ``mutation.bottleneck_significance`` set to
each value given, and prints one JSON line per run and per value (seeds pooled):
test accuracy, live parameters, growth events and the share whose realised drop is
positive on held-out rows (``positive_val``), on the line batch and on the statistics
batch.

    python benchmarks/growth_significance.py --task spirals --seeds 0 1 2 --values 0 2 3
"""

from __future__ import annotations

import argparse
import json

import growth_hybrid as gh
import torch
from quality import machine_line


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=("digits", "spirals"), default="spirals")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--values", type=float, nargs="+", default=[0.0, 2.0, 3.0])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(machine_line(1), flush=True)
    load = gh.load_config
    for value in args.values:
        gh.load_config = lambda path, over, v=value: load(path, {**over, "mutation.bottleneck_significance": v})
        pooled = []
        for seed in args.seeds:
            r = gh.run_config("search_bottleneck", args.task, seed)
            pooled += r["events"]
            row = {"significance": value, "task": args.task, "seed": seed, "test": r["accuracy"],
                   "params": r["params"], "wall_s": round(r["wall_s"], 1), **gh.event_summary(r["events"])}
            print(json.dumps(row), flush=True)
        print(json.dumps({"significance": value, "task": args.task, "pooled": gh.event_summary(pooled)}), flush=True)
    gh.load_config = load
    print(machine_line(1), flush=True)


if __name__ == "__main__":
    main()
