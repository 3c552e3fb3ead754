"""Experiment tracking: log a search to TensorBoard (``hybrid run --tensorboard``).

:class:`TensorBoardReporter` is a reporter (:mod:`hybrid.reporters`) writing
TensorBoard event files through ``torch.utils.tensorboard.SummaryWriter``. It needs
the ``tensorboard`` package (``pip install -c constraints.txt -e ".[tracking]"``).
TensorBoard rather than MLflow: PyTorch users already have it, it writes local files
(no tracking server), and MLflow is a much heavier dependency.

What it logs (``M`` is ``task.metric``; metric values are real values, as
``hybrid status`` shows them, not the internal "higher is better" fitness), with the
generation number as the step:

* every generation: the ``stats.jsonl`` figures (:data:`STATS_TAGS`: ``val_M/best``,
  ``val_M/mean``, ``val_M/champion``, ``active_params/{best,mean,champion}``,
  ``population/{species,threshold,failed}``), the phase timings
  (``time/{train_s,select_s,reproduce_s,generation_s,elapsed_s}``) and histograms of
  the members' ``val_M``, their active parameters and the species' sizes; a figure
  that is None (no member had a finite score) is left out;
* when the champion changes (at the generation that found it): ``champion/val_M``,
  ``champion/val_loss``, ``champion/active_params``, ``champion/flops``,
  ``champion/id`` and a ``champion`` text line;
* at generation 0 the resolved ``config.toml`` as the ``config`` text;
* when the search finishes, at step = the number of generations: ``test/M``,
  ``test/val_M``, ``test/loss``, ``test/active_params``, ``test/flops``, the
  config's scalar keys as hyperparameters (the HParams tab, with the test figures
  as its metrics), the champion's exported ``model.py`` (what ``hybrid export``
  writes) as the ``champion/model.py`` text and its exported module's graph (Graphs
  tab, from ``torch.jit.trace``).

Resume: the writer opens at the first step it logs with ``purge_step`` = that step,
so TensorBoard hides whatever an earlier process logged at that step or later (a
generation logged before a crash but after the last checkpoint, or a finished run's
test figures), and the resumed process logs it again: every step is shown once, with
the values of the run that completed it. Event files are TensorBoard's append-only
format, flushed after every generation, not written atomically; a fresh start in a
folder that already holds events (``run --overwrite`` with the same ``DIR``) hides
them all. Give each run its own folder and point ``tensorboard --logdir`` at their
parent to compare runs.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import HybridError
from .metrics import metric_value
from .reporters import Reporter

if TYPE_CHECKING:
    from .champion import SearchResult
    from .config import Config
    from .generation import GenerationReport, Timings
    from .search import Search
    from .state import Champion, SearchState

__all__ = [
    "STATS_TAGS",
    "TRACKING_INSTALL",
    "TensorBoardReporter",
    "TrackingError",
    "champion_scalars",
    "check_log_dir",
    "generation_scalars",
    "summary_writer_class",
]

TRACKING_INSTALL = 'pip install -c constraints.txt -e ".[tracking]"'

#: ``stats.jsonl`` key -> TensorBoard tag (``{metric}`` is ``task.metric``). The first
#: three hold the metric's real value (the stats line holds its fitness).
STATS_TAGS: Mapping[str, str] = {
    "best_metric": "val_{metric}/best",
    "mean_metric": "val_{metric}/mean",
    "champion_metric": "val_{metric}/champion",
    "best_active_params": "active_params/best",
    "mean_active_params": "active_params/mean",
    "champion_active_params": "active_params/champion",
    "n_species": "population/species",
    "threshold": "population/threshold",
    "n_failed": "population/failed",
}
_METRIC_KEYS = ("best_metric", "mean_metric", "champion_metric")


class TrackingError(HybridError):
    """TensorBoard logging cannot run: the extra is not installed, or the log folder is unusable."""


def summary_writer_class() -> type:
    """Return ``torch.utils.tensorboard.SummaryWriter``.

    Raises:
        TrackingError: the ``tensorboard`` package is not installed (naming the extra).
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TrackingError(
            "TensorBoard logging needs the tensorboard package, which is not installed: "
            f"install the tracking extra ({TRACKING_INSTALL})"
        ) from None
    return SummaryWriter


