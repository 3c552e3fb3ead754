"""Reporters: whatever a search leaves behind, written from each generation's report.

:func:`hybrid.generation.step` does no I/O; after each generation :class:`~hybrid.search.Search`
hands the new state and the :class:`~hybrid.generation.GenerationReport` to its
reporters. The run folder's own records (lineage, ``stats.jsonl``, checkpoints)
are reporters the search always uses, called while Ctrl-C is held back so a
generation is recorded whole or not at all; yours run after them, and their
``on_finish`` gets the :class:`~hybrid.champion.SearchResult` once the champion is
scored. A reporter is any object with ``on_generation(state, report)`` and
``on_finish(result)`` (:class:`Reporter`); subclass :class:`Reporter` to write
only the one you need. :class:`~hybrid.tracking.TensorBoardReporter` (importable from
here too) logs a search to TensorBoard.

Example: log each generation to a CSV file.

    >>> import csv, tempfile
    >>> from pathlib import Path
    >>> from hybrid.config import loads_config
    >>> from hybrid.reporters import Reporter
    >>> from hybrid.search import Search
    >>> class CsvReporter(Reporter):
    ...     def __init__(self, path):
    ...         self.path = Path(path)
    ...         self.path.write_text("generation,best_metric,n_species,seconds\\n")
    ...     def on_generation(self, state, report):
    ...         s = report.stats
    ...         with self.path.open("a", newline="") as f:
    ...             csv.writer(f).writerow(
    ...                 [s["generation"], s["best_metric"], s["n_species"], report.timings.generation_s]
    ...             )
    >>> runs = tempfile.mkdtemp()
    >>> config = loads_config(f'''
    ... [run]
    ... runs_dir = "{runs}"
    ... [task]
    ... name = "xor"
    ... [training]
    ... steps = 5
    ... [evolution]
    ... population = 4
    ... generations = 2
    ... ''', source="example.toml")
    >>> log = CsvReporter(Path(runs) / "generations.csv")
    >>> result = Search.start(config).run(reporters=[log])
    >>> rows = list(csv.DictReader(log.path.open()))
    >>> [row["generation"] for row in rows]
    ['0', '1']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .checkpoint import save_checkpoint
from .lineage import GenerationRow, LineageWriter
from .rundir import RunDir

if TYPE_CHECKING:
    from .champion import SearchResult
    from .generation import GenerationReport
    from .state import SearchState
    from .tracking import TensorBoardReporter

__all__ = [
    "CallbackReporter",
    "CheckpointReporter",
    "LineageReporter",
    "Reporter",
    "ReporterLike",
    "StatsReporter",
    "TensorBoardReporter",
]


def __getattr__(name: str) -> Any:
    """Return :class:`hybrid.tracking.TensorBoardReporter`, imported on first use."""
    if name == "TensorBoardReporter":
        from .tracking import TensorBoardReporter

        return TensorBoardReporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@runtime_checkable
class ReporterLike(Protocol):
    """What the search calls on a reporter."""

    def on_generation(self, state: SearchState, report: GenerationReport) -> None:
        """Take one completed generation: ``state`` is the state after it."""

    def on_finish(self, result: SearchResult) -> None:
        """Take the finished search's result (not called when it is interrupted or fails)."""


class Reporter:
    """A reporter that does nothing: subclass it and override what you need."""

    def on_generation(self, state: SearchState, report: GenerationReport) -> None:
        """Take one completed generation: ``state`` is the state after it."""

    def on_finish(self, result: SearchResult) -> None:
        """Take the finished search's result (not called when it is interrupted or fails)."""


class StatsReporter(Reporter):
    """Append each generation's stats line to the run folder's ``stats.jsonl``."""

    def __init__(self, run: RunDir) -> None:
        self.run = run

    def on_generation(self, state: SearchState, report: GenerationReport) -> None:
        """Append ``report.stats`` (fsynced)."""
        self.run.append_stats(dict(report.stats))


class LineageReporter(Reporter):
    """Write each generation's genomes and summary to ``lineage.sqlite`` (one transaction)."""

    def __init__(self, writer: LineageWriter) -> None:
        self.writer = writer

    def on_generation(self, state: SearchState, report: GenerationReport) -> None:
        """Write the report's rows, its summary and the pruned members."""
        s = report.stats
        self.writer.write_generation(
            report.genomes,
            GenerationRow(
                generation=report.generation,
                champion=s["best_id"],
                best_metric=s["best_metric"],
                mean_metric=s["mean_metric"],
                n_species=s["n_species"],
                threshold=s["threshold"],
                elapsed_s=report.timings.generation_s,
                stats=dict(s),
            ),
            pruned=report.pruned,
        )


class CheckpointReporter(Reporter):
    """Checkpoint the state every ``every`` generations and when the search stops."""

    def __init__(self, run: RunDir, every: int, keep: int) -> None:
        self.run, self.every, self.keep = run, every, keep

    def on_generation(self, state: SearchState, report: GenerationReport) -> None:
        """Save ``state.to_dict()`` as generation ``report.generation``'s checkpoint when due."""
        if state.finished is not None or report.generation % self.every == 0:
            save_checkpoint(self.run, report.generation, state.to_dict(), keep=self.keep)


class CallbackReporter(Reporter):
    """Call ``fn(stats)`` after each generation, stats with ``elapsed_s`` and ``generation_s`` added."""

    def __init__(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self.fn = fn

    def on_generation(self, state: SearchState, report: GenerationReport) -> None:
        """Call the function with this generation's stats and timings."""
        self.fn({**report.stats, "elapsed_s": state.elapsed_s, "generation_s": report.timings.generation_s})
