"""Wall time of one small search: in process vs a Dask LocalCluster vs joblib.

Runs the same search (``circles``, population 24, ``--generations`` generations of
200 full-batch steps, seed 0) once per row and prints its wall time, the median
generation and whether its stats equal the in-process batched run's (``same``).
The Dask rows share one LocalCluster (``--workers`` processes, one thread each,
TCP on 127.0.0.1) started before them; its start-up (processes, then torch
imported by the first jobs) is printed on its own line.

Rows:

* ``in-process batched``: ``parallel.backend = "none"``, the default engine.
* ``in-process loop``: one genome at a time (``training.engine = "loop"``).
* ``joblib loop``: per-genome jobs on ``--workers`` loky processes.
* ``dask shards xN``: the batched engine on N contiguous shards per generation.
* ``dask per-genome``: one job per member (a population of one, ``hybrid.backends.train_one``).

Usage::

    python benchmarks/dask_backend.py [--generations 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

TEMPLATE = """
[run]
seed = 0
runs_dir = "{runs}"
threads = 1

[task]
name = "circles"

[genome]
hidden = [8]

[training]
engine = "{engine}"

[evolution]
population = 24
generations = {generations}

[parallel]
backend = "{backend}"
workers = {workers}
"""


def _run(
    runs: Path,
    name: str,
    generations: int,
    backend: str,
    engine: str,
    workers: int,
    address: str | None,
):
    from hybrid.config import loads_config
    from hybrid.search import Search

    text = TEMPLATE.format(
        runs=runs.as_posix(),
        engine=engine,
        generations=generations,
        backend=backend,
        workers=workers,
    )
    overrides = {"run.name": name}
    if address is not None:
        overrides["parallel.address"] = address
    times: list[float] = []
    t0 = time.perf_counter()
    Search.start(loads_config(text, source=name, overrides=overrides)).run(
        lambda s: times.append(s["generation_s"])
    )
    wall = time.perf_counter() - t0
    stats = [json.loads(x) for x in (runs / name / "stats.jsonl").read_text().splitlines()]
    return wall, statistics.median(times), stats


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from distributed import LocalCluster

    g, w = args.generations, args.workers
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        rows = [("in-process batched", "none", "batched", 1, None)]
        rows += [
            ("in-process loop", "none", "loop", 1, None),
            (f"joblib loop x{w}", "joblib", "loop", w, None),
        ]
        results = {}
        for label, backend, engine, workers, _ in rows:
            results[label] = _run(runs, label.replace(" ", "_"), g, backend, engine, workers, None)
        t0 = time.perf_counter()
        with LocalCluster(
            n_workers=w,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
        ) as cluster:
            start = time.perf_counter() - t0
            warm = _run(runs, "warm-up", 1, "dask", "batched", w, cluster.scheduler_address)
            dask_rows = [
                (f"dask shards x{n}", "dask", "batched", n, cluster.scheduler_address)
                for n in (w, 2 * w)
            ]
            dask_rows.append(("dask per-genome", "dask", "loop", w, cluster.scheduler_address))
            for label, backend, engine, workers, address in dask_rows:
                results[label] = _run(
                    runs, label.replace(" ", "_"), g, backend, engine, workers, address
                )
        ref = results["in-process batched"][2]
        loop_ref = results["in-process loop"][2]
        print(
            f"LocalCluster start: {start:.1f} s; first 1-generation run on it (torch import on workers): {warm[0]:.1f} s"
        )
        print(f"{'':<20} {'wall s':>8} {'median gen s':>13}  same")
        for label, (wall, med, stats) in results.items():
            same = stats == (loop_ref if "loop" in label or "per-genome" in label else ref)
            print(f"{label:<20} {wall:>8.2f} {med:>13.3f}  {same}")


if __name__ == "__main__":
    main()
