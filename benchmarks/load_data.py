"""How fast user data loads: numpy, the old CSV reader, pandas' engines and hybrid's load_task.

Writes a numeric CSV (``--rows`` x 20 features + an integer label; default one
million rows) in a temporary folder and times, each in a fresh subprocess so that
no run warms another's caches of imports:

* ``numpy.loadtxt`` (the naive baseline);
* before: ``hybrid.tasks.load_task`` of the tree at ``--before`` (default
  /work/main), run with ``PYTHONPATH`` there;
* ``pandas.read_csv`` with the C engine and with the pyarrow engine;
* after: ``hybrid.tasks.load_task`` of this tree (read, encode, split,
  standardise); issue 19's target is 3 s on a quiet machine.

The two ``load_task`` rows are the best of ``--repeat`` runs each (default 3),
before and after alternated: on a shared machine one run says little.

Imports (torch, pandas, pyarrow, scikit-learn, hybrid) happen before the clock
starts.

Then times a whole ``hybrid run`` on a ``--run-rows`` x 20 CSV (default 200,000)
with a tiny search (2 generations of 4 members, 5 steps), before and after
(alternated, best of two each), so that the difference is the loading. Prints one table with the torch thread count
and load average::

    python benchmarks/load_data.py                  # ~3-4 min on 2 busy cores
    python benchmarks/load_data.py --rows 100000    # quick
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent

#: Imported before the clock starts: the table times reading, not importing.
PRELUDE = (
    "import time, sys; import torch; torch.set_num_threads(1)\n"
    "import numpy, pandas, sklearn.model_selection\n"
    "try:\n    import pyarrow.csv\nexcept ImportError:\n    pass\n"
    "import hybrid.tasks, hybrid.config\n"
    "t0 = time.perf_counter()\n"
)

SNIPPETS = {
    "numpy.loadtxt": "numpy.loadtxt(sys.argv[1], delimiter=',', skiprows=1)",
    "pandas read_csv, C engine": "pandas.read_csv(sys.argv[1], engine='c')",
    "pandas read_csv, pyarrow engine": "pandas.read_csv(sys.argv[1], engine='pyarrow')",
    "load_task": (
        "hybrid.tasks.load_task(hybrid.config.TaskConfig(path=sys.argv[1], target='label', "
        "kind='classification'), 0)"
    ),
}

RUN_TOML = """
[run]
name = "bench"
seed = 0
runs_dir = "{runs}"

[task]
path = "{data}"
target = "label"
kind = "classification"

[training]
steps = 5

[evolution]
population = 4
generations = 2
"""


def write_csv(path: Path, rows: int, seed: int = 0) -> None:
    """Write ``rows`` x 20 normal features (6 significant digits) and a 0/1 label."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 20))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    header = ",".join([f"f{j}" for j in range(20)] + ["label"])
    fmt = ",".join(["%.6g"] * 20 + ["%d"])
    np.savetxt(path, np.column_stack([X, y]), fmt=fmt, header=header, comments="")


def timed(code: str, arg: str, tree: Path) -> float:
    """Return the seconds ``code`` takes in a fresh Python with ``tree`` on PYTHONPATH.

    It runs in the data's folder: ``python -c`` puts its working directory before
    PYTHONPATH, so run from a checkout it would import that checkout's hybrid.
    """
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    script = PRELUDE + code + "\nassert hybrid.__file__.startswith(sys.argv[2]), hybrid.__file__\n"
    script += "print(time.perf_counter() - t0)\n"
    done = subprocess.run(
        [sys.executable, "-c", script, arg, str(tree)],
        cwd=Path(arg).parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def timed_run(config: Path, tree: Path) -> float:
    """Return the wall seconds of ``hybrid run CONFIG --overwrite`` with ``tree`` on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "hybrid", "run", str(config), "--overwrite", "--plain"],
        cwd=config.parent,  # not a checkout: -m puts the working directory first on sys.path
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"hybrid run failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the load benchmark")
    p.add_argument("--run-rows", type=int, default=200_000, help="rows of the whole-run benchmark")
    p.add_argument("--before", type=Path, default=Path("/work/main"), help="tree to compare with")
    p.add_argument("--repeat", type=int, default=3, help="runs of each load_task (best is shown)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.csv"
        write_csv(data, args.rows)
        size = data.stat().st_size / 1e6
        for name, code in SNIPPETS.items():
            if name == "load_task":  # alternated, best of --repeat each
                pairs = [
                    (timed(code, str(data), args.before), timed(code, str(data), HERE))
                    for _ in range(max(1, args.repeat))
                ]
                rows.append((f"before: load_task at {args.before}", min(b for b, _ in pairs)))
                rows.append(("after: load_task (this tree)", min(a for _, a in pairs)))
            else:
                rows.append((name, timed(code, str(data), HERE)))
        small = Path(tmp) / "run.csv"
        write_csv(small, args.run_rows, seed=1)
        config = Path(tmp) / "run.toml"
        config.write_text(RUN_TOML.format(runs=(Path(tmp) / "runs").as_posix(), data=small.as_posix()))
        # Alternated, best of two each: the machine's load drifts over minutes.
        runs = [(timed_run(config, args.before), timed_run(config, HERE)) for _ in range(2)]
        run_before, run_after = (min(r[k] for r in runs) for k in (0, 1))
    print(
        f"torch threads {torch.get_num_threads()}, load average "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}, {os.cpu_count()} CPUs"
    )
    print()
    print(f"| load a {args.rows:,} x 20 CSV ({size:.0f} MB) | seconds |")
    print("|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} |")
    print(f"| `hybrid run`, {args.run_rows:,} x 20 CSV, tiny search: before ({args.before}) | {run_before:.2f} |")
    print(f"| `hybrid run`, {args.run_rows:,} x 20 CSV, tiny search: after (this tree) | {run_after:.2f} |")


if __name__ == "__main__":
    main()
