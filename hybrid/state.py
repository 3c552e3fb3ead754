"""The search's state between generations: one frozen record, and its checked JSON form.

A :class:`SearchState` is everything a search needs to run its next generation
(the population, the species, the compatibility threshold, the innovation
tracker, the champion so far and the counters). It is what a checkpoint holds
(``state.to_dict()`` is the checkpoint's ``state``), and :func:`hybrid.generation.step`
maps one state to the next. Randomness is not part of it: every generation's
generators are derived from ``(run.seed, generation)``.

Reading a state back (:meth:`SearchState.from_dict`) validates it: a malformed
``state.json`` is one :class:`~hybrid.errors.RunDirError` naming the file, the key
and what was expected, never a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genomes import Genome, GenomeError, InnovationTracker, from_dict, to_dict

from .errors import RunDirError
from .reproduction import Member
from .speciation import Species

__all__ = ["Champion", "SearchState"]


@dataclass(frozen=True)
class Champion:
    """The best genome of any generation so far (by validation metric or budget AUC, then size).

    Only a member with a finite validation score can be the champion.
    """

    id: int
    generation: int
    metric: float
    active_params: int
    flops: int
    val_loss: float
    genome: Genome
    #: FLOPs per validation input under the exit rule, kept when ``selection.cost =
    #: "average_flops"``: the short list's cost then (None: the active parameters).
    average_flops: float | None = None
    #: budget AUC on validation, kept when ``selection.fitness = "budget_auc"``: what
    #: the champion and the short list rank then (None: ``metric``).
    auc: float | None = None

    @property
    def cost(self) -> float:
        """The short list's second objective: ``average_flops`` when kept, else ``active_params``."""
        return float(self.active_params) if self.average_flops is None else self.average_flops

    @property
    def score(self) -> float:
        """The short list's first objective: ``auc`` when kept, else ``metric``."""
        return self.metric if self.auc is None else self.auc

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready record (the form ``score_champion`` takes)."""
        d = {
            "id": self.id,
            "generation": self.generation,
            "metric": self.metric,
            "active_params": self.active_params,
            "flops": self.flops,
            "val_loss": self.val_loss,
            "genome": to_dict(self.genome),
        }
        if self.average_flops is not None:  # a run selecting on parameters writes what it wrote
            d["average_flops"] = self.average_flops
        if self.auc is not None:  # a run ranking on the metric writes what it wrote
            d["auc"] = self.auc
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Champion:
        """Rebuild from :meth:`to_dict` output (unchecked: see ``SearchState.from_dict``)."""
        return cls(
            id=int(d["id"]),
            generation=int(d["generation"]),
            metric=float(d["metric"]),
            active_params=int(d["active_params"]),
            flops=int(d["flops"]),
            val_loss=float(d["val_loss"]),
            genome=from_dict(d["genome"]),
            average_flops=None if d.get("average_flops") is None else float(d["average_flops"]),
            auc=None if d.get("auc") is None else float(d["auc"]),
        )


@dataclass(frozen=True)
class SearchState:
    """A search between two generations.

    Attributes:
        generation: the next generation to run (the number completed so far).
        members: that generation's population, in id order of birth.
        species: the species of the last completed generation (representatives
            carry over; empty before generation 0).
        threshold: the compatibility threshold the next speciation uses.
        tracker: innovation numbers handed out so far (``step`` works on a copy).
        champion: the best member so far with a finite score, or None.
        next_id: the next free genome id.
        next_species_id: the next free species id.
        elapsed_s: wall time spent in generations so far (for the time budget).
        finished: why the search stopped ("target_metric", "generations",
            "patience", "time_budget", or a reason given to ``Search.stop``), or None.
        shortlist: the capped Pareto front of (validation metric, active
            parameters) over every member scored so far, with weights
            (:mod:`hybrid.shortlist`); the final champion rule chooses from it.
        fold_genomes: K-fold fitness (:mod:`hybrid.folds`): each member's fold copies
            1 .. K-1 by member id, of its genome's structure (the genome is fold 0);
            empty when the task has no folds.
    """

    generation: int
    members: tuple[Member, ...]
    species: tuple[Species, ...]
    threshold: float
    tracker: InnovationTracker
    champion: Champion | None
    next_id: int
    next_species_id: int
    elapsed_s: float = 0.0
    finished: str | None = None
    shortlist: tuple[Champion, ...] = ()
    fold_genomes: Mapping[int, tuple[Genome, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form a checkpoint stores (``fold_genomes`` only when there are some)."""
        out = {
            "generation": self.generation,
            "members": [m.to_dict() for m in self.members],
            "species": [s.to_dict() for s in self.species],
            "threshold": self.threshold,
            "next_id": self.next_id,
            "next_species_id": self.next_species_id,
            "tracker": self.tracker.to_dict(),
            "champion": None if self.champion is None else self.champion.to_dict(),
            "elapsed_s": self.elapsed_s,
            "finished": self.finished,
            "shortlist": [c.to_dict() for c in self.shortlist],
        }
        if self.fold_genomes:
            out["fold_genomes"] = [
                {"id": m.id, "genomes": [to_dict(g) for g in self.fold_genomes[m.id]]}
                for m in self.members
            ]
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = "state") -> SearchState:
        """Check and rebuild a state from :meth:`to_dict` output.

        Args:
            data: the decoded JSON.
            source: what to name in an error (the file, e.g. ``.../state.json``).

        Raises:
            RunDirError: one line naming ``source``, the dotted key and what was
                expected (a missing or mistyped key, a genome or tracker that
                ``genomes`` refuses).
        """
        try:
            doc = _StateDoc.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            got = "" if err["type"] == "missing" else f", got {_short(err['input'])}"
            raise RunDirError(f"{source}: state.{key}: {err['msg'].lower()}{got}") from None
        members = tuple(
            Member(
                id=m.id,
                genome=_genome(m.genome, source, f"members[{k}].genome"),
                born=m.born,
                parents=tuple(m.parents),
                operators=tuple(m.operators),
            )
            for k, m in enumerate(doc.members)
        )
        return cls(
            generation=doc.generation,
            members=members,
            species=tuple(
                Species(
                    id=s.id,
                    representative=_genome(s.representative, source, f"species[{k}].representative"),
                    created=s.created,
                    best_fitness=-math.inf if s.best_fitness is None else s.best_fitness,
                    last_improved=s.last_improved,
                    members=tuple(s.members),
                )
                for k, s in enumerate(doc.species)
            ),
            threshold=doc.threshold,
            tracker=_tracker(doc.tracker, source),
            champion=None if doc.champion is None else _champion(doc.champion, source, "champion"),
            next_id=doc.next_id,
            next_species_id=doc.next_species_id,
            elapsed_s=doc.elapsed_s,
            finished=doc.finished,
            shortlist=_shortlist(doc, source),
            fold_genomes=_fold_genomes(doc, members, source),
        )


