"""Train and evaluate genomes: the package's one training loop and one metrics function.

Everything that trains or evaluates a genome comes here: the search (batched or
"loop" engine), the joblib and Dask jobs, :func:`hybrid.train.train_genome` and
:func:`hybrid.metrics.evaluate_genome` (a population of one), and the champion's
test score. One forward, one backward and one optimiser step per training step for
all members together, with the semantics of ``hybrid.train`` per member: the loss
(mean task loss + ``config.penalty`` * penalty), AdamW with decay on edge weights
only (:class:`~hybrid.population.adam.BatchedAdamW`; the entries of frozen genes,
grafted modules, are never moved), the minibatches
(:func:`hybrid.batches.minibatch_indices`, drawn before the gate noise from one
generator). A member whose loss turns NaN/inf is marked failed at that step and
frozen (parameters of before the failing step); the others go on bit for bit as
if it had not failed. One host synchronisation per step (did any member fail?).

Budgets (issue 17): with ``config.budgets = "sandwich"`` every step trains several
sub-networks of each member at once, the "sandwich rule" of slimmable networks (Yu &
Huang 2019, "Universally Slimmable Networks and Improved Training Techniques"): the
full network on the labels (with the penalty), the level ``config.budget_min`` selects
(0: the chain's smallest level), the levels ``config.budget_levels`` select (the same
every step: the original slimmable networks' width list) and ``config.budget_samples``
budgets drawn uniformly in ``[max(min_budget, budget_min), 1)`` per member,
each on the full network's detached outputs (in-place distillation, ``config.distill``)
or on the labels; the per-member loss is the sum of the passes' losses, one optimiser
step. The program keeps one pass's buffers, so each pass is backpropagated at once and
the gradients are summed. The budgets come from their own generator (seeded from the
training generator after everything else is drawn), all up front.

Adaptive genomes (issue 16, ``genomes.adaptive``): a population with an exit head or
a skip gate anywhere trains through :class:`~hybrid.population.adaptive.AdaptiveEngine`
(:func:`train_adaptive`, same optimiser, minibatches and failure isolation); per
member the loss is the output's task loss + ``exit_weight`` * the sum of its exits'
task losses + ``skip_penalty`` * the mean over its skip gates of ``(skip_target -
run rate)^2`` + ``penalty`` * penalty. The skip gates' uniform noise comes from a
generator seeded from the training generator after everything else is drawn. With
a validation split the exit thresholds are fitted on it and its metrics are those of
the exit rule (``Metrics.average_flops``). A population without adaptive genes runs
exactly the code it ran before.

Hard-concrete noise: one row of ``draw_gate_noise(engine.n_gates, steps, ...)`` per
step, member slices in :func:`hybrid.gates.gate_layout` order. A member of a larger
population therefore sees other noise than it would alone (tests hold the engine
to ``GenomeNet`` with sigmoid gates, or with the noise passed explicitly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

import genomes.budgets as genome_budgets
from genomes import Genome, active_structure
from genomes.adaptive import exit_nodes, is_adaptive

from ..batches import minibatch_indices
from ..errors import ConfigError
from ..gates import draw_gate_noise
from ..metrics import Metrics, check_data, metric_for_loss, metric_score
from ..train import LOSS_WINDOW, TrainConfig, TrainResult
from .adam import BatchedAdamW
from .adaptive import AdaptiveEngine
from .engine import PopulationEngine, task_losses

__all__ = [
    "StepGuard",
    "Trained",
    "class_weights",
    "distill_losses",
    "engine_metrics",
    "engine_scores",
    "evaluate_engine",
    "evaluate_population",
    "fold_metrics",
    "adaptive_losses",
    "adaptive_metrics",
    "train_adaptive",
    "train_engine",
    "train_population",
]

#: Samples per evaluation pass (bounds the work buffers on large splits).
EVAL_CHUNK = 4096


def _lrs(lrs: Sequence[float] | torch.Tensor | None, config: TrainConfig, n: int) -> torch.Tensor:
    if lrs is None:
        return torch.full((n,), config.lr, dtype=torch.float64)
    out = torch.as_tensor(lrs, dtype=torch.float64).reshape(-1)
    if out.numel() != n or not bool((out > 0).all()):
        raise ValueError(f"lrs should hold {n} positive learning rates, got {out.tolist()}")
    return out


class StepGuard:
    """One training loop's failure isolation: a member whose loss turns NaN/inf is frozen.

    At step ``t``, :meth:`step` marks members whose loss is not finite as failed
    (recording the step and the loss), sums the losses of the members still active,
    and lets ``optimizer`` step only those; one host synchronisation per step (did any
    member fail?). :meth:`results` turns the per-step task losses into ``TrainResult`` s.
    """

    def __init__(self, p: int, steps: int, dtype: torch.dtype, device: torch.device) -> None:
        self.active = torch.ones(p, dtype=torch.bool, device=device)
        self.all_active = True
        self.done = torch.full((p,), steps, dtype=torch.long, device=device)
        self.failed_loss = torch.full((p,), float("nan"), dtype=dtype, device=device)
        self.losses = torch.empty(steps, p, dtype=dtype, device=device)
        self.zero = torch.zeros((), dtype=dtype, device=device)

    def step(
        self,
        t: int,
        loss: torch.Tensor,
        task: torch.Tensor,
        params: Sequence[torch.Tensor],
        optimizer: BatchedAdamW,
    ) -> None:
        """Take step ``t``: ``loss`` (P,) to descend, ``task`` (P,) the task losses to record."""
        bad = self.active & ~torch.isfinite(loss)
        if self.all_active and bool(bad.any()):  # one host sync per step
            self.all_active = False
        self.done = torch.where(bad, t, self.done)
        self.failed_loss = torch.where(bad, loss.detach(), self.failed_loss)
        self.active = self.active & ~bad
        total = loss.sum() if self.all_active else torch.where(self.active, loss, self.zero).sum()
        grads = torch.autograd.grad(total, params)
        optimizer.step(grads, None if self.all_active else self.active)
        self.losses[t] = task.detach()

    def step_passes(
        self,
        t: int,
        passes: Sequence[Any],
        params: Sequence[torch.Tensor],
        optimizer: BatchedAdamW,
    ) -> None:
        """Take step ``t`` on the sum of several passes' losses, each backpropagated at once.

        ``passes[0]()`` runs the first pass and returns ``(loss (P,), task (P,))``
        (the task losses to record); each later one returns its loss (P,). A pass's
        gradient is taken before the next pass runs (the engine keeps one pass's
        buffers), and the sum is what the optimiser steps on. A member whose summed
        loss is not finite fails as in :meth:`step`; the step's gradients are then
        taken again without it, so the others step exactly as if it had not failed.
        """
        grads, total, task = self._pass_grads(passes, params)
        bad = self.active & ~torch.isfinite(total)
        if self.all_active and bool(bad.any()):  # one host sync per step
            self.all_active = False
            self.active = self.active & ~bad
            grads, _, _ = self._pass_grads(passes, params)
        self.done = torch.where(bad, t, self.done)
        self.failed_loss = torch.where(bad, total, self.failed_loss)
        self.active = self.active & ~bad
        optimizer.step(grads, None if self.all_active else self.active)
        self.losses[t] = task

    def _pass_grads(
        self, passes: Sequence[Any], params: Sequence[torch.Tensor]
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Run the passes; return the summed gradients, the summed losses and the task losses."""
        grads: list[torch.Tensor] = []
        total = task = self.zero
        for k, run in enumerate(passes):
            if k == 0:
                loss, task = run()
                task = task.detach()
            else:
                loss = run()
            total = total + loss.detach()
            s = loss.sum() if self.all_active else torch.where(self.active, loss, self.zero).sum()
            g = torch.autograd.grad(s, params)
            if k == 0:  # a copy: the program may hand back reused buffers
                grads = [gi.clone() for gi in g]
            else:
                for acc, gi in zip(grads, g, strict=True):
                    acc.add_(gi)
        return grads, total, task

    def results(self) -> list[TrainResult]:
        """One ``TrainResult`` per member (``metrics`` None)."""
        return _results(self.losses.cpu(), self.done.cpu(), self.failed_loss.cpu())


