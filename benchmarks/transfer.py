"""Reuse of trained modules (issue 18): searches with and without a module library, side by side.

One fixed, stratified split of sklearn's 1,797 digits: a *source* part (60%) and a
*held-out* part (40%) that no source run ever sees. Per seed:

1. **Source runs** on the source part (80% train, 20% validation): ``even_odd`` (the
   digit's parity, 2 classes), ``ge5`` (digit >= 5, 2 classes) and ``digits04`` (digits
   0-4 only, 5 classes); accuracy-only selection and no L0 penalty (a module is meant to
   offer features, not to be small); 16 members x 30 generations x 200 steps
   (``--source-generations``; 12 before session 14: a library's modules should be
   trained as well as the sources allow, and their steps are not the target's). Each champion's widest hidden node read from the
   input goes into a module library (``hybrid.library``) as one entry, harvested as
   ``hybrid modules add --nodes`` does.
2. **Target runs**, the same search without and with the library
   (``mutation.insert_module = 0.3``, frozen grafts, the champion with the best
   validation accuracy in both arms):

   * ``digits10_k5``: 10-class digits, 5 training and 5 validation images per class from
     the source part, tested on the held-out part (719 images); modules ``even_odd``
     and ``ge5``.
   * ``digits10_k20``: the same with 20 training images per class.
   * ``digits59_k5``: digits 5-9 (5 classes), 5 + 5 images per class, tested on every
     5-9 image that is not a training or validation image: the ``digits04`` source never
     saw a 5-9 image, so these are all unseen; module ``digits04``.

Target searches stop at a generation cap (no time budget), so both arms take the same
number of gradient steps. Reported per target (medians over seeds): test accuracy of
each arm and their difference; the share of the no-library run's gradient steps the
library run needed to reach the no-library run's final test accuracy (from the test
accuracy of every generation's champion; steps = generations x training.steps x
population, member-steps); wall time; grafts made and champions descending from one.
Source runs' steps and wall are reported apart.

    python benchmarks/transfer.py --quick --seeds 0          # a few minutes
    python benchmarks/transfer.py                             # seeds 0-4: ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from quality import config_override, machine_line
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from genomes import evaluate
from genomes.serialize import atomic_write
from hybrid.config import loads_config
from hybrid.grafting import module_use
from hybrid.library import Library, harvest_run
from hybrid.lineage.reader import Lineage
from hybrid.rundir import open_run_dir
from hybrid.search import Search
from hybrid.tasks import load_task

SPLIT_SEED = 0  # the source / held-out split is the same for every seed

SOURCE = """
[task]
path = "{path}"
kind = "classification"
[genome]
hidden = [32]
[training]
steps = {steps}
batch_size = 128
lr = 0.005
gate = "hard_concrete"
penalty = {penalty}
input_noise = {noise}
[evolution]
population = 16
generations = {generations}
[selection]
method = "{method}"
champion = "best"
{prune}[run]
seed = {seed}
name = "{name}"
runs_dir = "{runs}"
threads = 1
"""

TARGET = """
[task]
path = "{path}"
kind = "classification"
[genome]
hidden = [8]
[training]
steps = {steps}
batch_size = 64
lr = 0.01
weight_decay = 0.0001
gate = "hard_concrete"
penalty = 0.0005
[evolution]
population = 16
generations = {generations}
[selection]
method = "nsga2"
champion = "{champion}"
epsilon = {epsilon}
[mutation]
insert_module = {rate}
[run]
seed = {seed}
name = "{name}"
runs_dir = "{runs}"
threads = 1
"""

#: target name -> (classes, training images per class, module source)
TARGETS = {
    "digits10_k5": (tuple(range(10)), 5, ("even_odd", "ge5")),
    "digits10_k20": (tuple(range(10)), 20, ("even_odd", "ge5")),
    "digits59_k5": ((5, 6, 7, 8, 9), 5, ("digits04",)),
}
VAL_PER_CLASS = 5


def write_npz(path: Path, X: np.ndarray, y: np.ndarray, split: np.ndarray) -> None:
    """Write a task file with an explicit split (0 train, 1 validation, 2 test)."""
    import io

    buf = io.BytesIO()
    np.savez(buf, X=X.astype(np.float64), y=y.astype(np.int64), split=split.astype(np.int64))
    atomic_write(path, buf.getvalue())


def run_config(text: str, overrides: dict[str, Any] | None = None) -> Any:
    return loads_config(text, source="benchmarks/transfer.py", overrides=overrides)


def source_run(kind: str, X: np.ndarray, y: np.ndarray, Xh: np.ndarray, yh: np.ndarray, seed: int,
               work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train one source search; return its run folder, steps and wall."""
    if kind == "even_odd":
        Xs, ys, Xt, yt = X, y % 2, Xh, yh % 2
    elif kind == "ge5":
        Xs, ys, Xt, yt = X, (y >= 5).astype(np.int64), Xh, (yh >= 5).astype(np.int64)
    else:
        Xs, ys, Xt, yt = X[y < 5], y[y < 5], Xh[yh < 5], yh[yh < 5]
    idx_tr, idx_val = train_test_split(np.arange(len(ys)), test_size=0.2, random_state=seed, stratify=ys)
    split = np.zeros(len(ys), np.int64)
    split[idx_val] = 1
    path = work / f"{kind}_s{seed}.npz"
    write_npz(path, np.vstack([Xs, Xt]), np.concatenate([ys, yt]),
              np.concatenate([split, np.full(len(yt), 2, np.int64)]))
    name = f"source_{kind}_s{seed}"
    cfg = run_config(SOURCE.format(path=path, steps=args.source_steps, generations=args.source_generations,
                                   seed=seed, name=name, runs=work / "runs", penalty=args.source_penalty,
                                   method=args.source_method, noise=args.source_noise,
                                   prune="" if args.source_prune is None else
                                   f"[mutation]\nprune_neurons = {args.source_prune}\nremove_node = {args.source_prune}\n"))
    t0 = time.perf_counter()
    result = Search.start(cfg, overwrite=True).run()
    wall = time.perf_counter() - t0
    return {
        "run_dir": str(result.run_dir),
        "test": float(result.test_metric),
        "params": int(result.active_parameters),
        "steps": cfg.evolution.population * cfg.training.steps * result.generations,
        "wall_s": wall,
    }


