"""One generation as a pure step: ``step(state, context) -> (next state, report)``.

A generation trains every member and scores it on the validation split in one
call (``backends.train_members``: one packed population engine; with K-fold
fitness, K columns per member on the pooled train + validation rows, each scored
on its own fold, and the state's fold copies carried to the children: see
:mod:`hybrid.folds`), speciates
(Stanley & Miikkulainen 2002), updates the champion and the short list (the
capped Pareto front the final champion rule chooses from: :mod:`hybrid.shortlist`),
decides whether the search stops (target metric, generation count, patience, time
budget) and, unless it stops, breeds the next population. :func:`step` does all of this
and nothing else: it writes no file and prints nothing. What a generation leaves
behind (``stats.jsonl``, the lineage, checkpoints, progress lines) is written by
reporters (:mod:`hybrid.reporters`) from the :class:`GenerationReport`.

Randomness is derived from ``(run.seed, generation)``: a numpy generator for
evolution and a torch seed for minibatches and gate noise. So ``step`` from equal
states gives equal results, and a run resumed from a checkpoint replays the next
generation exactly as the uninterrupted run would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from genomes import Genome, InnovationTracker, distance
from genomes.genome import branch_name, edge_attrs
from genomes.modules import ModuleSpec
from genomes.mutations._neurons import lecun_normal
from genomes.mutations.adaptive import with_exit

from .backends import train_members
from .bottleneck import (
    OPERATORS,
    BottleneckGrowth,
    bottleneck_data,
    bottleneck_settings,
    stats_noise,
)
from .config import Config
from .folds import child_copies, merge_folds, pool
from .grafting import graft_operator
from .lineage import GenomeRow
from .metrics import Metrics, fitness
from .reproduction import Member, reproduce
from .selection import Candidate
from .sequences import train_sequence_members
from .shortlist import update_front
from .speciation import adapt_threshold, drop_stagnant, speciate
from .state import Champion, SearchState
from .tasks import Task
from .train import TrainConfig, TrainResult

__all__ = [
    "FAILED_METRIC",
    "FAILED_SIZE",
    "GenerationReport",
    "StepContext",
    "Timings",
    "initial_state",
    "step",
]

#: Selection metric of a failed member (NaN/inf loss): below any real metric. It
#: only ranks members; it is never reported (stats and the lineage hold None).
FAILED_METRIC = -1e9
#: Size given to a failed member for selection, so that it also loses on size.
FAILED_SIZE = 10**12


@dataclass(frozen=True)
class StepContext:
    """What a step needs besides the state: the run's settings and resources.

    Attributes:
        config: the run's config.
        task: the loaded task (train/validation splits are used).
        device: the torch device (``config.resolve_device`` output).
        cluster: the Dask cluster for ``parallel.backend = "dask"``, else None.
        clock: seconds, for timings and the time budget (tests pass a fake one).
    """

    config: Config
    task: Task
    device: str = "cpu"
    cluster: Any = None
    clock: Callable[[], float] = time.perf_counter
    phases: tuple[tuple[int, Task], ...] = ()
    modules: tuple[ModuleSpec, ...] = ()

    def task_at(self, generation: int) -> Task:
        """Return the task of ``generation``: ``task``, or the phase of ``task.schedule`` it falls in."""
        current = self.task
        for start, task in self.phases:
            if start <= generation:
                current = task
        return current

    def phase_starts(self, generation: int) -> bool:
        """Whether a later phase of ``task.schedule`` starts at ``generation`` (a new champion then)."""
        return any(start == generation for start, _ in self.phases[1:])

    @property
    def train_config(self) -> TrainConfig:
        """Return the training settings from the config."""
        return TrainConfig(**self.config.train_kwargs())


@dataclass(frozen=True)
class Timings:
    """Wall time of a generation's phases, in seconds (never part of the stats)."""

    train_s: float  # training and the validation pass (one packed engine does both)
    select_s: float
    reproduce_s: float

    @property
    def generation_s(self) -> float:
        """Return the time counted against the budget: training to speciation."""
        return self.train_s + self.select_s


