"""Draw a genome as a layered graph (PNG, matplotlib's Agg canvas, no pyplot).

Layers are topological generations of the feed-forward graph (input left, output
right); a node's area grows with its width; its label gives id, activation and
width (``3/8`` when some neurons are gated shut). Edge width follows the weight
matrix's norm; closed gates and dead structure are faded; disabled edges are dashed;
edges that skip a layer are curved so that they do not run through other nodes.
A structure without weights (the lineage keeps weights only for champions and the
latest generation) is drawn with uniform edges.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

import networkx as nx
import numpy as np

from genomes import Genome, active_structure, gate_value

from .lineage.records import Structure

__all__ = ["draw_genome", "drawing_graph", "layout"]

_ROLE_COLOURS = {"input": "#7fb3d5", "hidden": "#f5b041", "output": "#82e0aa", "exit": "#c39bd3"}
_EDGE_COLOUR = (0.2, 0.2, 0.25)
#: Opacity of closed or dead structure: visible, but clearly out of the function.
_FADED = 0.15


def drawing_graph(source: Genome | Structure, gate: str = "sigmoid") -> nx.DiGraph:
    """Return the graph to draw: per node ``role, width, activation, open, live, layer``;
    per edge ``enabled, recurrent, norm, open, live``.

    ``open`` is the number of open neurons (nodes) or the gate value (edges); for a
    bare structure everything counts as open and ``norm`` is None.
    """
    g = nx.DiGraph()
    if isinstance(source, Structure):
        for n in source.nodes:
            g.add_node(n.id, role=n.role, width=n.width, activation=n.activation, open=n.width, live=True)
        for e in source.edges:
            g.add_edge(e.src, e.dst, enabled=e.enabled, recurrent=e.recurrent, norm=None, open=1.0, live=e.enabled)
    else:
        live = active_structure(source, gate)
        for n, a in source.graph.nodes(data=True):
            is_out = a["role"] in ("output", "exit")
            n_open = a["width"] if is_out else int((gate_value(a["gate"], gate) != 0).sum())
            g.add_node(
                n, role=a["role"], width=a["width"], activation=a["activation"], open=n_open, live=n in live.neurons,
                skip=a.get("skip") is not None,
            )
        live_edges = set(live.edges)
        for s, d, a in source.graph.edges(data=True):
            g.add_edge(
                s, d, enabled=bool(a["enabled"]), recurrent=bool(a["recurrent"]),
                norm=float(np.linalg.norm(a["weight"])), open=float(gate_value(a["gate"], gate)),
                live=(s, d) in live_edges,
            )
    ff = nx.DiGraph((s, d) for s, d, a in g.edges(data=True) if not a["recurrent"])
    ff.add_nodes_from(g.nodes)
    # The output is a sink every node reaches, so it always lands in the last layer.
    for k, layer in enumerate(nx.topological_generations(ff)):
        for n in layer:
            g.nodes[n]["layer"] = k
    return g


#: Layout spacing in inches: between layers (x) and between nodes of a layer (y).
_DX, _DY = 2.2, 1.3


def _node_size(width: int) -> float:
    return min(3600.0, 500.0 + 260.0 * math.sqrt(width))  # points^2; sqrt keeps wide layers readable


def layout(g: nx.DiGraph) -> dict[int, tuple[float, float]]:
    """Return node positions in inches: x by layer, y by a barycentre ordering.

    Within a layer, nodes are ordered by the mean position of their neighbours in
    the previous layers (then the next ones), which removes most edge crossings.
    """
    layers: dict[int, list[int]] = {}
    for n, a in sorted(g.nodes(data=True)):
        layers.setdefault(a["layer"], []).append(n)
    rank = {n: float(i) for nodes in layers.values() for i, n in enumerate(nodes)}
    for neighbours in (g.predecessors, g.successors):
        keys = sorted(layers) if neighbours == g.predecessors else sorted(layers, reverse=True)
        for k in keys:
            layers[k].sort(key=lambda n, nb=neighbours, k=k: (_centre(g, rank, nb(n), k, rank[n]), n))
            for i, n in enumerate(layers[k]):
                rank[n] = i - (len(layers[k]) - 1) / 2
    return {n: (g.nodes[n]["layer"] * _DX, -rank[n] * _DY) for n in g.nodes}


def _centre(g: nx.DiGraph, rank: dict[int, float], near: Iterable[int], layer: int, own: float) -> float:
    ranks = [rank[m] for m in near if g.nodes[m]["layer"] != layer]
    return sum(ranks) / len(ranks) if ranks else own


def _bend(pos: dict[int, tuple[float, float]], g: nx.DiGraph, s: int, d: int) -> float:
    """Return the arc3 ``rad`` that routes edge s->d around the nodes it would cross."""
    (x0, y0), (x1, y1) = pos[s], pos[d]
    length = math.hypot(x1 - x0, y1 - y0)
    if g.edges[s, d]["recurrent"]:
        return 0.5
    side = 0.0
    blocked = False
    for n, (x, y) in pos.items():
        if n in (s, d) or not min(x0, x1) < x < max(x0, x1):
            continue
        y_line = y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        if abs(y - y_line) < 0.45 * _DY:
            blocked = True
        side += 1.0 if y > y_line else -1.0
    if not blocked:
        return 0.0
    # positive rad bends a left-to-right edge downwards: go to the side with fewer nodes
    return math.copysign(min(0.6, 2.0 * 0.75 * _DY / length), side if side else 1.0)


def draw_genome(
    source: Genome | Structure, path: str | os.PathLike[str], gate: str = "sigmoid", title: str | None = None
) -> Path:
    """Draw ``source`` to a PNG file.

    Args:
        source: a genome (weights drawn) or a bare :class:`~hybrid.lineage.Structure`.
        path: the PNG file to write.
        gate: the run's gate kind, to tell open gates from closed ones.
        title: drawn above the graph.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure

    g = drawing_graph(source, gate)
    pos = layout(g)
    bends = {(s, d): _bend(pos, g, s, d) for s, d in g.edges}
    xs = [p[0] for p in pos.values()]
    # a curved edge peaks halfway to its arc3 control point: keep that inside the picture
    ys = [p[1] for p in pos.values()] + [
        (pos[s][1] + pos[d][1]) / 2 - r / 2 * (pos[d][0] - pos[s][0]) for (s, d), r in bends.items()
    ]
    pad, foot, head = 0.7, 0.6, (0.5 if title else 0.0)
    w, h = max(xs) - min(xs) + 2 * pad, max(ys) - min(ys) + 2 * pad + foot + head
    scale = min(1.0, 24.0 / w, 16.0 / h)  # keep huge genomes within a sane figure
    fig = Figure(figsize=(max(4.0, w * scale), max(2.5, h * scale)), dpi=110)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(min(xs) - pad, max(xs) + pad)
    ax.set_ylim(min(ys) - pad - foot, max(ys) + pad + head)
    ax.set_aspect("equal", adjustable="box")
    norms = [a["norm"] for *_, a in g.edges(data=True) if a["norm"] is not None]
    top = max(norms) if norms and max(norms) > 0 else 1.0
    for s, d, a in g.edges(data=True):
        _draw_edge(ax, pos, g, s, d, a, top, scale, bends[s, d])
    for n, a in g.nodes(data=True):
        alpha = 1.0 if a["live"] and a["open"] == a["width"] else (0.55 if a["live"] else _FADED + 0.1)
        ax.scatter(*pos[n], s=_node_size(a["width"]) * scale**2, c=_ROLE_COLOURS[a["role"]], alpha=alpha,
                   edgecolors="#333333", linewidths=1.0, zorder=3)
        ax.annotate(_label(n, a), pos[n], ha="center", va="center", fontsize=8 * max(scale, 0.6), zorder=4,
                    alpha=1.0 if a["live"] else 0.5)
    legend = "node area ~ width; edge width ~ |W|; faded: gate closed / dead; dashed: disabled"
    if isinstance(source, Structure):
        legend = "structure only (weights not stored for this genome); dashed: disabled"
    if title:
        ax.text(sum(ax.get_xlim()) / 2, max(ys) + pad + head / 2, title, ha="center", va="center", fontsize=10)
    ax.text(sum(ax.get_xlim()) / 2, min(ys) - pad - foot / 2, legend, ha="center", va="center", fontsize=8,
            color="#444444")
    out = Path(path)
    fig.savefig(out, format="png")
    return out