def train_engine(
    engine: PopulationEngine,
    X: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    batches: torch.Tensor,
    noise_generator: torch.Generator | None = None,
    lrs: Sequence[float] | torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    folds: tuple[torch.Tensor, torch.Tensor] | None = None,
    budget_generator: torch.Generator | None = None,
    input_generator: torch.Generator | None = None,
) -> list[TrainResult]:
    """Train ``engine.params`` in place on the given minibatch schedule: the one training loop.

    Args:
        engine: the packed population (its gate kind should be ``config.gate``).
        X: inputs on the engine's device.
        y: targets (see :func:`hybrid.metrics.check_data`).
        config: optimiser, penalty and loss settings (``steps``/``batch_size`` are
            read off ``batches``).
        batches: sample indices per step, shared by all members.
        noise_generator: source of the hard-concrete noise (drawn once, up front).
        lrs: learning rate per member (default ``config.lr`` for all).
        noise: explicit hard-concrete noise instead of drawing it.
        folds: K-fold fitness (:mod:`hybrid.folds`): ``(fold id of each row of X, fold
            id of each member)``; a member learns only from the rows outside its
            fold (its loss is the mean over those rows of each shared minibatch).
        budget_generator: source of the sandwich budgets (``config.budgets ==
            "sandwich"``; drawn once, up front).
        input_generator: source of the input noise (``config.input_noise`` > 0; one
            ``(B, n_inputs)`` draw per step, shared by all members like the minibatch).

    Returns:
        One ``TrainResult`` per member, ``metrics`` None.

    Raises:
        ValueError: for hard-concrete gates without noise or a generator, sandwich
            budgets without a budget generator, input noise without an input
            generator, or bad ``lrs``.

    Shape:
        X: (N, n_inputs); y: (N,) or (N, n_out); batches: (steps, B); noise: (steps, n_gates);
        folds: ((N,), (P,)) int64.
    """
    steps, p = batches.shape[0], engine.n_members
    batches = batches.to(X.device)
    if engine.gate == "hard_concrete" and noise is None:
        if noise_generator is None:
            raise ValueError("hard_concrete gates need a noise_generator, got None")
        noise = draw_gate_noise(engine.n_gates, steps, noise_generator, device=X.device)
    n_trained = 3 if config.train_gates else 2  # (weights, biases[, gates]): gates may stay as they are
    params = engine.params[:n_trained]
    optimizer = BatchedAdamW(
        params,
        engine.members[:n_trained],
        _lrs(lrs, config, p),
        (True, False, False)[:n_trained],
        config.weight_decay,
        frozen=None if engine.frozen is None else engine.frozen[:n_trained],
    )
    dev, dtype = X.device, engine.dtype
    guard = StepGuard(p, steps, dtype, dev)
    sample_w = class_weights(y).to(dtype)[y] if config.class_weight == "balanced" else None
    fold_of, fixed_mask = None, None
    if folds is not None:  # the fold of each batch row; one mask for all steps if batches repeat
        fold_of, member_fold = folds[0].to(dev)[batches], folds[1].to(dev).view(p, 1)
        if steps and bool((fold_of == fold_of[:1]).all()):
            fixed_mask = fold_of[0].view(1, -1) != member_fold
    sandwich = None
    if config.budgets == "sandwich":
        if budget_generator is None:
            raise ValueError("training.budgets = 'sandwich' needs a budget_generator, got None")
        sandwich = _Sandwich(
            engine, steps, config.budget_samples, budget_generator, config.budget_min, config.budget_levels
        )
    inputs = _Inputs(X, config, input_generator)
    for t_ in params:
        t_.requires_grad_(True)
    engine.program.reuse_grad_buffers = True  # the optimiser consumes each gradient at once
    engine.sample_gates = config.train_gates  # frozen gates train at their deterministic values
    try:
        for t in range(steps):
            idx = batches[t]
            w = None if sample_w is None else sample_w[idx]
            mask = None
            if fold_of is not None:  # a member never learns from its own fold's rows
                mask = fixed_mask if fixed_mask is not None else fold_of[t].view(1, -1) != member_fold
            if sandwich is not None:
                nz = None if noise is None else noise[t]
                passes = sandwich.passes(t, inputs(idx), y[idx], nz, config, mask, w)
                guard.step_passes(t, passes, params, optimizer)
                continue
            out = engine.forward(inputs(idx), None if noise is None else noise[t], training=True)
            task = task_losses(out, y[idx], config.loss, mask, w)
            loss = task + config.penalty * engine.penalty() if config.penalty else task
            guard.step(t, loss, task, params, optimizer)
    finally:
        engine.program.reuse_grad_buffers = False
        engine.sample_gates = True
        for t_ in params:
            t_.requires_grad_(False)
    return guard.results()


