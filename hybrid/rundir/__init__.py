"""Run directories: every path in a run folder, its writer lock, and typed readers.

A run folder is self-describing (see ``docs/design.md``, "A run on disk")::

    runs/<name>/
      config.toml      resolved config, every key written out
      task.json        the task's facts (kind, sizes, standardisation, class labels)
      stats.jsonl      one JSON object per completed generation ({"generation": g, ...})
      checkpoints/     gen_000012/ ... (hybrid.checkpoint)
      best/            genome.json and metrics.json of the champion (when finished)
      lineage.sqlite   the lineage store (hybrid.lineage)
      report.html      written by ``hybrid report``
      exports/         ``hybrid export`` of genomes other than the champion
      tensorboard/     event files of ``hybrid run --tensorboard`` (hybrid.tracking)
      data.npz|.csv    the data of a run started from arrays (``hybrid.search``)
      .lock            held (``flock``) by the one process writing the run

No other module spells these names: they ask a :class:`RunDir`.

Writers (``run``, ``resume``) hold an exclusive ``flock`` on ``.lock`` for as long
as they run; the OS drops it when the process dies, so a killed run never leaves
a stale lock. Readers (``status``, ``lineage``, ``show``, ``report``, ``export``)
never take it. A folder is created whole or not at all: it is built under a
temporary name next to its final place and renamed into place.

Everything read back is validated: a bad file is a :class:`~hybrid.errors.RunDirError`
whose one line names the file, the key and what was expected. Paths are confined:
an entry of the folder that resolves outside it (a symlink) is refused.

``stats.jsonl`` is appended line by line with an fsync after each line; a line cut
short by a crash is ignored when reading and dropped by the next append. On resume
call :meth:`RunDir.truncate_stats` with the generation of the checkpoint resumed
from, so that the log and the checkpoint agree.
"""

from __future__ import annotations

from ._create import create_run_dir, open_run_dir, output_path
from ._json import dumps_json
from ._records import BestMetrics, ColumnEncoding, StatsRecord, TaskEncoding, TaskInfo
from ._rundir import (
    BEST_DIR,
    BEST_GENOME_FILE,
    BEST_METRICS_FILE,
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    DATA_STEM,
    EXPORTS_DIR,
    LINEAGE_FILE,
    LOCK_FILE,
    REPORT_FILE,
    STATS_FILE,
    TASK_FILE,
    TENSORBOARD_DIR,
    RunDir,
)

__all__ = [
    "BEST_DIR",
    "BEST_GENOME_FILE",
    "BEST_METRICS_FILE",
    "CHECKPOINTS_DIR",
    "CONFIG_FILE",
    "DATA_STEM",
    "EXPORTS_DIR",
    "LINEAGE_FILE",
    "LOCK_FILE",
    "REPORT_FILE",
    "STATS_FILE",
    "TASK_FILE",
    "TENSORBOARD_DIR",
    "BestMetrics",
    "ColumnEncoding",
    "RunDir",
    "StatsRecord",
    "TaskEncoding",
    "TaskInfo",
    "create_run_dir",
    "dumps_json",
    "open_run_dir",
    "output_path",
]
