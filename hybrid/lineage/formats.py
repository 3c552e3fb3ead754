"""A genome's ancestry for other tools: DOT, GraphML and JSON.

All three hold the ancestry graph: the genome and every ancestor (second parents
of crossovers included) within ``depth`` parent steps, with an edge parent ->
child (``rank`` 0 for the first parent). Nodes on the first-parent path to the root
carry ``on_path``; JSON also holds the steps as ``hybrid lineage`` prints them.
"""

from __future__ import annotations

import json
from typing import Any

import networkx as nx

from .ancestry import Step
from .reader import Lineage
from .records import GenomeRecord

__all__ = ["FORMATS", "ancestry_graph", "to_dot", "to_graphml", "to_json"]

FORMATS = ("dot", "graphml", "json")


def ancestry_graph(lineage: Lineage, genome_id: int, depth: int | None = None) -> nx.DiGraph:
    """Return the ancestry subgraph of ``genome_id`` with each genome's record as attributes.

    Args:
        lineage: the open store.
        genome_id: the genome whose ancestors to include.
        depth: include ancestors at most this many parent steps away (None: all).

    Returns:
        A DiGraph parent -> child; node attributes are the record's scalar fields
        (None left out), ``operators`` as one line and ``on_path``.

    Raises:
        LineageError: unknown genome id.
    """
    gid = lineage.resolve(genome_id)
    up = lineage.graph.reverse(copy=False)
    keep = nx.single_source_shortest_path_length(up, gid, cutoff=depth)
    sub = nx.DiGraph(lineage.graph.subgraph(keep))
    on_path = {r.id for r in lineage.path_to_root(gid, depth=depth)}
    for rec in lineage.records(ids=keep):
        sub.nodes[rec.id].update(_attrs(rec, rec.id in on_path))
    return sub


def _attrs(rec: GenomeRecord, on_path: bool) -> dict[str, Any]:
    d = {
        "generation": rec.generation,
        "operators": rec.operator_text,
        "species": rec.species,
        "status": rec.status,
        "val_metric": rec.val_metric,
        "val_loss": rec.val_loss,
        "active_params": rec.active_params,
        "flops": rec.flops,
        "has_weights": rec.has_weights,
        "on_path": on_path,
    }
    return {k: v for k, v in d.items() if v is not None}


def to_graphml(graph: nx.DiGraph) -> str:
    """Return the ancestry graph as GraphML text (loads with ``networkx.read_graphml``)."""
    return "\n".join(nx.generate_graphml(graph)) + "\n"


def _dot_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: nx.DiGraph, genome_id: int) -> str:
    """Return the ancestry graph as Graphviz DOT: one row per generation, oldest on top.

    The first-parent path is drawn bold, second (crossover) parents' edges dashed,
    and ``genome_id`` filled.
    """
    lines = [
        "digraph lineage {",
        "  rankdir=TB;",
        '  node [shape=box, fontname="Helvetica", fontsize=10];',
    ]
    for n, a in sorted(graph.nodes(data=True)):
        metric = a.get("val_metric")
        label = f"{n}  (gen {a.get('generation')})\n{a.get('operators', '')}\n" + (
            f"metric {metric:.4f}, " if metric is not None else "failed, "
        ) + f"{a.get('active_params', '?')} params"
        style = ["bold"] if a.get("on_path") else []
        if n == genome_id:
            style.append("filled")
        extra = f', style="{",".join(style)}"' if style else ""
        lines.append(f"  {n} [label={_dot_str(label)}{extra}];")
    for g, nodes in _by_generation(graph).items():
        lines.append(f"  {{ rank=same; {' '.join(map(str, nodes))}; }}  // generation {g}")
    for s, d, a in sorted(graph.edges(data=True)):
        lines.append(f"  {s} -> {d}" + (" [style=dashed];" if a.get("rank", 0) else ";"))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _by_generation(graph: nx.DiGraph) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for n, a in sorted(graph.nodes(data=True)):
        out.setdefault(a.get("generation", -1), []).append(n)
    return dict(sorted(out.items()))


def to_json(graph: nx.DiGraph, genome_id: int, steps: list[Step]) -> str:
    """Return ``{"genome", "steps", "nodes", "edges"}`` as indented JSON."""
    doc = {
        "genome": genome_id,
        "steps": [
            {
                "id": s.record.id,
                "generations": s.generations,
                "parents": list(s.record.parents),
                "operators": [{"op": o.op, "args": dict(o.args)} for o in s.record.operators],
                "elites_folded": s.elites,
                "structure_change": s.diff.parts() if s.diff else None,
                "val_metric": s.record.val_metric,
                "metric_change": s.metric_change,
                "active_params": s.record.active_params,
                "size_change": s.size_change,
                "species": s.record.species,
                "status": s.record.status,
            }
            for s in steps
        ],
        "nodes": [{"id": n, **a} for n, a in sorted(graph.nodes(data=True))],
        "edges": [{"parent": s, "child": d, "rank": a.get("rank", 0)} for s, d, a in sorted(graph.edges(data=True))],
    }
    return json.dumps(doc, indent=1) + "\n"
