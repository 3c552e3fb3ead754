"""Structural difference between two stored structures (a parent and its child).

Computed from the structures alone (ids, widths, activations, edges), so it works
for every genome in the store, weights kept or not.
"""

from __future__ import annotations

from dataclasses import dataclass

from .records import EdgeInfo, NodeInfo, Structure

__all__ = ["StructureDiff", "structure_diff"]


@dataclass(frozen=True)
class StructureDiff:
    """What changed from ``before`` to ``after``.

    Attributes:
        nodes_added, nodes_removed: node ids.
        edges_added, edges_removed: ``(src, dst)`` pairs.
        edges_enabled, edges_disabled: edges present in both whose flag flipped.
        widths: ``{node: (old, new)}`` for nodes present in both whose width changed.
        activations: ``{node: (old, new)}`` likewise for activations.
        neurons: change in the number of hidden neurons (all hidden nodes).
        connections: ``(src, dst, old, new)`` for edges present in both, sparse on
            either side (``mutation.sparsify``), whose connection count changed (a
            dense edge counts width x width).
    """

    nodes_added: tuple[int, ...] = ()
    nodes_removed: tuple[int, ...] = ()
    edges_added: tuple[tuple[int, int], ...] = ()
    edges_removed: tuple[tuple[int, int], ...] = ()
    edges_enabled: tuple[tuple[int, int], ...] = ()
    edges_disabled: tuple[tuple[int, int], ...] = ()
    widths: tuple[tuple[int, int, int], ...] = ()
    activations: tuple[tuple[int, str, str], ...] = ()
    neurons: int = 0
    connections: tuple[tuple[int, int, int, int], ...] = ()

    @property
    def empty(self) -> bool:
        """Whether nothing structural changed."""
        return self == StructureDiff()

    def parts(self) -> list[str]:
        """Return the changes as short phrases, e.g. ``["+node 12", "-edge 3->1"]``."""

        def ids(label: str, xs: tuple) -> list[str]:
            if not xs:
                return []
            items = [f"{x[0]}->{x[1]}" if isinstance(x, tuple) else str(x) for x in xs]
            return [f"{label}{'s' if len(xs) > 1 and label[-1].isalpha() else ''} {' '.join(items)}"]

        out = ids("+node", self.nodes_added) + ids("-node", self.nodes_removed)
        out += ids("+edge", self.edges_added) + ids("-edge", self.edges_removed)
        out += ids("enabled:", self.edges_enabled) + ids("disabled:", self.edges_disabled)
        out += [f"node {n} width {a}->{b}" for n, a, b in self.widths]
        out += [f"node {n} {a}->{b}" for n, a, b in self.activations]
        out += [f"edge {s}->{d} connections {a}->{b}" for s, d, a, b in self.connections]
        if self.neurons:
            out.append(f"{self.neurons:+d} neuron{'s' if abs(self.neurons) != 1 else ''}")
        return out

    def __str__(self) -> str:
        return ", ".join(self.parts()) if not self.empty else "no structural change"


def structure_diff(before: Structure, after: Structure) -> StructureDiff:
    """Return what changed structurally from ``before`` to ``after``.

    Args:
        before: the parent's structure.
        after: the child's structure.

    Returns:
        The :class:`StructureDiff`, ids sorted ascending.
    """
    nb = {n.id: n for n in before.nodes}
    na = {n.id: n for n in after.nodes}
    eb = {(e.src, e.dst): e for e in before.edges}
    ea = {(e.src, e.dst): e for e in after.edges}
    both_e = sorted(eb.keys() & ea.keys())
    both_n = sorted(nb.keys() & na.keys())
    return StructureDiff(
        nodes_added=tuple(sorted(na.keys() - nb.keys())),
        nodes_removed=tuple(sorted(nb.keys() - na.keys())),
        edges_added=tuple(sorted(ea.keys() - eb.keys())),
        edges_removed=tuple(sorted(eb.keys() - ea.keys())),
        edges_enabled=tuple(e for e in both_e if ea[e].enabled and not eb[e].enabled),
        edges_disabled=tuple(e for e in both_e if eb[e].enabled and not ea[e].enabled),
        widths=tuple((n, nb[n].width, na[n].width) for n in both_n if nb[n].width != na[n].width),
        activations=tuple(
            (n, nb[n].activation, na[n].activation) for n in both_n if nb[n].activation != na[n].activation
        ),
        neurons=after.hidden_neurons - before.hidden_neurons,
        connections=tuple(
            (s, d, _connections(nb, eb[s, d]), _connections(na, ea[s, d]))
            for s, d in both_e
            if (eb[s, d].connections is not None or ea[s, d].connections is not None)
            and _connections(nb, eb[s, d]) != _connections(na, ea[s, d])
        ),
    )


def _connections(nodes: dict[int, NodeInfo], e: EdgeInfo) -> int:
    """An edge's connections: its stored count on a sparse edge, else width x width."""
    if e.connections is not None:
        return e.connections
    return nodes[e.dst].width * nodes[e.src].width
