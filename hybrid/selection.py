"""Parent selection through DEAP: tournament within a species, or NSGA-II.

Individuals carry a DEAP ``Fitness`` with weights ``(1, -1)`` over
``(validation metric, active parameters)``: tournaments compare lexicographically
(metric first, then the smaller network wins a tie), NSGA-II (Deb et al. 2002)
uses both objectives. DEAP draws from Python's global ``random``; ``deap_random``
seeds it from our explicit generator for the duration of a call and restores it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from deap import base, tools

__all__ = ["Candidate", "deap_random", "nsga2", "tournament"]


class _Fitness(base.Fitness):
    weights = (1.0, -1.0)


class Candidate:
    """A selectable member: its genome id and DEAP fitness ``(metric, active_params)``."""

    __slots__ = ("id", "fitness")

    def __init__(self, gid: int, metric: float, active_params: int) -> None:
        self.id = gid
        self.fitness = _Fitness((float(metric), float(active_params)))

    def __repr__(self) -> str:
        return f"Candidate({self.id}, {self.fitness.values})"


@contextmanager
def deap_random(rng: np.random.Generator) -> Iterator[None]:
    """Seed Python's ``random`` from ``rng`` inside the block, then restore it."""
    saved = random.getstate()
    random.seed(int(rng.integers(2**63)))
    try:
        yield
    finally:
        random.setstate(saved)


def tournament(cands: Sequence[Candidate], k: int, size: int, rng: np.random.Generator) -> list[int]:
    """Return ``k`` ids chosen by tournaments of ``size`` (DEAP ``selTournament``)."""
    with deap_random(rng):
        return [c.id for c in tools.selTournament(list(cands), k, tournsize=min(size, len(cands)))]


def nsga2(cands: Sequence[Candidate], k: int) -> list[int]:
    """Return the ids of the ``k`` survivors of NSGA-II (DEAP ``selNSGA2``); deterministic."""
    return [c.id for c in tools.selNSGA2(list(cands), k)]