# ----------------------------------------------------------------- validation
class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _MemberDoc(_Doc):
    id: int = Field(ge=0)
    genome: dict[str, Any]
    born: int = Field(ge=0)
    parents: list[int]
    operators: list[dict[str, Any]]


class _SpeciesDoc(_Doc):
    id: int = Field(ge=0)
    representative: dict[str, Any]
    created: int = Field(ge=0)
    best_fitness: float | None
    last_improved: int = Field(ge=0)
    members: list[int]


class _ChampionDoc(_Doc):
    id: int = Field(ge=0)
    generation: int = Field(ge=0)
    metric: float = Field(allow_inf_nan=False)
    active_params: int = Field(ge=0)
    flops: int = Field(ge=0)
    val_loss: float = Field(allow_inf_nan=False)
    genome: dict[str, Any]
    average_flops: float | None = Field(None, ge=0, allow_inf_nan=False)  # selection.cost = "average_flops"
    auc: float | None = Field(None, allow_inf_nan=False)  # selection.fitness = "budget_auc"


class _FoldDoc(_Doc):
    id: int = Field(ge=0)
    genomes: list[dict[str, Any]] = Field(min_length=1)


class _StateDoc(_Doc):
    generation: int = Field(ge=0)
    members: list[_MemberDoc] = Field(min_length=1)
    species: list[_SpeciesDoc]
    threshold: float = Field(gt=0, allow_inf_nan=False)
    next_id: int = Field(ge=0)
    next_species_id: int = Field(ge=0)
    tracker: dict[str, Any]
    champion: _ChampionDoc | None
    elapsed_s: float = Field(ge=0, allow_inf_nan=False)
    finished: str | None = None  # older checkpoints of unfinished runs leave it out
    shortlist: list[_ChampionDoc] | None = None  # older checkpoints leave it out: the champion alone
    fold_genomes: list[_FoldDoc] | None = None  # only with K-fold fitness


def _fold_genomes(doc: _StateDoc, members: tuple[Member, ...], source: str) -> dict[int, tuple[Genome, ...]]:
    """The members' fold copies, checked: one entry per member in order, K - 1 copies of its structure."""
    if doc.fold_genomes is None:
        return {}
    if [f.id for f in doc.fold_genomes] != [m.id for m in members]:
        raise RunDirError(
            f"{source}: state.fold_genomes: expected one entry per member in order "
            f"(ids {[m.id for m in members]}), got ids {[f.id for f in doc.fold_genomes]}"
        )
    out: dict[int, tuple[Genome, ...]] = {}
    n = len(doc.fold_genomes[0].genomes)
    for k, (f, m) in enumerate(zip(doc.fold_genomes, members, strict=True)):
        if len(f.genomes) != n:
            raise RunDirError(
                f"{source}: state.fold_genomes[{k}].genomes: expected {n} fold copies like "
                f"member {members[0].id}'s, got {len(f.genomes)}"
            )
        copies = tuple(_genome(g, source, f"fold_genomes[{k}].genomes[{j}]") for j, g in enumerate(f.genomes))
        for j, g in enumerate(copies):
            if g.structure_key() != m.genome.structure_key():
                raise RunDirError(
                    f"{source}: state.fold_genomes[{k}].genomes[{j}]: expected the structure of "
                    f"member {m.id}'s genome (nodes, widths, edges), got another"
                )
        out[m.id] = copies
    return out


def _champion(doc: _ChampionDoc, source: str, key: str) -> Champion:
    return Champion(**doc.model_dump(exclude={"genome"}), genome=_genome(doc.genome, source, f"{key}.genome"))


def _shortlist(doc: _StateDoc, source: str) -> tuple[Champion, ...]:
    """The checkpoint's short list; one without it (an older checkpoint) gets the champion alone."""
    if doc.shortlist is None:
        return () if doc.champion is None else (_champion(doc.champion, source, "champion"),)
    return tuple(_champion(c, source, f"shortlist[{k}]") for k, c in enumerate(doc.shortlist))


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _genome(d: dict[str, Any], source: str, key: str) -> Genome:
    try:
        return from_dict(d)
    except GenomeError as exc:
        raise RunDirError(f"{source}: state.{key}: not a valid genome ({exc})") from None


def _tracker(d: dict[str, Any], source: str) -> InnovationTracker:
    try:
        return InnovationTracker.from_dict(d)
    except GenomeError as exc:
        raise RunDirError(f"{source}: state.tracker: not a valid innovation tracker ({exc})") from None
