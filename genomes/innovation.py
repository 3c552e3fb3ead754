"""Innovation numbers: the ids that let genomes be aligned gene by gene (NEAT)."""

from __future__ import annotations

from typing import Any

from ._errors import GenomeError

__all__ = ["InnovationTracker"]


class InnovationTracker:
    """Hand out node and edge ids so that equal structural changes get equal ids.

    * Edge ids are keyed by ``(src, dst)`` for the whole run: every genome that
      ever connects ``src -> dst`` uses the same innovation number, so crossover
      aligns them.
    * A node made by splitting edge ``src -> dst`` gets the same id for every
      genome that makes that split in the same generation (NEAT's rule); a later
      generation splitting the same edge gets a fresh id.
    * The input and output nodes are ids 0 and 1 in every genome of a run.

    Example:
        >>> t = InnovationTracker()
        >>> t.edge(0, 1) == t.edge(0, 1)
        True
        >>> a = t.split_node(0, 1); b = t.split_node(0, 1); a == b
        True
    """

    INPUT = 0
    OUTPUT = 1

    def __init__(self, next_id: int = 2, generation: int = 0) -> None:
        self.next_id = next_id
        self.generation = generation
        self._edges: dict[tuple[int, int], int] = {}
        self._splits: dict[tuple[int, int], int] = {}
        self._named: dict[str, int] = {}

    def fresh(self) -> int:
        """Return a new id, never handed out before."""
        i = self.next_id
        self.next_id += 1
        return i

    def edge(self, src: int, dst: int) -> int:
        """Return the innovation number of edge ``src -> dst``."""
        key = (int(src), int(dst))
        if key not in self._edges:
            self._edges[key] = self.fresh()
        return self._edges[key]

    def split_node(self, src: int, dst: int) -> int:
        """Return the id of the node that splits edge ``src -> dst`` this generation."""
        key = (int(src), int(dst))
        if key not in self._splits:
            self._splits[key] = self.fresh()
        return self._splits[key]

    def named_node(self, name: str) -> int:
        """Return a run-wide id for a named node (the initial hidden nodes)."""
        if name not in self._named:
            self._named[name] = self.fresh()
        return self._named[name]

    def next_generation(self) -> None:
        """Start a new generation: node splits get fresh ids from now on."""
        self.generation += 1
        self._splits.clear()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict from which ``from_dict`` rebuilds this tracker."""
        return {
            "next_id": self.next_id,
            "generation": self.generation,
            "edges": [[s, d, i] for (s, d), i in sorted(self._edges.items())],
            "splits": [[s, d, i] for (s, d), i in sorted(self._splits.items())],
            "named": dict(sorted(self._named.items())),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InnovationTracker:
        """Rebuild a tracker from ``to_dict`` output.

        Raises:
            GenomeError: if a key is missing or has the wrong shape.
        """
        try:
            t = cls(int(data["next_id"]), int(data["generation"]))
            t._edges = {(int(s), int(d)): int(i) for s, d, i in data["edges"]}
            t._splits = {(int(s), int(d)): int(i) for s, d, i in data["splits"]}
            t._named = {str(k): int(v) for k, v in data["named"].items()}
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise GenomeError(f"innovation tracker: malformed data ({exc!r})") from None
        return t

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InnovationTracker) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (
            f"InnovationTracker(next_id={self.next_id}, generation={self.generation}, "
            f"edges={len(self._edges)})"
        )
