"""Train and evaluate a :class:`~hybrid.population.recurrent.RecurrentEngine` on sequences.

The sequence twin of :mod:`hybrid.population.train`, with its semantics per member:
loss = task loss + ``config.penalty`` * penalty (+ ``extra_loss``), AdamW with decay
on edge weights only (:class:`~hybrid.population.adam.BatchedAdamW`), a member whose
loss turns NaN/inf is frozen at that step and marked failed while the others go on
bit for bit, hard-concrete noise drawn up front (one row of
``draw_gate_noise(engine.n_gates, steps)`` per step).

Targets. Per step: ``y`` (N, T) class ids or (N, T, n_out) values, scored where
``mask`` (N, T) is True (None: every step); the loss is the mean over the scored
steps of the batch (cross-entropy, or the MSE of a step's outputs). Per sequence:
``y`` (N,) or (N, n_out), scored on the output at each sequence's last True mask
step (the last step without a mask).

Two training modes (:func:`train_sequence_engine`): whole sequences (each step a
minibatch of sequences from ``batches``, state from zero), or streams (``window``
given: each step the next window of every stream, the state carried over from the
previous window, detached: truncated backpropagation through time).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from genomes import Genome, active_structure

from ..batches import minibatch_indices
from ..errors import DataError
from ..gates import draw_gate_noise
from ..metrics import Metrics, metric_for_loss, metric_score
from ..train import TrainConfig, TrainResult
from .adam import BatchedAdamW
from .recurrent import RecurrentEngine
from .train import StepGuard, Trained, _lrs, member_outcomes

__all__ = [
    "SEQUENCE_EVAL_CHUNK",
    "check_sequence_data",
    "evaluate_sequence_engine",
    "evaluate_sequences",
    "flush_denormals",
    "sequence_losses",
    "sequence_metrics",
    "train_sequence_engine",
    "train_sequence_population",
]

#: Sequences per evaluation pass (bounds the work buffers on large splits).
SEQUENCE_EVAL_CHUNK = 512


def check_sequence_data(
    X: Any, y: Any, mask: Any, n_inputs: int, n_outputs: int, loss: str, name: str = "X"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Return ``(X, y, mask)`` as tensors of the dtypes training expects.

    Args:
        X: input sequences, float.
        y: per-step or per-sequence targets (see the module docstring).
        mask: which steps are scored, or None.
        n_inputs, n_outputs: the genomes' widths.
        loss: ``"cross_entropy"`` or ``"mse"``.
        name: what to call ``X`` in messages.

    Raises:
        DataError: naming the array, the shape or value seen and what was expected.

    Shape:
        X: (N, T, n_inputs); y: (N,), (N, T), (N, n_out) or (N, T, n_out); mask: (N, T) bool.
    """
    X = torch.as_tensor(np.array(X, copy=True) if isinstance(X, np.ndarray) else X)
    if not X.is_floating_point() or X.dtype not in (torch.float32, torch.float64):
        X = X.to(torch.float32)
    if X.dim() != 3 or X.shape[2] != n_inputs or X.shape[0] < 1 or X.shape[1] < 1:
        raise DataError(
            f"{name} should have shape (N >= 1, T >= 1, {n_inputs}), got {tuple(X.shape)}"
        )
    n, t = X.shape[:2]
    y = torch.as_tensor(np.array(y, copy=True) if isinstance(y, np.ndarray) else y, device=X.device)
    if loss == "cross_entropy":
        if y.shape not in ((n,), (n, t)) or y.is_floating_point():
            raise DataError(
                f"{name}: class targets should be int ids of shape ({n},) or ({n}, {t}), "
                f"got {y.dtype} of shape {tuple(y.shape)}"
            )
        y = y.to(torch.int64)
        if y.min() < 0 or y.max() >= n_outputs:
            raise DataError(
                f"{name}: class ids should lie in [0, {n_outputs}), got [{y.min()}, {y.max()}]"
            )
    else:
        if y.shape not in ((n, n_outputs), (n, t, n_outputs)):
            raise DataError(
                f"{name}: regression targets should have shape ({n}, {n_outputs}) or "
                f"({n}, {t}, {n_outputs}), got {tuple(y.shape)}"
            )
        y = y.to(X.dtype)
    if mask is not None:
        mask = torch.as_tensor(np.array(mask) if isinstance(mask, np.ndarray) else mask, device=X.device)
        if mask.shape != (n, t) or mask.dtype != torch.bool:
            raise DataError(
                f"{name}: mask should be bool of shape ({n}, {t}), got {mask.dtype} {tuple(mask.shape)}"
            )
        empty = torch.nonzero(~mask.any(1)).view(-1)
        if empty.numel():
            raise DataError(
                f"{name}: mask row {int(empty[0])} scores no step; every sequence needs one"
            )
    return X, y, mask


