"""Genome (de)serialisation: JSON dicts and files, and structure-only GraphML.

Float arrays are stored as base64 of their little-endian float32 bytes, so a round
trip is bit-exact (NaN payloads and signed zeros included). A hand-edited file may
give an array as a plain (nested) list of numbers instead; it is read as float32.
Loading anything malformed raises :class:`GenomeError` naming the key at fault.
No pickle anywhere.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from ._errors import GenomeError
from .genome import Genome

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "atomic_write",
    "from_dict",
    "load",
    "save",
    "to_dict",
    "to_graphml",
]

FORMAT = "hybrid.genome"
FORMAT_VERSION = 1


def encode_array(a: np.ndarray) -> dict[str, Any]:
    """Return a JSON-ready, bit-exact encoding of a float32 array."""
    a = np.asarray(a, dtype="<f4")
    return {"dtype": "float32", "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}


def decode_array(x: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    """Decode ``encode_array`` output (or a plain list of numbers) of the given shape."""
    try:
        if isinstance(x, dict):
            if x.get("dtype") != "float32":
                raise GenomeError(f"{where}: dtype should be 'float32', got {x.get('dtype')!r}")
            raw = base64.b64decode(x["b64"], validate=True)
            arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
            stored = tuple(int(s) for s in x["shape"])
            if stored != shape or arr.size != int(np.prod(shape, dtype=np.int64)):
                raise GenomeError(f"{where}: shape should be {shape}, got {stored} with {arr.size} values")
            return arr.reshape(shape)
        with np.errstate(over="ignore"):  # a hand-written 1e39 is float32 inf, as intended
            arr = np.array(x, dtype=np.float32)
    except GenomeError:
        raise
    except (KeyError, TypeError, ValueError, base64.binascii.Error) as exc:
        raise GenomeError(f"{where}: not a float32 array ({exc})") from None
    if arr.shape != shape:
        raise GenomeError(f"{where}: shape should be {shape}, got {arr.shape}")
    return arr


def to_dict(genome: Genome) -> dict[str, Any]:
    """Return a JSON-ready dict holding everything in ``genome``."""
    g = genome.graph
    nodes = [
        {
            "id": int(n),
            "role": a["role"],
            "width": int(a["width"]),
            "activation": a["activation"],
            "bias": encode_array(a["bias"]),
            "gate": encode_array(a["gate"]),
        }
        for n, a in sorted(g.nodes(data=True))
    ]
    edges = [
        {
            "src": int(s),
            "dst": int(d),
            "innovation": int(a["innovation"]),
            "enabled": bool(a["enabled"]),
            "recurrent": bool(a["recurrent"]),
            "weight": encode_array(a["weight"]),
            "gate": encode_array(np.asarray(a["gate"])),
        }
        for s, d, a in sorted(g.edges(data=True))
    ]
    return {"format": FORMAT, "version": FORMAT_VERSION, "meta": genome.meta, "nodes": nodes, "edges": edges}


def _get(d: Any, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(d, dict):
        raise GenomeError(f"{where}: should be an object, got {type(d).__name__}")
    if key not in d:
        raise GenomeError(f"{where}: missing key {key!r}")
    v = d[key]
    ok = isinstance(v, kind) and not (isinstance(v, bool) and kind in (int, (int,)))
    if not ok:
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise GenomeError(f"{where}.{key}: should be {names}, got {v!r}")
    return v


def from_dict(data: Any) -> Genome:
    """Rebuild a genome from ``to_dict`` output and validate it.

    Raises:
        GenomeError: if the data is malformed, of another format or version, or the
            genome it describes breaks a rule.
    """
    fmt = _get(data, "format", "genome", str)
    if fmt != FORMAT:
        raise GenomeError(f"genome.format: should be {FORMAT!r}, got {fmt!r}")
    version = _get(data, "version", "genome", int)
    if version != FORMAT_VERSION:
        raise GenomeError(f"genome.version: should be {FORMAT_VERSION}, got {version!r}")
    meta = data.get("meta", {})
    if not isinstance(meta, dict):
        raise GenomeError(f"genome.meta: should be an object, got {meta!r}")
    g = nx.DiGraph()
    for k, nd in enumerate(_get(data, "nodes", "genome", list)):
        where = f"genome.nodes[{k}]"
        nid = _get(nd, "id", where, int)
        if nid in g:
            raise GenomeError(f"{where}.id: node {nid} appears twice")
        width = _get(nd, "width", where, int)
        if width < 1:
            raise GenomeError(f"{where}.width: should be >= 1, got {width}")
        g.add_node(
            nid,
            role=_get(nd, "role", where, str),
            width=width,
            activation=_get(nd, "activation", where, str),
            bias=decode_array(_get(nd, "bias", where, (dict, list)), (width,), f"{where}.bias"),
            gate=decode_array(_get(nd, "gate", where, (dict, list)), (width,), f"{where}.gate"),
        )
    for k, ed in enumerate(_get(data, "edges", "genome", list)):
        where = f"genome.edges[{k}]"
        s, d = _get(ed, "src", where, int), _get(ed, "dst", where, int)
        for end, n in (("src", s), ("dst", d)):
            if n not in g:
                raise GenomeError(f"{where}.{end}: node {n} does not exist")
        if g.has_edge(s, d):
            raise GenomeError(f"{where}: edge {s}->{d} appears twice")
        shape = (g.nodes[d]["width"], g.nodes[s]["width"])
        gate = _get(ed, "gate", where, (dict, list, int, float))
        g.add_edge(
            s,
            d,
            innovation=_get(ed, "innovation", where, int),
            enabled=_get(ed, "enabled", where, bool),
            recurrent=_get(ed, "recurrent", where, bool),
            weight=decode_array(_get(ed, "weight", where, (dict, list)), shape, f"{where}.weight"),
            gate=np.float32(decode_array(gate, (), f"{where}.gate")),
        )
    return Genome(g, meta=meta).validate()


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(genome: Genome, path: str | os.PathLike[str]) -> None:
    """Write ``genome`` as JSON to ``path`` (atomically)."""
    atomic_write(path, json.dumps(to_dict(genome), indent=1) + "\n")


def load(path: str | os.PathLike[str]) -> Genome:
    """Read a genome JSON file.

    Raises:
        GenomeError: naming the file if it is missing, not JSON, or malformed.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise GenomeError(f"{path}: cannot read genome file ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenomeError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    try:
        return from_dict(data)
    except GenomeError as exc:
        raise GenomeError(f"{path}: {exc}") from None


def to_graphml(genome: Genome, path: str | os.PathLike[str] | None = None) -> nx.DiGraph:
    """Return (and optionally write) a structure-only copy for graph tools.

    Nodes keep ``role``, ``width``, ``activation``; edges keep ``innovation``,
    ``enabled``, ``recurrent`` and the ``weight_norm``. No arrays.
    """
    h = nx.DiGraph()
    for n, a in genome.graph.nodes(data=True):
        h.add_node(int(n), role=a["role"], width=int(a["width"]), activation=a["activation"])
    for s, d, a in genome.graph.edges(data=True):
        h.add_edge(
            int(s),
            int(d),
            innovation=int(a["innovation"]),
            enabled=bool(a["enabled"]),
            recurrent=bool(a["recurrent"]),
            weight_norm=float(np.linalg.norm(a["weight"])),
        )
    if path is not None:
        import io

        buf = io.BytesIO()
        nx.write_graphml(h, buf)
        atomic_write(path, buf.getvalue())
    return h
