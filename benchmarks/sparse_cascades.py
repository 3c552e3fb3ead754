"""What issue 16's 1,200-FLOP line asks for: hand-built sparse two-stage nets against the fixed MLPs.

Issue 16 asks hybrid's adaptive front to be >= 2 points above the fixed-MLP front at
<= 1,200 average FLOPs per input on digits. This script measures, on the same seeded
splits and with the same training as ``adaptive.py``'s fixed MLPs (``digits.toml``'s
AdamW, minibatches and input noise, ``--steps`` steps, torch threads 1), what a
*hand-built* network of the kind the search's best champions are reaches there, with
no search at all:

- a cheap stage: ``h1`` ReLU neurons, each reading ``k1`` pixels drawn at random (a
  fixed connection mask), with an exit head (``h1 -> 10``);
- a costly stage: ``h2`` ReLU neurons reading ``k2`` random pixels each, and the final
  output reading both stages (``h1 + h2 -> 10``);
- trained jointly on the sum of the exit's and the output's cross-entropy (issue 16's
  weighted sum, weights 1), then dialled to the budget on validation with hybrid's own
  rule (``genomes.adaptive.threshold_for_flops``: the exit threshold that spends the most
  of the budget) and scored on test.

FLOPs count 2 per multiply-add of a present connection, as hybrid counts them: the
cheap stage ``2 (h1 k1 + 10 h1)``, the rest ``2 (h2 k2 + 10 (h1 + h2))``.

The table beside them: the fixed MLPs' test medians at every width (``adaptive.run_mlps``,
the same nets as ``adaptive.py``'s MLP arm) and the line, the MLP front at 1,200 FLOPs + 2.

    PYTHONPATH=benchmarks:. python benchmarks/sparse_cascades.py               # 15 seeds, ~5 minutes
    PYTHONPATH=benchmarks:. python benchmarks/sparse_cascades.py --input-noise 0
"""

from __future__ import annotations

import argparse
import sys

import adaptive
import numpy as np
import torch
from quality import machine_line, median, training_minibatches
from torch import nn

from genomes.adaptive import confidence, threshold_for_flops
from hybrid.config import load_config
from hybrid.tasks import load_task

#: (h1, k1, h2, k2): cheap neurons and their pixels, costly neurons and theirs.
ARCHS = ((8, 16, 32, 64), (12, 16, 32, 32), (16, 12, 32, 32), (16, 12, 64, 16), (16, 12, 32, 64))
BUDGET = 1200
SETS = 5  # seeds per set: issue 16 reads medians of five


