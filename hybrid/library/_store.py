"""The library folder: one checked entry per module, written whole or not at all."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from genomes import GenomeError
from genomes.modules import ModuleSpec

from ..rundir import dumps_json
from ._files import (
    META_FILE,
    WEIGHTS_FILE,
    LibraryError,
    ModuleFile,
    read_meta,
    read_spec,
    weights_bytes,
)

__all__ = ["LOCK_FILE", "Entry", "Library", "check_name"]

LOCK_FILE = ".lock"
_TMP_PREFIX = ".tmp-"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_name(name: str) -> str:
    """Return ``name`` if it can name an entry (``[A-Za-z0-9][A-Za-z0-9._-]*``).

    Raises:
        LibraryError: naming the name and the rule.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise LibraryError(
            f"module name {name!r}: expected a letter or digit, then letters, digits, '.', '_' or '-'"
        )
    return name


@dataclass(frozen=True)
class Entry:
    """One module of the library, as its ``module.json`` describes it (weights not read)."""

    name: str
    hash: str
    in_width: int
    out_width: int
    n_parameters: int
    description: str
    source: dict[str, Any] | None
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    path: Path = Path()

    @classmethod
    def _from(cls, meta: ModuleFile, path: Path) -> Entry:
        return cls(
            name=meta.name,
            hash=meta.hash,
            in_width=meta.in_width,
            out_width=meta.out_width,
            n_parameters=meta.n_parameters,
            description=meta.description,
            source=meta.source,
            metrics=dict(meta.metrics),
            created=meta.created,
            path=path,
        )