def feature_nodes(run_dir: str) -> list[int] | None:
    """The champion's features: its widest hidden node fed by the input alone (None: whole genome).

    A single node read from the input keeps every neuron it learned as the module's
    output; a group of nodes would only offer those with an edge leaving the group
    (after an add_node split, often a narrow bottleneck).
    """
    from genomes import load

    genome = load(Path(run_dir) / "best" / "genome.json")
    active = genome.active_graph()
    fed = [n for n in genome.hidden_nodes() if set(active.predecessors(n)) == {genome.input_id}]
    if not fed:
        return None
    return [max(fed, key=lambda n: (genome.graph.nodes[n]["width"], -n))]


def champion_curve(run_dir: Path, seed: int) -> list[float]:
    """Test accuracy of every generation's champion, generation order."""
    run = open_run_dir(run_dir)
    config = run.load_config()
    task = load_task(config.task, seed)
    with Lineage(run) as lin:
        ids = [g.champion for g in lin.generations()]
        genomes = {i: lin.genome(i) for i in set(ids)}
    return [test_accuracy(genomes[i], task, config.training.gate) for i in ids]


def test_accuracy(genome: Any, task: Any, gate: str) -> float:
    """The genome's test accuracy by the numpy reference, whatever ``task.metric`` selects on."""
    out = evaluate(genome, np.asarray(task.X_test, np.float64), gate)
    return float((out.argmax(-1) == np.asarray(task.y_test)).mean())


def target_run(target: str, with_library: bool, data: dict[str, Any], seed: int, work: Path,
               library: Path | None, modules: list[str], args: argparse.Namespace) -> dict[str, Any]:
    name = f"{target}_{'lib' if with_library else 'scratch'}_s{seed}"
    text = TARGET.format(path=data["path"], steps=args.steps, generations=args.generations,
                         rate=args.rate if with_library else 0.0, seed=seed, name=name, runs=work / "runs",
                         champion=args.champion, epsilon=args.epsilon)
    if with_library:
        text += f'[modules]\nlibrary = "{library}"\nuse = {json.dumps(modules)}\nfrozen = {str(not args.trainable).lower()}\nstart = {args.start}\n'
    cfg = run_config(text, dict(args.set))
    t0 = time.perf_counter()
    result = Search.start(cfg, overwrite=True).run()
    wall = time.perf_counter() - t0
    run = open_run_dir(result.run_dir)
    task = load_task(cfg.task, seed)
    with Lineage(run) as lin:
        use = module_use(lin)
    per_gen = cfg.evolution.population * cfg.training.steps
    return {
        "test": test_accuracy(run.read_best_genome(), task, cfg.training.gate),
        "params": int(result.active_parameters),
        "generations": result.generations,
        "steps": per_gen * result.generations,
        "steps_per_generation": per_gen,
        "curve": champion_curve(result.run_dir, seed),
        "wall_s": wall,
        **use,
    }


