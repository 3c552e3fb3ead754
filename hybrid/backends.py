"""Where a generation's training happens: the batched engine, a loop, joblib workers or Dask.

Each backend trains a list of genomes on the training split and can evaluate them
on a validation split, returning written-back genomes, ``TrainResult``s and
``Metrics``. Every backend trains through the one population engine
(:func:`hybrid.population.train_population`): "batched" packs the whole population,
"loop" and the per-genome joblib/Dask jobs train populations of one. All see the
same minibatch schedule: a per-generation seed, from which every member's (or the
whole population's) ``torch.Generator`` is made. The Dask backend lives in
:mod:`hybrid.distributed`; :func:`open_cluster` opens it once per search.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genomes import Genome

from .metrics import Metrics
from .population import Trained, evaluate_population, train_population
from .train import TrainConfig

if TYPE_CHECKING:
    from .config import ParallelConfig
    from .distributed import DaskCluster

__all__ = ["Trained", "evaluate_members", "join_trained", "open_cluster", "train_members", "train_one"]


def _generator(seed: int) -> torch.Generator:
    # Always a CPU generator: the draws depend on the seed alone, not on the device.
    return torch.Generator(device="cpu").manual_seed(seed)


def _tensor(a: Any, device: str) -> torch.Tensor | None:
    return None if a is None else torch.tensor(a, device=device)


def train_one(
    genome: Genome,
    X: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    seed: int,
    device: str,
    threads: int,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    folds: tuple[np.ndarray, Sequence[int]] | None = None,
) -> Trained:
    """Train one genome as a population of one on a generator seeded with ``seed`` (a job's body).

    ``folds`` (K-fold fitness): the fold id of each row of ``X`` and the genome's
    fold, as one-member ``train_population`` takes them.

    Returns:
        A one-member :class:`~hybrid.population.Trained` (``validation`` None
        without a validation split).
    """
    torch.set_num_threads(threads)
    return train_population(
        [genome],
        _tensor(X, device),
        _tensor(y, device),
        config,
        _generator(seed),
        X_val=_tensor(X_val, device),
        y_val=_tensor(y_val, device),
        folds=folds,
    )


def join_trained(parts: Sequence[Trained]) -> Trained:
    """One ``Trained`` from several in order (validation None if any part has none)."""
    genomes = [g for p in parts for g in p.genomes]
    results = [r for p in parts for r in p.results]
    if any(p.validation is None for p in parts):
        return Trained(genomes, results)
    return Trained(genomes, results, [m for p in parts for m in p.validation])


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
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    folds: tuple[np.ndarray, Sequence[int]] | None = None,
) -> Trained:
    """Train every genome for ``config.steps`` steps (and score it on ``X_val`` if given).

    Args:
        genomes: the population (not modified).
        X, y: the training split (numpy).
        config: training settings.
        seed: the generation's training seed (minibatches and gate noise).
        engine: "batched" (one population for all) or "loop" (a population of one
            per genome, each on a generator seeded with ``seed``).
        backend: "none" (in process), "joblib" (``workers`` processes, per genome) or
            "dask" (``cluster``; see :mod:`hybrid.distributed`).
        workers: joblib processes; for "dask" without ``cluster``, the processes
            of a LocalCluster started for this call alone.
        device: torch device.
        threads: torch intra-op threads (per worker for joblib and dask).
        cluster: the open Dask cluster for backend "dask" (see :func:`open_cluster`).
        X_val, y_val: a validation split (numpy), evaluated from the engine that
            trained each genome (no second packing).
        folds: K-fold fitness (:mod:`hybrid.folds`): ``(fold id of each row of X, fold id
            of each genome)``; ``X, y`` are then the pool, each genome trains outside its
            fold and its validation metrics are those on its fold. Every engine and
            backend takes it (a per-genome job gets its genome's fold).

    Returns:
        A :class:`~hybrid.population.Trained` ``(genomes, results, validation)``:
        ``validation`` holds each returned genome's ``Metrics`` on the validation
        split, or is None without ``X_val``.

    Raises:
        ConfigError: backend "dask" without the ``distributed`` package.
        ClusterError: a Dask scheduler cannot be reached or its workers keep dying.
    """
    val = {"X_val": X_val, "y_val": y_val}
    own = [None] * len(genomes) if folds is None else [(folds[0], (f,)) for f in folds[1]]
    if backend == "dask":
        kw = {"engine": engine, "device": device, "threads": threads, "folds": folds, **val}
        if cluster is None:
            from .distributed import DaskCluster

            with DaskCluster(None, workers) as local:
                return local.train(genomes, X, y, config, seed, **kw)
        return cluster.train(genomes, X, y, config, seed, **kw)
    if backend == "joblib":
        from joblib import Parallel, delayed

        parts = Parallel(n_jobs=workers, backend="loky")(
            delayed(train_one)(g, X, y, config, seed, device, threads, X_val, y_val, f)
            for g, f in zip(genomes, own, strict=True)
        )
        return join_trained(parts)
    if engine == "batched":
        vt = {k: _tensor(v, device) for k, v in val.items()}
        Xt, yt = _tensor(X, device), _tensor(y, device)
        return train_population(list(genomes), Xt, yt, config, _generator(seed), **vt, folds=folds)
    return join_trained(
        [
            train_one(g, X, y, config, seed, device, threads, X_val, y_val, f)
            for g, f in zip(genomes, own, strict=True)
        ]
    )


def evaluate_members(
    genomes: Sequence[Genome],
    X: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    *,
    engine: str = "batched",
    device: str = "cpu",
) -> list[Metrics]:
    """Evaluate every genome (deterministic gates) on ``(X, y)`` through the population engine.

    ``engine`` "batched" packs all genomes at once; "loop" evaluates populations of one.
    """
    Xt, yt = _tensor(X, device), _tensor(y, device)
    if engine == "batched":
        return list(evaluate_population(list(genomes), Xt, yt, config))
    return [evaluate_population([g], Xt, yt, config)[0] for g in genomes]