@dataclass(frozen=True)
class GenerationReport:
    """What one generation did: the record reporters consume.

    Attributes:
        generation: the generation's number.
        stats: the ``stats.jsonl`` line (no timings, so same seed, same bytes); a
            metric is None where no member had a finite score.
        genomes: one lineage row per member, in population order.
        pruned: ids of members whose species was dropped as stagnant (no children).
        stop_reason: why the search stops after this generation, or None.
        timings: phase timings (ignored when reports are compared).
    """

    generation: int
    stats: MappingProxyType[str, Any]
    genomes: tuple[GenomeRow, ...]
    pruned: tuple[int, ...]
    stop_reason: str | None
    timings: Timings = field(compare=False)

    @property
    def n_failed(self) -> int:
        """Return how many members failed (a NaN/inf loss)."""
        return int(self.stats["n_failed"])

    @property
    def all_failed(self) -> bool:
        """Return True if every member of the generation failed."""
        return self.n_failed == len(self.genomes)


def initial_state(config: Config, task: Task, modules: tuple[ModuleSpec, ...] = ()) -> SearchState:
    """Return generation 0's state: minimal genomes drawn from the run's seed.

    With ``modules.start > 0`` and library entries (``modules``), the first
    ``round(start x population)`` members start with one graft each, the entries in
    turn, placed by ``insert_module`` from a random stream of their own (so the
    minimal genomes are the ones drawn without it); their lineage records the graft.
    """
    rng = np.random.default_rng([config.run.seed, 0, 7])
    tracker = InnovationTracker()
    members = tuple(
        Member(i, _initial_genome(config, task, rng, tracker, i), 0)
        for i in range(config.evolution.population)
    )
    n_grafted = round(config.modules.start * len(members)) if modules else 0
    if n_grafted:
        graft_rng = np.random.default_rng([config.run.seed, 0, 18])
        mutation = config.mutation_config()
        grafted = []
        for m in members[:n_grafted]:
            spec = modules[m.id % len(modules)]
            child, record = graft_operator((spec,), task, config.modules.frozen)(m.genome, graft_rng, tracker, mutation)
            grafted.append(replace(m, genome=child, operators=(record.to_dict(),)))
        members = (*grafted, *members[n_grafted:])
    k = task.folds
    return SearchState(
        generation=0,
        fold_genomes={m.id: (m.genome,) * (k - 1) for m in members} if k else {},
        members=members,
        species=(),
        threshold=config.speciation.threshold,
        tracker=tracker,
        champion=None,
        next_id=len(members),
        next_species_id=0,
    )


def _initial_genome(
    config: Config, task: Task, rng: np.random.Generator, tracker: InnovationTracker, i: int
) -> Genome:
    """Member ``i`` of generation 0: the minimal genome (a chain, or ``genome.branches`` side by
    side), with self-loops if ``genome.recurrent``, an exit head on the first branch if
    ``genome.branch_exit``.

    Its hidden nodes take ``genome.activation``, or, for a list, its ``i mod length``-th entry.
    """
    gen = config.genome
    activations = gen.activations
    genome = Genome.minimal(
        task.n_inputs,
        task.n_outputs,
        rng,
        tracker,
        hidden=gen.hidden,
        activation=activations[i % len(activations)],
        gate_init=gen.gate_init,
        branches=gen.branches,
    )
    if gen.branch_exit:  # the config allows it only with branches, in an adaptive run
        first = tracker.named_node(branch_name(0, gen.branches[0]))
        genome = with_exit(genome, first, tracker, gen.gate_init)[0].validate()
    return _with_self_loops(genome, rng, tracker, gen.gate_init) if gen.recurrent else genome


def _with_self_loops(
    genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, gate_init: float
) -> Genome:
    """Return ``genome`` with a recurrent self-loop (LeCun-normal weights) on each hidden node."""
    child = genome.copy()
    for n in genome.hidden_nodes():
        w = int(genome.node(n)["width"])
        weight = lecun_normal(rng, (w, w))
        child.graph.add_edge(
            n,
            n,
            **edge_attrs(tracker.edge(n, n, recurrent=True), weight, gate_init, recurrent=True),
        )
    return child.validate()


def seed_for(seed: int, generation: int, stream: int) -> int:
    """Return the 63-bit seed of one random stream of one generation."""
    # shifted as a Python int: numpy 1's uint64 >> int has no common type
    return int(np.random.SeedSequence([seed, generation, stream]).generate_state(1, np.uint64)[0]) >> 1


