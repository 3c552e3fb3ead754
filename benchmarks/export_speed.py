"""Forward time of exported networks against plain torch layers of the same shape.

For a few genomes of the sizes hybrid's digits searches end with (64 inputs, 10
outputs, a hidden node of 16 neurons, with and without a skip edge, with every input
kept or with some inputs closed by their gates as L0 leaves them), each exported as
the ``python`` file and as ``torchscript``, loaded the way a user loads them
(``module.load()``, ``torch.jit.load``), and timed per call at batch 1 and 1,024
(median of ``--repeats`` calls after warm-up, no grad). The reference is the
hand-written floor: ``nn.Linear`` layers with the same widths applied to the same
(kept) features, standardisation included, written as a user would write them. The
ratio export / floor is the price of exporting a graph instead of hand-writing it.

    python benchmarks/export_speed.py            # about a minute on one core
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from quality import machine_line
from torch import nn

from genomes import Genome, InnovationTracker
from genomes.genome import edge_attrs
from hybrid.export import export_genome

N_IN, N_OUT, HIDDEN = 64, 10, 16
GATE = "hard_concrete"


def genome_for(closed: int, skip: bool, seed: int = 0) -> Genome:
    """A 64-16-10 genome; ``closed`` input features gated shut; a direct input->output edge if ``skip``."""
    rng = np.random.default_rng(seed)
    tracker = InnovationTracker()
    g = Genome.minimal(N_IN, N_OUT, rng, tracker, hidden=[HIDDEN])
    graph = g.graph
    logits = np.full(N_IN, 10.0, np.float32)  # open under hard_concrete
    logits[rng.choice(N_IN, closed, replace=False)] = -10.0  # shut
    graph.nodes[g.input_id]["gate"] = logits
    if skip:
        weight = rng.normal(0.0, 1.0 / np.sqrt(N_IN), size=(N_OUT, N_IN))
        graph.add_edge(g.input_id, g.output_id, **edge_attrs(tracker.edge(g.input_id, g.output_id), weight))
    return g


class Floor(nn.Module):
    """The hand-written reference: standardise, keep the open features, two ``nn.Linear``."""

    def __init__(self, kept: int, skip: bool) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(N_IN))
        self.register_buffer("std", torch.ones(N_IN))
        self.register_buffer("index", torch.arange(kept))
        self.hidden = nn.Linear(kept, HIDDEN)
        self.out = nn.Linear(HIDDEN, N_OUT)
        self.skip = nn.Linear(kept, N_OUT, bias=False) if skip else None
        self.kept = kept

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.kept < N_IN:
            x = x.index_select(1, self.index)
        y = self.out(torch.relu(self.hidden(x)))
        return y + self.skip(x) if self.skip is not None else y


def per_call(f, x: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        for _ in range(20):
            f(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def load_exports(genome: Genome, tmp: Path) -> dict[str, nn.Module]:
    py, ts = tmp / "net.py", tmp / "net.pt"
    export_genome(genome, py, "python", gate=GATE)
    export_genome(genome, ts, "torchscript", gate=GATE)
    spec = importlib.util.spec_from_file_location(f"net_{id(genome)}", py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return {"python file": module.load(), "torchscript": torch.jit.load(str(ts))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(machine_line(torch.get_num_threads()), flush=True)
    print("\n| genome | batch | floor us | python file us | torchscript us | python / floor | torchscript / floor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for closed, skip in ((0, False), (4, False), (4, True), (24, True)):
        genome = genome_for(closed, skip)
        floor = Floor(N_IN - closed, skip)
        name = f"64-16-10, {N_IN - closed} inputs open{', skip edge' if skip else ''}"
        with tempfile.TemporaryDirectory() as tmp:
            nets = load_exports(genome, Path(tmp))
            for batch in (1, 1024):
                x = torch.randn(batch, N_IN)
                t_floor = per_call(floor, x, args.repeats)
                t_py = per_call(nets["python file"], x, args.repeats)
                t_ts = per_call(nets["torchscript"], x, args.repeats)
                print(f"| {name} | {batch} | {1e6 * t_floor:.1f} | {1e6 * t_py:.1f} | {1e6 * t_ts:.1f} | "
                      f"{t_py / t_floor:.2f} | {t_ts / t_floor:.2f} |", flush=True)  # fmt: skip
    print("\n" + machine_line(torch.get_num_threads()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
