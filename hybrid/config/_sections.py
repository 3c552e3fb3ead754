"""The config sections: frozen pydantic models, unknown keys forbidden.

Each field's ``description`` says why its default is what it is; ``dump_config``
writes it as a comment above the key, so a run's ``config.toml`` explains itself.
Cross-field rules raise :class:`KeyedError` so an error still names its dotted key.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator

from ._base import DC, MAX_WIDTH, MC, Activation, Activations, Section, as_tuple, rate
from ._task import TaskConfig

__all__ = [
    "CheckpointConfig",
    "EvolutionConfig",
    "GenomeConfig",
    "ModulesConfig",
    "MutationSection",
    "ParallelConfig",
    "RunConfig",
    "SelectionConfig",
    "SpeciationConfig",
    "TaskConfig",
    "TrainingConfig",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


class RunConfig(Section):
    """``[run]``: naming, seeding and placing a run."""

    name: str = Field(
        "run",
        max_length=100,
        description="run folder name under runs_dir; load_config defaults it to the config file's stem "
        "(at most 100 characters: file systems cap a name at 255 bytes)",
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**63 - 1,
        description="one seed drives data, splits, genomes and training: same seed, same run "
        "(a 64-bit integer: the lineage store keeps it as one)",
    )
    device: str = Field(
        "auto", description="auto = cuda when available else cpu; or cpu, cuda, cuda:N"
    )
    deterministic: bool = Field(
        True,
        description="on a GPU, bitwise-reproducible kernels (torch.use_deterministic_algorithms): "
        "same seed, same run, and a resumed run matches one left alone; false trades that for speed "
        "(CUDA's atomic scatter-adds sum in a varying order). No effect on the CPU, which is always so",
    )
    runs_dir: str = Field(
        "runs", description="folder that holds run folders, relative to the working directory"
    )
    threads: int = Field(
        1,
        ge=1,
        le=256,
        description="torch intra-op threads: small tensors gain little from more, and cores are shared "
        "(at most 256: beyond any machine's cores threads only contend)",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError("expected a folder name of letters, digits, '.', '_' or '-'")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not _DEVICE.fullmatch(v):
            raise ValueError("expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return v


class GenomeConfig(Section):
    """``[genome]``: the initial population's shape."""

    hidden: Annotated[
        tuple[Annotated[int, Field(ge=1, le=MAX_WIDTH)], ...], BeforeValidator(as_tuple)
    ] = Field(
        (),
        max_length=64,
        description="widths of a hidden chain to start from; empty = input wired to output (NEAT's minimal start); "
        f"each at most {MAX_WIDTH} (and mutation.max_node_width): wider layers of a whole population "
        "run out of memory; at most 64 layers: a deeper plain chain does not train",
    )
    branches: Annotated[
        tuple[Annotated[int, Field(ge=1, le=MAX_WIDTH)], ...], BeforeValidator(as_tuple)
    ] = Field(
        (),
        max_length=64,
        description="widths of hidden nodes side by side, each reading the input and feeding the output "
        "(instead of the hidden chain): a cheap path and a costly one to start from, e.g. [4, 32]; "
        "exclusive with hidden",
    )
    branch_exit: bool = Field(
        False,
        description="give the first branch an exit head in generation 0 (zero weights, threshold 1: "
        "function preserving), so the cheap path can stop the inputs it is sure of from the start; "
        "needs genome.branches and mutation.add_exit > 0 (an adaptive run)",
    )
    activation: Activations = Field(
        "relu",
        description="activation of the initial hidden nodes; a list spreads generation 0 over several: "
        "member i's hidden nodes take the list's (i mod length)-th, so each gets an equal share of the "
        "population and selection keeps what the task rewards (CPPN-NEAT's mixed activation set)",
    )
    recurrent: bool = Field(
        False,
        description="give each initial hidden node a recurrent self-loop (LeCun-normal weights): an "
        "Elman network to start from, for sequence tasks",
    )
    gate_init: float = Field(
        MC.gate_init,
        ge=-20.0,
        le=20.0,
        description="initial gate logit: open (sigmoid 0.95, hard-concrete exactly 1); within +-20: "
        "beyond it a float32 sigmoid is exactly 0 or 1 and its gradient 0, so training could never move the gate",
    )

    @property
    def activations(self) -> tuple[str, ...]:
        """``activation`` as a tuple: generation 0's member i takes entry ``i mod length``."""
        return (self.activation,) if isinstance(self.activation, str) else self.activation