def target_data(target: str, X: np.ndarray, y: np.ndarray, Xh: np.ndarray, yh: np.ndarray, seed: int,
                work: Path) -> dict[str, Any]:
    """Draw the k-shot training and validation images; write the task file."""
    classes, k, _ = TARGETS[target]
    rng = np.random.default_rng([seed, 18])
    rows_tr, rows_val = [], []
    for c in classes:
        pool = rng.permutation(np.flatnonzero(y == c))
        rows_tr.extend(pool[:k])
        rows_val.extend(pool[k : k + VAL_PER_CLASS])
    used = np.zeros(len(y), bool)
    used[rows_tr + rows_val] = True
    relabel = {c: i for i, c in enumerate(classes)}
    test_X, test_y = Xh[np.isin(yh, classes)], yh[np.isin(yh, classes)]
    if classes != tuple(range(10)):  # the module's source never saw these classes: every unused image tests
        spare = ~used & np.isin(y, classes)
        test_X, test_y = np.vstack([test_X, X[spare]]), np.concatenate([test_y, y[spare]])
    Xs = np.vstack([X[rows_tr], X[rows_val], test_X])
    ys = np.array([relabel[int(v)] for v in np.concatenate([y[rows_tr], y[rows_val], test_y])])
    split = np.concatenate([np.zeros(len(rows_tr)), np.ones(len(rows_val)), np.full(len(test_y), 2)])
    path = work / f"{target}_s{seed}.npz"
    write_npz(path, Xs, ys, split)
    return {"path": path, "n_test": len(test_y)}


def steps_to_match(curve: list[float], goal: float, per_gen: int) -> int | None:
    """Member-steps after which the champion first reaches ``goal`` (None: never)."""
    for g, acc in enumerate(curve):
        if acc >= goal - 1e-12:
            return (g + 1) * per_gen
    return None


