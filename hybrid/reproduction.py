"""Make the next generation: elites, crossover, mutations, gate-driven pruning.

NEAT's reproduction (Stanley & Miikkulainen 2002): each species gets offspring in
proportion to its shared fitness; its best members survive unchanged (elitism), the
rest are children of parents chosen by DEAP tournaments among the species' top
``survival_fraction`` (or, with NSGA-II, among the Pareto survivors of the whole
population). Every child then gets each mutation with its configured probability
and finally loses the structure whose gates closed (``genomes.prune.prune_closed``).
The population size is exactly ``evolution.population`` every generation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from genomes import (
    MUTATIONS,
    OPT_IN,
    Genome,
    GenomeError,
    InnovationTracker,
    MutationConfig,
    MutationRecord,
    NotApplicable,
    crossover,
)
from genomes.prune import prune_closed

from .selection import Candidate, nsga2, tournament
from .speciation import Species, allocate_offspring

__all__ = ["Member", "mutate", "reproduce"]

#: A mutation: ``op(genome, rng, tracker, config) -> (child, record)``.
Operator = Callable[
    [Genome, np.random.Generator, InnovationTracker, MutationConfig], tuple[Genome, MutationRecord]
]


@dataclass(frozen=True)
class Member:
    """A population member: a genome and how it came to be (for the lineage)."""

    id: int
    genome: Genome
    born: int
    parents: tuple[int, ...] = ()
    operators: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        from genomes import to_dict

        return {
            "id": self.id,
            "genome": to_dict(self.genome),
            "born": self.born,
            "parents": list(self.parents),
            "operators": list(self.operators),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Member:
        """Rebuild from ``to_dict`` output."""
        from genomes import from_dict

        return cls(
            id=int(d["id"]),
            genome=from_dict(d["genome"]),
            born=int(d["born"]),
            parents=tuple(int(p) for p in d["parents"]),
            operators=tuple(d["operators"]),
        )


def mutate(
    genome: Genome,
    rates: Mapping[str, float],
    rng: np.random.Generator,
    tracker: InnovationTracker,
    config: MutationConfig,
    informed: Mapping[str, Operator] | None = None,
) -> tuple[Genome, list[MutationRecord]]:
    """Apply each mutation with its probability, then prune closed gates.

    ``informed`` operators (the data-informed ones of :mod:`hybrid.bottleneck`, opt-in)
    go first, while the genome is still the trained parent whose statistics were
    computed; then the registry's, in registry order.

    Raises:
        GenomeError: if the mutations made an invalid child (a bug in an operator),
            naming them and the rule broken: caught here rather than by whichever
            engine or later pruning first trips over the child.
    """
    records: list[MutationRecord] = []
    for name, op in [*(informed or {}).items(), *MUTATIONS.items()]:
        if name in OPT_IN and rates.get(name, 0.0) <= 0.0:
            continue  # draws nothing: runs that never ask for it stay what they were
        if rng.random() >= rates.get(name, 0.0):
            continue
        try:
            genome, rec = op(genome, rng, tracker, config)
        except NotApplicable:
            continue
        records.append(rec)
    if records:
        try:
            genome.validate()
        except GenomeError as e:
            names = ", ".join(str(r) for r in records)
            raise GenomeError(f"mutations {names} made an invalid child: {e}") from e
    genome, rec = prune_closed(genome, config.gate)
    if rec is not None:
        records.append(rec)
    return genome, records


def reproduce(
    genomes: Mapping[int, Genome],
    candidates: Mapping[int, Candidate],
    species: Sequence[Species],
    *,
    population: int,
    elitism: int,
    crossover_rate: float,
    survival_fraction: float,
    method: str,
    tournament_size: int,
    rates: Mapping[str, float],
    mutation_config: MutationConfig,
    rng: np.random.Generator,
    tracker: InnovationTracker,
    generation: int,
    next_id: int,
    informed: Mapping[str, Operator] | None = None,
) -> tuple[list[Member], int]:
    """Return exactly ``population`` members of generation ``generation + 1``.

    Args:
        genomes: this generation's genomes by id (trained, for Lamarckian inheritance).
        candidates: their selection fitness ``(metric, active parameters)`` by id.
        species: this generation's species (stagnant ones already dropped).
        population: the fixed population size.
        elitism: best members per species copied unchanged.
        crossover_rate: probability that a child is a crossover of two parents.
        survival_fraction: share of each species eligible as parents.
        method: "tournament" (within species) or "nsga2" (Pareto survivors).
        tournament_size: DEAP tournament size.
        rates: mutation probabilities by operator name.
        mutation_config: the operators' settings.
        rng: the generation's evolution generator.
        tracker: innovation numbers (already advanced to the new generation).
        generation: the generation just evaluated.
        next_id: the next free genome id.
        informed: data-informed mutations by name (see :func:`mutate`).

    Returns:
        ``(children, next_id)``.
    """
    shares = [float(np.mean([candidates[m].fitness.values[0] for m in s.members])) for s in species]
    counts = allocate_offspring(shares, population)
    pareto: list[int] = []
    if method == "nsga2":
        k = max(2, math.ceil(survival_fraction * len(candidates)))
        pareto = nsga2(list(candidates.values()), min(k, len(candidates)))
    children: list[Member] = []
    for s, count in zip(species, counts, strict=True):
        ranked = sorted(s.members, key=lambda m: candidates[m].fitness, reverse=True)
        n_elite = min(elitism, count, len(ranked))
        for gid in ranked[:n_elite]:
            children.append(
                Member(next_id, genomes[gid], generation + 1, (gid,), (MutationRecord("elite").to_dict(),))
            )
            next_id += 1
        n_children = count - n_elite
        if n_children <= 0:
            continue
        if method == "nsga2":
            pool = [candidates[i] for i in pareto]
        else:
            survivors = ranked[: max(1, math.ceil(survival_fraction * len(ranked)))]
            pool = [candidates[i] for i in survivors]
        for _ in range(n_children):
            child, parents, records = _one_child(
                genomes, pool, crossover_rate, tournament_size, rng, tracker, mutation_config, rates,
                informed,
            )
            children.append(Member(next_id, child, generation + 1, parents, records))
            next_id += 1
    assert len(children) == population, (len(children), population)
    return children, next_id


def _one_child(
    genomes: Mapping[int, Genome],
    pool: Sequence[Candidate],
    crossover_rate: float,
    tournament_size: int,
    rng: np.random.Generator,
    tracker: InnovationTracker,
    config: MutationConfig,
    rates: Mapping[str, float],
    informed: Mapping[str, Operator] | None = None,
) -> tuple[Genome, tuple[int, ...], tuple[dict[str, Any], ...]]:
    records: list[MutationRecord] = []
    if len(pool) >= 2 and rng.random() < crossover_rate:
        a, b = tournament(pool, 2, tournament_size, rng)
        if a == b:
            b = pool[int(rng.integers(len(pool)))].id
        fit = {c.id: c.fitness for c in pool}
        fitter, other = (a, b) if fit[a] >= fit[b] else (b, a)
        genome, rec = crossover(genomes[fitter], genomes[other], rng, config)
        records.append(rec)
        parents: tuple[int, ...] = (fitter, other) if fitter != other else (fitter,)
    else:
        (p,) = tournament(pool, 1, tournament_size, rng)
        genome, parents = genomes[p], (p,)
    genome, more = mutate(genome, rates, rng, tracker, config, informed)
    records.extend(more)
    return genome, parents, tuple(r.to_dict() for r in records)