def increasing_budgets(v: object, within: str, example: str) -> tuple[float, ...]:
    """``v`` as a non-empty, strictly increasing tuple of budgets in ``within``: "(0, 1]" or "(0, 1)"."""
    v = as_tuple(v)
    if not isinstance(v, tuple):
        raise ValueError(f"expected a list of budgets in {within}, such as {example}")
    if not v:
        raise ValueError("expected at least one budget")
    top_ok = within.endswith("]")
    for b in v:
        ok = not isinstance(b, bool) and isinstance(b, (int, float)) and 0.0 < b and (b <= 1.0 if top_ok else b < 1.0)
        if not ok:  # NaN fails too
            raise ValueError(f"expected every budget to be a number in {within}, got {b!r}")
    if any(a >= b for a, b in zip(v[:-1], v[1:], strict=False)):
        raise ValueError("expected strictly increasing budgets")
    return tuple(float(b) for b in v)


class TrainingConfig(Section):
    """``[training]``: the gradient phase every member gets each generation."""

    steps: int = Field(
        200,
        ge=1,
        le=1_000_000,
        description="optimiser steps per member per generation: enough to fit, cheap enough to evolve "
        "(at most a million: more is hours per generation)",
    )
    batch_size: int = Field(
        256,
        ge=1,
        le=10_000_000,
        description="minibatch size; the built-in toy tasks fit in one full batch (no minibatch noise); "
        "capped by the training split, and at most 10 million",
    )
    lr: float = Field(
        0.01,
        gt=0.0,
        le=1.0,
        description="Adam learning rate: small nets tolerate a large one; at most 1: Adam moves each weight "
        "by up to lr per step, so beyond 1 a step outruns the weights' own scale (and 1e300 overflows float32)",
    )
    weight_decay: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="AdamW decoupled weight decay; off: selection already favours small nets; at most 1, "
        "so that lr * weight_decay <= 1 shrinks weights and never flips their sign",
    )
    penalty: float = Field(
        0.0,
        ge=0.0,
        le=100.0,
        description="weight of the structure penalty (open gates); off: it bends the fitted function, turn on to prune; "
        "at most 100: the task loss is of order 1, so 100 per open gate already closes every gate",
    )
    input_noise: float = Field(
        0.0,
        ge=0.0,
        le=100.0,
        description="std of Gaussian noise added to each training minibatch's inputs, in the units of the "
        "standardised inputs (training with noise is a Tikhonov regulariser: Bishop 1995); validation, "
        "test and exports see clean inputs; 0: off; at most 100 (beyond it the inputs are all noise)",
    )
    gate: Literal["sigmoid", "hard_concrete"] = Field(
        "sigmoid", description="sigmoid = soft gates; hard_concrete = L0 gates that close exactly"
    )
    loss: Literal["cross_entropy", "mse"] | None = Field(
        None, description="derived from task.kind: cross_entropy (classification), mse (regression)"
    )
    class_weight: Literal["auto", "none", "balanced"] = Field(
        "auto",
        description="balanced: each class weighs as much in the training loss as any other "
        "(sklearn's class_weight='balanced'); auto: balanced when task.metric is "
        "balanced_accuracy or f1_macro (metrics that weigh classes equally), else none",
    )
    inheritance: Literal["lamarckian", "baldwinian"] = Field(
        "lamarckian",
        description="lamarckian: children inherit trained weights; baldwinian: only fitness benefits",
    )
    engine: Literal["batched", "loop"] = Field(
        "batched",
        description="batched trains the whole population in one computation; loop one genome at a time",
    )
    bptt: int = Field(
        40,
        ge=1,
        le=100_000,
        description="stream tasks: characters per training window (truncated BPTT, the state carried "
        "from window to window); 40 is the anchor's (Miconi 2016)",
    )
    growth: Literal["off", "reserve"] = Field(
        "off",
        description="reserve: during training every hidden node keeps reserve_k sub-threshold neurons "
        "(Miconi 2016): more and the extra ones are deleted, fewer and one is added",
    )
    reserve_k: int = Field(1, ge=0, le=MAX_WIDTH, description="sub-threshold neurons each node keeps in reserve")
    reserve_threshold: float = Field(
        0.05, gt=0.0, le=100.0, description="T_D: a neuron whose outgoing |weights| sum below it is sub-threshold"
    )
    reserve_p_add: float = rate("probability per step of adding a neuron to a node short of its reserve", 0.01)
    reserve_p_delete: float = rate("probability per step of deleting each extra sub-threshold neuron", 0.05)
    reserve_l1: float = Field(
        1e-4,
        ge=0.0,
        le=1.0,
        description="L1 penalty on the weights leaving hidden neurons (the anchor's A); only with growth",
    )
    reserve_every: int = Field(
        20,
        ge=1,
        le=1_000_000,
        description="steps between two applications of the rule (the batched engine repacks the "
        "population then); the per-step probabilities are compounded over them",
    )
    budgets: Literal["off", "sandwich"] = Field(
        "off",
        description="sandwich: each step also trains the smallest budget and budget_samples random ones "
        "(slimmable networks), so one trained network runs at many costs; off: the full network only "
        "(feed-forward tasks only)",
    )
    budget_samples: int = Field(
        2,
        ge=0,
        le=64,
        description="sandwich: random budgets per step besides the full and the smallest; each is one "
        "more forward and backward pass (2: the sandwich rule's four passes in all)",
    )
    budget_min: float = Field(
        0.25,
        ge=0.0,
        lt=1.0,
        description="sandwich: the smallest budget trained; the random ones are drawn in [budget_min, 1) "
        "(slimmable networks' 0.25x width; 0: down to the chain's smallest level, one neuron per node)",
    )
    distill: bool = Field(
        True,
        description="sandwich: smaller budgets learn the full network's outputs (in-place distillation) "
        "rather than the labels",
    )
    budget_levels: Annotated[tuple[float, ...], BeforeValidator(as_tuple)] = Field(
        (),
        description="sandwich: budgets trained at every step besides the full network and budget_min, "
        "strictly increasing, each in (budget_min, 1) (the original slimmable networks' width list: "
        "train the levels you will deploy); each is one more forward and backward pass",
    )
    exit_weight: float = Field(
        1.0,
        ge=0.0,
        le=100.0,
        description="exit heads (mutation.add_exit): each exit's cross-entropy weighs this much next to the "
        "output's 1 (BranchyNet's weighted sum of exit losses); 0 trains the exits not at all",
    )
    exit_distill: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="exit heads: the share of each exit's loss that is self-distillation, the soft "
        "cross-entropy to the output's detached predictions, rather than the labels (1: the exits "
        "only learn to agree with the full path)",
    )
    skip_target: float = Field(
        0.7,
        ge=0.0,
        le=1.0,
        description="skip gates (mutation.add_skip): the execution rate each gated node is pulled towards "
        "(ConvNet-AIG's target rate t: the share of inputs for which the node runs)",
    )
    skip_penalty: float = Field(
        1.0,
        ge=0.0,
        le=100.0,
        description="skip gates: weight of ConvNet-AIG's target-rate loss, the mean over gated nodes of "
        "(skip_target - execution rate)^2; 0: only the task loss moves the gates",
    )
    threshold_tolerance: float = Field(
        0.005,
        ge=0.0,
        le=1.0,
        description="exit heads: thresholds are fitted on the validation split to the cheapest setting whose "
        "accuracy is within this share of the full path's (0.005: half a point)",
    )

    @field_validator("budget_levels", mode="before")
    @classmethod
    def _levels(cls, v: object) -> object:
        if isinstance(v, (list, tuple)) and not v:
            return ()
        return increasing_budgets(v, "(0, 1)", "[0.5, 0.75]")