def _per_step(y: torch.Tensor, loss: str) -> bool:
    return y.dim() == (2 if loss == "cross_entropy" else 3)


def _last_steps(mask: torch.Tensor | None, n: int, t: int, device: torch.device) -> torch.Tensor:
    """Index of each sequence's last scored step: (n,)."""
    if mask is None:
        return torch.full((n,), t - 1, dtype=torch.long, device=device)
    steps = torch.arange(t, device=device).expand(n, t)
    return torch.where(mask, steps, torch.full_like(steps, -1)).amax(1)


def sequence_losses(
    out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None, loss: str, accuracy: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Return each member's summed task loss, the count it is a mean over, and its correct count.

    Args:
        out: outputs in the engine's class-major layout (``RecurrentEngine._run``).
        y: the batch's targets (per step or per sequence).
        mask: the batch's scored steps, or None.
        loss: ``"cross_entropy"`` or ``"mse"``.
        accuracy: count the right argmax predictions too (classification).

    Returns:
        ``(sum (P,), count (), correct (P,) or None)``: the mean loss is ``sum / count``;
        ``correct`` counts right argmax predictions (None for regression or without
        ``accuracy``).

    Shape:
        out: (P, n_out, T, B); y: (B, T), (B,), (B, T, n_out) or (B, n_out); mask: (B, T).
    """
    P, C, T, B = out.shape
    if not _per_step(y, loss):  # the output at each sequence's last scored step
        last = _last_steps(mask, B, T, out.device)
        out = out.gather(2, last.view(1, 1, 1, B).expand(P, C, 1, B))
        y = y.unsqueeze(1)  # one step per sequence
        mask = None
        T = 1
    correct = None
    if loss == "cross_entropy":
        target = y.t().reshape(1, 1, T, B).expand(P, 1, T, B)
        per = -torch.log_softmax(out, 1).gather(1, target).view(P, T, B)
        if accuracy:
            correct = out.argmax(1) == target.view(P, T, B)
    else:
        per = (out - y.permute(2, 1, 0).unsqueeze(0)).square().mean(1)
    if mask is None:
        count = torch.tensor(T * B, dtype=out.dtype, device=out.device)
        return per.sum((1, 2)), count, None if correct is None else correct.sum((1, 2))
    m = mask.t().unsqueeze(0)  # (1, T, B)
    count = m.sum().to(out.dtype)
    zero = torch.zeros((), dtype=per.dtype, device=per.device)
    total = torch.where(m, per, zero).sum((1, 2))
    return total, count, None if correct is None else (correct & m).sum((1, 2))


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Flush denormal floats to zero on the CPU while training, then switch it off.

    Backpropagation through time drives gradients toward zero, and CPU arithmetic
    on denormals runs tens of times slower (an add of 98k denormals: 1.9 ms against
    0.03 ms). Values below ~1e-38 change nothing a float32 loss can see.
    """
    changed = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if changed:
            torch.set_flush_denormal(False)


def train_sequence_engine(
    engine: RecurrentEngine,
    X: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor | None,
    config: TrainConfig,
    batches: torch.Tensor | None,
    noise_generator: torch.Generator | None = None,
    lrs: Sequence[float] | torch.Tensor | None = None,
    *,
    window: int | None = None,
    extra_loss: Callable[[RecurrentEngine], torch.Tensor] | None = None,
    on_chunk: Callable[[int, torch.Tensor], None] | None = None,
    optimizer_hook: Callable[[BatchedAdamW], None] | None = None,
) -> list[TrainResult]:
    """Train ``engine.params`` in place on sequences or streams.

    Args:
        engine: the packed population (its gate kind should be ``config.gate``).
        X: sequences (N, T, F) or, with ``window``, S parallel streams (S, L, F).
        y: targets: per step or per sequence (streams: per step).
        mask: scored steps (N, T) / (S, L), or None.
        config: optimiser, penalty and loss settings.
        batches: sequence indices per step (steps, B); unused with ``window``
            (``config.steps`` windows are trained).
        noise_generator: source of the stream start (first) and of the hard-concrete
            noise (drawn once, up front).
        lrs: learning rate per member (default ``config.lr`` for all).
        window: stream mode: each step trains on the next ``window`` steps of every
            stream ``[t, t + window)``, the state carried over from the previous
            window (detached); the first window starts at an offset drawn from
            ``noise_generator`` (0 without one); past the streams' end it wraps to 0
            with the state reset to zero.
        extra_loss: ``extra_loss(engine) -> (P,)`` added to each member's loss
            (the L1 penalty, say).
        on_chunk: called after every step as ``on_chunk(step, task_losses)``,
            ``task_losses`` the members' task losses of that step (P,), detached.
        optimizer_hook: called with the optimiser once it is built, before the first
            step: to load moments carried over from an earlier engine and keep a
            handle on them (:func:`hybrid.growth.train_growing`).

    Returns:
        One ``TrainResult`` per member, ``metrics`` None.

    Raises:
        ValueError: bad ``lrs``, a window outside [1, L], per-sequence targets with a
            window, or hard-concrete gates without noise generator.
    """
    p, dev, dtype = engine.n_members, X.device, engine.dtype
    if window is None:
        if batches is None:
            raise ValueError("train_sequence_engine: batches are needed without a window, got None")
        steps = batches.shape[0]
        batches = batches.to(dev)
        start = 0
    else:
        steps = config.steps
        if not 1 <= window <= X.shape[1]:
            raise ValueError(
                f"window should lie in [1, {X.shape[1]}] (the stream length), got {window}"
            )
        if not _per_step(y, config.loss):
            raise ValueError("stream training needs per-step targets y of shape (S, L[, n_out])")
        last_start = X.shape[1] - window
        start = 0
        if noise_generator is not None:
            start = int(torch.randint(0, last_start + 1, (1,), generator=noise_generator))
    noise = None
    if engine.gate == "hard_concrete":
        if noise_generator is None:
            raise ValueError("hard_concrete gates need a noise_generator, got None")
        noise = draw_gate_noise(engine.n_gates, steps, noise_generator, device=dev)
    n_trained = 3 if config.train_gates else 2
    params = engine.params[:n_trained]
    optimizer = BatchedAdamW(
        params,
        engine.members[:n_trained],
        _lrs(lrs, config, p),
        (True, False, False)[:n_trained],
        config.weight_decay,
    )
    if optimizer_hook is not None:
        optimizer_hook(optimizer)
    guard = StepGuard(p, steps, dtype, dev)
    state = None
    for t_ in params:
        t_.requires_grad_(True)
    engine.sample_gates = config.train_gates  # frozen gates train at their deterministic values
    try:
        with flush_denormals():
            for t in range(steps):
                if window is None:
                    idx = batches[t]
                    xb, yb, mb = X[idx], y[idx], None if mask is None else mask[idx]
                else:
                    if start > last_start:  # past the end: wrap, and start from zero
                        start, state = 0, None
                    sl = slice(start, start + window)
                    xb, yb, mb = X[:, sl], y[:, sl], None if mask is None else mask[:, sl]
                    start += window
                out, final = engine._run(xb, None if noise is None else noise[t], True, state)
                total, count, _ = sequence_losses(out, yb, mb, config.loss, accuracy=False)
                task = total / count.clamp_min(1)
                loss = task + config.penalty * engine.penalty() if config.penalty else task
                if extra_loss is not None:
                    loss = loss + extra_loss(engine)
                guard.step(t, loss, task, params, optimizer)
                if window is not None:
                    state = final.detach()
                if on_chunk is not None:
                    on_chunk(t, task.detach())
    finally:
        engine.sample_gates = True
        for t_ in params:
            t_.requires_grad_(False)
    return guard.results()


@torch.no_grad()
def evaluate_sequence_engine(
    engine: RecurrentEngine,
    X: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor | None,
    loss: str,
) -> tuple[list[float], list[float | None]]:
    """Return every member's ``(mean loss, accuracy or None)``, deterministic gates.

    Each sequence runs from the zero state; the mean is over all scored steps (or
    sequences) of ``X``, evaluated ``SEQUENCE_EVAL_CHUNK`` sequences at a time.

    Shape:
        X: (N, T, n_inputs); y, mask: as for :func:`sequence_losses`.
    """
    values, accuracy, _ = _evaluate(engine, X, y, mask, loss, keep_outputs=False)
    return values, accuracy


@torch.no_grad()
def _evaluate(
    engine: RecurrentEngine,
    X: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor | None,
    loss: str,
    keep_outputs: bool,
) -> tuple[list[float], list[float | None], np.ndarray | None]:
    """:func:`evaluate_sequence_engine`, and with ``keep_outputs`` every member's outputs (P, N, T, n_out), float64."""
    n = X.shape[0]
    total = torch.zeros(engine.n_members, dtype=torch.float64, device=X.device)
    correct = torch.zeros(engine.n_members, dtype=torch.float64, device=X.device)
    count = 0.0
    kept: list[np.ndarray] = []
    for s in range(0, n, SEQUENCE_EVAL_CHUNK):
        sl = slice(s, s + SEQUENCE_EVAL_CHUNK)
        out, _ = engine._run(X[sl].to(engine.dtype), None, False, None)
        chunk, c, right = sequence_losses(out, y[sl], None if mask is None else mask[sl], loss)
        total += chunk.double()
        count += float(c)
        if right is not None:
            correct += right.double()
        if keep_outputs:  # class-major (P, n_out, T, B) -> (P, B, T, n_out)
            kept.append(out.permute(0, 3, 2, 1).to("cpu", torch.float64).numpy())
    values = (total / max(count, 1.0)).tolist()
    outputs = np.concatenate(kept, axis=1) if keep_outputs else None
    if loss != "cross_entropy":
        return values, [None] * engine.n_members, outputs
    # divided on the CPU: CUDA divides by a Python number as a multiply by its reciprocal
    return values, (correct.cpu() / max(count, 1.0)).tolist(), outputs


def sequence_metrics(
    engine: RecurrentEngine,
    genomes: Sequence[Genome],
    X: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor | None,
    gate: str,
    loss: str,
    metric: str | None = None,
    floor: float | None = None,
) -> list[Metrics]:
    """Return each member's :class:`Metrics` on sequences (sizes and FLOPs per time step).

    ``score``: the accuracy for ``"accuracy"``, ``loss - floor`` for
    ``"excess_nats"`` (nats above the data's entropy floor), the loss for ``"mse"``;
    any other metric reads every member's outputs and asks
    :func:`hybrid.metrics.metric_score` (its scored steps: the mask's, or each
    sequence's last real step); None without a metric.

    Raises:
        ValueError: ``"excess_nats"`` without a ``floor``.
    """
    if metric == "excess_nats" and floor is None:
        raise ValueError("metric 'excess_nats' needs the data's floor, got None")
    cheap = metric in (None, "accuracy", "excess_nats", "mse")
    values, accuracy, outputs = _evaluate(engine, X, y, mask, loss, keep_outputs=not cheap)
    scores: list[float | None] = [None] * len(values)
    if outputs is not None:  # any other metric: sklearn on the scored steps, member by member
        y_np, mask_np = y.cpu().numpy(), None if mask is None else mask.cpu().numpy()
        scores = [
            metric_score(metric, y_np, o, mask=mask_np) if np.isfinite(o).all() else float("nan")
            for o in outputs
        ]
    out = []
    for g, v, a, other in zip(genomes, values, accuracy, scores, strict=True):
        if metric is None:
            score = None
        elif metric == "accuracy":
            score = a
        elif metric == "excess_nats":
            score = v - float(floor)  # type: ignore[arg-type]
        elif metric == "mse":
            score = v
        else:
            score = other
        live = active_structure(g, gate)
        out.append(Metrics(v, a, live.n_parameters, live.flops, metric, score))
    return out


def train_sequence_population(
    genomes: Sequence[Genome],
    X: Any,
    y: Any,
    mask: Any,
    config: TrainConfig,
    generator: torch.Generator,
    *,
    window: int | None = None,
    X_val: Any = None,
    y_val: Any = None,
    mask_val: Any = None,
    floor_val: float | None = None,
    device: torch.device | str | None = None,
    extra_loss: Callable[[RecurrentEngine], torch.Tensor] | None = None,
) -> Trained:
    """Train every genome on sequences at once and return the trained genomes.

    Sequences: the minibatch schedule (:func:`hybrid.batches.minibatch_indices` over
    the N sequences) then the noise are drawn from ``generator``; streams
    (``window``): the start offset then the noise. The population is trained with
    :func:`train_sequence_engine`, written back and evaluated on ``(X, y)`` (whole
    sequences from the zero state) and, if given, on the validation split, from the
    one packed engine. Validation metric: ``"excess_nats"`` when ``floor_val`` is
    given, else ``config.metric`` (or the loss's default).

    Args:
        genomes: valid genomes sharing widths (not modified).
        X, y, mask: training data (see :func:`check_sequence_data`).
        config: the training settings.
        generator: the only source of randomness.
        window: stream mode (see :func:`train_sequence_engine`).
        X_val, y_val, mask_val: a validation split.
        floor_val: the validation data's loss floor (for ``"excess_nats"``).
        device: where to run (default: ``X``'s device).
        extra_loss: added to each member's training loss.

    Returns:
        :class:`~hybrid.population.train.Trained`: a failed member keeps its input
        genome and gets ``status == "failed"``.

    Raises:
        DataError: if the data does not fit the genomes or the loss.
    """
    n_in, n_out = genomes[0].n_inputs, genomes[0].n_outputs
    X, y, mask = _to(check_sequence_data(X, y, mask, n_in, n_out, config.loss, "X"), device)
    engine = RecurrentEngine(genomes, config.gate, device=X.device, dtype=X.dtype)
    batches = None
    if window is None:
        batches = minibatch_indices(X.shape[0], config.batch_size, config.steps, generator)
    results = train_sequence_engine(
        engine, X, y, mask, config, batches, generator, window=window, extra_loss=extra_loss
    )
    trained = engine.write_back()
    # Streams: no pass over the whole training streams (thousands of steps) for figures
    # nothing reads; the validation pass finds a member whose values went non-finite.
    metrics: list[Metrics | None] = (
        [None] * len(trained)
        if window is not None
        else list(sequence_metrics(engine, trained, X, y, mask, config.gate, config.loss))
    )
    out_genomes, out_results = member_outcomes(genomes, trained, results, metrics)
    if X_val is None:
        return Trained(out_genomes, out_results)
    Xv, yv, mv = _to(
        check_sequence_data(X_val, y_val, mask_val, n_in, n_out, config.loss, "X_val"), X.device
    )
    metric = "excess_nats" if floor_val is not None else metric_for_loss(config.metric, config.loss)
    val = sequence_metrics(engine, trained, Xv, yv, mv, config.gate, config.loss, metric, floor_val)
    for m, v in enumerate(val):  # streams: a trained genome that scores non-finite has failed
        if out_genomes[m] is trained[m] and not np.isfinite(v.loss):
            out_genomes[m], out_results[m] = genomes[m], replace(out_results[m], status="failed")
    kept = [m for m, (t, g) in enumerate(zip(trained, out_genomes, strict=True)) if t is not g]
    if kept:  # a failed member returns its input genome, which the engine no longer holds
        again = RecurrentEngine(
            [out_genomes[m] for m in kept], config.gate, device=X.device, dtype=X.dtype
        )
        redo = sequence_metrics(
            again,
            [out_genomes[m] for m in kept],
            Xv,
            yv,
            mv,
            config.gate,
            config.loss,
            metric,
            floor_val,
        )
        for m, v in zip(kept, redo, strict=True):
            val[m] = v
    return Trained(out_genomes, out_results, val)


def _to(
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None], device: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if device is None:
        return data
    X, y, mask = data
    return X.to(device), y.to(device), None if mask is None else mask.to(device)


def evaluate_sequences(
    genomes: Sequence[Genome],
    X: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray | None,
    floor: float | None,
    config: TrainConfig,
    device: str = "cpu",
) -> list[Metrics]:
    """Return each genome's metrics on a sequence split (deterministic gates, zero initial state)."""
    Xt, yt, mt = _to(
        check_sequence_data(X, y, mask, genomes[0].n_inputs, genomes[0].n_outputs, config.loss), device
    )
    engine = RecurrentEngine(list(genomes), config.gate, device=device)
    if config.metric != "excess_nats":
        floor = None
    return sequence_metrics(engine, list(genomes), Xt, yt, mt, config.gate, config.loss, config.metric, floor)
