"""Drive a search over a run folder: start or resume it, step it, record it, finish it.

Called, this module is the array API: ``hybrid.search(X, y, ...)`` is
:func:`hybrid.api.search` (the package attribute ``hybrid.search`` is this module
once it is imported, so the module itself answers the call).

The generation itself is :func:`hybrid.generation.step` (pure: state in, state and report
out); this module owns the side effects around it: creating or reopening the run
folder, the Dask cluster, the reporters that record each generation (lineage,
``stats.jsonl``, checkpoints, then yours), Ctrl-C handling and the champion's one
score on the test split.

Randomness is derived per generation from ``(run.seed, generation)``, so a run
resumed from generation ``g``'s checkpoint replays generation ``g + 1`` exactly as
the uninterrupted run would: the checkpoint needs no RNG state at all beyond the
seed in ``config.toml``. Stats written to ``stats.jsonl`` hold no timings, so the
same config and seed give byte-identical stats (timings go to the lineage's
``generations`` table).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genomes import Genome
from genomes.modules import ModuleSpec

from .backends import evaluate_members, open_cluster, train_one
from .champion import (
    SearchResult,
    ShortlistEntry,
    budget_curves,
    check_budget_objective,
    score_champion,
)
from .checkpoint import STATE_FILE, checkpoint_path, load_latest_checkpoint
from .config import Config, resolve_device
from .errors import DataError, NoChampionError, RunDirError
from .generation import FAILED_METRIC, FAILED_SIZE, StepContext, initial_state, seed_for, step
from .grafting import check_fit, check_pins, load_modules, write_pins
from .lineage import LineageWriter
from .metrics import check_metric_targets
from .reporters import (
    CallbackReporter,
    CheckpointReporter,
    LineageReporter,
    ReporterLike,
    StatsReporter,
)
from .rundir import RunDir, create_run_dir, open_run_dir
from .sequences import check_sequence_config
from .shortlist import choose
from .state import Champion, SearchState
from .tasks import Task, load_task
from .train import TrainConfig

__all__ = ["FAILED_METRIC", "FAILED_SIZE", "FINAL_FIT_STREAM", "Search", "SearchResult"]

#: Random stream of the final fine-tune, seeded ``(run.seed, generations, 3)``: streams
#: 1 and 2 are each generation's training and breeding, so no generation shares it.
FINAL_FIT_STREAM = 3


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


@contextmanager
def reproducible(device: str, on: bool = True) -> Iterator[None]:
    """Ask torch for bitwise-reproducible kernels inside the block when ``device`` is CUDA.

    On CUDA the engine's scatter-adds (``index_add_``, and the backward of every gather)
    accumulate with atomics, so two runs with one seed part in the last bit after the
    first step and then diverge (seen on an H200: spirals' generation-0 mean 0.6891
    against 0.6897, different champions). ``torch.use_deterministic_algorithms`` swaps
    in sorted, order-fixed kernels; ``warn_only`` keeps an operation that has none (or
    cuBLAS started before :func:`~hybrid.config.resolve_device` set its workspace) a
    warning rather than an error. The setting is process-wide, so it is restored on
    the way out. A CPU block is left alone: its kernels are already reproducible.

    Args:
        device: the search's torch device.
        on: ``run.deterministic``; False leaves torch's setting alone.
    """
    if not (on and str(device).startswith("cuda")):
        yield
        return
    was, was_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=was_warn)


class Search:
    """A search over one run folder (make one with :meth:`start` or :meth:`resume`).

    Attributes:
        config: the run's config.
        run_dir: the run folder.
        task: the loaded task.
        device: the torch device the search trains on.
        state: the state after the last completed generation (a frozen
            :class:`~hybrid.state.SearchState`; :meth:`run` replaces it).
    """

    def __init__(
        self,
        config: Config,
        run: RunDir,
        task: Task,
        state: SearchState,
        device: str | None = None,
        modules: tuple[ModuleSpec, ...] | None = None,
    ) -> None:
        self.config = config
        self.run_dir = run
        self.task = task
        self.device = resolve_device(config.run.device) if device is None else device
        self.train_config = TrainConfig(**config.train_kwargs())
        self.state = state
        self.lineage = LineageWriter(run.lineage_path)
        #: ``task.schedule``'s phases: ``(first generation, task)``; empty without a schedule.
        self.phases = load_phases(config, task)
        #: The library entries ``mutation.insert_module`` grafts (``[modules]``), hash-checked.
        self.modules = load_modules(config) if modules is None else modules

    @property
    def final_task(self) -> Task:
        """The task the champion is scored on: the last phase's under ``task.schedule``."""
        return self.phases[-1][1] if self.phases else self.task

    # ------------------------------------------------------------ the state
    @property
    def generation(self) -> int:
        """Return the number of completed generations."""
        return self.state.generation

    @property
    def finished(self) -> str | None:
        """Return why the search stopped, or None while it runs."""
        return self.state.finished

    @finished.setter
    def finished(self, reason: str) -> None:
        self.stop(reason)

    def stop(self, reason: str) -> None:
        """Stop after the current generation (call it from a reporter or callback)."""
        self.state = replace(self.state, finished=reason)

    # ------------------------------------------------------------- creation
    @classmethod
    def start(cls, config: Config, overwrite: bool = False, *, adopt_data: bool = False) -> Search:
        """Create the run folder and generation 0's population.

        Everything that can fail is checked before the run folder is created: the
        device, the task's data, the Dask scheduler.

        Args:
            config: the run's config.
            overwrite: replace a finished or stopped run folder of the same name.
            adopt_data: move the file ``task.path`` names into the run folder as it
                is created (``data.npz`` / ``data.csv``; the array API stages its data
                in ``run.runs_dir``); ``config.toml`` then names it relative to the
                folder, so the run stays resumable wherever the folder goes.

        Raises:
            ConfigError: the configured device is not available (``cuda`` without CUDA).
            RunDirError: the run folder exists and ``overwrite`` is False.
            DataError: the task's data cannot be loaded, or a split cannot be scored by
                ``task.metric`` (``roc_auc`` on a split missing a class).
            ClusterError: ``parallel.address`` names a Dask scheduler that does not answer.
        """
        device = resolve_device(config.run.device)
        TrainConfig(**config.train_kwargs())  # the settings each step derives: checked now, not mid-run
        config.distance_config()
        config.mutation_config()
        adaptive = config.mutation.add_exit > 0 or config.mutation.add_skip > 0
        # "auto" folds stay off for adaptive genes: thresholds are fitted on one validation split
        task = load_task(config.task, config.run.seed, accelerated=device.startswith("cuda") and not adaptive)
        check_sequence_config(config, task, f"run {config.run.name!r}")
        check_budget_objective(config, task, f"run {config.run.name!r}")
        load_phases(config, task)  # every phase's data loads before the folder exists
        check_fit(load_modules(config), task, config)  # the module library's entries, hash-checked
        splits = [("the validation split", task.y_val), ("the test split", task.y_test)]
        if task.y_sel is not None:
            splits.append(("the selection split", task.y_sel))
        for split, y in splits:
            check_metric_targets(config.task.metric, y, task.n_outputs, split)  # roc_auc: every class
        if config.parallel.backend == "dask" and config.parallel.address is not None:
            from .distributed import check_scheduler

            check_scheduler(config.parallel.address)
        stored, data = config, None
        if adopt_data:
            data = Path(config.task.path)  # type: ignore[arg-type]
            name = RunDir.data_name(data.suffix)
            stored = config.model_copy(update={"task": config.task.model_copy(update={"path": name})})
            real = os.path.realpath(Path(config.run.runs_dir) / config.run.name / name)
            task = replace(task, name=Path(name).stem, source=real)  # as a resume will load it
        run = create_run_dir(  # built whole under a temporary name, then renamed; holds the writer lock
            config.run.runs_dir, config.run.name, stored, overwrite=overwrite, task=task.info(), data=data
        )
        if adopt_data:
            config = run.load_config()  # task.path: the folder's own copy, absolute
        return cls._begin(config, run, task, device)

    @classmethod
    def _begin(cls, config: Config, run: RunDir, task: Task, device: str) -> Search:
        """Return a search at generation 0 (deterministic from the seed: a restart replays it)."""
        run.write_task(task.info())
        modules = load_modules(config)  # read and hash-checked once: generation 0's grafts and breeding's
        search = cls(config, run, task, initial_state(config, task, modules), device, modules)
        if search.modules:
            write_pins(run, search.modules)
        search.lineage.set_meta({"seed": config.run.seed, "task": task.name, "gate": config.training.gate})
        return search

    @classmethod
    def resume(cls, path: str | Path) -> Search:
        """Open a run folder and continue from its last complete generation.

        A run stopped before its first checkpoint starts again from generation 0,
        which the seed reproduces exactly.

        Raises:
            RunDirError: not a run folder, or its newest checkpoint is unreadable or
                malformed (one line naming the file and the key).
            ConfigError: the configured device is not available.
        """
        run = open_run_dir(path, writer=True)  # one writer at a time: a second is refused
        config = run.load_config()
        device = resolve_device(config.run.device)
        # folds = "auto" resolves as it did at the start (on a GPU), whatever this machine has
        started_with_folds = run.read_task().folds is not None
        task = load_task(config.task, config.run.seed, accelerated=started_with_folds)
        latest = load_latest_checkpoint(run)
        if latest is None:
            check_pins(run, load_modules(config))
            run.truncate_stats(None)
            search = cls._begin(config, run, task, device)
            search.lineage.truncate_after(-1)
            return search
        generation, data = latest
        source = str(checkpoint_path(run, generation) / STATE_FILE)
        state = SearchState.from_dict(data, source=source)
        if state.generation != generation + 1:
            raise RunDirError(
                f"{source}: state.generation: expected {generation + 1} in generation {generation}'s "
                f"checkpoint, got {state.generation}"
            )
        run.truncate_stats(generation)
        search = cls(config, run, task, state, device)
        check_pins(run, search.modules)
        search.lineage.truncate_after(generation)
        return search

    # ----------------------------------------------------------------- loop
    def run(
        self,
        on_generation: Callable[[dict[str, Any]], None] | None = None,
        *,
        reporters: Sequence[ReporterLike] = (),
    ) -> SearchResult:
        """Run generations until a stop condition, then score the champion on the test split.

        Args:
            on_generation: called after each completed generation with its stats
                (plus ``elapsed_s`` and ``generation_s``).
            reporters: more reporters (:mod:`hybrid.reporters`), called after the
                run folder's own records for every generation, and with the result.

        Raises:
            KeyboardInterrupt: passed through; the last complete generation is
                checkpointed, so ``Search.resume`` continues from it.
            NoChampionError: no member of any generation had a finite score;
                nothing is written to ``best/``.
        """
        torch.set_num_threads(self.config.run.threads)
        ckpt = self.config.checkpoint
        records = [
            LineageReporter(self.lineage),
            StatsReporter(self.run_dir),
            CheckpointReporter(self.run_dir, ckpt.every, ckpt.keep),
        ]
        extra = list(reporters) + ([CallbackReporter(on_generation)] if on_generation is not None else [])
        try:
            with reproducible(self.device, self.config.run.deterministic):
                with open_cluster(self.config.parallel) as cluster:  # None unless backend "dask"
                    context = StepContext(
                        self.config, self.task, self.device, cluster, phases=self.phases, modules=self.modules
                    )
                    while self.state.finished is None:
                        state, report = step(self.state, context)
                        with _interrupts_deferred():  # a generation is recorded whole or not at all
                            for r in records:
                                r.on_generation(state, report)
                            self.state = state
                        for r in extra:
                            r.on_generation(state, report)
                result = self._finish()
        finally:
            self.run_dir.close()  # the writer lock: a later resume in this process may take it
        for r in extra:
            on_finish = getattr(r, "on_finish", None)  # optional for a duck-typed reporter
            if on_finish is not None:
                on_finish(result)
        return result

    # ---------------------------------------------------------------- finish
    def _finish(self) -> SearchResult:
        """Choose the final champion, fine-tune it if asked, score it once on the test split, write ``best/``.

        The champion rule (``selection.champion``) picks from the short list (the
        capped Pareto front of the run, plus the state's champion): under "best" the
        highest score, under "smallest_within" the smallest net within
        ``selection.epsilon`` of the highest. The score is the validation metric, or
        with a selection split (``task.selection_fraction``) every entry's metric on
        that split, which no fitness ever saw (:func:`hybrid.shortlist.choose`). With
        ``evolution.final_steps`` the chosen genome is then trained that many more
        steps on train + validation (+ selection), a population of one seeded from
        ``(run.seed, generations, FINAL_FIT_STREAM)``, before the test score.
        """
        self.lineage.close()
        champion = self.state.champion
        if champion is None:
            raise NoChampionError(
                f"{self.run_dir.path}: no member of the {self.state.generation} generation(s) had a finite "
                "validation score (every member failed: try a smaller training.lr); nothing written to best/"
            )
        sel, steps = self.config.selection, self.config.evolution.final_steps
        entries = tuple({c.id: c for c in (*self.state.shortlist, champion)}.values())
        best_val = max(c.metric for c in entries)
        scores = self._selection_scores(entries)
        curves = budget_curves(
            entries, self.task, self.train_config, sel, device=self.device, threads=self.config.run.threads
        )
        chosen = choose(entries, sel.champion, sel.epsilon, scores, None if curves is None else curves.auc)
        epsilon = sel.epsilon if sel.champion == "smallest_within" else None
        genome = self._final_fit(chosen) if steps > 0 else None
        return score_champion(
            chosen.to_dict(),
            self.final_task,
            self.train_config,
            self.run_dir,
            device=self.device,
            generations=self.state.generation,
            stop_reason=str(self.state.finished),
            elapsed_s=self.state.elapsed_s,
            selected_by=sel.champion,
            epsilon=epsilon,
            best_val_metric=best_val,
            final_steps=steps,
            genome=genome,
            shortlist=[
                ShortlistEntry(
                    c.id,
                    c.generation,
                    c.metric,
                    None if scores is None else scores[c.id],
                    c.active_params,
                    None if curves is None else curves.auc[c.id],
                    c.average_flops,
                )
                for c in entries
            ],
            budget_curve=None if curves is None else curves.curves[chosen.id],
            budget_split="validation" if curves is None else curves.split,
        )

    def _selection_scores(self, entries: Sequence[Champion]) -> dict[int, float] | None:
        """Every short-list entry's fitness on the selection split (NaN if not finite); None without one."""
        task = self.task
        if task.X_sel is None:
            return None
        evals = evaluate_members(
            [c.genome for c in entries], task.X_sel, task.y_sel, self.train_config, device=self.device
        )
        out = {}
        for c, ev in zip(entries, evals, strict=True):
            fit = ev.fitness
            out[c.id] = float(fit) if fit is not None and np.isfinite(ev.loss) and np.isfinite(fit) else float("nan")
        return out

    def _final_fit(self, chosen: Champion) -> Genome:
        """Return ``chosen``'s genome trained ``evolution.final_steps`` more steps on train + validation (+ selection).

        Weights and biases train; the gates stay as they were chosen, so the fitted
        network has the chosen one's structure and size. Its own weights if that
        training fails (a NaN/inf loss): the test score is then the unfitted
        genome's, never a broken one's.
        """
        task, cfg = self.task, self.config
        held = [] if task.X_sel is None else [(task.X_sel, task.y_sel)]
        X = np.concatenate([task.X_train, task.X_val, *(x for x, _ in held)])
        y = np.concatenate([task.y_train, task.y_val, *(t for _, t in held)])
        # the chosen architecture is what is fitted: its gates (so its size) stay as chosen
        config = replace(self.train_config, steps=cfg.evolution.final_steps, train_gates=False)
        seed = seed_for(cfg.run.seed, self.state.generation, FINAL_FIT_STREAM)
        trained = train_one(chosen.genome, X, y, config, seed, self.device, cfg.run.threads)
        return trained.genomes[0]


