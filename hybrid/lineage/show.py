"""A genome's structure as text for ``hybrid show``: facts, nodes, edges."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text

from .records import GenomeRecord, Structure

if TYPE_CHECKING:
    from genomes import Genome

__all__ = ["genome_summary"]


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def genome_summary(rec: GenomeRecord, structure: Structure, genome: Genome | None, gate: str) -> Group:
    """Return the facts about a genome, its nodes and its edges as rich renderables.

    Args:
        rec: its lineage record.
        structure: its stored structure.
        genome: the genome with weights, when stored (adds open neurons, gates, norms).
        gate: the run's gate kind.
    """
    from genomes import gate_value

    parents = "+".join(map(str, rec.parents)) or "none (generation 0)"
    facts = Text.assemble(
        ("genome ", ""), (str(rec.id), "bold"),
        f": generation {rec.generation}, species {rec.species}, status {rec.status}\n",
        f"parents {parents}; made by {rec.operator_text}\n",
        f"validation metric {_fmt(rec.val_metric)}, loss {_fmt(rec.val_loss)}; train loss {_fmt(rec.train_loss)}\n",
        f"{rec.active_params} active of {rec.n_parameters} parameters, {rec.flops} FLOPs/sample; ",
        structure.summary(),
        "" if genome is not None else "\nweights not stored (only each generation's champion and the latest "
        "generation keep them): gates and norms unknown",
    )
    nodes = Table(title="nodes", title_justify="left", header_style="bold")
    for col in ("node", "role", "width", "open", "activation", "in", "out"):
        nodes.add_column(col, justify="right" if col in ("node", "width", "open", "in", "out") else "left")
    ins = {n.id: 0 for n in structure.nodes}
    outs = dict(ins)
    for e in structure.edges:
        if e.enabled:
            outs[e.src] += 1
            ins[e.dst] += 1
    for n in structure.nodes:
        open_n = "-"
        if genome is not None and n.role != "output":
            open_n = str(int((gate_value(genome.node(n.id)["gate"], gate) != 0).sum()))
        nodes.add_row(str(n.id), n.role, str(n.width), open_n, n.activation, str(ins[n.id]), str(outs[n.id]))
    edges = Table(title="edges", title_justify="left", header_style="bold")
    for col in ("edge", "innovation", "enabled", "gate", "|W|", "shape"):
        edges.add_column(col, justify="left" if col == "edge" else "right")
    widths = {n.id: n.width for n in structure.nodes}
    for e in structure.edges:
        g_val = norm = "-"
        if genome is not None:
            a = genome.edge(e.src, e.dst)
            g_val = f"{float(gate_value(a['gate'], gate)):.3f}"
            norm = f"{float(np.linalg.norm(a['weight'])):.3f}"
        arrow = "~>" if e.recurrent else "->"
        edges.add_row(
            f"{e.src}{arrow}{e.dst}", str(e.innovation), "yes" if e.enabled else Text("no", style="dim"),
            g_val, norm, f"{widths[e.dst]}x{widths[e.src]}",
        )
    return Group(facts, nodes, edges)
