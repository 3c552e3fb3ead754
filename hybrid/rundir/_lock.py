"""The writer lock: an exclusive ``flock`` the OS drops when the process dies."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from ..errors import RunDirError

__all__ = ["Lock"]


class Lock:
    """An exclusive ``flock`` on a run folder's lock file, held until :meth:`release`."""

    def __init__(self, path: Path, run: Path) -> None:
        try:
            f: IO[str] = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
        except OSError as exc:
            raise RunDirError(f"{path}: cannot open the lock file ({exc.strerror})") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RunDirError(
                f"{run}: in use by another hybrid process (pid {holder}); wait for it to end or stop it"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file: IO[str] | None = f

    def release(self) -> None:
        """Drop the lock (closing the file drops the flock)."""
        if self._file is not None:
            self._file.close()
            self._file = None