def adaptive_losses(
    engine: AdaptiveEngine,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    noise: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    skip_noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return each member's training loss and its output's task loss on one minibatch.

    ``loss = task(output) + exit_weight * sum_k exit_k + skip_penalty * mean_j
    (skip_target - mean_b z_j)^2 + penalty * penalty`` with ``exit_k = (1 - exit_distill) *
    task(exit_k) + exit_distill * distill(exit_k, output)`` (self-distillation: the exit
    learns the output's detached soft targets, :func:`distill_losses`); a member without
    exits or skip gates: those terms are 0. Training-mode gates and straight-through skip
    decisions.
    Every exit counts, also one whose path the deterministic gates close (training-mode
    gates may open it).

    Shape:
        x: (B, n_inputs); y: (B,) or (B, n_out); noise: (n_gates,); weights: (B,);
        skip_noise: (P, S, B) -> ((P,), (P,))
    """
    run = engine.heads(x, noise, training=True, skip_noise=skip_noise, every_exit=True)
    task = task_losses(run.output, y, config.loss, None, weights)
    loss = task
    zero = torch.zeros((), dtype=task.dtype, device=task.device)
    p, e = run.heads.shape[:2]
    if e and config.exit_weight:
        heads = run.heads.reshape(p * e, *run.heads.shape[2:])
        per = task_losses(heads, y, config.loss, None, weights)
        if config.exit_distill:
            target = run.output.detach().unsqueeze(1).expand(p, e, *run.output.shape[1:])
            soft = distill_losses(heads, target.reshape(heads.shape), config.loss, None, weights)
            per = (1.0 - config.exit_distill) * per + config.exit_distill * soft
        loss = loss + config.exit_weight * torch.where(run.head_mask, per.view(p, e), zero).sum(1)
    if run.z.shape[1] and config.skip_penalty:
        gap = (config.skip_target - run.z.mean(2)) ** 2
        count = run.skip_mask.sum(1).clamp_min(1).to(task.dtype)
        loss = loss + config.skip_penalty * torch.where(run.skip_mask, gap, zero).sum(1) / count
    if config.penalty:
        loss = loss + config.penalty * engine.penalty()
    return loss, task


def train_adaptive(
    engine: AdaptiveEngine,
    X: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    batches: torch.Tensor,
    noise: torch.Tensor | None = None,
    skip_generator: torch.Generator | None = None,
    lrs: Sequence[float] | torch.Tensor | None = None,
    input_generator: torch.Generator | None = None,
) -> list[TrainResult]:
    """Train an adaptive population in place: :func:`train_engine`'s loop with :func:`adaptive_losses`.

    AdamW with decay on edge weights only (skip weights and biases: none), the
    minibatches ``batches``, :class:`StepGuard` failure isolation; sparse edges'
    absent connections (``AdaptiveEngine.frozen``) never move.

    Args:
        engine: the packed population (its gate kind should be ``config.gate``).
        X, y: the training split on the engine's device.
        config: the settings.
        batches: sample indices per step.
        noise: hard-concrete noise, one row per step (needed for those gates).
        skip_generator: source of the skip gates' uniform noise (drawn step by step,
            ``(P, S, B)`` each); needed when a member has a skip gate.
        lrs: learning rate per member (default ``config.lr``).
        input_generator: source of the input noise (as in :func:`train_engine`).

    Returns:
        One ``TrainResult`` per member, ``metrics`` None.

    Raises:
        ValueError: for hard-concrete gates without noise, skip gates without a
            generator, input noise without an input generator, or bad ``lrs``.
    """
    steps, p = batches.shape[0], engine.n_members
    batches = batches.to(X.device)
    if engine.gate == "hard_concrete" and noise is None:
        raise ValueError("hard_concrete gates need noise, got None")
    if engine.n_skips and skip_generator is None:
        raise ValueError("skip gates in training need a skip_generator, got None")
    frozen = engine.frozen  # sparse edges' absent connections (None: no member has one)
    chosen = [
        (kind, t, members, None if frozen is None else frozen[i])
        for i, (kind, t, members) in enumerate(engine.param_groups())
        if t.numel() and (kind != "gates" or config.train_gates)
    ]
    params = [t for _, t, _, _ in chosen]
    optimizer = BatchedAdamW(
        params,
        [members for _, _, members, _ in chosen],
        _lrs(lrs, config, p),
        [kind == "weights" for kind, _, _, _ in chosen],
        config.weight_decay,
        frozen=None if frozen is None else [f for _, _, _, f in chosen],
    )
    guard = StepGuard(p, steps, engine.dtype, X.device)
    sample_w = class_weights(y).to(engine.dtype)[y] if config.class_weight == "balanced" else None
    inputs = _Inputs(X, config, input_generator)
    for t_ in params:
        t_.requires_grad_(True)
    engine.skip_generator = skip_generator
    engine.sample_gates = config.train_gates  # frozen gates train at their deterministic values
    try:
        for t in range(steps):
            idx = batches[t]
            w = None if sample_w is None else sample_w[idx]
            nz = None if noise is None else noise[t]
            loss, task = adaptive_losses(engine, inputs(idx), y[idx], config, nz, w)
            guard.step(t, loss, task, params, optimizer)
    finally:
        engine.skip_generator = None
        engine.sample_gates = True
        for t_ in params:
            t_.requires_grad_(False)
    return guard.results()


class _Inputs:
    """A step's minibatch inputs, ``X[idx]``, plus ``config.input_noise`` times standard normal noise.

    The noise is drawn on the CPU from ``generator`` (so a run reproduces on any
    device) and moved to ``X``'s device.
    """

    def __init__(self, X: torch.Tensor, config: TrainConfig, generator: torch.Generator | None) -> None:
        if config.input_noise and generator is None:
            raise ValueError(f"training.input_noise = {config.input_noise} needs an input_generator, got None")
        self.X, self.sigma = X, float(config.input_noise)
        self.generator = generator if self.sigma else None

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.X[idx]
        if self.generator is None:
            return x
        noise = torch.randn(tuple(x.shape), generator=self.generator, dtype=x.dtype)
        return x + self.sigma * noise.to(x.device)


def _child_generator(generator: torch.Generator) -> torch.Generator:
    """Return a CPU generator seeded by one draw from ``generator`` (a separate stream)."""
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))


def _input_generator(config: TrainConfig, generator: torch.Generator) -> torch.Generator | None:
    """The input-noise stream: drawn last from ``generator``, and only with ``input_noise`` on."""
    return _child_generator(generator) if config.input_noise else None


class _Sandwich:
    """The sandwich rule's passes of each step: full, smallest, the fixed ``levels``, ``samples`` random budgets."""

    def __init__(
        self,
        engine: PopulationEngine,
        steps: int,
        samples: int,
        generator: torch.Generator,
        floor: float = 0.0,
        levels: tuple[float, ...] = (),
    ) -> None:
        self.engine = engine
        table = engine.budget_table
        u = torch.rand(steps, samples, engine.n_members, generator=generator, dtype=torch.float64)
        lo = table.min_budget.cpu().clamp(min=floor)
        # uniform in [max(min_budget, floor), 1): never 1.0 itself (that is the full pass)
        self.budgets = (lo + u * (1.0 - lo)).to(engine.device)
        # the smallest pass: the level budget ``floor`` selects (the chain's smallest below min_budget)
        self.smallest = engine.budget_scale([floor] * engine.n_members) if floor > 0 else engine.smallest_scale()
        # the fixed levels (slimmable networks' width list): the same every step
        self.levels = [engine.budget_scale([b] * engine.n_members) for b in levels]

    def passes(
        self,
        t: int,
        x: torch.Tensor,
        y: torch.Tensor,
        noise: torch.Tensor | None,
        config: TrainConfig,
        mask: torch.Tensor | None,
        weights: torch.Tensor | None,
    ) -> list[Any]:
        """Return step ``t``'s passes for :meth:`StepGuard.step_passes` (full pass first)."""
        engine, table = self.engine, self.engine.budget_table
        full: dict[str, torch.Tensor] = {}

        def run_full() -> tuple[torch.Tensor, torch.Tensor]:
            out = engine.forward(x, noise, training=True)
            task = task_losses(out, y, config.loss, mask, weights)
            full["out"] = out.detach()
            loss = task + config.penalty * engine.penalty() if config.penalty else task
            return loss, task

        def run_sub(scale_of: Any) -> Any:
            def run() -> torch.Tensor:
                out = engine.forward(x, noise, training=True, scale=scale_of())
                if config.distill:
                    return distill_losses(out, full["out"], config.loss, mask, weights)
                return task_losses(out, y, config.loss, mask, weights)

            return run

        subs = [run_sub(lambda: self.smallest)]
        subs += [run_sub(lambda s=s: s) for s in self.levels]
        for k in range(self.budgets.shape[1]):
            # no validation here: the budgets are in range by construction (no host sync)
            subs.append(run_sub(lambda k=k: engine.entry_scale(table.entries(self.budgets[t, k]))))
        return [run_full, *subs]


def distill_losses(
    out: torch.Tensor,
    target: torch.Tensor,
    loss: str,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return each member's mean distillation loss against its own (detached) full outputs.

    In-place distillation (Yu & Huang 2019): ``cross_entropy`` is the soft cross-entropy
    ``-sum softmax(target) * log_softmax(out)`` (KL divergence up to the target's
    entropy, a constant: the same gradient), ``mse`` the squared error to ``target``.
    Samples are reduced as :func:`task_losses` reduces them (``mask``: a member's own
    samples; ``weights``: ``sum(w * l) / sum(w)``).

    Shape:
        out, target: (P, B, n_out); mask: (P, B) bool; weights: (B,) -> (P,)
    """
    p, b = out.shape[:2]
    if loss == "cross_entropy":
        per = -(torch.softmax(target, -1) * torch.log_softmax(out, -1)).sum(-1)
    else:
        per = F.mse_loss(out, target, reduction="none").mean(2)
    zero = torch.zeros((), dtype=per.dtype, device=per.device)
    if weights is None and mask is None:
        return per.mean(1)
    w = torch.ones(1, b, dtype=per.dtype, device=per.device) if weights is None else weights.to(per.dtype).view(1, b)
    w = w.expand(p, b)
    if mask is not None:
        w = torch.where(mask, w, zero)
    total = torch.where(w > 0, per * w, zero).sum(1)
    if weights is None:
        return total / w.sum(1).clamp_min(1.0)
    return total / w.sum(1).clamp_min(torch.finfo(per.dtype).tiny)


def class_weights(y: torch.Tensor) -> torch.Tensor:
    """Return ``class_weight = "balanced"``'s weight of each class id: ``N / (n_classes * count)``.

    sklearn's ``compute_class_weight("balanced")`` formula over the training rows given
    (with K-fold fitness: the whole pool, which stratified folds share out evenly); a
    class with no rows gets weight 0 (``n_classes`` counts the classes present).

    Shape:
        y: (N,) int64 class ids -> (max(y) + 1,) float64
    """
    counts = torch.bincount(y.reshape(-1)).double()
    present = int((counts > 0).sum())
    return torch.where(counts > 0, y.numel() / (present * counts.clamp_min(1)), torch.zeros_like(counts))


def _results(losses: torch.Tensor, done: torch.Tensor, failed: torch.Tensor) -> list[TrainResult]:
    results = []
    for m in range(losses.shape[1]):
        d = int(done[m])
        if d < losses.shape[0]:  # failed at step d
            results.append(TrainResult(status="failed", steps=d, train_loss=float(failed[m])))
            continue
        window = losses[max(0, d - LOSS_WINDOW) : d, m]
        results.append(TrainResult(status="ok", steps=d, train_loss=float(window.mean())))
    return results


def shares(correct: torch.Tensor, total: int | torch.Tensor) -> list[Any]:
    """``correct / total`` as float32 values, correctly rounded on every device.

    CUDA divides by a Python number as a multiply by its reciprocal (26/30 came out an
    ulp above the CPU's and sklearn's float32); the division runs in float64 on the CPU,
    whose rounding to float32 is the correctly rounded float32 quotient.
    """
    total = total.cpu().double() if isinstance(total, torch.Tensor) else float(total)
    return (correct.cpu().double() / total).float().tolist()


@torch.no_grad()
def evaluate_engine(
    engine: PopulationEngine, X: torch.Tensor, y: torch.Tensor, loss: str
) -> tuple[list[float], list[float | None]]:
    """Return every member's ``(mean loss, accuracy or None)``, deterministic gates.

    Accuracy is a float32 mean of 0/1 values, as ``(out.argmax(1) == y).float().mean()``.

    Shape:
        X: (N, n_inputs); y: (N,) or (N, n_outputs).
    """
    values, accuracy, _ = _evaluate(engine, X, y, loss, keep_outputs=False)
    return values, accuracy


def _evaluate(
    engine: PopulationEngine,
    X: torch.Tensor,
    y: torch.Tensor,
    loss: str,
    keep_outputs: bool,
    scale: torch.Tensor | None = None,
) -> tuple[list[float], list[float | None], np.ndarray | None]:
    """:func:`evaluate_engine`, and with ``keep_outputs`` every member's outputs (P, N, n_out), float64.

    ``scale``: gate-value factors (budgets, :meth:`PopulationEngine.budget_scale`).
    """
    n = X.shape[0]
    total = torch.zeros(engine.n_members, dtype=torch.float64, device=X.device)
    correct = torch.zeros(engine.n_members, dtype=torch.long, device=X.device)
    kept: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, n, EVAL_CHUNK):
            xb, yb = X[start : start + EVAL_CHUNK], y[start : start + EVAL_CHUNK]
            out = engine.forward(xb) if scale is None else engine.forward(xb, scale=scale)
            chunk = task_losses(out, yb, loss)
            total = chunk.double() if n <= EVAL_CHUNK else total + chunk.double() * xb.shape[0] / n
            if loss == "cross_entropy":
                correct += (out.argmax(-1) == yb).sum(1)
            if keep_outputs:
                kept.append(out.detach().to("cpu", torch.float64).numpy())
    values = total.tolist()
    outputs = np.concatenate(kept, axis=1) if keep_outputs else None
    if loss != "cross_entropy":
        return values, [None] * engine.n_members, outputs
    return values, shares(correct, n), outputs


def engine_metrics(
    engine: PopulationEngine | AdaptiveEngine,
    genomes: Sequence[Genome],
    X: Any,
    y: Any,
    gate: str,
    loss: str,
    metric: str | None = None,
) -> list[Metrics]:
    """Return each member's :class:`Metrics` on ``(X, y)``: the package's one metrics function.

    ``genomes`` are the members as the engine holds them (sizes and FLOPs come from
    their open gates, ``genomes.active_structure``). An :class:`AdaptiveEngine` is
    scored under the exit rule (:func:`adaptive_metrics`). ``metric`` (a name in
    :data:`hybrid.metrics.METRICS`) sets ``Metrics.score``; None leaves it unset.
    ``accuracy`` and ``mse`` come from the pass that gives the loss (the mean task
    loss is the MSE); any other metric reads every member's outputs off the same
    chunked pass and scores them with ``sklearn.metrics``, member by member.
    """
    if isinstance(engine, AdaptiveEngine):
        return adaptive_metrics(engine, genomes, X, y, gate, loss, metric)
    values, accuracy, scores = engine_scores(engine, X, y, loss, metric)
    out = []
    for g, v, a, s in zip(genomes, values, accuracy, scores, strict=True):
        live = active_structure(g, gate)
        out.append(
            Metrics(
                loss=v,
                accuracy=a,
                active_parameters=live.n_parameters,
                flops=live.flops,
                metric=metric,
                score=s,
            )
        )
    return out


@torch.no_grad()
def adaptive_metrics(
    engine: AdaptiveEngine,
    genomes: Sequence[Genome],
    X: torch.Tensor,
    y: torch.Tensor,
    gate: str,
    loss: str,
    metric: str | None = None,
) -> list[Metrics]:
    """Return each member's :class:`Metrics` under the exit rule (:meth:`AdaptiveEngine.infer`).

    Loss, accuracy and score are those of the exit-rule outputs with the engine's
    thresholds (fitted, else the genomes'); ``average_flops`` is the mean FLOPs per
    sample, ``flops`` the full path's (``ActiveStructure.flops``).
    """
    outs, costs = [], []
    for start in range(0, X.shape[0], EVAL_CHUNK):
        o, f, _ = engine.infer(X[start : start + EVAL_CHUNK])
        outs.append(o)
        costs.append(f)
    out, cost = torch.cat(outs, 1), torch.cat(costs, 1)
    values = task_losses(out, y, loss).double().tolist()
    p = engine.n_members
    accuracy: list[float | None] = [None] * p
    if loss == "cross_entropy":
        accuracy = shares((out.argmax(-1) == y).sum(1), y.shape[0])
    if metric == "accuracy":
        scores: list[float | None] = list(accuracy)
    elif metric == "mse":
        scores = list(values)
    elif metric is None:
        scores = [None] * p
    else:
        o_np, y_np = out.detach().to("cpu", torch.float64).numpy(), y.detach().cpu().numpy()
        scores = [_score(metric, y_np, o_np[m]) for m in range(p)]
    average = cost.mean(1).tolist()
    result = []
    for m, g in enumerate(genomes):
        live = active_structure(g, gate)
        result.append(
            Metrics(
                loss=values[m],
                accuracy=accuracy[m],
                active_parameters=live.n_parameters,
                flops=live.flops,
                metric=metric,
                score=scores[m],
                average_flops=average[m],
            )
        )
    return result


def engine_scores(
    engine: PopulationEngine,
    X: torch.Tensor,
    y: torch.Tensor,
    loss: str,
    metric: str | None,
    scale: torch.Tensor | None = None,
) -> tuple[list[float], list[float | None], list[float | None]]:
    """Return every member's ``(mean loss, accuracy or None, metric score or None)`` in one pass.

    The scores of :func:`engine_metrics`; ``scale`` runs each member at a budget
    (:meth:`PopulationEngine.budget_scale`).
    """
    cheap = metric in (None, "accuracy", "mse")
    values, accuracy, outputs = _evaluate(engine, X, y, loss, not cheap, scale)
    if metric == "accuracy":
        scores: list[float | None] = list(accuracy)
    elif metric == "mse":
        scores = list(values)
    elif metric is None:
        scores = [None] * len(values)
    else:
        assert outputs is not None
        y_np = y.detach().cpu().numpy()
        scores = [_score(metric, y_np, o) for o in outputs]
    return values, accuracy, scores


def fold_metrics(
    engine: PopulationEngine,
    genomes: Sequence[Genome],
    X: torch.Tensor,
    y: torch.Tensor,
    folds: tuple[torch.Tensor, torch.Tensor],
    gate: str,
    loss: str,
    metric: str | None,
) -> tuple[list[Metrics], list[Metrics]]:
    """Return each member's metrics outside and inside its fold, from one pass over ``X``.

    K-fold fitness (:mod:`hybrid.folds`): member ``m`` of fold ``f`` trained on the
    rows of ``X`` outside fold ``f`` and is scored on the rows inside it. Both come
    from one chunked evaluation pass: losses and correct counts are summed per member
    and side as the chunks go; a metric other than ``accuracy``/``mse`` keeps the
    outputs and scores each member's own rows with ``sklearn.metrics``.

    Args:
        engine: the trained population.
        genomes: the members as the engine holds them (sizes and FLOPs).
        X, y: the pool.
        folds: ``(fold id of each row, fold id of each member)``.
        gate, loss: as for :func:`engine_metrics`.
        metric: the score of the inside (validation) metrics; the outside ones get none.

    Returns:
        ``(outside, inside)``: one :class:`Metrics` per member each.
    """
    rows, mine = folds[0].to(X.device), folds[1].to(X.device).view(-1, 1)
    p, n = engine.n_members, X.shape[0]
    sums = torch.zeros(2, p, dtype=torch.float64, device=X.device)  # side 0: outside, 1: inside
    counts = torch.zeros(2, p, dtype=torch.long, device=X.device)
    correct = torch.zeros(2, p, dtype=torch.long, device=X.device)
    cheap = metric in (None, "accuracy", "mse")
    kept: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, n, EVAL_CHUNK):
            xb, yb = X[start : start + EVAL_CHUNK], y[start : start + EVAL_CHUNK]
            out = engine.forward(xb)
            own = rows[start : start + EVAL_CHUNK].view(1, -1) == mine
            for side, mask in enumerate((~own, own)):
                c = mask.sum(1)
                sums[side] += task_losses(out, yb, loss, mask).double() * c
                counts[side] += c
                if loss == "cross_entropy":
                    correct[side] += ((out.argmax(-1) == yb) & mask).sum(1)
            if not cheap:
                kept.append(out.detach().to("cpu", torch.float64).numpy())
    values = (sums / counts.clamp_min(1)).tolist()
    accuracy = shares(correct, counts.clamp_min(1))
    if loss != "cross_entropy":
        accuracy = [[None] * p, [None] * p]
    if metric == "accuracy":
        scores: list[float | None] = list(accuracy[1])
    elif metric == "mse":
        scores = list(values[1])
    elif metric is None:
        scores = [None] * p
    else:
        outputs = np.concatenate(kept, axis=1)
        y_np, own_np = y.detach().cpu().numpy(), (rows.view(1, -1) == mine).cpu().numpy()
        scores = [_score(metric, y_np[own_np[m]], outputs[m][own_np[m]]) for m in range(p)]
    outside, inside = [], []
    for m, g in enumerate(genomes):
        live = active_structure(g, gate)
        outside.append(Metrics(values[0][m], accuracy[0][m], live.n_parameters, live.flops))
        inside.append(
            Metrics(values[1][m], accuracy[1][m], live.n_parameters, live.flops, metric, scores[m])
        )
    return outside, inside


def _score(metric: str, y: np.ndarray, outputs: np.ndarray) -> float:
    """One member's score; NaN when its outputs are not finite (the member failed)."""
    if not np.isfinite(outputs).all():
        return float("nan")
    return metric_score(metric, y, outputs)


def evaluate_population(
    genomes: Sequence[Genome],
    X: Any,
    y: Any,
    config: TrainConfig,
    device: torch.device | str | None = None,
) -> list[Metrics]:
    """Return each genome's metrics on ``(X, y)`` in one batched pass.

    Args:
        genomes: valid genomes sharing widths (not modified).
        X, y: a data split (see :func:`hybrid.metrics.check_data`).
        config: gives the gate kind and the loss.
        device: where to run (default: ``X``'s device).

    Raises:
        DataError: if the data does not fit the genomes or the loss.
    """
    X, y = _data(genomes, X, y, config, device)
    metric = metric_for_loss(config.metric, config.loss)
    if any(is_adaptive(g) for g in genomes):
        _check_adaptive(genomes, config, None)
        adaptive = AdaptiveEngine(genomes, config.gate, device=X.device, dtype=X.dtype)
        return adaptive_metrics(adaptive, genomes, X, y, config.gate, config.loss, metric)
    engine = PopulationEngine(genomes, config.gate, device=X.device, dtype=X.dtype)
    return engine_metrics(engine, genomes, X, y, config.gate, config.loss, metric)


def _data(
    genomes: Sequence[Genome], X: Any, y: Any, config: TrainConfig, device: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    X, y = check_data(X, y, genomes[0].n_inputs, genomes[0].n_outputs, config.loss)
    if device is not None:
        X, y = X.to(device), y.to(device)
    return X, y


class Trained(NamedTuple):
    """What :func:`train_population` returns, member by member.

    Attributes:
        genomes: the trained genomes (a failed member keeps its input genome).
        results: one ``TrainResult`` each (``metrics``: on the training split).
        validation: each returned genome's ``Metrics`` on the validation split, from
            the same packed engine, ``score`` by ``config.metric`` (or the loss's
            default); None when no validation split was given.
    """

    genomes: list[Genome]
    results: list[TrainResult]
    validation: list[Metrics] | None = None


def train_population(
    genomes: Sequence[Genome],
    X: Any,
    y: Any,
    config: TrainConfig,
    generator: torch.Generator,
    lrs: Sequence[float] | None = None,
    device: torch.device | str | None = None,
    noise_columns: tuple[int, int, int] | None = None,
    *,
    X_val: Any = None,
    y_val: Any = None,
    folds: tuple[Any, Sequence[int]] | None = None,
) -> Trained:
    """Train every genome at once and return new genomes holding the trained values.

    The minibatch schedule and (hard-concrete) the noise are drawn from
    ``generator`` in that order, then the population is trained with
    :func:`train_engine`, written back, and evaluated on ``(X, y)`` and, if given,
    on ``(X_val, y_val)``, from the one packed engine.

    Args:
        genomes: valid genomes sharing widths (not modified).
        X: training inputs, float32.
        y: int64 class ids (``cross_entropy``) or float targets (``mse``).
        config: the training settings.
        generator: the only source of randomness.
        lrs: learning rate per member (default ``config.lr``).
        device: where to run (default: ``X``'s device).
        noise_columns: ``(first, end, total)`` when ``genomes`` is a slice of a larger
            population (a distributed shard): hard-concrete noise is drawn ``total``
            gates wide, as for the whole population, and this slice uses columns
            ``first:end``, so a sharded run equals the whole one.
        X_val, y_val: a validation split; its metrics are those of the returned
            genomes (a failed member's input genome is evaluated on its own).
        folds: K-fold fitness (:mod:`hybrid.folds`): ``(fold id of each row of X, fold
            id of each genome)``. Each genome trains on the rows outside its fold and
            its validation metrics are those on its fold (``X_val`` is not used); its
            training metrics are those outside its fold.

    Returns:
        :class:`Trained` ``(genomes, results, validation)``: a failed member keeps its
        input genome and gets ``status == "failed"`` (its ``metrics`` set if only the
        final evaluation failed).

    Raises:
        DataError: if the data does not fit the genomes or the loss.
    """
    if any(is_adaptive(g) for g in genomes):
        _check_adaptive(genomes, config, folds)
        return _train_adaptive_population(
            genomes, X, y, config, generator, lrs, device, noise_columns, X_val, y_val
        )
    X, y = _data(genomes, X, y, config, device)
    engine = PopulationEngine(genomes, config.gate, device=X.device, dtype=X.dtype)
    batches, noise = _batches_and_noise(engine.n_gates, X, config, generator, noise_columns)
    fold_t = None if folds is None else _fold_tensors(folds, X.shape[0], len(genomes), X.device)
    budget_gen = None
    if config.budgets == "sandwich":  # after the batches and the noise: "off" draws nothing more
        budget_gen = _child_generator(generator)
    results = train_engine(
        engine,
        X,
        y,
        config,
        batches,
        lrs=lrs,
        noise=noise,
        folds=fold_t,
        budget_generator=budget_gen,
        input_generator=_input_generator(config, generator),
    )
    trained = engine.write_back()
    if config.budgets == "sandwich":  # drop ranks follow the trained importances
        trained = [
            genome_budgets.assign_orders(g, config.gate, neurons=False, nodes=True)  # type: ignore[attr-defined]
            for g in trained
        ]
    if fold_t is None:
        metrics = engine_metrics(engine, trained, X, y, config.gate, config.loss)
    else:
        metric = metric_for_loss(config.metric, config.loss)
        metrics, inside = fold_metrics(engine, trained, X, y, fold_t, config.gate, config.loss, metric)
    out_genomes, out_results = member_outcomes(genomes, trained, results, metrics)
    if fold_t is not None:
        return Trained(out_genomes, out_results, _fold_validation(inside, trained, out_genomes, X, y, fold_t, config))
    if X_val is None:
        return Trained(out_genomes, out_results)
    return Trained(out_genomes, out_results, _validation(engine, trained, out_genomes, X_val, y_val, config))


def _check_adaptive(genomes: Sequence[Genome], config: TrainConfig, folds: object) -> None:
    """Refuse, in one line, what the adaptive path cannot run.

    Raises:
        ConfigError: for K-fold fitness, sandwich budgets, or exit heads with a
            regression loss.
    """
    if folds is not None:
        raise ConfigError(
            "K-fold fitness (folds) is not supported with adaptive genomes (exit heads, skip "
            "gates): use a validation split"
        )
    if config.budgets != "off":
        raise ConfigError(
            f"train.budgets = {config.budgets!r} is not supported with adaptive genomes "
            "(exit heads, skip gates): use budgets = 'off'"
        )
    if config.loss != "cross_entropy" and any(exit_nodes(g) for g in genomes):
        raise ConfigError(
            f"train.loss = {config.loss!r}: exit heads need classes (cross_entropy), "
            "a member has exit nodes"
        )


def _batches_and_noise(
    n_gates: int, X: torch.Tensor, config: TrainConfig, generator: torch.Generator, noise_columns: Any
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Draw the minibatch schedule, then the hard-concrete noise rows (this order: runs reproduce).

    ``noise_columns`` ``(first, end, total)``: a shard's columns of the whole population's noise.
    """
    batches = minibatch_indices(X.shape[0], config.batch_size, config.steps, generator)
    noise = None
    if noise_columns is not None and config.gate == "hard_concrete":
        first, end, total = noise_columns
        assert end - first == n_gates, (noise_columns, n_gates)
        noise = draw_gate_noise(total, config.steps, generator)[:, first:end].to(X.device)
    elif config.gate == "hard_concrete":
        noise = draw_gate_noise(n_gates, batches.shape[0], generator, device=X.device)
    return batches, noise


def _train_adaptive_population(
    genomes: Sequence[Genome],
    X: Any,
    y: Any,
    config: TrainConfig,
    generator: torch.Generator,
    lrs: Sequence[float] | None,
    device: torch.device | str | None,
    noise_columns: tuple[int, int, int] | None,
    X_val: Any,
    y_val: Any,
) -> Trained:
    """:func:`train_population` for a population with adaptive genes (thresholds fitted on validation)."""
    X, y = _data(genomes, X, y, config, device)
    engine = AdaptiveEngine(genomes, config.gate, device=X.device, dtype=X.dtype)
    batches, noise = _batches_and_noise(engine.n_gates, X, config, generator, noise_columns)
    skip_gen = None
    if engine.n_skips:  # after the batches and the noise: a population without skips draws nothing more
        skip_gen = _child_generator(generator)
    results = train_adaptive(engine, X, y, config, batches, noise, skip_gen, lrs, _input_generator(config, generator))
    Xv = yv = None
    if X_val is not None:
        Xv, yv = _data(genomes, X_val, y_val, config, engine.device)
        if config.loss == "cross_entropy":
            engine.fit_thresholds(Xv, yv, config.threshold_tolerance)
    trained = engine.write_back()
    metrics = adaptive_metrics(engine, trained, X, y, config.gate, config.loss)
    out_genomes, out_results = member_outcomes(genomes, trained, results, metrics)
    if Xv is None:
        return Trained(out_genomes, out_results)
    metric = metric_for_loss(config.metric, config.loss)
    validation = adaptive_metrics(engine, trained, Xv, yv, config.gate, config.loss, metric)
    kept = [m for m, (t, g) in enumerate(zip(trained, out_genomes, strict=True)) if t is not g]
    if kept:  # a failed member returns its input genome, which the engine no longer holds
        again = evaluate_population([out_genomes[m] for m in kept], Xv, yv, config)
        for m, value in zip(kept, again, strict=True):
            plain = value.average_flops is None  # a plain input genome: its cost is its flops
            validation[m] = replace(value, average_flops=float(value.flops)) if plain else value
    return Trained(out_genomes, out_results, validation)


def member_outcomes(
    genomes: Sequence[Genome],
    trained: Sequence[Genome],
    results: Sequence[TrainResult],
    metrics: Sequence[Metrics | None],
) -> tuple[list[Genome], list[TrainResult]]:
    """Return what each member keeps after training: its trained genome, or its input one if it failed.

    A member fails when training did or when its metrics on the training data are not
    finite (``metrics`` None: not measured, taken as finite); ``results`` get the metrics.
    """
    out_genomes, out_results = [], []
    for g, t, r, m in zip(genomes, trained, results, metrics, strict=True):
        if r.status == "failed":
            out_genomes.append(g)
            out_results.append(r)
        elif m is not None and not np.isfinite(m.loss):
            out_genomes.append(g)
            out_results.append(replace(r, status="failed", metrics=m))
        else:
            out_genomes.append(t)
            out_results.append(replace(r, metrics=m))
    return out_genomes, out_results


def _validation(
    engine: PopulationEngine,
    trained: list[Genome],
    returned: list[Genome],
    X_val: Any,
    y_val: Any,
    config: TrainConfig,
) -> list[Metrics]:
    """Metrics of the returned genomes on the validation split, from the trained engine."""
    Xv, yv = _data(trained, X_val, y_val, config, engine.device)
    metric = metric_for_loss(config.metric, config.loss)
    out = engine_metrics(engine, trained, Xv, yv, config.gate, config.loss, metric)
    # A failed member returns its input genome, which the engine no longer holds.
    kept = [m for m, (t, g) in enumerate(zip(trained, returned, strict=True)) if t is not g]
    if kept:
        again = evaluate_population([returned[m] for m in kept], Xv, yv, config)
        for m, metrics in zip(kept, again, strict=True):
            out[m] = metrics
    return out


def _fold_tensors(
    folds: tuple[Any, Sequence[int]], n_rows: int, n_members: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``folds`` as int64 tensors on ``device``, their lengths checked."""
    rows = torch.tensor(np.asarray(folds[0]), dtype=torch.long, device=device).reshape(-1)
    members = torch.as_tensor(list(folds[1]), dtype=torch.long, device=device).reshape(-1)
    if rows.numel() != n_rows or members.numel() != n_members:
        raise ValueError(
            f"folds should give {n_rows} row fold ids and {n_members} member fold ids, "
            f"got {rows.numel()} and {members.numel()}"
        )
    return rows, members


def _fold_validation(
    inside: list[Metrics],
    trained: list[Genome],
    returned: list[Genome],
    X: torch.Tensor,
    y: torch.Tensor,
    folds: tuple[torch.Tensor, torch.Tensor],
    config: TrainConfig,
) -> list[Metrics]:
    """Each returned genome's metrics on its own fold (a failed member's input genome alone)."""
    out = list(inside)
    for m, (t, g) in enumerate(zip(trained, returned, strict=True)):
        if t is not g:
            own = folds[0] == folds[1][m]
            out[m] = evaluate_population([g], X[own], y[own], config)[0]
    return out
