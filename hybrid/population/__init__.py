"""The population engine: P genomes trained in one computation per step.

``PopulationEngine`` packs a population into padded, level-bucketed tensors;
``train_population`` / ``evaluate_population`` are the one way the package trains
and evaluates genomes (``hybrid.train.train_genome`` and
``hybrid.metrics.evaluate_genome`` are populations of one).
"""

from .adam import BatchedAdamW
from .engine import PopulationEngine, task_losses
from .layout import Layout, pack
from .train import (
    Trained,
    engine_metrics,
    evaluate_engine,
    evaluate_population,
    train_engine,
    train_population,
)

__all__ = [
    "BatchedAdamW",
    "Layout",
    "PopulationEngine",
    "Trained",
    "engine_metrics",
    "evaluate_engine",
    "evaluate_population",
    "pack",
    "task_losses",
    "train_engine",
    "train_population",
]
