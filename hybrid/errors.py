"""One exception hierarchy for user-facing errors.

The CLI turns a ``HybridError`` into one line on stderr and exit status 2; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from genomes import GenomeError

__all__ = ["ClusterError", "ConfigError", "DataError", "GenomeError", "HybridError", "RunDirError"]


class HybridError(Exception):
    """A problem the user can fix: bad config, missing data, an existing run."""


class ConfigError(HybridError):
    """A config file or CLI override is malformed or out of range."""


class DataError(HybridError):
    """A task's data cannot be loaded or does not fit the task."""


class RunDirError(HybridError):
    """A run directory is missing, incomplete, or would be overwritten."""


class ClusterError(HybridError):
    """A Dask scheduler cannot be reached, or its workers keep dying."""
