"""What an entry's files hold: ``module.json`` (checked with pydantic) and the weights.

``module.json``::

    {"format": "hybrid.module", "version": 1, "name": ..., "description": ...,
     "hash": <64 hex>, "in_width": ..., "out_width": ..., "n_parameters": ...,
     "structure": ModuleSpec.structure(), "source": {...} | null,
     "metrics": {...}, "created": <UTC ISO time>}

``weights.safetensors``: ``ModuleSpec.arrays()`` by their names (``node.K.bias``,
``edge.S.D.weight``, ``input.mean``, ``input.scale``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from genomes import GenomeError
from genomes.modules import ModuleEdge, ModuleNode, ModuleSpec

from ..errors import HybridError

__all__ = [
    "FORMAT",
    "META_FILE",
    "VERSION",
    "WEIGHTS_FILE",
    "LibraryError",
    "ModuleFile",
    "read_meta",
    "read_spec",
    "weights_bytes",
]

FORMAT = "hybrid.module"
VERSION = 1
META_FILE = "module.json"
WEIGHTS_FILE = "weights.safetensors"


class LibraryError(HybridError):
    """A module library, one of its entries, or a module to add cannot be used (exit code 2)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")


class NodeFile(_Model):
    """One node of ``structure.nodes``."""

    local: int
    width: int = Field(ge=1)
    activation: str


class StructureFile(_Model):
    """``module.json``'s ``structure`` (``ModuleSpec.structure()``)."""

    in_width: int = Field(ge=1)
    nodes: list[NodeFile]
    edges: list[Annotated[list[int], Field(min_length=2, max_length=2)]]  # [src, dst]
    outputs: list[int]
    standardised: bool


class ModuleFile(_Model):
    """What ``module.json`` holds."""

    format: Literal["hybrid.module"]
    version: Literal[1]
    name: str
    description: str = ""
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    in_width: int
    out_width: int
    n_parameters: int
    structure: StructureFile
    source: dict[str, Any] | None = None
    metrics: dict[str, Any] = {}
    created: str


def _where(name: str, folder: Path) -> str:
    return f"module library entry {name!r} ({folder})"


def changed(name: str, folder: Path, what: str) -> LibraryError:
    """Return the error for an entry whose files no longer agree with each other."""
    return LibraryError(
        f"{_where(name, folder)}: {what}: the entry changed on disk; remove it and add it again"
    )


def read_meta(name: str, folder: Path) -> ModuleFile:
    """Read and check ``folder/module.json``.

    Raises:
        LibraryError: the file is missing, not JSON, or a key is missing or malformed (named).
    """
    path = folder / META_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LibraryError(f"{_where(name, folder)}: {META_FILE} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LibraryError(
            f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    except json.JSONDecodeError as exc:
        raise LibraryError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise LibraryError(f"{path}: should hold a JSON object, got {type(data).__name__}")
    try:
        meta = ModuleFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "missing":
            raise LibraryError(f"{path}: key {key!r} is missing") from None
        shown = repr(err.get("input"))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise LibraryError(f"{path}: key {key!r}: {err['msg'].lower()}, got {shown}") from None
    if meta.name != name:
        raise LibraryError(
            f"{path}: key 'name' is {meta.name!r}, expected the folder's name {name!r}"
        )
    return meta


def read_spec(name: str, folder: Path, meta: ModuleFile) -> ModuleSpec:
    """Rebuild the spec from ``module.json``'s structure and the weights; check the hash.

    Raises:
        LibraryError: the weights file or a tensor is missing, the files do not make a
            module, or they hash to something other than ``module.json`` records.
    """
    arrays = _read_weights(name, folder)
    s = meta.structure

    def tensor(key: str) -> np.ndarray:
        if key not in arrays:
            raise LibraryError(f"{_where(name, folder)}: {WEIGHTS_FILE} has no tensor {key!r}")
        return arrays.pop(key)

    try:
        nodes = tuple(
            ModuleNode(n.local, n.width, n.activation, tensor(f"node.{n.local}.bias"))
            for n in s.nodes
        )
        edges = tuple(ModuleEdge(a, b, tensor(f"edge.{a}.{b}.weight")) for a, b in s.edges)
        mean = tensor("input.mean") if s.standardised else None
        scale = tensor("input.scale") if s.standardised else None
        if arrays:
            raise changed(
                name,
                folder,
                f"{WEIGHTS_FILE} holds tensors the structure does not name "
                f"({', '.join(sorted(arrays))})",
            )
        spec = ModuleSpec(name, s.in_width, nodes, edges, tuple(s.outputs), mean, scale)
    except GenomeError as exc:
        raise changed(name, folder, f"its files do not make a module ({exc})") from None
    got = spec.content_hash()
    if got != meta.hash:
        raise changed(
            name, folder, f"its files hash to {got[:12]}… but {META_FILE} records {meta.hash[:12]}…"
        )
    for key in ("in_width", "out_width", "n_parameters"):
        if getattr(meta, key) != getattr(spec, key):
            raise changed(
                name,
                folder,
                f"{META_FILE} key {key!r} is {getattr(meta, key)} but the module has "
                f"{getattr(spec, key)}",
            )
    return spec


def _read_weights(name: str, folder: Path) -> dict[str, np.ndarray]:
    path = folder / WEIGHTS_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LibraryError(f"{_where(name, folder)}: {WEIGHTS_FILE} is missing") from None
    except OSError as exc:
        raise LibraryError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return dict(load_tensors(data))
    except (SafetensorError, ValueError) as exc:
        raise LibraryError(f"{path}: not a safetensors file ({str(exc).splitlines()[0]})") from None


def weights_bytes(spec: ModuleSpec) -> bytes:
    """Return ``spec``'s arrays as safetensors bytes."""
    return save_tensors({k: np.ascontiguousarray(v) for k, v in spec.arrays().items()})