def med(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None]
    return float(statistics.median(xs)) if xs else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    p.add_argument("--steps", type=int, default=50, help="target training steps per generation")
    p.add_argument("--generations", type=int, default=30, help="target generations")
    p.add_argument("--rate", type=float, default=0.3, help="mutation.insert_module in the library arm")
    p.add_argument("--source-steps", type=int, default=200)
    p.add_argument("--source-generations", type=int, default=30)
    p.add_argument("--source-penalty", type=float, default=0.0,
                   help="source runs' L0 penalty: 0 keeps every feature neuron the module could offer")
    p.add_argument("--source-noise", type=float, default=0.0,
                   help="source runs' training.input_noise (the modules then learn on noisy pixels)")
    p.add_argument("--source-method", default="tournament", choices=["tournament", "nsga2"],
                   help="source runs' selection: tournament = accuracy only, no size pressure")
    p.add_argument("--source-prune", type=float, default=None,
                   help="source runs' prune_neurons and remove_node rates (default: the config's 0.1 and 0.03)")
    p.add_argument("--champion", default="best", choices=["best", "smallest_within"],
                   help="target runs' champion rule (both arms)")
    p.add_argument("--epsilon", type=float, default=0.02, help="target runs' smallest_within slack")
    p.add_argument("--start", type=float, default=0.0,
                   help="modules.start in the library arm: share of generation 0 that starts with a graft")
    p.add_argument("--trainable", action="store_true", help="grafts train with the network (modules.frozen = false)")
    p.add_argument("--set", action="append", default=[], type=config_override, metavar="KEY=VALUE",
                   help="a config override of both target arms (JSON value), e.g. task.metric=\"log_loss\"")
    p.add_argument("--quick", action="store_true", help="few steps and generations: a smoke run")
    p.add_argument("--out", type=Path, default=Path("benchmarks/transfer.json"))
    args = p.parse_args()
    if args.quick:
        args.steps, args.generations, args.source_steps, args.source_generations = 20, 4, 50, 2
    torch.set_num_threads(1)
    print(machine_line(1))
    digits = load_digits()
    X, Xh, y, yh = train_test_split(digits.data, digits.target, test_size=0.4, random_state=SPLIT_SEED,
                                    stratify=digits.target)
    rows: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "seeds": {}}
    with tempfile.TemporaryDirectory(prefix="hybrid-transfer-") as tmp:
        work = Path(tmp)
        (work / "modules").mkdir()
        library = Library(work / "modules")
        for seed in args.seeds:
            per: dict[str, Any] = {"sources": {}, "targets": {}}
            needed = {k for t in args.targets for k in TARGETS[t][2]}
            for kind in sorted(needed):
                src = source_run(kind, X, y, Xh, yh, seed, work, args)
                spec, source, metrics = harvest_run(Path(src["run_dir"]), "best", feature_nodes(src["run_dir"]),
                                                    name=f"{kind}-s{seed}")
                library.add(spec, description=f"{kind} source, seed {seed}", source=source, metrics=metrics,
                            overwrite=True)
                src.update(module=spec.name, module_params=spec.n_parameters, in_width=spec.in_width,
                           out_width=spec.out_width)
                per["sources"][kind] = src
                print(f"seed {seed} source {kind}: test {src['test']:.3f}, module {spec.n_parameters} params "
                      f"({spec.in_width}->{spec.out_width}), {src['steps']} member-steps, {src['wall_s']:.0f} s",
                      flush=True)
            for target in args.targets:
                data = target_data(target, X, y, Xh, yh, seed, work)
                modules = [f"{k}-s{seed}" for k in TARGETS[target][2]]
                pair = {}
                for with_library in (False, True):
                    r = target_run(target, with_library, data, seed, work, library.path, modules, args)
                    pair["lib" if with_library else "scratch"] = r
                    print(f"seed {seed} {target} {'library' if with_library else 'scratch'}: test {r['test']:.3f}, "
                          f"{r['params']} params, {r['wall_s']:.0f} s, grafts {r['grafts']}, champions with a "
                          f"module {r['champions_with_module']}/{r['champions']}", flush=True)
                goal = pair["scratch"]["test"]
                hit = steps_to_match(pair["lib"]["curve"], goal, pair["lib"]["steps_per_generation"])
                pair["steps_share"] = None if hit is None else hit / pair["scratch"]["steps"]
                pair["n_test"] = data["n_test"]
                per["targets"][target] = pair
            rows["seeds"][seed] = per
            atomic_write(args.out, json.dumps(rows, indent=1) + "\n")
    print()
    print("| target | test images | scratch test % | library test % | library - scratch (pt) | "
          "library steps to scratch's final / scratch's steps | scratch / library wall s | "
          "grafts | champions descending from a graft |")
    print("|---|---|---|---|---|---|---|---|---|")
    verdicts = []
    for target in args.targets:
        pairs = [rows["seeds"][s]["targets"][target] for s in args.seeds]
        scratch = med([100 * q["scratch"]["test"] for q in pairs])
        lib = med([100 * q["lib"]["test"] for q in pairs])
        diff = med([100 * (q["lib"]["test"] - q["scratch"]["test"]) for q in pairs])
        shares = [q["steps_share"] for q in pairs]
        share = med([s if s is not None else float("inf") for s in shares])
        print(f"| {target} | {pairs[0]['n_test']} | {scratch:.1f} | {lib:.1f} | {diff:+.1f} | "
              f"{share:.2f} | {med([q['scratch']['wall_s'] for q in pairs]):.0f} / "
              f"{med([q['lib']['wall_s'] for q in pairs]):.0f} | {med([q['lib']['grafts'] for q in pairs]):.0f} | "
              f"{sum(q['lib']['champions_with_module'] for q in pairs)}/"
              f"{sum(q['lib']['champions'] for q in pairs)} |")
        if target == "digits10_k5":
            verdicts.append(f"positive transfer (digits10_k5): library - scratch {diff:+.1f} pt (goal >= +5), "
                            f"steps share {share:.2f} (goal <= 0.50): "
                            f"{'PASS' if diff >= 5 and share <= 0.5 else 'MISS'}")
        if target == "digits59_k5":
            verdicts.append(f"no harm (digits59_k5 with the 0-4 module): library - scratch {diff:+.1f} pt "
                            f"(goal >= -0.5): {'PASS' if diff >= -0.5 else 'MISS'}")
    print()
    print("| source | test % | module params | member-steps | wall s |")
    print("|---|---|---|---|---|")
    kinds = sorted({k for s in args.seeds for k in rows["seeds"][s]["sources"]})
    for kind in kinds:
        ss = [rows["seeds"][s]["sources"][kind] for s in args.seeds]
        print(f"| {kind} | {med([100 * q['test'] for q in ss]):.1f} | {med([q['module_params'] for q in ss]):.0f} | "
              f"{med([q['steps'] for q in ss]):.0f} | {med([q['wall_s'] for q in ss]):.0f} |")
    print()
    for v in verdicts:
        print(v)
    print(machine_line(1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
