"""Bottleneck-informed growth operators: TINY's new neurons, scaled by a line search.

Three mutations, config-selectable like every other (``mutation.grow_bottleneck``,
``mutation.add_node_bottleneck``, ``mutation.add_edge_bottleneck``; 0 by default and
opt-in: at 0 they draw nothing):

* ``grow_bottleneck`` widens the hidden node with the largest first-order gain by the
  neurons whose ``λ`` pass the threshold (at most ``bottleneck.max_new``);
* ``add_node_bottleneck`` adds a new node between the pair ``(i, j)`` with the largest
  gain (the edge ``i -> j``, if any, stays);
* ``add_edge_bottleneck`` adds the skip edge ``i -> j`` with the largest gain.

The new parameters are TINY's (:mod:`.candidates`) scaled by an amplitude ``γ``
(fan-in and fan-out both by ``γ``; an edge's weight by ``γ``), written so that the
genome's gates are compensated: the change to each consumer's pre-activation is
exactly ``γ ω (σ(γ α b) - σ(0))`` (the ``σ(0)`` term goes into the consumer's bias, so
sigmoid and gauss nodes keep the function at ``γ = 0`` too). With
``bottleneck_split = "balanced"`` the same first-order change ``γ² ω σ'(0) α b`` is
split the other way: each new neuron's fan-in is ``c α``, with ``c`` giving its
pre-activation unit standard deviation on the statistics batch, and its fan-out
``(γ² / c) ω``, so the change is ``(γ² / c) ω (σ(c α b) - σ(0))``. For relu (positively
homogeneous) that is the same function; for smooth activations the new neurons start
as nonlinear features at the scale of a fresh layer's instead of deep in their linear
range with both factors tiny, a saddle that Adam's per-weight steps of size ``lr``
wash the solved directions out of. ``γ`` is chosen on a
held-out *line batch*: every grid value's child is scored in one engine pass, in float64
(at ``γ = 2⁻⁶`` a drop can be 1e-8 of the loss, below float32's resolution of a mean
loss), and the
largest drop (``bottleneck_amplitude = "largest_drop"``; ``"smallest_passing"``: the
smallest ``γ``) whose first-order prediction is positive (a descent direction: Armijo's
test says nothing otherwise, since any positive drop is at least half a negative
prediction) and whose size is at least half that prediction wins (Armijo's sufficient
decrease, c = 1/2) and, with ``bottleneck_significance = k > 0``, whose drop
is at least ``k`` standard errors of the per-row drops on the line batch (a paired
z-test: a drop no larger than the batch's noise would not hold on other rows). When no grid value qualifies the candidate is not
grown (gromo adds the neurons at ``γ = 0``; with zero fan-in and fan-out no gradient
ever reaches them, so they would only cost parameters) and the next best is tried. The record carries ``γ``, the predicted
first-order drop at ``γ`` (``predicted``; on the statistics batch), the realised drops
on the statistics batch (``realised_stats``: the same rows as the prediction), the line
batch (``realised``: the rows ``γ`` was chosen on) and held-out rows used for nothing
else (``realised_val``), TINY's gain (``tiny_gain``) and the line batch's paired z
statistic of the chosen drop (``z``).

Statistics for a whole population come from one engine pass
(:meth:`BottleneckGrowth.prime`); a genome not primed (a crossover child, or one an
earlier operator changed) gets its own pass. A genome's candidates of a kind are solved
when an operator of that kind first asks for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

from genomes import Genome, InnovationTracker, MutationConfig, MutationRecord, NotApplicable
from genomes.activations import activate
from genomes.gates import gate_value
from genomes.genome import edge_attrs, node_attrs
from genomes.mutations._neurons import append_neurons

from ..activations import torch_activate
from ..population import PopulationEngine
from ..population.engine import sample_losses
from .candidates import Candidate, Settings, best_candidates
from .stats import MemberStats, collect, node_input

__all__ = ["GAMMAS", "OPERATORS", "BottleneckGrowth", "Data", "balanced", "materialize"]

#: The operator of each candidate kind (their names are the config's mutation rates).
OPERATORS = {"widen": "grow_bottleneck", "node": "add_node_bottleneck", "edge": "add_edge_bottleneck"}
KINDS = tuple(OPERATORS)

#: Amplitudes tried by the line search (0: add the structure with zero weights).
GAMMAS = (0.0, *(2.0**k for k in range(-6, 4)))  # 0: the parent's loss, the reference

#: Candidates of a kind line-searched (best first) before the operator gives up.
TRIES = 3

#: Armijo's sufficient-decrease constant: a realised drop must be at least this share of
#: its first-order prediction.
ARMIJO = 0.5


@dataclass(frozen=True)
class Data:
    """The batches bottleneck growth reads (numpy; targets as the task stores them).

    ``stats``: the statistics batch (training rows); ``line``: the line-search batch;
    ``val``: held-out rows used for nothing but the record (``realised_val``: an
    unbiased estimate of the drop, which the line batch's is not).
    """

    x_stats: np.ndarray
    y_stats: np.ndarray
    x_line: np.ndarray
    y_line: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    loss: str


def _gate(logit: float | np.ndarray, kind: str) -> float:
    return float(gate_value(logit, kind))


def materialize(
    genome: Genome,
    cand: Candidate,
    gamma: float,
    tracker: InnovationTracker,
    config: MutationConfig,
    stats: MemberStats,
) -> Genome:
    """Return ``genome`` grown by ``cand`` at amplitude ``gamma`` (gates compensated).

    Raises:
        NotApplicable: the new node's id is already in the genome (a node between the
            same pair was added earlier this generation) or new gates would be closed.
    """
    g_new = _gate(config.gate_init, config.gate)
    if g_new <= 0.0:
        raise NotApplicable(f"bottleneck growth: gate_init {config.gate_init} closes new gates")
    child = genome.copy()
    cg = child.graph
    if cand.kind == "edge":
        w = (gamma * cand.omega / g_new).astype(np.float32)
        cg.add_edge(cand.src, cand.dst, **edge_attrs(tracker.edge(cand.src, cand.dst), w, config.gate_init))
        return child
    alpha, out_scale = _split(cand, gamma)
    n = alpha.shape[0]
    offset = float(activate(cand.activation, np.zeros(1))[0])  # σ(0)
    if cand.kind == "widen":
        k = cand.src
        append_neurons(child, k, n, None, config.gate_init)
        _, _, blocks = node_input(stats, k)
        for src, at in blocks:
            e = cg.edges[src, k]
            w_src = int(cg.nodes[src]["width"])
            e["weight"][-n:] = alpha[:, at : at + w_src]
        cg.nodes[k]["bias"][-n:] = alpha[:, -1]
        fan_out = {j: cg.edges[k, j] for j, _ in cand.consumers}
    else:
        i, j = cand.src, cand.dst
        k = tracker.split_node(i, j)
        if k in cg:
            raise NotApplicable(f"add_node_bottleneck: node {k} between {i} and {j} already exists")
        cg.add_node(k, **node_attrs("hidden", n, cand.activation, bias=alpha[:, -1], gate_init=config.gate_init))
        w_in = (alpha[:, :-1] / g_new).astype(np.float32)
        cg.add_edge(i, k, **edge_attrs(tracker.edge(i, k), w_in, config.gate_init))
        w_out = np.zeros((int(cg.nodes[j]["width"]), n), np.float32)
        cg.add_edge(k, j, **edge_attrs(tracker.edge(k, j), w_out, config.gate_init))
        fan_out = {j: cg.edges[k, j]}
    g_k = np.asarray(gate_value(cg.nodes[k]["gate"][-n:], config.gate), np.float64)
    for j, at in cand.consumers:
        e = fan_out[j]
        wj = int(cg.nodes[j]["width"])
        omega = out_scale * cand.omega[at : at + wj]  # [w_j, n]: the change each neuron makes
        e["weight"][:, -n:] = (omega / (_gate(e["gate"], config.gate) * g_k[None, :])).astype(np.float32)
        if offset:
            cg.nodes[j]["bias"] = (cg.nodes[j]["bias"] - omega @ np.full(n, offset)).astype(np.float32)
    return child


def _split(cand: Candidate, gamma: float) -> tuple[np.ndarray, float | np.ndarray]:
    """Return a neuron candidate's fan-in at ``gamma`` and its fan-out's factor (by neuron)."""
    assert cand.alpha is not None
    if cand.fan_in_scale is None:  # TINY's: γ α and γ ω
        return gamma * cand.alpha, gamma
    c = cand.fan_in_scale
    return c[:, None] * cand.alpha, gamma * gamma / c


def _fan_in_rows(stats: MemberStats, cand: Candidate) -> torch.Tensor:
    """The statistics batch's input ``b`` of a neuron candidate (features x rows, ones last)."""
    if cand.kind == "widen":
        rows, scale, _ = node_input(stats, cand.src)
        return stats.H[rows] * torch.as_tensor(scale)[:, None]
    return stats.H[np.concatenate([stats.feature_rows(cand.src), [stats.one]])]


