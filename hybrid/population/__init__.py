"""The batched population engine: P genomes trained in one computation per step.

``PopulationEngine`` packs a population into padded, level-bucketed tensors;
``train_population`` / ``evaluate_population`` mirror ``hybrid.train.train_genome``
/ ``hybrid.metrics.evaluate_genome`` so the search switches engines in one line.
"""

from .adam import BatchedAdamW
from .engine import PopulationEngine, task_losses
from .layout import Layout, pack
from .train import evaluate_engine, evaluate_population, train_engine, train_population

__all__ = [
    "BatchedAdamW",
    "Layout",
    "PopulationEngine",
    "evaluate_engine",
    "evaluate_population",
    "pack",
    "task_losses",
    "train_engine",
    "train_population",
]
