"""Networks with memory (issue 14): grown recurrent champions vs fixed Elman RNNs.

For each seed, on the task's own seeded streams (training: 32 streams, BPTT windows of
40 characters with the state carried; test: 32 fresh streams of 256 characters, the
first 16 not scored; excess nats/char over the split's floor, lower is better):

1. **grown**: ``configs/brackets_hard.toml`` (and ``brackets_easy.toml``) run as
   shipped: from one hidden neuron, the reserve rule and NEAT growth. Its champion's
   test excess, live parameters, live hidden neurons, wall time, and the gradient steps
   its lineage trained (``(champion generation + 1) * training.steps``: Lamarckian).
2. **fixed Elman RNN**: ``torch.nn.RNN(4, H, tanh)`` + a linear read-out, Adam, the
   same streams, windows and batch, for the same number of gradient steps as the
   grown hard champion's lineage (median over seeds), H in 8 .. 128.
3. **retrained**: the hard champion's architecture (its genome with fresh LeCun-normal
   weights, zero biases, gates at ``genome.gate_init``) trained from scratch by the
   same engine, growth off, for the same number of gradient steps as its lineage.
4. **switch**: ``configs/brackets_switch.toml`` (easy, hard, easy): live hidden neurons
   of each generation's best member and its validation excess, plotted to
   ``benchmarks/sequences_switch.png``.

Prints one table, then the issue's targets as PASS/MISS lines, and writes every figure
to ``benchmarks/sequences.json``.

    python benchmarks/sequences.py --seeds 0 1 2            # the issue's figures (~1 h)
    python benchmarks/sequences.py --seeds 0 --budget 60 --fixed-steps 500   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from quality import machine_line
from torch import nn

from genomes import Genome, active_structure, from_dict, load, to_dict
from genomes.serialize import atomic_write
from hybrid.config import load_config
from hybrid.population.recurrent import RecurrentEngine
from hybrid.population.sequence import check_sequence_data, train_sequence_engine
from hybrid.search import Search
from hybrid.sequences import evaluate_sequences
from hybrid.tasks import load_task
from hybrid.train import TrainConfig

HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parent / "configs"
FIXED_SIZES = (8, 16, 32, 64, 128)


def live_hidden(genome: Genome, gate: str) -> int:
    """Live hidden neurons: open neuron gates of hidden nodes that reach the output."""
    live = active_structure(genome, gate)
    return sum(int(m.sum()) for n, m in live.neurons.items() if genome.node(n)["role"] == "hidden")


class NeuronTrace:
    """A reporter: the network each generation would hand over, by the run's champion rule.

    Among the generation's members: under ``selection.champion = "smallest_within"`` the
    smallest (live parameters) within ``selection.epsilon`` of the best validation
    excess, else the best; its live hidden neurons and validation excess.
    """

    def __init__(self, gate: str, epsilon: float | None) -> None:
        self.gate = gate
        self.epsilon = epsilon
        self.rows: list[dict[str, Any]] = []

    def on_generation(self, state: Any, report: Any) -> None:
        ok = [r for r in report.genomes if r.val_metric is not None]
        best = max(ok, key=lambda r: r.val_metric)
        if self.epsilon is not None:
            near = [r for r in ok if r.val_metric >= best.val_metric - self.epsilon]
            best = min(near, key=lambda r: (r.active_params, -r.val_metric))
        self.rows.append(
            {
                "generation": report.generation,
                "neurons": live_hidden(best.genome, self.gate),
                "mean_neurons": statistics.mean(live_hidden(r.genome, self.gate) for r in ok),
                "excess": -best.val_metric,
                "params": best.active_params,
            }
        )


def run_search(config_path: Path, seed: int, runs: Path, budget: float | None) -> dict[str, Any]:
    """Run a shipped config with ``seed``; return the champion's figures and the trace."""
    config = load_config(config_path)
    run = {"seed": seed, "name": f"{config_path.stem}-{seed}", "runs_dir": str(runs)}
    evo = {} if budget is None else {"time_budget_s": budget}
    config = config.model_copy(
        update={
            "run": config.run.model_copy(update=run),
            "evolution": config.evolution.model_copy(update=evo),
        }
    )
    sel = config.selection
    trace = NeuronTrace(config.training.gate, sel.epsilon if sel.champion == "smallest_within" else None)
    t0 = time.perf_counter()
    result = Search.start(config, overwrite=True).run(reporters=[trace])
    wall = time.perf_counter() - t0
    genome = load(result.run_dir / "best" / "genome.json")
    metrics = json.loads((result.run_dir / "best" / "metrics.json").read_text())
    return {
        "seed": seed,
        "test_excess": result.test_metric,
        "val_excess": result.val_metric,
        "params": result.active_parameters,
        "neurons": live_hidden(genome, config.training.gate),
        "wall_s": wall,
        "generations": result.generations,
        "lineage_steps": (int(metrics["generation"]) + 1) * config.training.steps,
        "genome": genome,
        "config": config,
        "trace": trace.rows,
        "schedule": [list(p) for p in config.task.schedule],
    }