def balanced(stats: MemberStats, cand: Candidate) -> Candidate:
    """Return ``cand`` with the balanced split: each new neuron's fan-in scaled to unit
    pre-activation standard deviation on the statistics batch (a neuron whose
    pre-activation is constant there keeps scale 1). Edges are returned as they are."""
    if cand.kind == "edge" or cand.alpha is None:
        return cand
    sd = (torch.as_tensor(cand.alpha) @ _fan_in_rows(stats, cand)).std(1).double().numpy()
    c = np.where(sd > 1e-12, 1.0 / np.maximum(sd, 1e-12), 1.0)
    return replace(cand, fan_in_scale=c)


def predicted_drop(stats: MemberStats, cand: Candidate, gamma: float) -> float:
    """First-order drop of the mean loss on the statistics batch at amplitude ``gamma``.

    ``-E[dzᵀ Δz]`` with ``Δz`` the exact change of the consumers' pre-activations: the
    loss linearised in the pre-activations, the new neurons' nonlinearity kept.
    """
    if gamma == 0.0:
        return 0.0
    if cand.kind == "edge":
        delta = gamma * torch.as_tensor(cand.omega) @ stats.H[stats.feature_rows(cand.src)]
    else:
        alpha, out_scale = _split(cand, gamma)
        z = torch.as_tensor(alpha) @ _fan_in_rows(stats, cand)
        a = torch_activate(cand.activation, z) - torch_activate(cand.activation, torch.zeros(()))
        delta = (torch.as_tensor(cand.omega) * torch.as_tensor(out_scale)) @ a
    cols = np.concatenate([stats.target_rows(j) for j, _ in cand.consumers])
    return float(-(stats.dz[cols] * delta).sum(0).mean())


