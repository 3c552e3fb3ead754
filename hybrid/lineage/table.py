"""Render a genome's ancestry as a rich table for the terminal."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text

from .ancestry import MIN_FOLD, Step
from .records import GenomeRecord

__all__ = ["ancestry_table"]


def _delta(x: float | int | None, fmt: str) -> Text:
    if x is None or x == 0:
        return Text("")
    style = "green" if x > 0 else "red"
    return Text(format(x, fmt), style=style)


def _size_delta(x: int | None) -> Text:
    if x is None or x == 0:
        return Text("")
    return Text(f"{x:+d}", style="yellow" if x > 0 else "cyan")


def _cell(value: str, delta: Text) -> Text:
    t = Text(value)
    if delta.plain:
        t.append(" ")
        t.append(delta)
    return t


def ancestry_table(
    steps: Sequence[Step],
    target: GenomeRecord,
    metric: str = "metric",
    label: str = "",
    folded: bool = True,
    sign: float = 1.0,
) -> Group:
    """Return a title, the steps as a table (oldest first) and a note on folding.

    Args:
        steps: from :func:`hybrid.lineage.ancestry`.
        target: the genome whose ancestry it is.
        metric: the metric's name for the header.
        sign: -1 for a lower-is-better metric (records hold the fitness; shown: the real value).
        label: shown after the genome id (e.g. ``"the run's champion"``).
        folded: whether elite runs were folded (changes the note).
    """
    reached_root = bool(steps) and steps[0].parent is None
    title = Text.assemble(
        ("ancestry of genome ", ""),
        (str(target.id), "bold"),
        (f" ({label})" if label else "", ""),
        (f": generation {target.generation}, ", ""),
        (f"{metric} {sign * target.val_metric:.4f}" if target.val_metric is not None else "failed", ""),
        (f", {target.active_params} active parameters", ""),
    )
    table = Table(show_lines=False, header_style="bold", pad_edge=False)
    table.add_column("gen", justify="right", no_wrap=True)
    table.add_column("genome", justify="right", no_wrap=True)
    table.add_column("parents", no_wrap=True)
    table.add_column("operators", overflow="fold", ratio=3)
    table.add_column("structure change", overflow="fold", ratio=2)
    table.add_column(f"{metric} (change)", justify="right", no_wrap=True)
    table.add_column("params (change)", justify="right", no_wrap=True)
    table.add_column("sp", justify="right", no_wrap=True)
    for s in steps:
        r = s.record
        ops = Text(s.operator_text, style="dim" if s.elites or r.is_elite else "")
        change = "" if s.diff is None or s.diff.empty else str(s.diff)
        metric_text = f"{sign * r.val_metric:.4f}" if r.val_metric is not None else r.status
        table.add_row(
            s.generations,
            str(r.id),
            "+".join(map(str, r.parents)) if not s.elites else str(s.parent.id if s.parent else ""),
            ops,
            change,
            _cell(metric_text, _delta(None if s.metric_change is None else sign * s.metric_change, "+.4f")),
            _cell(str(r.active_params if r.active_params is not None else "?"), _size_delta(s.size_change)),
            "" if r.species is None else str(r.species),
        )
    notes = []
    n_folded = sum(s.elites for s in steps)
    if folded and n_folded:
        notes.append(
            f"elite xN: the genome stayed an elite for N generations (same structure, weights "
            f"retrained, a new id each time; runs of {MIN_FOLD}+ folded into one row); --all shows each."
        )
    if not reached_root and steps:
        notes.append(f"cut at --depth: the oldest step shown is generation {steps[0].first_generation}.")
    notes.append("parents: the first is the fitter one, whose structure the change is measured against.")
    return Group(title, table, Text("\n".join(notes), style="dim"))
