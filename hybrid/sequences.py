"""Sequence tasks in the search: train a generation's members, score genomes on a split.

The search calls these instead of :func:`hybrid.backends.train_members` and
:func:`hybrid.backends.evaluate_members` when ``task.sequence`` is set. Members run
in one :class:`~hybrid.population.RecurrentEngine` (the batched engine; the loop
engine and the joblib/Dask backends are refused for sequences by the config check
in :func:`check_sequence_config`). A stream task (``task.stream``) trains in windows
of ``training.bptt`` steps with the state carried from window to window; with
``training.growth = "reserve"`` the population is trained in chunks of
``training.reserve_every`` steps, the reserve rule applied to every member between
chunks (:func:`hybrid.growth.train_growing`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from genomes import Genome

from .config import Config
from .errors import ConfigError
from .growth import ReserveConfig, train_growing
from .metrics import Metrics
from .population import train_sequence_population
from .population.sequence import evaluate_sequences
from .tasks import Task
from .train import TrainConfig, TrainResult

__all__ = ["check_sequence_config", "evaluate_sequences", "reserve_config", "train_sequence_members"]


def check_sequence_config(config: Config, task: Task, where: str) -> None:
    """Refuse settings a sequence task cannot run with: one line naming the key.

    Raises:
        ConfigError: the loop engine, a parallel backend, a final fit or class weights
            with a sequence task (a selection split and K-fold fitness are refused by the
            loader, ``hybrid.tasks.load_task``), or bottleneck growth; growth, recurrent self-loops or recurrent
            edges without one.
    """
    if not task.sequence:
        memory = [
            ("training.growth", config.training.growth, "off", "the reserve rule grows recurrent networks"),
            ("genome.recurrent", config.genome.recurrent, False, "self-loops read the previous time step"),
            ("mutation.add_recurrent_edge", config.mutation.add_recurrent_edge, 0.0, "recurrent edges need time steps"),
        ]
        for key, got, want, why in memory:
            if got != want:
                raise ConfigError(
                    f"{where}: {key}: expected {want!r} for {task.name!r}, a task without time steps "
                    f"({why}), got {got!r}"
                )
        return
    for key, what in (
        ("grow_bottleneck", "bottleneck growth"),
        ("add_node_bottleneck", "bottleneck growth"),
        ("add_edge_bottleneck", "bottleneck growth"),
        ("insert_module", "grafted modules"),
    ):
        if getattr(config.mutation, key) > 0.0:
            raise ConfigError(
                f"{where}: mutation.{key}: expected 0 for the sequence task {task.name!r} ({what} "
                f"is feed-forward only), got {getattr(config.mutation, key)}"
            )
    if config.modules.start > 0.0:
        raise ConfigError(
            f"{where}: modules.start: expected 0 for the sequence task {task.name!r} (grafted modules "
            f"are feed-forward only), got {config.modules.start}"
        )
    checks = [
        ("training.engine", config.training.engine, "batched", "sequences train in the batched recurrent engine"),
        ("parallel.backend", config.parallel.backend, "none", "sequences train in one process"),
    ]
    for key, got, want, why in checks:
        if got != want:
            raise ConfigError(f"{where}: {key}: expected {want!r} for the sequence task {task.name!r} ({why}), got {got!r}")
    if config.train_kwargs()["class_weight"] != "none":
        raise ConfigError(
            f"{where}: training.class_weight: expected 'none' for the sequence task {task.name!r} "
            f"(not supported yet), got {config.training.class_weight!r}"
        )
    if config.training.input_noise:
        raise ConfigError(
            f"{where}: training.input_noise: expected 0 for the sequence task {task.name!r} "
            f"(not supported yet), got {config.training.input_noise}"
        )
    if config.evolution.final_steps:  # (a selection split and K-fold: refused by the loader)
        raise ConfigError(
            f"{where}: evolution.final_steps: expected 0 for the sequence task {task.name!r} "
            f"(not supported yet), got {config.evolution.final_steps}"
        )


def reserve_config(config: Config) -> ReserveConfig | None:
    """Return the reserve rule's settings, or None when ``training.growth`` is off."""
    t = config.training
    if t.growth != "reserve":
        return None
    return ReserveConfig(
        k=t.reserve_k,
        threshold=t.reserve_threshold,
        p_add=t.reserve_p_add,
        p_delete=t.reserve_p_delete,
        l1=t.reserve_l1,
        every=t.reserve_every,
    )


def train_sequence_members(
    genomes: Sequence[Genome],
    task: Task,
    config: TrainConfig,
    seed: int,
    device: str,
    run_config: Config,
    growth_seed: int,
) -> tuple[list[Genome], list[TrainResult], list[Metrics], list[list[dict[str, Any]]]]:
    """Train a generation's members on a sequence task and score them on its validation split.

    Args:
        genomes: the members (not modified).
        task: a sequence task.
        config: the training settings.
        seed: the generation's training seed (minibatches or stream offsets, gate noise).
        device: where to run.
        run_config: the run's config (``training.bptt``, the reserve rule, widths).
        growth_seed: the seed of the reserve rule's draws.

    Returns:
        ``(genomes, results, validation metrics, growth records)``: the trained
        genomes (a failed member keeps its input genome) and, per member, what the
        reserve rule did (``{"op": "reserve", "args": {...}}``; empty without growth).
    """
    window = run_config.training.bptt if task.stream else None
    if window is not None:
        window = min(window, task.X_train.shape[1])
    generator = torch.Generator().manual_seed(seed)
    reserve = reserve_config(run_config)
    floor = task.floor_val if config.metric == "excess_nats" else None
    val = {"X_val": task.X_val, "y_val": task.y_val, "mask_val": task.mask_val, "floor_val": floor}
    if reserve is None:
        trained = train_sequence_population(
            list(genomes), task.X_train, task.y_train, task.mask_train, config, generator, window=window, device=device, **val
        )
        assert trained.validation is not None
        return trained.genomes, trained.results, trained.validation, [[] for _ in genomes]
    return train_growing(
        list(genomes),
        task,
        config,
        generator,
        np.random.default_rng(growth_seed),
        reserve,
        window=window,
        device=device,
        gate_init=run_config.genome.gate_init,
        max_width=run_config.mutation.max_node_width,
    )