class BottleneckGrowth:
    """The three bottleneck operators over one generation's data.

    Args:
        data: the statistics, line-search and validation batches.
        settings: thresholds and caps (:class:`~.candidates.Settings`).
        gate: the gate kind.
        device: where the statistics pass and the line search run.
    """

    def __init__(
        self, data: Data, settings: Settings, gate: str, device: torch.device | str | None = None
    ) -> None:
        self.data = data
        self.settings = settings
        self.gate = gate
        self.device = device
        self._cache: dict[int, tuple[Genome, MemberStats, dict[str, list[Candidate]]]] = {}
        #: Every line search: kind, whether it grew, and its best grid value's figures
        #: (benchmarks count growth events from it).
        self.log: list[dict[str, float | str | bool | None]] = []
        #: Seconds spent in statistics passes and solves, and in line searches.
        self.seconds = {"statistics": 0.0, "line_search": 0.0}

    def prime(self, genomes: Sequence[Genome]) -> None:
        """Collect every genome's statistics in one pass (batched).

        Candidates are solved later, per genome and kind, when an operator asks for them
        (:meth:`candidates`): most members draw no bottleneck operator in a generation,
        and a kind whose rate is 0 is never drawn, so solving every kind for every
        member up front cost more than the statistics pass itself (a digits search with
        input noise: 41% of its wall time, edges solved at rate 0 included).
        """
        todo = [g for g in genomes if not g.is_recurrent and self._lookup(g) is None]
        if not todo:
            return
        d = self.data
        with self._timed("statistics"):
            stats = collect(todo, d.x_stats, d.y_stats, loss=d.loss, gate=self.gate, device=self.device)
            for gnm, st in zip(todo, stats, strict=True):
                self._cache[id(gnm)] = (gnm, st, {})

    def _lookup(self, genome: Genome) -> tuple[MemberStats, dict[str, list[Candidate]]] | None:
        hit = self._cache.get(id(genome))
        return None if hit is None or hit[0] is not genome else hit[1:]

    def candidates(
        self, genome: Genome, kinds: Sequence[str] = KINDS
    ) -> tuple[MemberStats, dict[str, list[Candidate]]]:
        """Return the genome's statistics and its candidates of ``kinds``, best first (a
        statistics pass if not primed; each kind solved once, on first asking)."""
        if genome.is_recurrent:
            raise NotApplicable("bottleneck growth: recurrent genomes are not supported")
        if self._lookup(genome) is None:
            self.prime([genome])
        hit = self._lookup(genome)
        assert hit is not None
        stats, cands = hit
        missing = [k for k in kinds if k not in cands]
        if missing:
            with self._timed("statistics"):
                (solved,) = best_candidates([stats], self.settings, missing)
            cands.update(solved)
        return stats, {k: cands[k] for k in kinds}

    @contextmanager
    def _timed(self, key: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] += time.perf_counter() - t0

    def line_search(
        self,
        genome: Genome,
        cand: Candidate,
        stats: MemberStats,
        tracker: InnovationTracker,
        config: MutationConfig,
    ) -> tuple[Genome, dict[str, float]]:
        """Return the child at the chosen ``γ`` and the figures the lineage records.

        Raises:
            NotApplicable: no amplitude passes (see the module docstring).
        """
        with self._timed("line_search"):
            return self._line_search(genome, cand, stats, tracker, config)

    def _line_search(
        self, genome: Genome, cand: Candidate, stats: MemberStats, tracker: InnovationTracker, config: MutationConfig
    ) -> tuple[Genome, dict[str, float]]:
        if self.settings.split == "balanced":
            cand = balanced(stats, cand)
        children = [materialize(genome, cand, gm, tracker, config, stats) for gm in GAMMAS]
        d = self.data
        # float64: at small amplitudes the drops are far below float32's resolution of a
        # mean loss (about 3e-8 at a loss of 0.3), so float32 scores would be round-off
        engine = PopulationEngine(children, gate=self.gate, device=self.device, dtype=torch.float64)
        parts = [(d.x_line, d.y_line), (d.x_val, d.y_val), (d.x_stats, d.y_stats)]
        x = torch.as_tensor(np.concatenate([p[0] for p in parts]), dtype=engine.dtype, device=engine.device)
        y = torch.as_tensor(np.concatenate([p[1] for p in parts]), device=engine.device)
        if d.loss == "mse":
            y = y.to(engine.dtype)
        with torch.no_grad():
            out = engine.forward(x)
        losses, at = [], 0
        for px, _ in parts:  # each part's per-row losses, per child
            n = len(px)
            part = sample_losses(out[:, at : at + n], y[at : at + n], d.loss) if n else None
            losses.append(None if part is None else part.double().cpu().numpy())
            at += n
        line_rows, val, on_stats = losses
        val = None if val is None else val.mean(1)
        on_stats = on_stats.mean(1)
        line = line_rows.mean(1)
        drops = line[0] - line
        z = paired_z(line_rows[0] - line_rows)
        preds = np.array([predicted_drop(stats, cand, gm) for gm in GAMMAS])
        need = self.settings.significance  # 0: no test (a positive drop has z > 0)
        ok = [
            i
            for i in range(1, len(GAMMAS))
            if preds[i] > 0 and drops[i] > 0 and drops[i] >= ARMIJO * preds[i] and z[i] >= need
        ]
        if not ok:
            best = int(np.argmax(drops[1:])) + 1
        elif self.settings.amplitude == "smallest_passing":
            best = min(ok)
        else:
            best = max(ok, key=lambda i: drops[i])
        figures = {
            "gamma": float(GAMMAS[best]),
            "predicted": _short(preds[best]),
            "realised": _short(drops[best]),
            "realised_val": _short(val[0] - val[best]) if val is not None else None,
            "realised_stats": _short(on_stats[0] - on_stats[best]),
            "tiny_gain": _short(cand.gain),
            "z": _short(min(z[best], 1e6)),
        }
        self.log.append({"kind": cand.kind, "grown": bool(ok), **figures})
        if not ok:  # zero-weight neurons would never learn (no gradient reaches them): grow nothing
            raise NotApplicable(f"{OPERATORS[cand.kind]}: no amplitude lowers the line batch's loss enough")
        return children[best], figures

    def operator(self, kind: str) -> Callable[..., tuple[Genome, MutationRecord]]:
        """Return the mutation ``op(genome, rng, tracker, config)`` of a candidate kind."""
        name = OPERATORS[kind]

        def op(
            genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, config: MutationConfig
        ) -> tuple[Genome, MutationRecord]:
            stats, cands = self.candidates(genome, (kind,))
            for cand in cands[kind][:TRIES]:
                try:
                    child, figures = self.line_search(genome, cand, stats, tracker, config)
                except NotApplicable:
                    continue
                return child, MutationRecord(name, {**_where(cand), **figures})
            raise NotApplicable(f"{name}: no candidate with a positive gain")

        op.__name__ = name
        return op

    def operators(self, rates: dict[str, float]) -> dict[str, Callable[..., tuple[Genome, MutationRecord]]]:
        """Return the operators whose rate is positive, by name."""
        return {OPERATORS[k]: self.operator(k) for k in OPERATORS if rates.get(OPERATORS[k], 0.0) > 0.0}


def paired_z(drops: np.ndarray) -> np.ndarray:
    """Return each row's paired z statistic: mean / (standard error) of its per-sample drops.

    ``inf`` for a positive mean with no spread, 0 for a non-positive one.

    Shape:
        drops: (children, rows) -> (children,)
    """
    n = drops.shape[1]
    mean = drops.mean(1)
    se = drops.std(1, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
    return np.divide(mean, se, out=np.where(mean > 0, np.inf, 0.0), where=se > 0)


def _short(x: float) -> float:
    """Six significant digits: the lineage shows them; a fixed number of decimals would
    round the tiny drops of a nearly memorised batch to 0."""
    return float(f"{float(x):.6g}")


def _where(cand: Candidate) -> dict[str, int]:
    n = 0 if cand.alpha is None else int(cand.alpha.shape[0])
    if cand.kind == "widen":
        return {"node": cand.src, "added": n}
    if cand.kind == "node":
        return {"src": cand.src, "dst": cand.dst, "width": n}
    return {"src": cand.src, "dst": cand.dst}
