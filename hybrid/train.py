"""How a genome is trained: the settings, the result, and ``train_genome``.

There is one training loop, :func:`hybrid.population.train_engine`; a single genome
is trained as a population of one (:func:`train_genome`). Optimiser: AdamW
(Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization"), decay on edge
weights only. Per step and member::

    loss = mean task loss over the minibatch + config.penalty * penalty

the penalty being the expected number of open L0 gates (Louizos, Welling & Kingma
2018, "Learning Sparse Neural Networks through L0 Regularization") or the sum of
the sigmoid gates. A loss that turns NaN/inf stops that member's training and the
genome is returned unchanged with status ``"failed"``; nothing is raised.

Randomness: one generator gives first the minibatch schedule
(:func:`hybrid.batches.minibatch_indices`), then, for hard-concrete gates, all the
gate noise at once (:func:`hybrid.gates.draw_gate_noise`, one row per step, laid
out by :func:`hybrid.gates.gate_layout`), then the seeds of any other stream the
settings turn on (sandwich budgets, skip gates, input noise), each drawn only when
used so that runs without it reproduce. ``GenomeNet`` (:mod:`hybrid.net`) is the
single-genome ``nn.Module`` the engine is held to in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from genomes import Genome

from .errors import ConfigError
from .gates import check_gate_kind
from .metrics import LOSSES, Metrics, check_metric

__all__ = ["LOSS_WINDOW", "TrainConfig", "TrainResult", "train_genome"]

#: The adaptive settings and whether each is a share (in [0, 1]) or any number >= 0.
ADAPTIVE_RANGES = (
    ("exit_weight", False),
    ("exit_distill", True),
    ("skip_target", True),
    ("skip_penalty", False),
    ("threshold_tolerance", True),
)

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
    metric: str | None = None  # the validation/test metric (``hybrid.metrics.METRICS``); None: the loss's default
    class_weight: str = "none"  # "balanced": classes weigh equally in the training loss (cross_entropy only)
    train_gates: bool = True  # False: weights, biases train; gates stay at their deterministic values
    input_noise: float = 0.0  # std of Gaussian noise added to each training minibatch's inputs (0: none)
    budgets: str = "off"  # "sandwich": train every budget of the chain at once (issue 17); off: the full net only
    budget_samples: int = 2  # sandwich: random budgets per step besides the full and the smallest
    budget_min: float = 0.25  # sandwich: the smallest budget trained (0: the chain's smallest level)
    distill: bool = True  # sandwich: smaller budgets learn the full net's outputs (in-place distillation)
    budget_levels: tuple[float, ...] = ()  # sandwich: budgets trained at every step besides full and smallest
    # Adaptive genomes (issue 16, ``genomes.adaptive``); a population without them ignores these.
    exit_weight: float = 1.0  # weight of each exit head's task loss beside the output's (BranchyNet: equal)
    exit_distill: float = 0.0  # share of each exit's loss that learns the output's soft targets
    skip_target: float = 0.7  # share of samples each skip-gated node should run
    skip_penalty: float = 1.0  # weight of the mean (skip_target - run rate)^2 over skip gates
    threshold_tolerance: float = 0.005  # accuracy a fitted exit threshold may give up

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
        if self.class_weight not in ("none", "balanced") or (
            self.class_weight == "balanced" and self.loss != "cross_entropy"
        ):
            raise ConfigError(
                "train.class_weight should be 'none', or 'balanced' with cross_entropy, got "
                f"{self.class_weight!r} with loss {self.loss!r}"
            )
        if self.budgets not in ("off", "sandwich"):
            raise ConfigError(f"train.budgets should be 'off' or 'sandwich', got {self.budgets!r}")
        if isinstance(self.budget_samples, bool) or not isinstance(self.budget_samples, int) or not (
            0 <= self.budget_samples <= 64
        ):
            raise ConfigError(f"train.budget_samples should be an integer in [0, 64], got {self.budget_samples!r}")
        if isinstance(self.budget_min, bool) or not isinstance(self.budget_min, (int, float)) or not (
            0.0 <= self.budget_min < 1.0
        ):
            raise ConfigError(f"train.budget_min should be a number in [0, 1), got {self.budget_min!r}")
        levels = self.budget_levels
        if not isinstance(levels, tuple) or not all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and self.budget_min < b < 1.0 for b in levels
        ) or any(a >= b for a, b in zip(levels[:-1], levels[1:], strict=True)):
            raise ConfigError(
                "train.budget_levels should be an increasing tuple of numbers in (budget_min, 1) = "
                f"({self.budget_min}, 1), got {levels!r}"
            )
        v = self.input_noise
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 100.0:
            raise ConfigError(f"train.input_noise should be a number in [0, 100], got {v!r}")
        if not isinstance(self.distill, bool):
            raise ConfigError(f"train.distill should be true or false, got {self.distill!r}")
        for name, unit in ADAPTIVE_RANGES:
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            if not ok or (unit and v > 1):
                want = "in [0, 1]" if unit else ">= 0"
                raise ConfigError(f"train.{name} should be a number {want}, got {v!r}")
        if self.metric is not None:
            kind = "classification" if self.loss == "cross_entropy" else "regression"
            try:
                check_metric(self.metric, kind)
            except ValueError as exc:
                raise ConfigError(f"train.metric: {exc}") from None


@dataclass(frozen=True)
class TrainResult:
    """What a training run did.

    Attributes:
        status: ``"ok"``, or ``"failed"`` when the loss turned NaN/inf.
        steps: optimiser steps completed (a failed step does not count).
        train_loss: mean task loss (no penalty) of the last ``LOSS_WINDOW`` steps,
            training-mode gates; the non-finite loss if failed; NaN after 0 steps.
        metrics: the trained genome on the training data, deterministic gates
            (None from :func:`hybrid.population.train_engine`, and when training failed);
            loss and accuracy only: ``metric``/``score`` are None (the chosen metric ranks
            genomes on validation; the search never scores the training split by it).
    """

    status: Literal["ok", "failed"]
    steps: int
    train_loss: float
    metrics: Metrics | None = None


def train_genome(
    genome: Genome, X: Any, y: Any, config: TrainConfig, generator: torch.Generator
) -> tuple[Genome, TrainResult]:
    """Train a genome and return a new genome holding the trained values.

    A population of one through :func:`hybrid.population.train_population`: the
    minibatch schedule and (hard-concrete gates) the gate noise are drawn from
    ``generator``, then the genome is trained, written back and evaluated on
    ``(X, y)`` with deterministic gates, on ``X``'s device.

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
    from .population import train_population  # the population package imports this module

    out = train_population([genome], X, y, config, generator)
    return out.genomes[0], out.results[0]
