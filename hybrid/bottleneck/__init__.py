"""Bottleneck-informed growth: TINY's optimal new neurons (Verbockhaven et al., TMLR 2024).

Backprop says where a network is too small: the part of each node's pre-activation
gradient its own weights cannot follow (the *expressivity bottleneck*) and, in closed
form, the new neurons, nodes or skip edges that follow it best.

* :mod:`.stats`: every member's moments from one pass of the population engine;
* :mod:`.solve`: the closed-form solves, batched over members and nodes;
* :mod:`.candidates`: widen / new node / skip edge candidates and their gains;
* :mod:`.ops`: the mutations ``grow_bottleneck``, ``add_node_bottleneck`` and
  ``add_edge_bottleneck`` (amplitude by line search, figures in the lineage).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .candidates import Candidate, Settings, best_candidates
from .ops import OPERATORS, BottleneckGrowth, Data, materialize
from .stats import MemberStats, collect

if TYPE_CHECKING:
    from ..config import Config
    from ..tasks import Task

__all__ = [
    "OPERATORS",
    "BottleneckGrowth",
    "Candidate",
    "Data",
    "MemberStats",
    "Settings",
    "best_candidates",
    "bottleneck_data",
    "bottleneck_settings",
    "collect",
    "materialize",
    "stats_noise",
]


def bottleneck_data(
    task: Task, batch: int, seed: int, loss: str, line: str = "train", noise: float = 0.0
) -> Data:
    """Return a generation's batches, drawn with ``seed``.

    The statistics batch is ``batch`` training rows. With ``line = "train"`` the line
    batch is up to ``batch`` other training rows (half each when the split is smaller
    than ``2 * batch``) and the validation split is the held-out record; with
    ``line = "validation"`` the validation split is halved at random: one half is the
    line batch (the amplitude is chosen on held-out rows, as the champion is), the other
    the held-out record. ``noise > 0`` adds ``noise`` times standard normal noise to
    the statistics batch's inputs (``mutation.bottleneck_stats = "noisy"``: the inputs
    the members train on); the line batch and the record stay clean.
    """
    rng = np.random.default_rng(seed)
    n = len(task.X_train)
    order = rng.permutation(n)
    if line == "validation":
        s = order[: min(batch, n)]
        halves = np.array_split(rng.permutation(len(task.X_val)), 2)
        x_line, y_line = task.X_val[halves[0]], task.y_val[halves[0]]
        x_val, y_val = task.X_val[halves[1]], task.y_val[halves[1]]
    else:
        k = max(min(batch, n // 2) if n < 2 * batch else batch, 1)
        s, rest = order[:k], (order[k : 2 * k] if n > k else order[:k])
        x_line, y_line = task.X_train[rest], task.y_train[rest]
        x_val, y_val = task.X_val, task.y_val
    x_stats = task.X_train[s]
    if noise > 0:
        x_stats = (x_stats + noise * rng.standard_normal(x_stats.shape)).astype(x_stats.dtype)
    return Data(
        x_stats=x_stats,
        y_stats=task.y_train[s],
        x_line=x_line,
        y_line=y_line,
        x_val=x_val,
        y_val=y_val,
        loss=loss,
    )


def stats_noise(config: Config) -> float:
    """Return the input noise of the statistics batch a config asks for (0: clean rows)."""
    return config.training.input_noise if config.mutation.bottleneck_stats == "noisy" else 0.0


def bottleneck_settings(config: Config) -> Settings:
    """Return the candidate settings a config asks for (``[mutation]`` keys)."""
    m = config.mutation
    return Settings(
        statistical_threshold=m.bottleneck_threshold,
        max_new=m.bottleneck_max_new,
        max_node_width=m.max_node_width,
        new_node_activation=m.new_node_activation,
        significance=m.bottleneck_significance,
        split=m.bottleneck_split,
        amplitude=m.bottleneck_amplitude,
    )