def step(state: SearchState, context: StepContext) -> tuple[SearchState, GenerationReport]:
    """Run generation ``state.generation``; return the next state and its report.

    The next state holds the next population, unless the search stops after this
    generation (``report.stop_reason``), when it keeps this one and sets
    ``finished``. ``state`` is left as it was.
    """
    cfg, clock = context.config, context.clock
    g, tc = state.generation, context.train_config
    task = context.task_at(g)
    t0 = clock()
    k = task.folds
    copies = _fold_copies(state, k)
    growth: list[list[dict[str, Any]]] = [[] for _ in state.members]
    if task.sequence:  # the recurrent engine; the reserve rule's records join the lineage
        trained, results, evals, growth = train_sequence_members(
            [m.genome for m in state.members],
            task,
            tc,
            seed_for(cfg.run.seed, g, 1),
            context.device,
            cfg,
            seed_for(cfg.run.seed, g, 6),
        )
    else:
        trained, results, evals = _train(state, context, task, tc, copies)
    trained_copies: list[tuple[Genome, ...]] = []
    if k:
        trained, trained_copies, results, evals = merge_folds(trained, results, evals, k)
    t2 = clock()

    ids = [m.id for m in state.members]
    metric = {i: _metric(task, r, e) for i, r, e in zip(ids, results, evals, strict=True)}
    ok = [i for i in ids if metric[i] != FAILED_METRIC]
    size = {i: (e.active_parameters if i in ok else FAILED_SIZE) for i, e in zip(ids, evals, strict=True)}
    average = {i: _average_flops(e) for i, e in zip(ids, evals, strict=True) if i in ok}
    cost = size if cfg.selection.cost == "parameters" else {i: average.get(i, FAILED_SIZE) for i in ids}
    auc = _budget_aucs(cfg, context, task, tc, ids, ok, trained)
    rank = metric if auc is None else {i: auc.get(i, FAILED_METRIC) for i in ids}  # what selection reads
    cands = {i: Candidate(i, rank[i], cost[i]) for i in ids}
    # the short list's cost is the selection's: FLOPs per input under "average_flops"
    kept_average = average if cfg.selection.cost == "average_flops" else {}
    lamarck = cfg.training.inheritance == "lamarckian"
    parents = {
        m.id: (t if lamarck and r.status == "ok" else m.genome)
        for m, t, r in zip(state.members, trained, results, strict=True)
    }
    parent_copies = {  # empty without folds
        m.id: (c if lamarck and r.status == "ok" else copies[m.id])
        for m, c, r in zip(state.members, trained_copies, results, strict=k > 0)
    }
    dist_cfg = cfg.distance_config()
    species, next_species_id = speciate(
        parents, rank, state.species, state.threshold, lambda a, b: distance(a, b, dist_cfg), g, state.next_species_id
    )
    best_id = max(ids, key=lambda i: cands[i].fitness)
    best = ids.index(best_id)
    new_phase = context.phase_starts(g)  # task.schedule: the new task's scores start afresh
    champion = None if new_phase else state.champion
    kept_auc = {} if auc is None else auc
    ranked = [i for i in ok if rank[i] != FAILED_METRIC]  # ok, and with a budget AUC where one is asked for
    if best_id in ranked and _beats(rank[best_id], size[best_id], champion):
        ev = evals[best]
        champion = Champion(
            best_id,
            g,
            metric[best_id],
            size[best_id],
            ev.flops,
            ev.loss,
            trained[best],
            kept_average.get(best_id),
            kept_auc.get(best_id),
        )
    shortlist = update_front(
        () if new_phase else state.shortlist,
        (
            Champion(m.id, g, metric[m.id], size[m.id], e.flops, e.loss, t, kept_average.get(m.id), kept_auc.get(m.id))
            for m, t, e in zip(state.members, trained, evals, strict=True)
            if m.id in ranked
        ),
    )
    stats = _stats(g, best_id, ok, metric, size, champion, len(ids), species, state.threshold)
    if auc is not None:  # selection.fitness = "budget_auc": what the members were ranked on
        stats["budget_auc"] = {str(i): auc[i] for i in ok if i in auc}
        stats["best_budget_auc"] = auc.get(best_id)
    if any(e.average_flops is not None for e in evals):  # adaptive genes (issue 16): FLOPs per input
        stats["average_flops"] = {str(i): average[i] for i in ok}
        stats["best_average_flops"] = average.get(best_id)
    species_of = {i: s.id for s in species for i in s.members}
    rows = tuple(
        GenomeRow(
            id=m.id,
            generation=g,
            parents=m.parents,
            operators=m.operators + tuple(grown),
            species=species_of.get(m.id),
            status=r.status if m.id in ok else "failed",
            train_loss=r.train_loss,
            val_loss=e.loss,
            val_metric=metric[m.id] if m.id in ok else None,
            active_params=e.active_parameters,
            flops=e.flops,
            genome=t,
            keep_weights=True,
        )
        for m, t, r, e, grown in zip(state.members, trained, results, evals, growth, strict=True)
    )
    spec = cfg.speciation
    threshold = adapt_threshold(state.threshold, len(species), spec.target_species, spec.threshold_step)
    t3 = clock()
    reason = _stop_reason(cfg, g, champion, state.elapsed_s + (t3 - t0))

    members, next_id, tracker, pruned = state.members, state.next_id, state.tracker, ()
    fold_genomes = copies
    if reason is None:
        kept = drop_stagnant(species, g, spec.stagnation, best_id)
        kept_ids = {s.id for s in kept}
        pruned = tuple(m for s in species if s.id not in kept_ids for m in s.members)
        tracker = InnovationTracker.from_dict(state.tracker.to_dict())  # the caller's stays as it was
        tracker.next_generation()
        evo = cfg.evolution
        children, next_id = reproduce(
            parents,
            cands,
            kept,
            population=evo.population,
            elitism=evo.elitism,
            crossover_rate=evo.crossover_rate,
            survival_fraction=evo.survival_fraction,
            method=cfg.selection.method,
            tournament_size=cfg.selection.tournament_size,
            rates=cfg.mutation.rates(),
            mutation_config=cfg.mutation_config(),
            rng=np.random.default_rng([cfg.run.seed, g, 2]),
            tracker=tracker,
            generation=g,
            next_id=next_id,
            informed=_breeding_ops(cfg, context, task, tc.loss, g, parents, ok),
        )
        members, species = tuple(children), kept
        if k:  # each child's fold copies from its parents' (docs/design.md, "K-fold fitness")
            fold_genomes = {c.id: child_copies(c, parent_copies, parents) for c in children}
    t4 = clock()
    elapsed_s = state.elapsed_s + (t4 - t0)  # the budget counts breeding too

    new_state = replace(
        state,
        generation=g + 1,
        members=members,
        species=tuple(species),
        threshold=threshold,
        tracker=tracker,
        champion=champion,
        next_id=next_id,
        next_species_id=next_species_id,
        elapsed_s=elapsed_s,
        finished=reason,
        shortlist=shortlist,
        fold_genomes=fold_genomes,
    )
    timings = Timings(train_s=t2 - t0, select_s=t3 - t2, reproduce_s=t4 - t3)
    report = GenerationReport(g, MappingProxyType(stats), rows, pruned, reason, timings)
    return new_state, report


