"""The generation loop: train, evaluate, speciate, select, reproduce, record, checkpoint.

See ``shared/DESIGN.md`` ("Evolution"). Randomness is derived per generation from
``(run.seed, generation)`` (numpy for evolution, a torch generator for minibatches
and gate noise), so a run resumed from generation ``g``'s checkpoint replays
generation ``g + 1`` exactly as the uninterrupted run would: the checkpoint needs
no RNG state at all beyond the seed in ``config.toml``.

Stats written to ``stats.jsonl`` hold no timings, so the same config and seed give
byte-identical stats (timings go to the lineage's ``generations`` table).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genomes import Genome, InnovationTracker, distance

from .backends import evaluate_members, open_cluster, train_members
from .champion import SearchResult, champion_record, is_better, score_champion
from .checkpoint import load_latest_checkpoint, save_checkpoint
from .config import Config, resolve_device
from .lineage import GenerationRow, GenomeRow, LineageWriter
from .metrics import Metrics
from .reproduction import Member, reproduce
from .rundir import RunDir, create_run_dir, open_run_dir
from .selection import Candidate
from .speciation import Species, adapt_threshold, drop_stagnant, speciate
from .tasks import Task, load_task
from .train import TrainConfig, TrainResult

__all__ = ["Search", "SearchResult"]

#: Metric given to a failed member (NaN/inf loss): below any real metric.
FAILED_METRIC = -1e9
#: Size given to a failed member, so that it also loses on size.
FAILED_SIZE = 10**12


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) inside the block and raise it when the block is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _seed(seed: int, generation: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, generation, stream]).generate_state(1, np.uint64)[0] >> 1)


class Search:
    """A running search over one run directory (use :meth:`start` or :meth:`resume`)."""

    def __init__(self, config: Config, run: RunDir, task: Task, state: dict[str, Any]) -> None:
        self.config = config
        self.run_dir = run
        self.task = task
        self.device = resolve_device(config.run.device)
        self.train_config = TrainConfig(**config.train_kwargs())
        self.generation: int = state["generation"]
        self.members: list[Member] = [Member.from_dict(m) for m in state["members"]]
        self.species: list[Species] = [Species.from_dict(s) for s in state["species"]]
        self.threshold: float = state["threshold"]
        self.next_id: int = state["next_id"]
        self.next_species_id: int = state["next_species_id"]
        self.tracker = InnovationTracker.from_dict(state["tracker"])
        self.champion: dict[str, Any] | None = state["champion"]
        self.elapsed_s: float = state["elapsed_s"]
        self.finished: str | None = state.get("finished")
        self.lineage = LineageWriter(run.lineage_path)
        self._cluster: Any = None  # the Dask cluster while run() holds one

    # ----------------------------------------------------------------- creation
    @classmethod
    def start(cls, config: Config, overwrite: bool = False) -> Search:
        """Create the run directory and generation 0's population.

        Raises:
            RunDirError: the run directory exists and ``overwrite`` is False.
            DataError: the task's data cannot be loaded.
            ClusterError: ``parallel.address`` names a Dask scheduler that does not answer.
        """
        task = load_task(config.task, config.run.seed)
        if config.parallel.backend == "dask" and config.parallel.address is not None:
            from .distributed import check_scheduler

            check_scheduler(config.parallel.address)  # before a run folder exists
        run = create_run_dir(
            config.run.runs_dir, config.run.name, config, overwrite=overwrite, task=task.info()
        )
        return cls._begin(config, run, task)

    @classmethod
    def _begin(cls, config: Config, run: RunDir, task: Task) -> Search:
        """Return a search at generation 0 (deterministic from the seed: a restart replays it)."""
        run.write_task(task.info())
        rng = np.random.default_rng([config.run.seed, 0, 7])
        tracker = InnovationTracker()
        members = []
        for i in range(config.evolution.population):
            g = Genome.minimal(
                task.n_inputs,
                task.n_outputs,
                rng,
                tracker,
                hidden=config.genome.hidden,
                activation=config.genome.activation,
                gate_init=config.genome.gate_init,
            )
            members.append(Member(i, g, 0))
        state = {
            "generation": 0,
            "members": [m.to_dict() for m in members],
            "species": [],
            "threshold": config.speciation.threshold,
            "next_id": len(members),
            "next_species_id": 0,
            "tracker": tracker.to_dict(),
            "champion": None,
            "elapsed_s": 0.0,
        }
        search = cls(config, run, task, state)
        search.lineage.set_meta({"seed": config.run.seed, "task": task.name, "gate": config.training.gate})
        return search

    @classmethod
    def resume(cls, path: str | Path) -> Search:
        """Open a run directory and continue from its last complete generation.

        A run stopped before its first checkpoint starts again from generation 0,
        which the seed reproduces exactly.

        Raises:
            RunDirError: not a run directory, or its newest checkpoint is unreadable.
        """
        run = open_run_dir(path, writer=True)
        config = run.load_config()
        task = load_task(config.task, config.run.seed)
        latest = load_latest_checkpoint(run)
        if latest is None:
            run.truncate_stats(None)
            search = cls._begin(config, run, task)
            search.lineage.truncate_after(-1)
            return search
        generation, state, _ = latest
        run.truncate_stats(generation)
        search = cls(config, run, task, state)
        search.lineage.truncate_after(generation)
        return search

    # --------------------------------------------------------------------- loop
    def run(self, on_generation: Callable[[dict[str, Any]], None] | None = None) -> SearchResult:
        """Run generations until a stop condition, then score the champion on the test split.

        Args:
            on_generation: called after each completed generation with its stats
                (plus ``elapsed_s`` and ``generation_s``).

        Raises:
            KeyboardInterrupt: passed through; the last complete generation is
                checkpointed, so ``Search.resume`` continues from it.
        """
        torch.set_num_threads(self.config.run.threads)
        evo = self.config.evolution
        with open_cluster(self.config.parallel) as self._cluster:  # None unless backend "dask"
            while self.finished is None:
                t0 = time.perf_counter()
                stats = self._generation()
                dt = time.perf_counter() - t0
                self.elapsed_s += dt
                reason = None
                target = evo.target_metric
                if target is not None and stats["champion_metric"] >= target:
                    reason = "target_metric"
                elif self.generation >= evo.generations:
                    reason = "generations"
                elif evo.time_budget_s is not None and self.elapsed_s >= evo.time_budget_s:
                    reason = "time_budget"
                if reason is not None:
                    self.finished = reason
                with _interrupts_deferred():  # a generation is recorded whole or not at all
                    self._commit(stats, dt)
                if on_generation is not None:
                    on_generation({**stats, "elapsed_s": self.elapsed_s, "generation_s": dt})
        return self._finish()

    def _generation(self) -> dict[str, Any]:
        """Run one generation; leave the next population in ``self.members``."""
        cfg, g = self.config, self.generation
        tc = self.train_config
        genomes = [m.genome for m in self.members]
        trained, results = train_members(
            genomes,
            self.task.X_train,
            self.task.y_train,
            tc,
            _seed(cfg.run.seed, g, 1),
            engine=cfg.training.engine,
            backend=cfg.parallel.backend,
            workers=cfg.parallel.workers,
            device=self.device,
            threads=cfg.run.threads,
            cluster=self._cluster,
        )
        evals = evaluate_members(
            trained, self.task.X_val, self.task.y_val, tc, engine=cfg.training.engine, device=self.device
        )
        ids = [m.id for m in self.members]
        metric = {i: self._metric(r, e) for i, r, e in zip(ids, results, evals, strict=True)}
        size = {
            i: (FAILED_SIZE if metric[i] == FAILED_METRIC else e.active_parameters)
            for i, e in zip(ids, evals, strict=True)
        }
        cands = {i: Candidate(i, metric[i], size[i]) for i in ids}
        lamarck = cfg.training.inheritance == "lamarckian"
        parents = {
            m.id: (t if lamarck and r.status == "ok" else m.genome)
            for m, t, r in zip(self.members, trained, results, strict=True)
        }
        trained_by_id = dict(zip(ids, trained, strict=True))
        dist_cfg = cfg.distance_config()
        self.species, self.next_species_id = speciate(
            parents,
            metric,
            self.species,
            self.threshold,
            lambda a, b: distance(a, b, dist_cfg),
            g,
            self.next_species_id,
        )
        species_of = {i: s.id for s in self.species for i in s.members}
        best_id = max(ids, key=lambda i: cands[i].fitness)
        self._update_champion(best_id, metric[best_id], size[best_id], evals[ids.index(best_id)], trained_by_id)
        ok = [i for i in ids if metric[i] != FAILED_METRIC]
        stats = {
            "generation": g,
            "best_id": best_id,
            "best_metric": metric[best_id],
            "best_active_params": size[best_id],
            "mean_metric": float(np.mean([metric[i] for i in ok])) if ok else FAILED_METRIC,
            "mean_active_params": float(np.mean([size[i] for i in ok])) if ok else 0.0,
            "champion_id": self.champion["id"],
            "champion_metric": self.champion["metric"],
            "champion_active_params": self.champion["active_params"],
            "n_failed": len(ids) - len(ok),
            "n_species": len(self.species),
            "species_sizes": {str(s.id): len(s.members) for s in self.species},
            "threshold": self.threshold,
        }
        self._rows = [
            GenomeRow(
                id=m.id,
                generation=g,
                parents=m.parents,
                operators=m.operators,
                species=species_of.get(m.id),
                status=r.status if metric[m.id] != FAILED_METRIC else "failed",
                train_loss=r.train_loss,
                val_loss=e.loss,
                val_metric=None if metric[m.id] == FAILED_METRIC else metric[m.id],
                active_params=e.active_parameters,
                flops=e.flops,
                genome=t,
                keep_weights=True,
            )
            for m, t, r, e in zip(self.members, trained, results, evals, strict=True)
        ]
        self.threshold = adapt_threshold(
            self.threshold, len(self.species), cfg.speciation.target_species, cfg.speciation.threshold_step
        )
        self._next = (parents, cands, best_id)
        self.generation = g + 1
        return stats

    def _reproduce(self) -> None:
        cfg = self.config
        parents, cands, best_id = self._next
        g = self.generation - 1
        species = drop_stagnant(self.species, g, cfg.speciation.stagnation, best_id)
        kept = {s.id for s in species}
        self._pruned = [m for s in self.species if s.id not in kept for m in s.members]
        self.tracker.next_generation()
        rng = np.random.default_rng([cfg.run.seed, g, 2])
        evo = cfg.evolution
        self.members, self.next_id = reproduce(
            parents,
            cands,
            species,
            population=evo.population,
            elitism=evo.elitism,
            crossover_rate=evo.crossover_rate,
            survival_fraction=evo.survival_fraction,
            method=cfg.selection.method,
            tournament_size=cfg.selection.tournament_size,
            rates=cfg.mutation.rates(),
            mutation_config=cfg.mutation_config(),
            rng=rng,
            tracker=self.tracker,
            generation=g,
            next_id=self.next_id,
        )
        self.species = list(species)

    def _commit(self, stats: dict[str, Any], dt: float) -> None:
        """Reproduce (unless finished), then record and checkpoint the generation."""
        self._pruned: list[int] = []
        if self.finished is None:
            self._reproduce()
        g = stats["generation"]
        self.lineage.write_generation(
            self._rows,
            GenerationRow(
                generation=g,
                champion=stats["best_id"],
                best_metric=stats["best_metric"],
                mean_metric=stats["mean_metric"],
                n_species=stats["n_species"],
                threshold=stats["threshold"],
                elapsed_s=dt,
                stats=stats,
            ),
            pruned=self._pruned,
        )
        self.run_dir.append_stats(stats)
        if self.finished is not None or g % self.config.checkpoint.every == 0:
            save_checkpoint(self.run_dir, g, self._state(), keep=self.config.checkpoint.keep)

    def _state(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "members": [m.to_dict() for m in self.members],
            "species": [s.to_dict() for s in self.species],
            "threshold": self.threshold,
            "next_id": self.next_id,
            "next_species_id": self.next_species_id,
            "tracker": self.tracker.to_dict(),
            "champion": self.champion,
            "elapsed_s": self.elapsed_s,
            "finished": self.finished,
        }

    def _metric(self, result: TrainResult, ev: Metrics) -> float:
        if result.status != "ok" or not math.isfinite(ev.loss):
            return FAILED_METRIC
        if self.task.kind == "classification":
            return float(ev.accuracy)
        return -float(ev.loss)

    def _update_champion(
        self, best_id: int, metric: float, size: int, ev: Metrics, trained: dict[int, Genome]
    ) -> None:
        if is_better(metric, size, self.champion):
            self.champion = champion_record(best_id, self.generation, metric, size, ev, trained[best_id])

    # ------------------------------------------------------------------- finish
    def _finish(self) -> SearchResult:
        """Score the champion once on the test split and write ``best/``."""
        assert self.champion is not None
        result = score_champion(
            self.champion,
            self.task,
            self.train_config,
            self.run_dir,
            device=self.device,
            generations=self.generation,
            stop_reason=str(self.finished),
            elapsed_s=self.elapsed_s,
        )
        self.lineage.close()
        return result