class Elman(nn.Module):
    """A fixed Elman RNN: ``nn.RNN`` (tanh) and a linear read-out."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.rnn = nn.RNN(4, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 4)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        z, h = self.rnn(x, h)
        return self.out(z), h


def stream_windows(X: np.ndarray, window: int, steps: int, rng: np.random.Generator):
    """Yield ``(x, y index slice, reset)`` windows over parallel streams, the engine's schedule."""
    length = X.shape[1]
    start = int(rng.integers(0, length - window + 1))
    for _ in range(steps):
        reset = False
        if start > length - window:
            start, reset = 0, True
        yield slice(start, start + window), reset
        start += window


def excess(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, floor: float) -> float:
    """Mean cross-entropy over the scored steps minus the floor."""
    ce = nn.functional.cross_entropy(logits.reshape(-1, 4), y.reshape(-1), reduction="none")
    return float(ce[mask.reshape(-1)].mean()) - floor


def train_fixed(hidden: int, task: Any, steps: int, window: int, seed: int, lr: float) -> dict[str, Any]:
    """Train one fixed Elman RNN on the task's streams; return its test excess and size."""
    torch.manual_seed(seed)
    model = Elman(hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    X = torch.tensor(task.X_train)
    y = torch.tensor(task.y_train)
    h = None
    t0 = time.perf_counter()
    for sl, reset in stream_windows(task.X_train, window, steps, np.random.default_rng(seed)):
        if reset:
            h = None
        out, h = model(X[:, sl], h)
        loss = nn.functional.cross_entropy(out.reshape(-1, 4), y[:, sl].reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        h = h.detach()
    wall = time.perf_counter() - t0
    with torch.no_grad():
        out, _ = model(torch.tensor(task.X_test))
    score = excess(out, torch.tensor(task.y_test), torch.tensor(task.mask_test), task.floor_test)
    params = sum(p.numel() for p in model.parameters())
    return {"hidden": hidden, "test_excess": score, "params": params, "wall_s": wall, "steps": steps}


def fresh(genome: Genome, rng: np.random.Generator, gate_init: float) -> Genome:
    """The same architecture with fresh values: LeCun-normal weights, zero biases, gates at init."""
    child = genome.copy()
    g = child.graph
    for _, a in g.nodes(data=True):
        if a["role"] != "input":
            a["bias"] = np.zeros_like(a["bias"])
        if a["role"] != "output":
            a["gate"] = np.full_like(a["gate"], gate_init)
    for _, _, a in g.edges(data=True):
        w = a["weight"]
        a["weight"] = (rng.normal(size=w.shape) / np.sqrt(w.shape[1])).astype(np.float32)
        a["gate"] = np.float32(gate_init)
    return child.validate()


def retrain(grown: dict[str, Any], task: Any, config: Any) -> dict[str, Any]:
    """Train the champion's architecture from scratch for its lineage's number of steps."""
    seed = grown["seed"]
    tc = TrainConfig(**config.train_kwargs())
    genome = fresh(from_dict(grown["genome"]), np.random.default_rng(seed), config.genome.gate_init)
    X, y, mask = check_sequence_data(task.X_train, task.y_train, task.mask_train, 4, 4, tc.loss)
    engine = RecurrentEngine([genome], tc.gate)
    steps = grown["lineage_steps"]
    window = min(config.training.bptt, X.shape[1])
    generator = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    train_sequence_engine(engine, X, y, mask, replace(tc, steps=steps), None, generator, window=window)
    wall = time.perf_counter() - t0
    (trained,) = engine.write_back()
    (m,) = evaluate_sequences([trained], task.X_test, task.y_test, task.mask_test, task.floor_test, tc)
    return {"seed": seed, "test_excess": m.score, "params": m.active_parameters, "steps": steps, "wall_s": wall}


def plot_switch(trace: list[dict[str, Any]], schedule: Any, path: Path) -> None:
    """Plot live hidden neurons and validation excess over the switch run's generations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    gens = [r["generation"] for r in trace]
    ax.plot(gens, [r["neurons"] for r in trace], label="chosen member's live hidden neurons")
    ax.plot(gens, [r["mean_neurons"] for r in trace], label="population mean", alpha=0.6)
    ax.set_xlabel("generation")
    ax.set_ylabel("hidden neurons")
    start = 0
    for name, n in schedule:
        ax.axvspan(start, start + n, alpha=0.08 if "easy" in name else 0.2, color="tab:red")
        ax.text(start + 0.5, ax.get_ylim()[0] + 1, name.replace("brackets_", ""), fontsize=8)
        start += n
    ax2 = ax.twinx()
    ax2.plot(gens, [r["excess"] for r in trace], color="tab:green", lw=0.8, label="validation excess")
    ax2.set_yscale("log")
    ax2.set_ylabel("excess nats/char (log)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


PARTS = ("hard", "easy", "fixed", "retrain", "switch")


def _clean(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as JSON keeps them: the champion genome as a dict, no config object."""
    out = []
    for r in rows:
        row = {k: v for k, v in r.items() if k not in ("genome", "config")}
        if "genome" in r:
            row["genome"] = to_dict(r["genome"])
        out.append(row)
    return out


def run_parts(args: argparse.Namespace, done: dict[str, Any]) -> None:
    """Run the asked parts, each into ``done`` (the JSON file's content)."""
    runs = Path(tempfile.mkdtemp(prefix="hybrid-seq-"))
    for name, config in (("hard", "brackets_hard"), ("easy", "brackets_easy"), ("switch", "brackets_switch")):
        if name in args.parts:
            budget = None if name == "switch" else args.budget
            rows = [run_search(CONFIGS / f"{config}.toml", s, runs, budget) for s in args.seeds]
            done[name] = _clean(rows)
            if name == "switch":
                plot_switch(rows[0]["trace"], rows[0]["config"].task.schedule, HERE / "sequences_switch.png")
    hard = done.get("hard", [])
    config = load_config(CONFIGS / "brackets_hard.toml")
    if "fixed" in args.parts:
        steps = args.fixed_steps or int(median([h["lineage_steps"] for h in hard]))
        fixed = []
        for size in FIXED_SIZES:
            per = [train_fixed(size, _task(config, seed), steps, config.training.bptt, seed, args.fixed_lr) for seed in args.seeds]
            fixed.append({"hidden": size, "test_excess": median([p["test_excess"] for p in per]),
                          "params": per[0]["params"], "wall_s": median([p["wall_s"] for p in per]), "steps": steps,
                          "per_seed": per})  # fmt: skip
        done["fixed"] = fixed
    if "retrain" in args.parts:
        done["retrained"] = [retrain(h, _task(config, h["seed"]), config) for h in hard]


def _task(config: Any, seed: int) -> Any:
    return load_task(config.task, seed)


def report(done: dict[str, Any]) -> None:
    """Print the table and the targets from whatever parts ``done`` holds."""
    hard, easy, fixed = done.get("hard", []), done.get("easy", []), done.get("fixed", [])
    retrained, switch = done.get("retrained", []), done.get("switch", [])

    def med(rows: list[dict[str, Any]], k: str) -> float:
        return median([r[k] for r in rows])

    def row(name: str, excess_: float, params: float, neurons: Any, wall: float, steps_: Any) -> None:
        print(f"{name:<34} {excess_:>10.4f} {params:>8.0f} {neurons!s:>8} {wall:>8.1f} {steps_!s:>8}")

    print(f"\nbrackets, medians over seeds {done.get('seeds')}; excess = test nats/char above the floor")
    print(f"{'method':<34} {'excess':>10} {'params':>8} {'neurons':>8} {'wall s':>8} {'steps':>8}")
    if hard:
        row("grown (brackets_hard.toml)", med(hard, "test_excess"), med(hard, "params"), med(hard, "neurons"),
            med(hard, "wall_s"), int(med(hard, "lineage_steps")))  # fmt: skip
    if retrained:
        row("  its architecture, retrained", med(retrained, "test_excess"), med(retrained, "params"), "",
            med(retrained, "wall_s"), int(med(retrained, "steps")))  # fmt: skip
    for f in fixed:
        row(f"fixed Elman RNN {f['hidden']} (nn.RNN, Adam)", f["test_excess"], f["params"], f["hidden"], f["wall_s"], f["steps"])
    if easy:
        row("grown (brackets_easy.toml)", med(easy, "test_excess"), med(easy, "params"), med(easy, "neurons"),
            med(easy, "wall_s"), int(med(easy, "lineage_steps")))  # fmt: skip
    print("\ntargets (issue 14):")

    def target(ok: bool, text: str) -> None:
        print(f"  {'PASS' if ok else 'MISS'}  {text}")

    if hard:
        e, p, w = med(hard, "test_excess"), med(hard, "params"), med(hard, "wall_s")
        target(e <= 0.010 and p <= 1800 and w <= 600, f"hard: {e:.4f} <= 0.010 nats/char, {p:.0f} <= 1,800 params, {w:.0f} <= 600 s")
    if hard and retrained:
        ratios = [r["test_excess"] / max(h["test_excess"], 1e-9) for r, h in zip(retrained, hard, strict=True)]
        target(median(ratios) >= 1.5, f"grown beats fixed: retrained / grown excess = {median(ratios):.2f} (>= 1.5)")
    if hard and easy:
        ratio = med(hard, "neurons") / max(med(easy, "neurons"), 1)
        target(ratio >= 3, f"size tracks difficulty: hard / easy live hidden neurons = {ratio:.2f} (>= 3)")
    for s in switch:
        trace, sched = s["trace"], s["schedule"]
        ends = np.cumsum([n for _, n in sched])
        at = {r["generation"]: r for r in trace}
        last = trace[-1]["generation"]
        easy_end = at[min(ends[0] - 1, last)]["neurons"]
        hard_end = at[min(ends[1] - 1, last)]["neurons"]
        peak, final = max(r["neurons"] for r in trace), trace[-1]["neurons"]
        back = min((r["excess"] for r in trace if r["generation"] >= ends[1]), default=float("inf"))
        target(hard_end >= 2 * max(easy_end, 1), f"switch seed {s['seed']}: end of hard {hard_end} >= 2 x end of easy {easy_end} neurons")
        target(final <= 0.6 * peak, f"switch seed {s['seed']}: final {final} <= 0.6 x peak {peak} neurons")
        target(back < 0.01, f"switch seed {s['seed']}: best validation excess in the last phase {back:.4f} < 0.01")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    ap.add_argument("--budget", type=float, default=None, help="override evolution.time_budget_s (seconds)")
    ap.add_argument("--fixed-steps", type=int, default=None, help="steps of the fixed RNNs (default: the champions')")
    ap.add_argument("--fixed-lr", type=float, default=0.003, help="Adam lr of the fixed RNNs (0.01 diverges at 64-128 units)")
    ap.add_argument("--out", type=Path, default=HERE / "sequences.json")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine_line(args.threads))
    done: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    done["seeds"] = args.seeds
    run_parts(args, done)
    report(done)
    done.setdefault("machine", {})[",".join(args.parts)] = machine_line(args.threads)
    atomic_write(args.out, json.dumps(done, indent=1, default=float))
    print(machine_line(args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