def _breeding_ops(
    cfg: Config,
    context: StepContext,
    task: Task,
    loss: str,
    g: int,
    parents: dict[int, Genome],
    ok: list[int],
) -> dict[str, Any] | None:
    """Return the mutations outside the registry this generation breeds with, by rate name.

    First the bottleneck operators (:mod:`hybrid.bottleneck`, opt-in; they read the
    trained parents, whose statistics are computed in one pass), then the graft of a
    library module. None when none is on, so a run without them draws exactly what it
    drew before they existed.
    """
    if task.sequence:
        return None
    rates = cfg.mutation.rates()
    ops: dict[str, Any] = {}
    if any(rates[n] > 0 for n in OPERATORS.values()):
        growth = BottleneckGrowth(
            bottleneck_data(
                task,
                cfg.mutation.bottleneck_batch,
                seed_for(cfg.run.seed, g, 7),
                loss,
                cfg.mutation.bottleneck_line,
                stats_noise(cfg),
            ),
            bottleneck_settings(cfg),
            cfg.training.gate,
            context.device,
        )
        growth.prime([parents[i] for i in ok])
        ops.update(growth.operators(rates))
    if rates["insert_module"] > 0 and context.modules:
        ops["insert_module"] = graft_operator(context.modules, task, cfg.modules.frozen)
    return ops or None


def _train(
    state: SearchState,
    context: StepContext,
    task: Task,
    tc: TrainConfig,
    copies: dict[int, tuple[Genome, ...]],
) -> tuple[list[Genome], list[TrainResult], list[Metrics]]:
    """Train and score the members on a table task (K columns each with K-fold fitness)."""
    cfg, g, k = context.config, state.generation, task.folds
    if k:  # K-fold fitness: K columns per member on the pool, each scored on its own fold
        columns = [c for m in state.members for c in (m.genome, *copies[m.id])]
        data: dict[str, Any] = {"folds": (task.fold_ids, [f for _ in state.members for f in range(k)])}
        X, y = pool(task)
    else:
        columns = [m.genome for m in state.members]
        data, X, y = {"X_val": task.X_val, "y_val": task.y_val}, task.X_train, task.y_train
    return train_members(
        columns,
        X,
        y,
        tc,
        seed_for(cfg.run.seed, g, 1),
        engine=cfg.training.engine,
        backend=cfg.parallel.backend,
        workers=cfg.parallel.workers,
        device=context.device,
        threads=cfg.run.threads,
        cluster=context.cluster,
        **data,
    )