def _label(n: int, a: dict) -> str:
    head = {"input": f"{n} in", "output": f"{n} out", "exit": f"{n} exit"}.get(a["role"], str(n))
    head += " skip" if a.get("skip") else ""  # a per-input skip gate (issue 16)
    width = f"{a['open']}/{a['width']}" if a["open"] != a["width"] else str(a["width"])
    act = "" if a["role"] == "input" or a["activation"] == "identity" else a["activation"] + "\n"
    return f"{head}\n{act}w={width}"


def _draw_edge(ax, pos, g: nx.DiGraph, s: int, d: int, a: dict, top: float, scale: float, rad: float) -> None:
    from matplotlib.patches import FancyArrowPatch

    # a disabled edge computes nothing: draw it thin, whatever its stored weights
    width = 1.2 if a["norm"] is None or not a["enabled"] else 0.4 + 3.6 * a["norm"] / top
    shut = not a["enabled"] or not a["live"] or a["open"] == 0.0
    alpha = _FADED if shut else 0.35 + 0.6 * a["open"]
    ax.add_patch(
        FancyArrowPatch(
            pos[s], pos[d], arrowstyle="-|>", mutation_scale=10, lw=width * max(scale, 0.5),
            color=(*_EDGE_COLOUR, alpha), linestyle="--" if not a["enabled"] else "-",
            connectionstyle=f"arc3,rad={rad}",
            shrinkA=math.sqrt(_node_size(g.nodes[s]["width"])) * scale / 2,
            shrinkB=math.sqrt(_node_size(g.nodes[d]["width"])) * scale / 2 + 1, zorder=2,
        )
    )
