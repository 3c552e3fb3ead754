"""Where a generation's training happens: the batched engine, a loop, joblib workers or Dask.

Each backend trains a list of genomes on the training split and evaluates them on
another split, returning written-back genomes, ``TrainResult``s and ``Metrics``.
All see the same minibatch schedule: a per-generation seed, from which every
member's (or the whole population's) ``torch.Generator`` is made. The Dask backend
lives in :mod:`hybrid.distributed`; :func:`open_cluster` opens it once per search.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genomes import Genome

from .metrics import Metrics, evaluate_genome
from .train import TrainConfig, TrainResult, train_genome

if TYPE_CHECKING:
    from .config import ParallelConfig
    from .distributed import DaskCluster

__all__ = ["evaluate_members", "open_cluster", "train_members", "train_one"]


def _generator(seed: int, device: str) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def train_one(
    genome: Genome, X: np.ndarray, y: np.ndarray, config: TrainConfig, seed: int, device: str, threads: int
) -> tuple[Genome, TrainResult]:
    """Train one genome with ``train_genome`` on a generator seeded with ``seed`` (a job's body)."""
    torch.set_num_threads(threads)
    Xt = torch.tensor(X, device=device)
    yt = torch.tensor(y, device=device)
    return train_genome(genome, Xt, yt, config, _generator(seed, device))


def open_cluster(parallel: ParallelConfig) -> contextlib.AbstractContextManager[Any]:
    """Return a context giving the Dask cluster ``parallel`` asks for, or None for other backends.

    Raises:
        ConfigError: ``parallel.backend`` is "dask" and ``distributed`` is not installed.
        ClusterError: the scheduler at ``parallel.address`` cannot be reached.
    """
    if parallel.backend != "dask":
        return contextlib.nullcontext(None)
    from .distributed import DaskCluster

    return DaskCluster(parallel.address, parallel.workers)


def train_members(
    genomes: Sequence[Genome],
    X: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    seed: int,
    *,
    engine: str = "batched",
    backend: str = "none",
    workers: int = 1,
    device: str = "cpu",
    threads: int = 1,
    cluster: DaskCluster | None = None,
) -> tuple[list[Genome], list[TrainResult]]:
    """Train every genome for ``config.steps`` steps; return trained genomes and results.

    Args:
        genomes: the population (not modified).
        X, y: the training split (numpy).
        config: training settings.
        seed: the generation's training seed (minibatches and gate noise).
        engine: "batched" (one computation for all) or "loop" (one genome at a time).
        backend: "none" (in process), "joblib" (``workers`` processes, per genome) or
            "dask" (``cluster``; see :mod:`hybrid.distributed`).
        workers: joblib processes; for "dask" without ``cluster``, the processes
            of a LocalCluster started for this call alone.
        device: torch device.
        threads: torch intra-op threads (per worker for joblib and dask).
        cluster: the open Dask cluster for backend "dask" (see :func:`open_cluster`).

    Raises:
        ConfigError: backend "dask" without the ``distributed`` package.
        ClusterError: a Dask scheduler cannot be reached or its workers keep dying.
    """
    if backend == "dask":
        if cluster is None:
            from .distributed import DaskCluster

            with DaskCluster(None, workers) as local:
                return local.train(genomes, X, y, config, seed, engine=engine, device=device, threads=threads)
        return cluster.train(genomes, X, y, config, seed, engine=engine, device=device, threads=threads)
    if backend == "joblib":
        from joblib import Parallel, delayed

        out = Parallel(n_jobs=workers, backend="loky")(
            delayed(train_one)(g, X, y, config, seed, device, threads) for g in genomes
        )
        return [g for g, _ in out], [r for _, r in out]
    if engine == "batched":
        from .population import train_population

        Xt = torch.tensor(X, device=device)
        yt = torch.tensor(y, device=device)
        trained, results = train_population(list(genomes), Xt, yt, config, _generator(seed, device))
        return list(trained), list(results)
    out = [train_one(g, X, y, config, seed, device, threads) for g in genomes]
    return [g for g, _ in out], [r for _, r in out]


def evaluate_members(
    genomes: Sequence[Genome],
    X: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    *,
    engine: str = "batched",
    device: str = "cpu",
) -> list[Metrics]:
    """Evaluate every genome (deterministic gates) on ``(X, y)``."""
    Xt = torch.tensor(X, device=device)
    yt = torch.tensor(y, device=device)
    if engine == "batched":
        from .population import evaluate_population

        return list(evaluate_population(list(genomes), Xt, yt, config))
    return [evaluate_genome(g, Xt, yt, config) for g in genomes]