class EvolutionConfig(Section):
    """``[evolution]``: population size and when to stop."""

    mode: Literal["search", "grow"] = Field(
        "search",
        description="search: a population evolves; grow: one network grows by bottleneck growth "
        "and training, the way gromo grows one (population 1, no elitism or crossover; `hybrid grow`)",
    )
    population: int = Field(
        64,
        ge=1,
        le=10_000,
        description="members per generation: diversity vs cost per generation; at most 10,000: "
        "the batched engine trains them all at once",
    )
    generations: int = Field(
        100,
        ge=1,
        le=1_000_000,
        description="stop after this many generations at the latest (at most a million)",
    )
    target_metric: float | None = Field(
        None,
        description="stop once the champion's validation task.metric reaches this: at or above it, "
        "at or below for a lower-is-better metric (log_loss, mae, mse) (unset: never)",
    )
    time_budget_s: float | None = Field(
        None,
        gt=0.0,
        description="stop after the generation that brings the search's wall time past this many "
        "seconds (unset: no limit); it counts training, scoring, selection and breeding, not "
        "start-up, writing records or the champion's final fit and test score",
    )
    patience: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="stop after this many generations in a row without a better champion (unset: never); "
        "counted from the champion's generation in the state, so a resumed run stops where it would have",
    )
    final_steps: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="training steps on train + validation for the chosen champion before its test score "
        "(0: none; the validation split has done its job once the champion is chosen)",
    )
    elitism: int = Field(
        1, ge=0, description="best members per species copied unchanged: the best is never lost"
    )
    crossover_rate: float = rate("share of children made by crossover before mutation", 0.25)
    survival_fraction: float = Field(
        0.3,
        gt=0.0,
        le=1.0,
        description="share of each species eligible as parents (NEAT's truncation)",
    )


