"""The whole config: one frozen model composed of the sections."""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, model_validator

from genomes import DistanceConfig, MutationConfig, gate_value

from ..tasks import TASKS
from ._base import LOSS_FOR_KIND, KeyedError, Section
from ._sections import (
    CheckpointConfig,
    EvolutionConfig,
    GenomeConfig,
    ModulesConfig,
    MutationSection,
    ParallelConfig,
    RunConfig,
    SelectionConfig,
    SpeciationConfig,
    TaskConfig,
    TrainingConfig,
)

__all__ = ["SECTIONS", "Config", "resolve_device"]


def _task_kind(task: Any) -> str | None:
    if isinstance(task, TaskConfig):
        return task.kind
    if isinstance(task, dict):
        if task.get("kind") is not None:
            return task["kind"]
        name = task.get("name")
        if isinstance(name, str) and name in TASKS:
            return TASKS[name].kind
    return None


class Config(Section):
    """A complete, validated search config (``hybrid run`` reads one from TOML).

    Only ``[task]`` is required; every other section and key has a default.
    ``training.loss`` is derived from the task's kind when not given.

    Example:
        >>> c = Config(task={"name": "xor"})
        >>> c.training.loss, c.evolution.population
        ('cross_entropy', 64)
    """

    run: RunConfig = Field(default_factory=RunConfig)
    task: TaskConfig
    genome: GenomeConfig = Field(default_factory=GenomeConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evolution: EvolutionConfig = Field(default_factory=EvolutionConfig)
    speciation: SpeciationConfig = Field(default_factory=SpeciationConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    mutation: MutationSection = Field(default_factory=MutationSection)
    modules: ModulesConfig = Field(default_factory=ModulesConfig)
    parallel: ParallelConfig = Field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)

    @model_validator(mode="before")
    @classmethod
    def _derive_loss(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        loss = LOSS_FOR_KIND.get(_task_kind(data.get("task")))  # type: ignore[arg-type]
        training = data.get("training", {})
        if loss is None:
            return data
        if isinstance(training, dict) and training.get("loss") is None:
            return {**data, "training": {**training, "loss": loss}}
        if isinstance(training, TrainingConfig) and training.loss is None:
            return {**data, "training": training.model_copy(update={"loss": loss})}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        kind = self.task.kind
        if self.training.loss != LOSS_FOR_KIND[kind]:
            raise KeyedError(
                "training.loss",
                self.training.loss,
                f"expected {LOSS_FOR_KIND[kind]!r} for a {kind} task",
            )
        if self.training.class_weight == "balanced" and kind != "classification":
            raise KeyedError(
                "training.class_weight",
                "balanced",
                "expected 'none' or 'auto' for a regression task (there are no classes to balance)",
            )
        self._check_mode()
        self._check_budgets()
        self._check_adaptive()
        self._check_sparse()
        if self.mutation.bottleneck_stats == "noisy" and not self.training.input_noise:
            raise KeyedError(
                "mutation.bottleneck_stats",
                "noisy",
                "expected 'clean' with training.input_noise = 0 (the noisy statistics batch carries "
                "the training's input noise)",
            )
        if self.evolution.elitism >= self.evolution.population:
            raise KeyedError(
                "evolution.elitism",
                self.evolution.elitism,
                "expected fewer elites than evolution.population",
            )
        listed = self.genome.activations
        if len(listed) > self.evolution.population:
            raise KeyedError(
                "genome.activation",
                list(listed),
                f"expected at most evolution.population = {self.evolution.population} activations "
                "(member i of generation 0 takes the (i mod length)-th: the rest would never be tried)",
            )
        gen = self.genome
        if gen.hidden and gen.branches:
            raise KeyedError(
                "genome.branches",
                list(gen.branches),
                f"expected [] with genome.hidden = {list(gen.hidden)} (a chain or branches side by side, not both)",
            )
        for key, widths in (("hidden", gen.hidden), ("branches", gen.branches)):
            for k, width in enumerate(widths):
                if width > self.mutation.max_node_width:
                    raise KeyedError(
                        f"genome.{key}[{k}]",
                        width,
                        f"expected at most mutation.max_node_width = {self.mutation.max_node_width} "
                        "(no node may be wider; raise that too for a wider start)",
                    )
        if gen.branch_exit and not (gen.branches and self.mutation.add_exit > 0):
            raise KeyedError(
                "genome.branch_exit",
                True,
                "expected false unless genome.branches is set and mutation.add_exit > 0 (exit heads are "
                "for adaptive runs)",
            )
        if gen.branch_exit and self.modules.start > 0:
            raise KeyedError(
                "genome.branch_exit",
                True,
                f"expected false with modules.start = {self.modules.start} (grafted modules and exit heads do not mix)",
            )
        if float(gate_value(self.genome.gate_init, self.training.gate)) == 0.0:
            raise KeyedError(
                "genome.gate_init",
                self.genome.gate_init,
                f"expected a logit that opens gates under training.gate = {self.training.gate!r} "
                "(hard-concrete gates are exactly closed below about -2.4: new structure could never pass)",
            )
        if (
            self.selection.tournament_size > self.evolution.population
            and self.evolution.mode == "search"
        ):
            raise KeyedError(
                "selection.tournament_size",
                self.selection.tournament_size,
                "expected at most evolution.population (a bigger tournament only repeats members)",
            )
        target = self.evolution.target_metric
        metric = self.task.metric
        bounded = metric in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")
        if target is not None and bounded and not 0.0 < target <= 1.0:
            raise KeyedError(
                "evolution.target_metric",
                target,
                f"expected {'an' if metric[0] in 'aeiou' else 'a'} {metric} in (0, 1] "
                f"(task.metric = {metric!r})",
            )
        if target is not None and metric in ("log_loss", "mae", "mse") and target < 0.0:
            raise KeyedError(
                "evolution.target_metric",
                target,
                f"expected {'an' if metric[0] in 'aeiou' else 'a'} {metric} >= 0 (task.metric = {metric!r}: lower is better; the search "
                "stops once the champion's is at or below it)",
            )
        if self.mutation.insert_module > 0 and self.modules.library is None:
            raise KeyedError(
                "mutation.insert_module",
                self.mutation.insert_module,
                "expected 0 unless modules.library names a module library to graft from",
            )
        if self.modules.start > 0 and self.modules.library is None:
            raise KeyedError(
                "modules.start",
                self.modules.start,
                "expected 0 unless modules.library names a module library to graft from",
            )
        if self.parallel.address is not None and self.parallel.backend != "dask":
            raise KeyedError(
                "parallel.address",
                self.parallel.address,
                "expected parallel.backend = 'dask' when an address is set",
            )
        return self

    def _check_mode(self) -> None:
        """A search needs two members or more; grow mode is one network grown by the bottleneck operators."""
        evo, m = self.evolution, self.mutation
        if evo.mode == "search":
            if evo.population < 2:
                raise KeyedError(
                    "evolution.population",
                    evo.population,
                    "expected an integer >= 2 for a search (one network grows with evolution.mode = 'grow')",
                )
            return
        for key, got, want in (
            ("evolution.population", evo.population, 1),
            ("evolution.elitism", evo.elitism, 0),
            ("evolution.crossover_rate", evo.crossover_rate, 0.0),
        ):
            if got != want:
                raise KeyedError(
                    key,
                    got,
                    f"expected {want} with evolution.mode = 'grow' (one network, no copies)",
                )
        if not any(
            getattr(m, k) > 0
            for k in ("grow_bottleneck", "add_node_bottleneck", "add_edge_bottleneck")
        ):
            raise KeyedError(
                "mutation.grow_bottleneck",
                m.grow_bottleneck,
                "expected a rate > 0 (or add_node_bottleneck / add_edge_bottleneck) with evolution.mode = 'grow'",
            )

    def _check_budgets(self) -> None:
        """Budgets (issue 17) are for feed-forward networks: no recurrent start, no sequence task."""
        levels, floor = self.training.budget_levels, self.training.budget_min
        if levels and self.training.budgets == "off":
            raise KeyedError(
                "training.budget_levels",
                list(levels),
                "expected [] with training.budgets = 'off' (the levels are what sandwich training trains)",
            )
        if levels and levels[0] <= floor:
            raise KeyedError(
                "training.budget_levels",
                list(levels),
                f"expected every level above training.budget_min = {floor} (that level is trained anyway)",
            )
        if self.training.budgets == "off":
            return
        if self.genome.recurrent:
            raise KeyedError(
                "training.budgets",
                self.training.budgets,
                "expected 'off' with genome.recurrent = true (budgets are for feed-forward networks)",
            )
        if self.mutation.add_recurrent_edge > 0:
            raise KeyedError(
                "mutation.add_recurrent_edge",
                self.mutation.add_recurrent_edge,
                "expected 0 with training.budgets = 'sandwich' (budgets are for feed-forward networks)",
            )
        spec = TASKS.get(self.task.name)  # type: ignore[arg-type]
        if spec is not None and spec.sequence:
            raise KeyedError(
                "training.budgets",
                self.training.budgets,
                f"expected 'off' for the sequence task {self.task.name!r} (budgets are for feed-forward networks)",
            )

    def _check_sparse(self) -> None:
        """Sparse edges (``mutation.sparsify``) are for feed-forward networks."""
        m = self.mutation
        if m.sparsify <= 0:
            return
        spec = TASKS.get(self.task.name)  # type: ignore[arg-type]
        if self.genome.recurrent or m.add_recurrent_edge > 0 or (spec is not None and spec.sequence):
            raise KeyedError(
                "mutation.sparsify",
                m.sparsify,
                "expected 0 for recurrent networks or sequence tasks (sparse edges are for feed-forward networks)",
            )

    def _check_adaptive(self) -> None:
        """Exit heads and skip gates (issue 16) are for feed-forward networks; exits for classifiers."""
        m, kind = self.mutation, self.task.kind
        if self.selection.cost == "average_flops" and self.selection.method != "nsga2":
            raise KeyedError(
                "selection.cost",
                "average_flops",
                "expected selection.method = 'nsga2' (cost is nsga2's second objective)",
            )
        on = [k for k in ("add_exit", "add_skip") if getattr(m, k) > 0]
        if not on:
            return
        key = f"mutation.{on[0]}"
        value = getattr(m, on[0])
        if m.add_exit > 0 and kind != "classification":
            raise KeyedError(
                "mutation.add_exit",
                m.add_exit,
                "expected 0 for a regression task (exit heads stop on a class's confidence)",
            )
        spec = TASKS.get(self.task.name)  # type: ignore[arg-type]
        if (
            self.genome.recurrent
            or m.add_recurrent_edge > 0
            or (spec is not None and spec.sequence)
        ):
            raise KeyedError(
                key,
                value,
                "expected 0 for recurrent networks or sequence tasks (exit heads and skip gates are for feed-forward networks)",
            )
        if self.training.budgets != "off":
            raise KeyedError(
                key,
                value,
                "expected 0 with training.budgets = 'sandwich' (budgets and adaptive genes do not mix)",
            )
        if m.insert_module > 0:
            raise KeyedError(
                key,
                value,
                "expected 0 with mutation.insert_module > 0 (grafted modules and adaptive genes do not mix)",
            )
        grow = [k for k in ("grow_bottleneck", "add_node_bottleneck", "add_edge_bottleneck") if getattr(m, k) > 0]
        if grow:
            raise KeyedError(
                key, value, f"expected 0 with mutation.{grow[0]} > 0 (bottleneck growth reads the plain engine's statistics)"
            )
        if isinstance(self.task.folds, int):
            raise KeyedError(
                key,
                value,
                "expected 0 with task.folds set (K-fold fitness does not fit thresholds per fold)",
            )

    def mutation_config(self) -> MutationConfig:
        """Return the ``genomes.MutationConfig`` the mutation operators read."""
        m = self.mutation
        return MutationConfig(
            gate=self.training.gate,
            gate_init=self.genome.gate_init,
            activations=tuple(m.activations),
            new_node_activation=m.new_node_activation,
            max_new_node_width=m.max_new_node_width,
            widen_max=m.widen_max,
            max_node_width=m.max_node_width,
            perturb_std=m.perturb_std,
            perturb_fraction=m.perturb_fraction,
            prune_weakest=m.prune_weakest,
            sparsify_fraction=m.sparsify_fraction,
        )

    def distance_config(self) -> DistanceConfig:
        """Return the ``genomes.DistanceConfig`` of the compatibility distance."""
        s = self.speciation
        return DistanceConfig(
            excess=s.excess,
            disjoint=s.disjoint,
            weight=s.weight,
            width=s.width,
            normalise_above=s.normalise_above,
        )

    def train_kwargs(self) -> dict[str, Any]:
        """Return the ``TrainConfig`` fields: steps, batch_size, lr, weight_decay, penalty, gate,
        loss, input_noise, budgets, budget_samples, budget_min, distill, budget_levels, exit_weight, exit_distill,
        skip_target, skip_penalty, threshold_tolerance, ``task.metric`` as ``metric``, and ``class_weight`` ("auto" resolved)."""
        t = self.training
        keys = ("steps", "batch_size", "lr", "weight_decay", "penalty", "gate", "loss", "input_noise")
        keys += ("budgets", "budget_samples", "budget_min", "distill")
        keys += ("exit_weight", "exit_distill", "skip_target", "skip_penalty", "threshold_tolerance")
        weight = t.class_weight
        if weight == "auto":
            weight = "balanced" if self.task.metric in CLASS_BALANCED_METRICS else "none"
        return {
            **{k: getattr(t, k) for k in keys},
            "budget_levels": tuple(t.budget_levels),
            "metric": self.task.metric,
            "class_weight": weight,
        }


#: Metrics that weigh every class equally: ``class_weight = "auto"`` trains for them with
#: a class-balanced loss, so the loss the members descend agrees with what ranks them.
CLASS_BALANCED_METRICS = ("balanced_accuracy", "f1_macro")

#: Section name -> model, in the order ``dump_config`` writes them.
SECTIONS: dict[str, type[Section]] = {
    name: info.annotation
    for name, info in Config.model_fields.items()  # type: ignore[misc]
}


def resolve_device(device: str) -> str:
    """Return the torch device a ``run.device`` setting means on this machine.

    Args:
        device: "auto", "cpu", "cuda" or "cuda:N" (validated by ``RunConfig``).

    Returns:
        "cuda" (or "cuda:N") when asked for and available; "cpu" for "auto" without
        a GPU.

    Raises:
        ConfigError: CUDA was asked for but is not available.
    """
    import torch

    from ..errors import ConfigError

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"run.device: got {device!r}, but this torch ({torch.__version__}) sees no CUDA device"
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"run.device: got {device!r}, expected an index below {torch.cuda.device_count()}"
            )
        # cuBLAS reads this once, when it first starts: set before any CUDA work, it lets
        # `Search.run` ask for bitwise-reproducible kernels (see `hybrid.search.reproducible`)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return device