def _fold_copies(state: SearchState, k: int) -> dict[int, tuple[Genome, ...]]:
    """Each member's fold copies 1 .. k-1; a member without k - 1 of them starts from its genome."""
    if not k:
        return {}
    out = {}
    for m in state.members:
        have = state.fold_genomes.get(m.id, ())
        out[m.id] = have if len(have) == k - 1 else (m.genome,) * (k - 1)
    return out


def _metric(task: Task, result: TrainResult, ev: Metrics) -> float:
    """The member's selection fitness: its ``task.metric`` score, negated if lower is better."""
    if result.status != "ok" or not math.isfinite(ev.loss):
        return FAILED_METRIC
    fit = ev.fitness
    if fit is None:  # no metric asked for: today's defaults
        return float(ev.accuracy) if task.kind == "classification" else -float(ev.loss)
    return float(fit) if math.isfinite(fit) else FAILED_METRIC


def _average_flops(ev: Metrics) -> float:
    """A member's FLOPs per input on the validation split: averaged under the exit rule (adaptive
    genes, issue 16), else its full path's."""
    return float(ev.flops if ev.average_flops is None else ev.average_flops)


def _beats(score: float, size: int, champion: Champion | None) -> bool:
    """Return True if ``(score, size)`` beats the champion (higher :attr:`Champion.score`, then smaller)."""
    return champion is None or (score, -size) > (champion.score, -champion.active_params)


def _budget_aucs(
    cfg: Config,
    context: StepContext,
    task: Task,
    tc: TrainConfig,
    ids: list[int],
    ok: list[int],
    trained: Sequence[Genome],
) -> dict[int, float] | None:
    """Each ok member's budget AUC on the validation split (``selection.fitness = "budget_auc"``), else None.

    One engine pass per budget of ``selection.auc_budgets`` over the trained members;
    a non-finite AUC is left out (the member ranks as failed).
    """
    if cfg.selection.fitness != "budget_auc":
        return None
    from .budgets import budget_scores

    chosen = [(i, t) for i, t in zip(ids, trained, strict=True) if i in ok]
    if not chosen:
        return {}
    scored = budget_scores(
        [t for _, t in chosen], task.X_val, task.y_val, tc, cfg.selection.auc_budgets, device=context.device
    )
    return {i: float(s.auc) for (i, _), s in zip(chosen, scored, strict=True) if math.isfinite(s.auc)}


def _stats(
    g: int,
    best_id: int,
    ok: list[int],
    metric: dict[int, float],
    size: dict[int, int],
    champion: Champion | None,
    n: int,
    species: list[Any],
    threshold: float,
) -> dict[str, Any]:
    """Return the generation's stats line; failure sentinels never appear in it."""
    found = best_id in ok
    return {
        "generation": g,
        "best_id": best_id,
        "best_metric": metric[best_id] if found else None,
        "best_active_params": size[best_id] if found else None,
        "mean_metric": float(np.mean([metric[i] for i in ok])) if ok else None,
        "mean_active_params": float(np.mean([size[i] for i in ok])) if ok else None,
        "champion_id": None if champion is None else champion.id,
        "champion_metric": None if champion is None else champion.metric,
        "champion_active_params": None if champion is None else champion.active_params,
        "n_failed": n - len(ok),
        "n_species": len(species),
        "species_sizes": {str(s.id): len(s.members) for s in species},
        "threshold": threshold,
    }


def _stop_reason(cfg: Config, g: int, champion: Champion | None, elapsed_s: float) -> str | None:
    """Why the search stops after generation ``g``, or None (a function of the state alone but time)."""
    evo = cfg.evolution
    target = None if evo.target_metric is None else fitness(cfg.task.metric, evo.target_metric)
    if target is not None and champion is not None and champion.metric >= target:
        return "target_metric"
    if g + 1 >= evo.generations:
        return "generations"
    # patience N: the champion of generation c has survived generations c+1 .. c+N unbeaten.
    if evo.patience is not None and champion is not None and g - champion.generation >= evo.patience:
        return "patience"
    if evo.time_budget_s is not None and elapsed_s >= evo.time_budget_s:
        return "time_budget"
    return None
