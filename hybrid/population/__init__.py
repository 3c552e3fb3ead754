"""The population engine: P genomes trained in one computation per step.

``PopulationEngine`` packs a population into padded, level-bucketed tensors;
``AdaptiveEngine`` runs populations with exit heads or per-input skip gates
(:mod:`~hybrid.population.adaptive`); ``RecurrentEngine`` runs genomes with
recurrent edges over sequences (:mod:`~hybrid.population.sequence` trains and
evaluates it);
``train_population`` / ``evaluate_population`` are the one way the package trains
and evaluates genomes (``hybrid.train.train_genome`` and
``hybrid.metrics.evaluate_genome`` are populations of one).
"""

from .adam import BatchedAdamW
from .adaptive import AdaptiveEngine, AdaptivePass
from .engine import PopulationEngine, task_losses
from .layout import Layout, pack
from .recurrent import RecurrentEngine
from .sequence import (
    evaluate_sequence_engine,
    sequence_metrics,
    train_sequence_engine,
    train_sequence_population,
)
from .train import (
    Trained,
    adaptive_losses,
    adaptive_metrics,
    engine_metrics,
    evaluate_engine,
    evaluate_population,
    train_adaptive,
    train_engine,
    train_population,
)

__all__ = [
    "AdaptiveEngine",
    "AdaptivePass",
    "BatchedAdamW",
    "Layout",
    "PopulationEngine",
    "RecurrentEngine",
    "Trained",
    "adaptive_losses",
    "adaptive_metrics",
    "engine_metrics",
    "evaluate_sequence_engine",
    "evaluate_engine",
    "evaluate_population",
    "pack",
    "sequence_metrics",
    "task_losses",
    "train_adaptive",
    "train_engine",
    "train_population",
    "train_sequence_engine",
    "train_sequence_population",
]
