"""Progress of a search: a live rich display on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Progress"]


class Progress:
    """Show generation, best/mean fitness, species, champion size and ETA."""

    def __init__(self, search: Any, plain: bool) -> None:
        self.search = search
        self.plain = plain
        self.total = search.config.evolution.generations
        self.budget = search.config.evolution.time_budget_s
        self._live: Any = None
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

    def update(self, s: dict[str, Any]) -> None:
        """Show one completed generation's stats."""
        done = s["generation"] + 1
        per_gen = s["elapsed_s"] / done
        eta = per_gen * (self.total - done)
        if self.budget is not None:
            eta = min(eta, max(0.0, self.budget - s["elapsed_s"]))
        line = (
            f"best {s['best_metric']:.4f}  mean {s['mean_metric']:.4f}  species {s['n_species']}  "
            f"champion {s['champion_metric']:.4f} / {s['champion_active_params']} params  "
            f"{s['generation_s']:.1f} s/gen  ETA {eta:.0f} s"
        )
        if self._bar is not None:
            self._bar.update(self._task, completed=done, line=line)
        else:
            print(f"gen {s['generation']:>4}  {line}", file=sys.stderr, flush=True)