class SpeciationConfig(Section):
    """``[speciation]``: NEAT species and the compatibility distance coefficients."""

    target_species: int = Field(
        5, ge=1, description="the threshold adapts toward this many species"
    )
    threshold: float = Field(3.0, gt=0.0, description="initial compatibility threshold")
    threshold_step: float = Field(
        0.3, gt=0.0, description="threshold change per generation while off target"
    )
    stagnation: int = Field(
        15,
        ge=1,
        description="generations without improvement before a species is dropped (never the best)",
    )
    # Distance coefficients stay below 1e6 so that a coefficient times a gene count
    # (or a weight difference) keeps the distance a finite, comparable number.
    excess: float = Field(
        DC.excess, ge=0.0, le=1e6, description="distance coefficient c1: excess genes"
    )
    disjoint: float = Field(
        DC.disjoint, ge=0.0, le=1e6, description="distance coefficient c2: disjoint genes"
    )
    weight: float = Field(
        DC.weight,
        ge=0.0,
        le=1e6,
        description="distance coefficient c3: mean weight difference of matching genes",
    )
    width: float = Field(
        DC.width,
        ge=0.0,
        le=1e6,
        description="distance coefficient per neuron of width difference",
    )
    normalise_above: int = Field(
        DC.normalise_above,
        ge=1,
        description="gene counts are normalised only for genomes this large (NEAT)",
    )


class SelectionConfig(Section):
    """``[selection]``: how parents are chosen, and the final champion."""

    method: Literal["tournament", "nsga2"] = Field(
        "tournament",
        description="tournament within species on fitness; nsga2 on (metric, active parameters)",
    )
    tournament_size: int = Field(3, ge=2, description="mild pressure: 3 keeps diversity")
    cost: Literal["parameters", "average_flops"] = Field(
        "parameters",
        description="nsga2's second objective and the short list's: parameters = active parameters; "
        "average_flops = FLOPs per input averaged over the validation split (what exit heads and skip "
        "gates save; smallest_within then picks the cheapest per input)",
    )
    champion: Literal["best", "smallest_within"] = Field(
        "best",
        description="final champion: best = highest validation metric (then smallest); smallest_within = "
        "the smallest net on the short list within epsilon of the best validation metric (smallest by "
        "selection.cost, for both rules: active parameters, or average FLOPs per input)",
    )
    epsilon: float = Field(
        0.005,
        ge=0.0,
        le=1.0,
        description="smallest_within's slack, in metric units: 0.005 is one validation sample in 200, about "
        "the noise of a 200-sample split's accuracy; at most 1 (an accuracy's whole range)",
    )
    champion_objective: Literal["metric", "budget_auc"] = Field(
        "metric",
        description="what the champion rule reads: metric = the task metric at full cost; budget_auc = the mean "
        "of the task metric at each of selection.auc_budgets (the area under the accuracy-vs-budget curve; "
        "feed-forward tasks with a higher-is-better metric; train with training.budgets = 'sandwich')",
    )
    fitness: Literal["metric", "budget_auc"] = Field(
        "metric",
        description="what selection, the champion and the short list rank members on each generation: "
        "metric = the validation metric at full cost; budget_auc = its mean at each of selection.auc_budgets "
        "(with champion_objective = 'budget_auc', the search breeds the networks that rule chooses from; "
        "feed-forward tasks with a higher-is-better metric, no K-fold, no exit heads or skip gates)",
    )
    auc_budgets: Annotated[tuple[float, ...], BeforeValidator(as_tuple)] = Field(
        (0.25, 0.5, 0.75, 1.0),
        description="the budgets (shares of the full network's FLOPs) budget_auc scores each candidate at: "
        "strictly increasing, each in (0, 1]",
    )

    @field_validator("auc_budgets", mode="before")
    @classmethod
    def _budgets(cls, v: object) -> object:
        return increasing_budgets(v, "(0, 1]", "[0.25, 0.5, 0.75, 1.0]")