class TwoStage(nn.Module):
    """A cheap masked stage with an exit head, a costly masked stage, an output reading both."""

    def __init__(self, h1: int, k1: int, h2: int, k2: int, gen: torch.Generator, n_in: int = 64, n_out: int = 10):
        super().__init__()
        self.cheap, self.costly = nn.Linear(n_in, h1), nn.Linear(n_in, h2)
        self.exit, self.out = nn.Linear(h1, n_out), nn.Linear(h1 + h2, n_out)
        masks = []
        for h, k in ((h1, k1), (h2, k2)):
            m = torch.zeros(h, n_in)
            for row in m:
                row[torch.randperm(n_in, generator=gen)[:k]] = 1.0
            masks.append(m)
        self.register_buffer("m1", masks[0])
        self.register_buffer("m2", masks[1])
        self.stage_flops = (2 * (h1 * k1 + n_out * h1), 2 * (h2 * k2 + n_out * (h1 + h2)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.relu(nn.functional.linear(x, self.cheap.weight * self.m1, self.cheap.bias))
        b = torch.relu(nn.functional.linear(x, self.costly.weight * self.m2, self.costly.bias))
        return self.exit(a), self.out(torch.cat([a, b], 1))


def run(seed: int, arch: tuple[int, int, int, int], steps: int, overrides: dict) -> dict[str, float]:
    """Train one two-stage net: its test accuracy dialled to :data:`BUDGET` on validation and on its
    full path, and its FLOPs (first stage, full path)."""
    config = load_config(adaptive.CONFIG, {"run.seed": seed, **overrides})
    task = load_task(config.task, seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = TwoStage(*arch, gen)
    tr = config.training
    opt = torch.optim.AdamW(net.parameters(), lr=tr.lr, weight_decay=tr.weight_decay)
    for xb, yb in training_minibatches(task, tr, steps, gen):
        e, o = net(xb)
        loss = nn.functional.cross_entropy(e, yb) + nn.functional.cross_entropy(o, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    first, rest = net.stage_flops
    got = {}
    with torch.no_grad():
        for split, X, y in (("val", task.X_val, task.y_val), ("test", task.X_test, task.y_test)):
            e, o = (t.double().numpy() for t in net(torch.tensor(np.asarray(X, np.float32))))
            stages = np.array([[first] * len(y), [first + rest] * len(y)], np.float64)
            got[split] = (e[None], o, np.asarray(y), stages)
    heads, output, y, stages = got["val"]
    fit = threshold_for_flops(heads, output, y, stages, BUDGET)
    heads, output, y, _ = got["test"]
    out = {"full": float((output.argmax(1) == y).mean()), "first_flops": first, "full_flops": first + rest}
    if fit is None:
        return {**out, "at_budget": float("nan")}
    stop = confidence(heads[0]) >= fit[0]  # genomes.adaptive's rule: the first stage sure enough
    return {**out, "at_budget": float((np.where(stop, heads[0].argmax(1), output.argmax(1)) == y).mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=list(range(15)))
    ap.add_argument("--steps", type=int, default=adaptive.MLP_STEPS, help="training steps (the MLPs': %(default)s)")
    ap.add_argument("--input-noise", type=float, default=None, metavar="STD",
                    help="training.input_noise of the nets and the MLPs (default: digits.toml's)")  # fmt: skip
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    overrides = {} if args.input_noise is None else {"training.input_noise": args.input_noise}
    adaptive.BOTH.update(overrides)  # run_mlps reads the noise from there
    print(machine_line(1), flush=True)
    seeds = args.seeds
    sets = [seeds[i : i + SETS] for i in range(0, len(seeds), SETS)]
    mlps = {s: adaptive.run_mlps(s, args.steps)[0] for s in seeds}

    def cells(per_seed: dict[int, float]) -> list[str]:
        return [f"{100 * median([per_seed[s] for s in group]):.1f}" for group in [*sets, seeds]]

    head = [f"seeds {g[0]}-{g[-1]}" for g in sets] + [f"all {len(seeds)}"]
    print(f"\ndigits, median test % at <= {BUDGET} average FLOPs (validation-dialled exit) and on the full path;")
    print(f"training: digits.toml + {overrides or 'nothing'}, {args.steps} steps; {machine_line(1)}")
    print("| model | cheap stage / full path FLOPs | " + " | ".join(head) + " |")
    print("|---|---|" + "---|" * len(head))
    at = {s: adaptive.at_budget(mlps[s], BUDGET) for s in seeds}
    print(f"| fixed MLP front at {BUDGET} | | " + " | ".join(cells(at)) + " |")
    print("| **the line: that + 2** | | " + " | ".join(f"**{float(c) + 2:.1f}**" for c in cells(at)) + " |")
    for hidden in ([8], [16], [32], [64], [32, 32]):
        acc = {s: next(m["test_acc"] for m in mlps[s] if m["hidden"] == hidden) for s in seeds}
        print(f"| fixed MLP {hidden} | {adaptive.mlp_flops(tuple(hidden))} | " + " | ".join(cells(acc)) + " |")
    for arch in ARCHS:
        runs = {s: run(s, arch, args.steps, overrides) for s in seeds}
        first, full = runs[seeds[0]]["first_flops"], runs[seeds[0]]["full_flops"]
        budget = {s: r["at_budget"] for s, r in runs.items()}
        if any(np.isnan(v) for v in budget.values()):
            print(f"| two-stage {arch} | {first} / {full} | no threshold within {BUDGET} on some seed |")
            continue
        print(f"| two-stage {arch} at {BUDGET} | {first} / {full} | " + " | ".join(cells(budget)) + " |")
        print(f"| two-stage {arch}, full path | {full} | " + " | ".join(cells({s: r['full'] for s, r in runs.items()})) + " |", flush=True)
    print(machine_line(1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