class Library:
    """A folder of trained modules: ``PATH/NAME/module.json`` and ``weights.safetensors``.

    Readers never lock. Writers (:meth:`add`, :meth:`remove`) hold an exclusive
    ``flock`` on ``PATH/.lock`` while they write, so two writers at once take turns.
    An entry is written into a hidden temporary folder inside the library and renamed
    into place: a reader sees the whole entry or none (an interrupted write leaves
    only a hidden ``.tmp-*`` folder, which listings ignore and the next writer removes).

    Args:
        path: the library folder.
        create: make the folder (and its parents) when it does not exist (``add``).

    Raises:
        LibraryError: the folder does not exist (and ``create`` is false) or is a file.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False) -> None:
        self.path = Path(path)
        if create and not self.path.exists():
            try:
                self.path.mkdir(parents=True)
            except OSError as exc:
                raise LibraryError(
                    f"module library {self.path}: cannot create ({exc.strerror})"
                ) from None
        if not self.path.is_dir():
            what = "not a folder" if self.path.exists() else "no such folder"
            raise LibraryError(
                f"module library {self.path}: {what}; create it with "
                f"`hybrid modules add RUN_DIR --name NAME --library {self.path}`"
            )

    def __repr__(self) -> str:
        return f"Library({str(self.path)!r})"

    # ------------------------------------------------------------------ reading
    def names(self) -> list[str]:
        """Return the entries' names, sorted (hidden temporary folders left out)."""
        return sorted(p.name for p in self.path.iterdir() if p.is_dir() and _NAME.fullmatch(p.name))

    def entries(self) -> list[Entry]:
        """Return every entry, sorted by name (``module.json`` read and checked; weights not).

        Raises:
            LibraryError: an entry's ``module.json`` is missing or malformed.
        """
        return [self.entry(n) for n in self.names()]

    def entry(self, name: str) -> Entry:
        """Return entry ``name``'s description.

        Raises:
            LibraryError: no such entry (the known names listed), or a malformed ``module.json``.
        """
        folder = self._folder(name)
        return Entry._from(read_meta(name, folder), folder)

    def get(self, name: str) -> ModuleSpec:
        """Return entry ``name``'s module, rebuilt from its files and its hash checked.

        Raises:
            LibraryError: no such entry, a file or tensor missing or malformed, or files
                that hash to something other than ``module.json`` records.
        """
        folder = self._folder(name)
        return read_spec(name, folder, read_meta(name, folder))

    def find(self, hash: str) -> str:
        """Return the name of the entry with content hash ``hash`` (or a unique prefix of it).

        With several entries of that hash the first name (sorted) is returned.

        Raises:
            LibraryError: ``hash`` is not hex, or no (or, for a prefix, more than one) module has it.
        """
        want = hash.strip().lower() if isinstance(hash, str) else ""
        if not re.fullmatch(r"[0-9a-f]{1,64}", want):
            raise LibraryError(f"module hash {hash!r}: expected up to 64 hex digits")
        found = [e for e in self.entries() if e.hash.startswith(want)]
        if len({e.hash for e in found}) > 1:
            raise LibraryError(
                f"module library {self.path}: hash prefix {want!r} fits several modules "
                f"({', '.join(e.name for e in found)}); give more digits"
            )
        if not found:
            raise LibraryError(f"module library {self.path}: no module has hash {want[:12]}…")
        return found[0].name

    def verify(self, names: Sequence[str] | None = None) -> list[Entry]:
        """Check every (or the named) entries: files present, well formed, hash as recorded.

        Returns:
            The entries checked, in order.

        Raises:
            LibraryError: for the first entry that fails, naming it and its folder.
        """
        checked = []
        for name in self.names() if names is None else names:
            self.get(name)
            checked.append(self.entry(name))
        return checked

    # ------------------------------------------------------------------ writing
    def add(
        self,
        spec: ModuleSpec,
        *,
        description: str = "",
        source: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> Entry:
        """Store ``spec`` under ``spec.name``.

        Args:
            spec: the module (its name names the entry).
            description: free text shown by ``hybrid modules list``.
            source: where it came from (run_dir, genome_id, task, gate).
            metrics: the source genome's recorded metrics.
            overwrite: replace an entry of that name (else it is refused).

        Returns:
            The new entry.

        Raises:
            LibraryError: a bad name, an existing entry (without ``overwrite``), a spec
                that does not check, or a write that failed (nothing is left behind).
        """
        name = check_name(spec.name)
        try:
            spec.check()
        except GenomeError as exc:
            raise LibraryError(f"module {name!r} cannot be stored: {exc}") from None
        meta = {
            "format": "hybrid.module",
            "version": 1,
            "name": name,
            "description": description,
            "hash": spec.content_hash(),
            "in_width": spec.in_width,
            "out_width": spec.out_width,
            "n_parameters": spec.n_parameters,
            "structure": spec.structure(),
            "source": None if source is None else dict(source),
            "metrics": dict(metrics or {}),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        text = dumps_json(meta) + "\n"
        weights = weights_bytes(spec)
        final = self.path / name
        with self._writing():
            if final.exists() and not overwrite:
                raise LibraryError(
                    f"module library {self.path}: entry {name!r} exists; pass --overwrite "
                    "(overwrite=True) to replace it, or choose another name"
                )
            tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{name}-", dir=self.path))
            try:
                _write_synced(tmp / WEIGHTS_FILE, weights)
                _write_synced(tmp / META_FILE, text.encode())
                _publish(tmp, final)
            except OSError as exc:
                raise LibraryError(
                    f"module library {self.path}: cannot write {name!r} ({exc.strerror or exc})"
                ) from None
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return self.entry(name)

    def remove(self, name: str) -> None:
        """Delete entry ``name`` (renamed out of sight first, so it goes whole).

        Raises:
            LibraryError: no such entry.
        """
        with self._writing():
            folder = self._folder(name)
            trash = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{name}-", dir=self.path))
            os.rename(folder, trash / name)
            shutil.rmtree(trash, ignore_errors=True)

    # ------------------------------------------------------------------ helpers
    def _folder(self, name: str) -> Path:
        check_name(name)
        folder = self.path / name
        if not folder.is_dir():
            known = ", ".join(self.names()) or "none"
            raise LibraryError(f"module library {self.path}: no entry {name!r} (entries: {known})")
        return folder

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the library's writer lock; clear what an interrupted writer left."""
        try:
            f = open(self.path / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held below
        except OSError as exc:
            raise LibraryError(
                f"module library {self.path}: cannot open {LOCK_FILE} ({exc.strerror})"
            ) from None
        with f:
            fcntl.flock(f, fcntl.LOCK_EX)  # waits for another writer; dropped when f closes
            _clear_stale(self.path)
            yield


def _clear_stale(library: Path) -> None:
    """Delete what a killed writer left; an old entry moved aside but not replaced goes back."""
    for stale in library.glob(f"{_TMP_PREFIX}*"):
        for kept in stale.glob("*"):  # .tmp-NAME-old-*/NAME: an overwrite killed between renames
            if (
                stale.name.startswith(f"{_TMP_PREFIX}{kept.name}-old-")
                and not (library / kept.name).exists()
            ):
                os.rename(kept, library / kept.name)
        shutil.rmtree(stale, ignore_errors=True)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished folder ``tmp`` to ``final``, replacing an old entry."""
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder the usual mode
    if final.exists():  # a folder cannot be renamed over a full one: move the old aside first
        old = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{final.name}-old-", dir=final.parent))
        os.rename(final, old / final.name)
        try:
            os.rename(tmp, final)
        except BaseException:
            os.rename(old / final.name, final)  # put the old entry back
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