class MutationSection(Section):
    """``[mutation]``: each operator's probability per child, and its settings."""

    add_node: float = rate("split an edge with a new node (function-preserving growth)", 0.15)
    widen: float = rate("add neurons to a hidden node (function-preserving)", 0.15)
    add_edge: float = rate("add a skip connection (zero weights, function-preserving)", 0.15)
    prune_neurons: float = rate("remove closed (or the weakest) neurons", 0.1)
    prune_edge: float = rate("remove a closed or the weakest edge", 0.1)
    remove_node: float = rate("remove a hidden node, keeping the graph connected", 0.03)
    perturb_weights: float = rate("add relative noise to weights: escapes a local optimum", 0.2)
    mutate_activation: float = rate("swap a hidden node's activation", 0.05)
    reset_gates: float = rate("reopen gates so pruned structure can come back", 0.03)
    add_recurrent_edge: float = rate(
        "add a recurrent edge (reads the previous time step; zero weights, function-preserving): "
        "0 unless the task is a sequence",
        0.0,
    )
    grow_bottleneck: float = rate(
        "widen the hidden node where backprop shows the largest expressivity bottleneck, by TINY's "
        "closed-form neurons (feed-forward tasks)",
        0.0,
    )
    add_node_bottleneck: float = rate(
        "add the new node (between two nodes) with the largest bottleneck gain, TINY's neurons",
        0.0,
    )
    add_edge_bottleneck: float = rate(
        "add the skip edge with the largest bottleneck gain, its least-squares weights", 0.0
    )
    insert_module: float = rate(
        "graft a trained module from [modules] library as a zero-initialised residual branch "
        "(function-preserving; feed-forward tasks): 0 = the search never uses the library",
        0.0,
    )
    add_exit: float = rate(
        "attach an early-exit head to a hidden node (zero weights: function-preserving; feed-forward "
        "classification): inputs the head is sure of stop there",
        0.0,
    )
    add_skip: float = rate(
        "give a hidden node a per-input skip gate (opened with margin: function-preserving; feed-forward): "
        "it learns to skip the node for inputs that do not need it",
        0.0,
    )
    sparsify: float = rate(
        "remove the weakest connections of one edge (magnitude pruning: the edge becomes sparse, "
        "cheaper in parameters and FLOPs; feed-forward)",
        0.0,
    )
    bottleneck_batch: int = Field(
        512,
        ge=8,
        le=1_000_000,
        description="training rows of the bottleneck statistics batch (and as many again for the "
        "amplitude line search); small splits give what they have",
    )
    bottleneck_line: Literal["train", "validation"] = Field(
        "train",
        description="rows the amplitude line search scores: train = as many other training rows as "
        "the statistics batch; validation = a random half of the validation split (held out, as for "
        "the champion: a memorised training batch shows no drop; the other half is the record's)",
    )
    bottleneck_stats: Literal["clean", "noisy"] = Field(
        "clean",
        description="inputs of the bottleneck statistics batch: clean = the training rows as stored; "
        "noisy = with the training's input noise (training.input_noise x standard normal), the "
        "inputs the members learn from, so a member that fits its clean rows still shows the "
        "bottleneck its training sees",
    )
    bottleneck_max_new: int = Field(
        4, ge=1, le=MAX_WIDTH, description=f"at most this many neurons per bottleneck growth; at most {MAX_WIDTH}"
    )
    bottleneck_threshold: float = Field(
        1e-3,
        gt=0.0,
        lt=1.0,
        description="new neurons need a singular value above this share of the largest (relative: "
        "the loss's sum/mean reduction does not change it)",
    )
    bottleneck_significance: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        description="a bottleneck growth is kept only if its loss drop on the line batch is at least "
        "this many standard errors of the per-row drops (a paired z-test; 2 ~ 2.5% false growth); "
        "0: Armijo's sufficient decrease alone",
    )
    bottleneck_split: Literal["tiny", "balanced"] = Field(
        "tiny",
        description="how a bottleneck growth's amplitude is shared: tiny = fan-in and fan-out both "
        "scaled by it (TINY, gromo); balanced = the new neurons' fan-in at unit pre-activation scale, "
        "the fan-out carrying the amplitude (the same first-order change; for relu the same function)",
    )
    bottleneck_amplitude: Literal["largest_drop", "smallest_passing"] = Field(
        "largest_drop",
        description="which amplitude of those that pass the line search is grown: the one with the "
        "largest drop, or the smallest (a new neuron enters at the least amplitude that provably helps)",
    )
    new_node_activation: Activation = Field(
        MC.new_node_activation, description="activation of split nodes: relu splits exactly"
    )
    # Widths are capped at MAX_WIDTH (see there): a wider node runs out of memory.
    max_new_node_width: int = Field(
        MC.max_new_node_width,
        ge=1,
        le=MAX_WIDTH,
        description=f"cap on a split node's width (beyond: truncated SVD); at most {MAX_WIDTH}",
    )
    widen_max: int = Field(
        MC.widen_max,
        ge=1,
        le=MAX_WIDTH,
        description=f"widen adds 1..widen_max neurons: small steps; at most {MAX_WIDTH}",
    )
    max_node_width: int = Field(
        MC.max_node_width,
        ge=1,
        le=MAX_WIDTH,
        description=f"no node grows past this; at most {MAX_WIDTH}: wider nodes run out of memory",
    )
    perturb_std: float = Field(
        MC.perturb_std,
        ge=0.0,
        le=10.0,
        description="relative std of perturb_weights' noise; at most 10: at 1 the noise is already as "
        "large as the weight, and huge values overflow float32",
    )
    perturb_fraction: float = rate("share of arrays perturb_weights touches", MC.perturb_fraction)
    prune_weakest: int = Field(
        MC.prune_weakest,
        ge=1,
        le=MAX_WIDTH,
        description=f"neurons prune_neurons removes when none is closed; at most {MAX_WIDTH}, the widest node",
    )
    sparsify_fraction: float = Field(
        MC.sparsify_fraction,
        gt=0.0,
        le=1.0,
        description="share of an edge's removable connections (beyond one per neuron) sparsify removes, "
        "in (0, 1]",
    )
    activations: Annotated[tuple[Activation, ...], BeforeValidator(as_tuple)] = Field(
        MC.activations, min_length=1, description="activations mutate_activation may pick"
    )

    def rates(self) -> dict[str, float]:
        """Return ``{operator name: probability}`` for every mutation operator."""
        names = ("add_node", "widen", "add_edge", "prune_neurons", "prune_edge", "remove_node",
                 "perturb_weights", "mutate_activation", "reset_gates",
                 "add_recurrent_edge", "grow_bottleneck", "add_node_bottleneck",
                 "add_edge_bottleneck", "insert_module", "add_exit", "add_skip", "sparsify")  # fmt: skip
        return {n: getattr(self, n) for n in names}


