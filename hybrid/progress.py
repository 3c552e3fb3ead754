"""Progress of a search: a live rich display on a terminal, plain lines otherwise.

:class:`Progress` is a reporter (``search.run(reporters=[progress])``); its
:meth:`Progress.update` also takes a stats dict, the ``on_generation`` callback form.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Progress", "progress_line"]


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def progress_line(s: dict[str, Any], eta_s: float, metric: str | None = None) -> str:
    """Return one generation's progress line (without the generation number).

    A generation in which every member failed says so instead of showing metrics;
    failure sentinels never appear. With ``metric`` (``task.metric``) the line names
    it and shows real values (stats hold fitness: a lower-is-better metric negated).

    Example:
        >>> progress_line({"best_metric": None, "mean_metric": None, "n_species": 1,
        ...     "champion_metric": None, "champion_active_params": None, "n_failed": 8,
        ...     "species_sizes": {"0": 8}, "generation_s": 0.5}, 2.0)
        'every member failed (8 of 8: NaN/inf loss)  species 1  no champion yet  0.5 s/gen  ETA 2 s'
    """
    from .metrics import metric_value

    def real(v: float | None) -> float | None:
        return v if v is None or metric is None else metric_value(metric, v)

    n = sum(s["species_sizes"].values())
    if s["best_metric"] is None:
        head = f"every member failed ({s['n_failed']} of {n}: NaN/inf loss)"
    else:
        name = "" if metric is None else f"{metric} "
        head = f"{name}best {_num(real(s['best_metric']))}  mean {_num(real(s['mean_metric']))}"
        if s["n_failed"]:
            head += f"  failed {s['n_failed']}"
    champ = (
        "no champion yet"
        if s["champion_metric"] is None
        else f"champion {real(s['champion_metric']):.4f} / {s['champion_active_params']} params"
    )
    return f"{head}  species {s['n_species']}  {champ}  {s['generation_s']:.1f} s/gen  ETA {eta_s:.0f} s"


class Progress:
    """Show generation, best/mean fitness, species, champion size and ETA."""

    def __init__(self, search: Any, plain: bool) -> None:
        self.search = search
        self.plain = plain
        self.total = search.config.evolution.generations
        self.budget = search.config.evolution.time_budget_s
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if not self.plain:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("gen"),
                MofNCompleteColumn(),
                BarColumn(),
                TextColumn("{task.fields[line]}"),
                transient=False,
            )
            self._task = self._bar.add_task(
                "search", total=self.total, completed=self.search.generation, line="training generation 0"
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def on_generation(self, state: Any, report: Any) -> None:
        """Show one completed generation (the reporter form)."""
        self.update({**report.stats, "elapsed_s": state.elapsed_s, "generation_s": report.timings.generation_s})

    def on_finish(self, result: Any) -> None:
        """Nothing to show: the CLI prints the result."""

    def update(self, s: dict[str, Any]) -> None:
        """Show one completed generation's stats (with ``elapsed_s`` and ``generation_s``)."""
        done = s["generation"] + 1
        per_gen = s["elapsed_s"] / done
        eta = per_gen * (self.total - done)
        if self.budget is not None:
            eta = min(eta, max(0.0, self.budget - s["elapsed_s"]))
        line = progress_line(s, eta, self.search.config.task.metric)
        if self._bar is not None:
            self._bar.update(self._task, completed=done, line=line)
        else:
            print(f"gen {s['generation']:>4}  {line}", file=sys.stderr, flush=True)
