"""Train one genome's weights and gates by gradient descent, then write them back.

The single-genome engine and the reference the population engine is held to.
Optimiser: AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay
Regularization"), decay on edge weights only. Per step::

    loss = mean task loss over the minibatch + config.penalty * net.penalty()

``net.penalty()`` is the expected number of open L0 gates (Louizos, Welling &
Kingma 2018, "Learning Sparse Neural Networks through L0 Regularization") or the
sum of the sigmoid gates. A loss that turns NaN/inf stops training and the genome
is returned unchanged with status ``"failed"``; nothing is raised.

Randomness: :func:`train_genome` draws from its one generator first the minibatch
schedule (:func:`hybrid.batches.minibatch_indices`), then, for hard-concrete gates,
all the gate noise at once (:func:`hybrid.gates.draw_gate_noise`, one row per step).
:func:`train_net` takes both explicitly, so another engine can replay the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

from genomes import Genome

from .batches import minibatch_indices
from .errors import ConfigError
from .gates import check_gate_kind, draw_gate_noise
from .metrics import LOSSES, Metrics, check_data, metrics_of, task_loss
from .net import GenomeNet, write_back

__all__ = ["TrainConfig", "TrainResult", "train_genome", "train_net"]

#: How many final steps ``TrainResult.train_loss`` averages (smooths minibatch noise).
LOSS_WINDOW = 10


@dataclass(frozen=True)
class TrainConfig:
    """How one genome (or each population member) is trained."""

    steps: int = 200  # per generation: enough to adapt a mutated child, cheap for a population
    batch_size: int = 256  # the built-in toy tasks fit in one full batch: no minibatch noise
    lr: float = 0.01  # small nets under Adam tolerate a large step; 1e-3 barely moves in 200 steps
    weight_decay: float = 0.0  # AdamW decay on edge weights only; off: selection already favours small nets
    penalty: float = 0.0  # weight per gate of the structure penalty; off: it changes the fitted function
    gate: str = "sigmoid"  # soft gates are deterministic; "hard_concrete" lets gates close exactly
    loss: str = "cross_entropy"  # classification is what the built-in tasks are; "mse" for regression

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(
                "train: steps should be >= 0, batch_size >= 1 and lr > 0, got "
                f"steps={self.steps}, batch_size={self.batch_size}, lr={self.lr}"
            )
        if self.weight_decay < 0 or self.penalty < 0:
            raise ConfigError(
                "train: weight_decay and penalty should be >= 0, got "
                f"weight_decay={self.weight_decay}, penalty={self.penalty}"
            )
        try:
            check_gate_kind(self.gate)
        except ValueError as exc:
            raise ConfigError(f"train.gate: {exc}") from None
        if self.loss not in LOSSES:
            raise ConfigError(f"train.loss should be one of {sorted(LOSSES)}, got {self.loss!r}")


@dataclass(frozen=True)
class TrainResult:
    """What a training run did.

    Attributes:
        status: ``"ok"``, or ``"failed"`` when the loss turned NaN/inf.
        steps: optimiser steps completed (a failed step does not count).
        train_loss: mean task loss (no penalty) of the last ``LOSS_WINDOW`` steps,
            training-mode gates; the non-finite loss if failed; NaN after 0 steps.
        metrics: the trained genome on the training data, deterministic gates
            (None from :func:`train_net` and when failed).
    """

    status: Literal["ok", "failed"]
    steps: int
    train_loss: float
    metrics: Metrics | None = None


def _optimizer(net: GenomeNet, config: TrainConfig) -> torch.optim.AdamW:
    # Decay shrinks weights only: decaying gate logits would drift them to half open.
    weights = list(net.edges[k] for k in net.edges if k.endswith("_weight"))
    ids = {id(p) for p in weights}
    others = [p for p in net.parameters() if id(p) not in ids]
    groups = [
        {"params": weights, "weight_decay": config.weight_decay},
        {"params": others, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr)


def train_net(
    net: GenomeNet,
    X: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    batches: torch.Tensor,
    noise_generator: torch.Generator | None = None,
) -> TrainResult:
    """Train ``net`` in place on the given minibatch schedule.

    The lower-level entry: the caller builds the net and the schedule, so another
    engine can replay exactly these steps. Step ``t`` uses samples ``batches[t]``
    and, for hard-concrete gates, noise row ``t`` of
    ``draw_gate_noise(net.n_gates, len(batches), noise_generator)`` (drawn once,
    before the first step). The net's train/eval mode is restored afterwards; on
    failure its parameters are those before the failing step.

    Args:
        net: the network to train (its gate kind should be ``config.gate``).
        X: inputs in the net's dtype, on its device.
        y: targets (see :func:`hybrid.metrics.check_data`).
        config: optimiser, penalty and loss settings (``steps`` and
            ``batch_size`` are read off ``batches``).
        batches: sample indices per step.
        noise_generator: source of the hard-concrete gate noise (unused for sigmoid).

    Returns:
        A ``TrainResult`` with ``metrics`` None.

    Raises:
        ValueError: for hard-concrete gates without a noise generator.

    Shape:
        X: (N, n_inputs); y: (N,) or (N, n_outputs); batches: (steps, B).
    """
    steps = batches.shape[0]
    batches = batches.to(X.device)
    noise = None
    if net.gate == "hard_concrete":
        if noise_generator is None:
            raise ValueError("hard_concrete gates need a noise_generator, got None")
        noise = draw_gate_noise(net.n_gates, steps, noise_generator, device=X.device)
    optimizer = _optimizer(net, config)
    losses = torch.empty(steps, dtype=X.dtype, device=X.device)
    was_training = net.training
    net.train()
    done, status, failed_loss = 0, "ok", float("nan")
    try:
        for t in range(steps):
            idx = batches[t]
            out = net(X[idx], None if noise is None else noise[t])
            task = task_loss(out, y[idx], config.loss)
            loss = task + config.penalty * net.penalty() if config.penalty else task
            if not torch.isfinite(loss):  # one host sync per step: the price of stopping at once
                status, failed_loss = "failed", float(loss.detach())
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses[t] = task.detach()
            done = t + 1
    finally:
        net.train(was_training)
    if status == "failed":
        return TrainResult(status="failed", steps=done, train_loss=failed_loss)
    window = losses[max(0, done - LOSS_WINDOW) : done]
    return TrainResult(status="ok", steps=done, train_loss=float(window.mean()))


def train_genome(
    genome: Genome, X: Any, y: Any, config: TrainConfig, generator: torch.Generator
) -> tuple[Genome, TrainResult]:
    """Train a genome and return a new genome holding the trained values.

    Builds a :class:`GenomeNet` on ``X``'s device, draws the minibatch schedule and
    (hard-concrete gates) the gate noise from ``generator``, trains with
    :func:`train_net`, writes back, and evaluates on ``(X, y)`` with deterministic
    gates.

    Args:
        genome: a valid genome (not modified).
        X: training inputs, float32.
        y: int64 class ids (``cross_entropy``) or float32 targets (``mse``).
        config: the training settings.
        generator: the only source of randomness.

    Returns:
        ``(trained genome, result)``; if the loss turned NaN/inf (in training or in
        the final evaluation), ``(genome, result)`` with ``result.status == "failed"``.

    Raises:
        DataError: if the data does not fit the genome or the loss.

    Shape:
        X: (N, n_inputs); y: (N,) or (N, n_outputs).
    """
    X, y = check_data(X, y, genome.n_inputs, genome.n_outputs, config.loss)
    net = GenomeNet(genome, config.gate).to(device=X.device, dtype=X.dtype)
    batches = minibatch_indices(X.shape[0], config.batch_size, config.steps, generator)
    result = train_net(net, X, y, config, batches, generator)
    if result.status == "failed":
        return genome, result
    trained = write_back(genome, net)
    metrics = metrics_of(trained, net, X, y, config)
    if not torch.isfinite(torch.tensor(metrics.loss)):
        return genome, replace(result, status="failed", metrics=metrics)
    return trained, replace(result, metrics=metrics)