def load_phases(config: Config, task: Task) -> tuple[tuple[int, Task], ...]:
    """Return ``task.schedule`` as ``(first generation, task)`` pairs, each task loaded with the run's seed.

    The first phase is ``task`` itself; later ones are the named built-ins with the
    first one's settings. Empty without a schedule.

    Raises:
        DataError: a phase's task has other input or output widths than the first.
    """
    schedule = config.task.schedule
    if not schedule:
        return ()
    phases, start, loaded = [], 0, {schedule[0][0]: task}
    for name, generations in schedule:
        if name not in loaded:
            spec = config.task.model_copy(update={"name": name, "schedule": ()})
            loaded[name] = load_task(spec, config.run.seed)
        phase = loaded[name]
        if (phase.n_inputs, phase.n_outputs) != (task.n_inputs, task.n_outputs):
            raise DataError(
                f"task.schedule: {name!r} has {phase.n_inputs} inputs and {phase.n_outputs} outputs, "
                f"expected {task.n_inputs} and {task.n_outputs} as {task.name!r}"
            )
        phases.append((start, phase))
        start += generations
    return tuple(phases)


class _CallableModule(types.ModuleType):
    """This module, callable: ``hybrid.search(X, y, ...)`` runs :func:`hybrid.api.search`."""

    def __call__(self, *args: Any, **kwargs: Any) -> SearchResult:
        from .api import search

        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
