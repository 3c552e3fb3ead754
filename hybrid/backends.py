"""Where a generation's training happens: the batched engine, a loop, or joblib workers.

Each backend trains a list of genomes on the training split and evaluates them on
another split, returning written-back genomes, ``TrainResult``s and ``Metrics``.
All see the same minibatch schedule: a per-generation seed, from which every
member's (or the whole population's) ``torch.Generator`` is made.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from genomes import Genome

from .metrics import Metrics, evaluate_genome
from .train import TrainConfig, TrainResult, train_genome

__all__ = ["evaluate_members", "train_members"]


def _generator(seed: int, device: str) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def _train_one(
    genome: Genome, X: np.ndarray, y: np.ndarray, config: TrainConfig, seed: int, device: str, threads: int
) -> tuple[Genome, TrainResult]:
    torch.set_num_threads(threads)
    Xt = torch.tensor(X, device=device)
    yt = torch.tensor(y, device=device)
    return train_genome(genome, Xt, yt, config, _generator(seed, device))


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
) -> tuple[list[Genome], list[TrainResult]]:
    """Train every genome for ``config.steps`` steps; return trained genomes and results.

    Args:
        genomes: the population (not modified).
        X, y: the training split (numpy).
        config: training settings.
        seed: the generation's training seed (minibatches and gate noise).
        engine: "batched" (one computation for all) or "loop" (one genome at a time).
        backend: "none" (in process) or "joblib" (``workers`` processes, per genome).
        workers: joblib processes.
        device: torch device.
        threads: torch intra-op threads (per worker for joblib).
    """
    if backend == "joblib":
        from joblib import Parallel, delayed

        out = Parallel(n_jobs=workers, backend="loky")(
            delayed(_train_one)(g, X, y, config, seed, device, threads) for g in genomes
        )
        return [g for g, _ in out], [r for _, r in out]
    if engine == "batched":
        from .population import train_population

        Xt = torch.tensor(X, device=device)
        yt = torch.tensor(y, device=device)
        trained, results = train_population(list(genomes), Xt, yt, config, _generator(seed, device))
        return list(trained), list(results)
    out = [_train_one(g, X, y, config, seed, device, threads) for g in genomes]
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


