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
]


def bottleneck_data(task: Task, batch: int, seed: int, loss: str, line: str = "train") -> Data:
    """Return a generation's batches, drawn with ``seed``.

    The statistics batch is ``batch`` training rows. The line batch is, with
    ``line = "train"``, up to ``batch`` other training rows (half each when the split
    is smaller than ``2 * batch``); with ``line = "validation"``, the validation split
    (the amplitude is then chosen on held-out rows, like the champion).
    """
    n = len(task.X_train)
    order = np.random.default_rng(seed).permutation(n)
    if line == "validation":
        s = order[: min(batch, n)]
        x_line, y_line = task.X_val, task.y_val
    else:
        k = max(min(batch, n // 2) if n < 2 * batch else batch, 1)
        s, rest = order[:k], (order[k : 2 * k] if n > k else order[:k])
        x_line, y_line = task.X_train[rest], task.y_train[rest]
    return Data(
        x_stats=task.X_train[s],
        y_stats=task.y_train[s],
        x_line=x_line,
        y_line=y_line,
        x_val=task.X_val,
        y_val=task.y_val,
        loss=loss,
    )


def bottleneck_settings(config: Config) -> Settings:
    """Return the candidate settings a config asks for (``[mutation]`` keys)."""
    m = config.mutation
    return Settings(
        statistical_threshold=m.bottleneck_threshold,
        max_new=m.bottleneck_max_new,
        max_node_width=m.max_node_width,
        new_node_activation=m.new_node_activation,
    )