def check_log_dir(path: str | os.PathLike[str]) -> Path:
    """Check a TensorBoard log folder: absent (it is created) or a folder.

    Raises:
        TrackingError: ``path`` or one of its parents exists and is not a folder.
    """
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                where = "is" if q == p else f"is inside {q}, which is"
                raise TrackingError(f"--tensorboard {p}: {where} not a folder; expected a folder for event files")
            break
    return p


def generation_scalars(
    stats: Mapping[str, Any], timings: Timings, elapsed_s: float, metric: str
) -> dict[str, float]:
    """Return one generation's scalars by tag: its stats (:data:`STATS_TAGS`) and timings.

    Args:
        stats: the generation's ``stats.jsonl`` line.
        timings: its phase timings.
        elapsed_s: the search's elapsed time after it.
        metric: ``task.metric`` (names the tags; its fitness is turned into the real value).

    Returns:
        ``{tag: value}``; a stats figure that is None is left out.
    """
    out: dict[str, float] = {}
    for key, tag in STATS_TAGS.items():
        value = stats[key]
        if value is not None:
            out[tag.format(metric=metric)] = metric_value(metric, value) if key in _METRIC_KEYS else value
    out.update(
        {
            "time/train_s": timings.train_s,
            "time/select_s": timings.select_s,
            "time/reproduce_s": timings.reproduce_s,
            "time/generation_s": timings.generation_s,
            "time/elapsed_s": elapsed_s,
        }
    )
    return out


def champion_scalars(champion: Champion, metric: str) -> dict[str, float]:
    """Return a champion's validation figures by tag (``champion/...``)."""
    return {
        f"champion/val_{metric}": metric_value(metric, champion.metric),
        "champion/val_loss": champion.val_loss,
        "champion/active_params": champion.active_params,
        "champion/flops": champion.flops,
        "champion/id": champion.id,
    }


def _hparams(config: Config) -> dict[str, bool | int | float | str]:
    """Return the config's scalar keys, dotted (``training.lr``), for the HParams tab."""
    out: dict[str, bool | int | float | str] = {}
    for section, values in config.model_dump(mode="json").items():
        for key, value in values.items():
            if isinstance(value, (bool, int, float, str)):
                out[f"{section}.{key}"] = value
    return out


def _code(text: str) -> str:
    """Return ``text`` as a Markdown code block (TensorBoard renders text as Markdown)."""
    return "\n".join("    " + line for line in text.splitlines())