class ModulesConfig(Section):
    """``[modules]``: the library of trained modules that ``mutation.insert_module`` grafts in."""

    library: str | None = Field(
        None,
        description="folder of a module library (`hybrid modules add ... --library PATH`); a relative "
        "path is relative to the config file. Unset: no library",
    )
    use: Annotated[tuple[str, ...], BeforeValidator(as_tuple)] = Field(
        (), description="entries the search may graft, by name; empty = every entry of the library"
    )
    frozen: bool = Field(
        True,
        description="grafted modules keep their trained weights (frozen); false = they train with the "
        "rest of the network",
    )
    start: float = rate(
        "share of generation 0's members that start with one graft (entries in turn, placed by "
        "insert_module); 0 = grafts come only from mutation.insert_module",
        0.0,
    )

    @field_validator("use")
    @classmethod
    def _names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not _NAME.fullmatch(name):
                raise ValueError(f"expected library entry names like 'digits-even', got {name!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"expected each entry once, got {list(names)}")
        return names


class ParallelConfig(Section):
    """``[parallel]``: where training jobs run."""

    backend: Literal["none", "joblib", "dask"] = Field(
        "none",
        description="none: in-process (the batched engine needs nothing else); joblib: local processes; dask: a cluster",
    )
    workers: int = Field(
        1,
        ge=1,
        le=1024,
        description="joblib processes or dask jobs in flight; at most 1024: each is a process",
    )
    address: str | None = Field(
        None, description="dask scheduler address, e.g. tcp://host:8786 (unset: a local cluster)"
    )


class CheckpointConfig(Section):
    """``[checkpoint]``: how much history survives a crash."""

    keep: int = Field(
        3,
        ge=1,
        description="complete checkpoints kept: a few, in case the newest is from a bad generation",
    )
    every: int = Field(
        1,
        ge=1,
        description="checkpoint every N generations: 1 loses at most one generation on a crash",
    )
