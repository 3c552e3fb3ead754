"""NEAT speciation: group genomes by compatibility distance, share fitness, cull stagnation.

Stanley & Miikkulainen (2002), "Evolving Neural Networks through Augmenting
Topologies", section 3.3. The compatibility threshold is adapted each generation
toward a target number of species (as in later NEAT implementations), and a
species whose best fitness has not improved for ``stagnation`` generations is
dropped unless it holds the population's best genome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from genomes import Genome

__all__ = ["Species", "adapt_threshold", "allocate_offspring", "drop_stagnant", "speciate"]


@dataclass(frozen=True)
class Species:
    """A species: a representative genome and the ids of this generation's members."""

    id: int
    representative: Genome
    created: int
    best_fitness: float = -np.inf
    last_improved: int = 0
    members: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the representative as a genome dict)."""
        from genomes import to_dict

        return {
            "id": self.id,
            "representative": to_dict(self.representative),
            "created": self.created,
            "best_fitness": None if not np.isfinite(self.best_fitness) else float(self.best_fitness),
            "last_improved": self.last_improved,
            "members": list(self.members),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Species:
        """Rebuild a species from ``to_dict`` output."""
        from genomes import from_dict

        best = d["best_fitness"]
        return cls(
            id=int(d["id"]),
            representative=from_dict(d["representative"]),
            created=int(d["created"]),
            best_fitness=-np.inf if best is None else float(best),
            last_improved=int(d["last_improved"]),
            members=tuple(int(m) for m in d["members"]),
        )


def speciate(
    genomes: Mapping[int, Genome],
    fitness: Mapping[int, float],
    species: Sequence[Species],
    threshold: float,
    distance: Callable[[Genome, Genome], float],
    generation: int,
    next_species_id: int,
) -> tuple[list[Species], int]:
    """Assign every genome to the first species whose representative is within ``threshold``.

    Args:
        genomes: this generation's genomes by id (iteration order decides ties).
        fitness: scalar fitness by id (higher is better; a failed member has the
            search's ``FAILED_METRIC``, below any real one).
        species: last generation's species (their representatives are kept).
        threshold: compatibility threshold.
        distance: the compatibility distance, ``distance(a, b) -> float``.
        generation: the current generation (for stagnation bookkeeping).
        next_species_id: the id the next new species gets.

    Returns:
        ``(species, next_species_id)``: the non-empty species with their members,
        best fitness and stagnation counters updated, and representatives set to each
        species' best member for the next generation.
    """
    reps = [s.representative for s in species]
    groups: list[list[int]] = [[] for _ in species]
    born: list[Genome] = []  # the first member (and representative) of each new species
    for gid, genome in genomes.items():
        for k, rep in enumerate(reps):
            if distance(rep, genome) < threshold:
                groups[k].append(gid)
                break
        else:
            reps.append(genome)
            groups.append([gid])
            born.append(genome)
    olds = list(species) + [
        Species(next_species_id + k, genome, generation, -np.inf, generation) for k, genome in enumerate(born)
    ]
    next_species_id += len(born)
    alive = []
    for s, members in zip(olds, groups, strict=True):
        if not members:
            continue
        best_id = max(members, key=lambda m: fitness[m])
        best, improved = s.best_fitness, s.last_improved
        if fitness[best_id] > best:
            best, improved = float(fitness[best_id]), generation
        alive.append(
            replace(s, representative=genomes[best_id], best_fitness=best, last_improved=improved, members=tuple(members))
        )
    return alive, next_species_id


def adapt_threshold(threshold: float, n_species: int, target: int, step: float, floor: float = 0.05) -> float:
    """Move the threshold one step toward producing ``target`` species."""
    if n_species < target:
        return max(floor, threshold - step)
    if n_species > target:
        return threshold + step
    return threshold


def drop_stagnant(species: Sequence[Species], generation: int, stagnation: int, best_id: int) -> list[Species]:
    """Return the species that improved within ``stagnation`` generations (or hold ``best_id``)."""
    kept = [
        s
        for s in species
        if generation - s.last_improved < stagnation or best_id in s.members
    ]
    return kept or list(species)


def allocate_offspring(shares: Sequence[float], total: int) -> list[int]:
    """Split ``total`` children among species in proportion to ``shares``.

    Every species gets at least one child while ``total`` allows; the rest goes by
    largest remainder, so the counts always sum to exactly ``total``.
    """
    n = len(shares)
    if n == 0 or total <= 0:
        return [0] * n
    s = np.asarray(shares, dtype=np.float64)
    s = np.where(np.isfinite(s), s, 0.0)
    s = s - s.min() + 1e-3  # fitness sharing works on non-negative shares
    base = np.zeros(n, dtype=int)
    order = np.argsort(-s, kind="stable")
    guaranteed = min(n, total)
    base[order[:guaranteed]] = 1
    rest = total - guaranteed
    if rest > 0:
        quota = s / s.sum() * rest
        floor = np.floor(quota).astype(int)
        base += floor
        left = rest - int(floor.sum())
        remainder_order = np.argsort(-(quota - floor), kind="stable")
        base[remainder_order[:left]] += 1
    return base.tolist()
