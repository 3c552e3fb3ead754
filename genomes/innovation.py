"""Innovation numbers: the ids that let genomes be aligned gene by gene (NEAT)."""

from __future__ import annotations

from typing import Any

from ._errors import GenomeError

__all__ = ["InnovationTracker"]


#: Ids stay exact in JSON readers that hold numbers as doubles.
_MAX_ID = 2**53


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _count(data: dict[str, Any], key: str) -> int:
    v = data[key]
    if not _is_int(v) or not 0 <= v <= _MAX_ID:
        raise GenomeError(f"innovation tracker.{key}: should be an int in [0, 2**53], got {v!r:.40}")
    return v


def _id(v: Any, where: str, next_id: int) -> int:
    if not _is_int(v) or not 0 <= v < next_id:
        raise GenomeError(f"{where}: should be an id in [0, next_id = {next_id}), got {v!r:.40}")
    return v


def _id_table(data: dict[str, Any], key: str, next_id: int) -> dict[tuple[int, int], int]:
    rows = data[key]
    if not isinstance(rows, list):
        raise GenomeError(f"innovation tracker.{key}: should be a list, got {rows!r:.40}")
    table: dict[tuple[int, int], int] = {}
    for k, row in enumerate(rows):
        where = f"innovation tracker.{key}[{k}]"
        if not isinstance(row, list) or len(row) != 3:
            raise GenomeError(f"{where}: should be [src, dst, id], got {row!r:.40}")
        src, dst = (_id(v, where, _MAX_ID + 1) for v in row[:2])
        i = _id(row[2], where, next_id)
        if (src, dst) in table:
            raise GenomeError(f"{where}: {src}->{dst} appears twice")
        table[src, dst] = i
    return table


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
        self._recurrent: dict[tuple[int, int], int] = {}

    def fresh(self) -> int:
        """Return a new id, never handed out before."""
        i = self.next_id
        self.next_id += 1
        return i

    def edge(self, src: int, dst: int, recurrent: bool = False) -> int:
        """Return the innovation number of edge ``src -> dst``.

        A recurrent edge is another gene than the feed-forward edge of the same pair
        and gets its own number, so crossover and distance never match the two.
        """
        table = self._recurrent if recurrent else self._edges
        key = (int(src), int(dst))
        if key not in table:
            table[key] = self.fresh()
        return table[key]

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
        out: dict[str, Any] = {
            "next_id": self.next_id,
            "generation": self.generation,
            "edges": [[s, d, i] for (s, d), i in sorted(self._edges.items())],
            "splits": [[s, d, i] for (s, d), i in sorted(self._splits.items())],
            "named": dict(sorted(self._named.items())),
        }
        if self._recurrent:  # only then: a feed-forward run's checkpoints stay what they were
            out["recurrent_edges"] = [[s, d, i] for (s, d), i in sorted(self._recurrent.items())]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> InnovationTracker:
        """Rebuild a tracker from ``to_dict`` output.

        Raises:
            GenomeError: naming the key that is missing, of the wrong type, negative,
                or an id not below ``next_id`` (which would be handed out twice).
        """
        if not isinstance(data, dict):
            raise GenomeError(f"innovation tracker: should be an object, got {type(data).__name__}")
        for key in ("next_id", "generation", "edges", "splits", "named"):
            if key not in data:
                raise GenomeError(f"innovation tracker: missing key {key!r}")
        next_id, generation = _count(data, "next_id"), _count(data, "generation")
        t = cls(next_id, generation)
        t._edges = _id_table(data, "edges", next_id)
        t._splits = _id_table(data, "splits", next_id)
        if "recurrent_edges" in data:
            t._recurrent = _id_table(data, "recurrent_edges", next_id)
        named = data["named"]
        if not isinstance(named, dict):
            raise GenomeError(f"innovation tracker.named: should be an object, got {named!r:.40}")
        t._named = {}
        for k, v in named.items():
            t._named[str(k)] = _id(v, f"innovation tracker.named[{k!r:.40}]", next_id)
        return t

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InnovationTracker) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (
            f"InnovationTracker(next_id={self.next_id}, generation={self.generation}, "
            f"edges={len(self._edges)})"
        )
