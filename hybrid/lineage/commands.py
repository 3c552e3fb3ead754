"""The ``hybrid lineage`` and ``hybrid show`` commands (``hybrid.cli`` parses, these run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import HybridError
from ..rundir import output_path
from .ancestry import ancestry
from .formats import FORMATS, ancestry_graph, to_dot, to_graphml, to_json
from .reader import Lineage, LineageError
from .reader import open as open_lineage
from .records import GenomeRecord, Structure

__all__ = ["add_lineage_arguments", "add_show_arguments", "run_lineage", "run_show"]


def add_lineage_arguments(p: argparse.ArgumentParser) -> None:
    """Declare ``hybrid lineage``'s arguments."""
    p.add_argument("run_dir")
    p.add_argument("genome", nargs="?", default="best", help="a genome id, or 'best' (default)")
    p.add_argument(
        "--format", choices=("table", *FORMATS), default="table",
        help="table (terminal, default), or the ancestry graph for other tools",
    )
    p.add_argument("--depth", type=int, help="go back at most N parent steps")
    p.add_argument("--all", action="store_true", help="show every step (do not fold runs of elites)")
    p.add_argument("-o", "--output", help="write dot/graphml/json to FILE instead of stdout")


def add_show_arguments(p: argparse.ArgumentParser) -> None:
    """Declare ``hybrid show``'s arguments."""
    p.add_argument("run_dir")
    p.add_argument("genome", help="a genome id, or 'best'")
    p.add_argument("--png", help="also draw the genome to this PNG file")


def _label(lin: Lineage, gid: int, spec: str) -> str:
    best = lin.best().id if spec.strip().lower() in ("best", "champion") else None
    return "the run's champion" if best == gid else ""


def run_lineage(args: argparse.Namespace) -> int:
    """Print a genome's ancestry (table) or write its ancestry graph.

    Raises:
        HybridError: not a run folder, unknown genome, bad --depth.
    """
    if args.depth is not None and args.depth < 0:
        raise LineageError(f"--depth should be >= 0, got {args.depth}")
    out = output_path(args.output, "-o") if args.output else None
    with open_lineage(args.run_dir) as lin:
        gid = lin.resolve(args.genome)
        if args.format == "table":
            from rich.console import Console

            from .table import ancestry_table

            steps = ancestry(lin, gid, depth=args.depth, fold=not args.all)
            group = ancestry_table(
                steps,
                lin.record(gid),
                lin.metric_name,
                _label(lin, gid, str(args.genome)),
                not args.all,
                lin.metric_sign,
            )
            Console(width=None if sys.stdout.isatty() else 160).print(group)
            return 0
        graph = ancestry_graph(lin, gid, depth=args.depth)
        if args.format == "dot":
            text = to_dot(graph, gid)
        elif args.format == "graphml":
            text = to_graphml(graph)
        else:
            text = to_json(graph, gid, ancestry(lin, gid, depth=args.depth, fold=not args.all))
    if out is not None:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise HybridError(f"-o {out}: cannot write ({exc.strerror})") from None
        print(f"wrote {out} ({graph.number_of_nodes()} genomes)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print a genome's structure; with ``--png``, draw it.

    Raises:
        HybridError: not a run folder, unknown genome.
    """
    from rich.console import Console

    from .show import genome_summary

    png = output_path(args.png, "--png") if args.png else None
    with open_lineage(args.run_dir) as lin:
        gid = lin.resolve(args.genome)
        rec = lin.record(gid)
        structure = lin.structure(gid)
        genome = lin.genome(gid) if rec.has_weights else None
        Console(width=None if sys.stdout.isatty() else 120).print(
            genome_summary(rec, structure, genome, lin.gate)
        )
        if png is not None:
            _draw(rec, structure, genome, lin.gate, png)
            print(f"wrote {png}", file=sys.stderr)
    return 0


def _draw(rec: GenomeRecord, structure: Structure, genome: object, gate: str, path: Path) -> None:
    from ..draw import draw_genome

    metric = f", metric {rec.val_metric:.4f}" if rec.val_metric is not None else ""
    title = f"genome {rec.id} (generation {rec.generation}{metric}, {rec.active_params} active params)"
    draw_genome(genome if genome is not None else structure, path, gate=gate, title=title)
