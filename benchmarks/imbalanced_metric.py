"""Does ``task.metric = "balanced_accuracy"`` help on an imbalanced task? (issue 19)

Breast cancer with the malignant class subsampled to ~10% of the samples (all 357
benign, 40 malignant: 397 samples), written as an NPZ under a temporary folder.
The same small search (configs/breast_cancer.toml's settings, a generation cap and
no time budget, so runs are deterministic) is run with ``metric = "accuracy"``
and with ``metric = "balanced_accuracy"`` for several seeds; each champion's
balanced accuracy on the test split (the run's own split) is printed, and the
medians.

    python benchmarks/imbalanced_metric.py            # 3 seeds, 15 generations
    python benchmarks/imbalanced_metric.py --seeds 5 --positives 20   # ~5% positives
    python benchmarks/imbalanced_metric.py --data synthetic           # make_classification, 10%, overlapping
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

from genomes import from_dict
from hybrid.config import load_config
from hybrid.population import evaluate_population
from hybrid.search import Search
from hybrid.tasks import load_task
from hybrid.train import TrainConfig

CONFIG = """
[run]
name = "{name}"
seed = {seed}
runs_dir = "{runs}"

[task]
path = "{npz}"
kind = "classification"
metric = "{metric}"
folds = "off"  # one validation split in both arms: the comparison is the metric alone

[genome]
hidden = []

[training]
steps = 200
weight_decay = 1e-3
gate = "hard_concrete"
penalty = 0.002

[evolution]
population = {population}
generations = {generations}

[selection]
method = "nsga2"

[mutation]
add_node = 0.05
widen = 0.05
add_edge = 0.05
prune_neurons = 0.3
prune_edge = 0.1
"""


def imbalanced_npz(folder: Path, n_positive: int = 40, seed: int = 0) -> Path:
    """Write breast cancer with ``n_positive`` malignant samples (label 1) and every benign one."""
    X, y = load_breast_cancer(return_X_y=True)
    malignant = 1 - y  # sklearn: 0 = malignant; here 1 = malignant, the rare class
    rng = np.random.default_rng(seed)
    pos = rng.choice(np.flatnonzero(malignant == 1), n_positive, replace=False)
    keep = np.sort(np.concatenate([np.flatnonzero(malignant == 0), pos]))
    path = folder / "breast_cancer_10pct.npz"
    np.savez(path, X=X[keep].astype(np.float32), y=malignant[keep].astype(np.int64))
    return path


def synthetic_npz(folder: Path, seed: int = 0) -> Path:
    """Write a harder imbalanced task: sklearn's make_classification, 10% positives, overlapping."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=2000, n_features=10, n_informative=4, weights=[0.9], flip_y=0.02,
        class_sep=0.6, random_state=seed,
    )  # fmt: skip
    path = folder / "synthetic_10pct.npz"
    np.savez(path, X=X.astype(np.float32), y=y.astype(np.int64))
    return path


def run_one(folder: Path, npz: Path, metric: str, seed: int, generations: int, population: int) -> dict:
    name = f"{metric}_{seed}"
    toml = folder / f"{name}.toml"
    toml.write_text(
        CONFIG.format(
            name=name, seed=seed, runs=(folder / "runs").as_posix(), npz=npz.as_posix(),
            metric=metric, generations=generations, population=population,
        )
    )  # fmt: skip
    config = load_config(toml)
    t0 = time.perf_counter()
    search = Search.start(config)
    result = search.run()
    wall = time.perf_counter() - t0
    # the champion's balanced accuracy and accuracy on the run's own test split
    genome = from_dict(json.loads(search.run_dir.best_genome_path.read_text()))
    task = load_task(config.task, config.run.seed)
    tc = TrainConfig(**{**config.train_kwargs(), "metric": "balanced_accuracy"})
    (ev,) = evaluate_population([genome], task.X_test, task.y_test, tc)
    return {
        "metric": metric,
        "seed": seed,
        "test_balanced_accuracy": ev.score,
        "test_accuracy": ev.accuracy,
        "active_parameters": result.active_parameters,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--generations", type=int, default=15)
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--positives", type=int, default=40, help="malignant samples kept (40: ~10%%)")
    parser.add_argument("--data", choices=["breast_cancer", "synthetic"], default="breast_cancer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        npz = imbalanced_npz(folder, args.positives) if args.data == "breast_cancer" else synthetic_npz(folder)
        y = np.load(npz)["y"]
        print(f"data: {len(y)} samples, {int(y.sum())} positive ({y.mean():.1%})")
        rows = []
        for seed in range(args.seeds):
            for metric in ("accuracy", "balanced_accuracy"):
                r = run_one(folder, npz, metric, seed, args.generations, args.population)
                rows.append(r)
                print(
                    f"seed {seed} metric {metric:>17}: test balanced accuracy {r['test_balanced_accuracy']:.4f}, "
                    f"accuracy {r['test_accuracy']:.4f}, {r['active_parameters']} params, {r['wall_s']:.1f} s",
                    flush=True,
                )
        for metric in ("accuracy", "balanced_accuracy"):
            vals = [r["test_balanced_accuracy"] for r in rows if r["metric"] == metric]
            print(f"median test balanced accuracy, searched with {metric}: {statistics.median(vals):.4f} {vals}")


if __name__ == "__main__":
    main()
