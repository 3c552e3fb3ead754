"""The module library: trained modules on disk, to be grafted into genomes (issue 18).

A library is a folder with one sub-folder per module::

    modules/
      .lock                 flock held by a writer (add, remove) while it writes
      NAME/module.json      format "hybrid.module", version 1: name, description, hash,
                            widths, parameters, structure, source, metrics, created
      NAME/weights.safetensors
                            ModuleSpec.arrays() (safetensors.numpy)
      .tmp-*/               an entry being written (or removed); never listed

Reading an entry (:meth:`Library.get`) rebuilds the :class:`~genomes.modules.ModuleSpec`
from both files and recomputes its content hash: files that changed on disk are
refused with one line naming the entry. :func:`harvest_run` cuts a module out of a
genome of a run folder (``hybrid modules add``).

>>> import tempfile
>>> Library(tempfile.mkdtemp()).entries()
[]
"""

from __future__ import annotations

from ._files import LibraryError
from ._harvest import harvest_run
from ._store import Entry, Library, check_name

__all__ = ["Entry", "Library", "LibraryError", "check_name", "harvest_run"]