class TensorBoardReporter(Reporter):
    """Log a search to TensorBoard event files (see the module docstring for the tags).

    Example (not run here: it needs the ``tracking`` extra)::

        search = Search.start(load_config("configs/xor.toml"))
        search.run(reporters=[TensorBoardReporter(search)])   # runs/xor/tensorboard/

    Args:
        search: the search it logs (its config names the metric; its run folder
            gives the default log folder, the config text and the final champion).
        log_dir: the folder for the event files (created when the first event is
            written); default ``<run folder>/tensorboard``.

    Raises:
        TrackingError: the ``tensorboard`` package is missing, or ``log_dir`` is not
            a folder.
    """

    def __init__(self, search: Search, log_dir: str | os.PathLike[str] | None = None) -> None:
        self._writer_class = summary_writer_class()
        run = search.run_dir
        self.log_dir = check_log_dir(run.child(run.tensorboard_dir) if log_dir is None else log_dir)
        self.metric = search.config.task.metric
        self.gate = search.config.training.gate
        self.hparams = _hparams(search.config)
        self.config_path = run.config_path
        self._writer: Any = None

    # ------------------------------------------------------------ reporter
    def on_generation(self, state: SearchState, report: GenerationReport) -> None:
        """Log the generation's stats, timings and histograms, and the champion if it is new."""
        g = report.generation
        w = self._open(g)
        if g == 0:
            w.add_text("config", _code(self.config_path.read_text(encoding="utf-8")), 0)
        for tag, value in generation_scalars(report.stats, report.timings, state.elapsed_s, self.metric).items():
            w.add_scalar(tag, value, g)
        self._histograms(report)
        champion = state.champion
        if champion is not None and champion.generation == g:  # found in this generation
            for tag, value in champion_scalars(champion, self.metric).items():
                w.add_scalar(tag, value, g)
            real = metric_value(self.metric, champion.metric)
            w.add_text(
                "champion",
                f"genome {champion.id} (generation {g}): validation {self.metric} {real:.4f}, "
                f"{champion.active_params} active parameters, {champion.flops} FLOPs/sample",
                g,
            )
        w.flush()  # a generation's events reach the disk with it (Ctrl-C, kill)

    def on_finish(self, result: SearchResult) -> None:
        """Log the champion's test figures, the config as hyperparameters, its module and graph."""
        step = result.generations
        w = self._open(step)
        test = {
            f"test/{self.metric}": result.test_metric,
            f"test/val_{self.metric}": result.val_metric,
            "test/loss": result.test_loss,
            "test/active_params": result.active_parameters,
            "test/flops": result.flops,
        }
        for tag, value in test.items():
            w.add_scalar(tag, value, step)
        self._add_hparams(test)
        self._add_champion_module(result.run_dir, step)
        self.close()

    def close(self) -> None:
        """Flush and close the event file (a no-op if nothing was logged or it is closed)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ------------------------------------------------------------ helpers
    def _open(self, step: int) -> Any:
        """Return the writer, opening it at ``step`` (purging any earlier events from ``step`` on)."""
        if self._writer is None:
            try:
                self._writer = self._writer_class(log_dir=str(self.log_dir), purge_step=step)
            except OSError as exc:
                raise TrackingError(
                    f"--tensorboard {self.log_dir}: cannot write event files there ({exc.strerror or exc})"
                ) from None
        return self._writer

    def _histograms(self, report: GenerationReport) -> None:
        import numpy as np

        g, w = report.generation, self._writer
        scored = [r for r in report.genomes if r.val_metric is not None]
        if scored:
            values = [metric_value(self.metric, r.val_metric) for r in scored]
            w.add_histogram(f"val_{self.metric}/members", np.asarray(values, dtype=np.float64), g)
            sizes = [r.active_params for r in scored]
            w.add_histogram("active_params/members", np.asarray(sizes, dtype=np.float64), g)
        species = list(report.stats["species_sizes"].values())
        if species:
            w.add_histogram("population/species_sizes", np.asarray(species, dtype=np.float64), g)

    def _add_hparams(self, metrics: Mapping[str, float]) -> None:
        """Write the HParams summaries into this run's event file (``add_hparams`` would open another run)."""
        from torch.utils.tensorboard.summary import hparams

        file_writer = self._writer._get_file_writer()
        for summary in hparams(self.hparams, dict(metrics)):
            file_writer.add_summary(summary)

    def _add_champion_module(self, run_dir: Path, step: int) -> None:
        """Log the champion's exported ``model.py`` as text and its module's graph."""
        import torch

        from .export import RecurrentExportedNet, export_run, to_module
        from .rundir import open_run_dir

        with tempfile.TemporaryDirectory() as tmp:
            exported = export_run(run_dir, "best", "python", tmp)
            source = exported.path.read_text(encoding="utf-8")
        self._writer.add_text("champion/model.py", _code(source), step)
        run = open_run_dir(run_dir)
        task = run.read_task()
        net = to_module(
            run.read_best_genome(), self.gate, feature_mean=task.feature_mean, feature_std=task.feature_std
        )
        with warnings.catch_warnings():
            # add_graph traces with torch.jit (deprecated in favour of torch.export); its only user here.
            warnings.simplefilter("ignore", DeprecationWarning)
            # A recurrent champion's module takes sequences (B, T, F): one step of one.
            lead = (1, 1) if isinstance(net, RecurrentExportedNet) else (1,)
            self._writer.add_graph(net, torch.zeros(*lead, task.n_inputs))
