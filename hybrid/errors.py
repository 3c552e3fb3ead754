"""One exception hierarchy for user-facing errors.

The CLI turns a ``HybridError`` into one line on stderr and its ``exit_code`` (2, or 3
for a run that never had a scored champion); any other exception is a bug and keeps
its traceback. ``HybridError`` lives in ``genomes`` (the bottom package) so that
``GenomeError`` is one too.
"""

from __future__ import annotations

from genomes import GenomeError
from genomes._errors import HybridError

__all__ = [
    "ClusterError",
    "ConfigError",
    "DataError",
    "GenomeError",
    "HybridError",
    "InputError",
    "NoChampionError",
    "RunDirError",
]


class ConfigError(HybridError):
    """A config file or CLI override is malformed or out of range."""


class DataError(HybridError):
    """A task's data cannot be loaded or does not fit the task."""


class InputError(DataError, ValueError):
    """In-memory data given to ``hybrid.search`` or an estimator cannot be used.

    A ``ValueError`` too, as scikit-learn expects of an estimator refusing its input.
    """


class RunDirError(HybridError):
    """A run directory is missing, incomplete, or would be overwritten."""


class ClusterError(HybridError):
    """A Dask scheduler cannot be reached, or its workers keep dying."""


class NoChampionError(HybridError):
    """A run ended without any member ever having a finite score (every member failed)."""

    exit_code = 3
