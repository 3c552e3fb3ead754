"""Training with input noise: hybrid searches and fixed MLPs with and without it, side by side.

``training.input_noise = sigma`` adds ``sigma`` times standard normal noise to each
training minibatch's standardised inputs. This script runs, for each seed and each
sigma, the search of a shipped config (``--config``, with ``--set KEY=VALUE``
overrides, e.g. ``selection.champion="smallest_within"``) and, as the control, fixed
one-hidden-layer relu MLPs (plain torch, ``--mlp-hidden`` widths, the recipe of
``digits_ceiling.py``: AdamW with a cosine schedule, 2,500 steps of 256 rows) trained with the same noise on the same
split: the MLPs say how much of a change is the regulariser alone. One table, medians
over seeds, each seed's figures beside them.

    python benchmarks/input_noise.py --seeds 0 1 2 --sigmas 0 0.5 \\
        --set 'selection.champion="smallest_within"'        # digits, about 8 minutes
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from digits_ceiling import accuracy, train
from quality import machine_line

from hybrid.config import load_config
from hybrid.search import Search
from hybrid.tasks import load_task

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def parse_sets(items: list[str]) -> dict:
    """``KEY=VALUE`` pairs, each VALUE read as TOML (``0.5``, ``"best"``, ``[16]``)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = tomllib.loads(f"v = {value}")["v"]
    return out


def search_row(config_path: Path, overrides: dict, sigma: float, seed: int, runs: Path) -> dict:
    over = {**overrides, "training.input_noise": sigma, "run.seed": seed, "run.threads": 1, "run.device": "cpu"}
    over |= {"run.runs_dir": str(runs), "run.name": f"s{seed}-n{sigma}"}
    t0 = time.perf_counter()
    result = Search.start(load_config(config_path, over)).run()
    return {"test": result.test_metric, "params": result.active_parameters, "wall_s": time.perf_counter() - t0}


def mlp_test(config_path: Path, sigma: float, seed: int, hidden: int) -> float:
    """Test accuracy of a ``n_inputs -> hidden -> n_classes`` relu MLP trained with input noise ``sigma``.

    :func:`digits_ceiling.train`'s recipe (AdamW, lr 5e-3, decay 1e-4, cosine, 2,500 steps of 256 rows).
    """
    task = load_task(load_config(config_path).task, seed)
    net = train(task.X_train, task.y_train, seed, hidden, 5e-3, 1e-4, 0.0, noise=sigma, n_out=task.n_outputs)
    return accuracy(net, task.X_test, task.y_test)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "digits.toml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.5])
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--mlp-hidden", type=int, nargs="*", default=[6, 13], help="control MLP widths (none: skip)")
    p.add_argument("--json", type=Path, default=None, help="also write every row here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(machine_line(1), flush=True)
    overrides = parse_sets(args.sets)
    rows = []
    with tempfile.TemporaryDirectory(prefix="input-noise-") as runs:
        for sigma in args.sigmas:
            for seed in args.seeds:
                row = {"sigma": sigma, "seed": seed, **search_row(args.config, overrides, sigma, seed, Path(runs))}
                for h in args.mlp_hidden:
                    row[f"mlp{h}"] = mlp_test(args.config, sigma, seed, h)
                rows.append(row)
                print(json.dumps(row), flush=True)
    cols = ["search test % / params", *(f"MLP {h} hidden test %" for h in args.mlp_hidden), "search wall s"]
    print(f"\n{args.config.name} {json.dumps(overrides)}; medians over seeds {args.seeds} (per seed in brackets)")
    print("| input_noise | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for sigma in args.sigmas:
        mine = [r for r in rows if r["sigma"] == sigma]
        test = [100 * r["test"] for r in mine]
        params = [r["params"] for r in mine]
        cells = [
            f"{statistics.median(test):.1f} / {statistics.median(params):,.0f} ("
            + ", ".join(f"{t:.1f} / {n:,}" for t, n in zip(test, params, strict=True))
            + ")"
        ]
        for h in args.mlp_hidden:
            v = [100 * r[f"mlp{h}"] for r in mine]
            cells.append(f"{statistics.median(v):.1f} (" + ", ".join(f"{x:.1f}" for x in v) + ")")
        cells.append(f"{statistics.median(r['wall_s'] for r in mine):.0f}")
        print(f"| {sigma:g} | " + " | ".join(cells) + " |")
    print(machine_line(1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
