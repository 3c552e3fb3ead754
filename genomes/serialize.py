"""Genome (de)serialisation: JSON dicts and files, and structure-only GraphML.

Float arrays are stored as base64 of their little-endian float32 bytes, so a round
trip is bit-exact (signed zeros included). A hand-edited file may give an array as a
plain (nested) list of numbers instead; it is read as float32. Every value must be
finite in float32: a NaN or infinite bias, weight or gate (or a hand-written 1e39)
is refused at load, since the network would return NaN for every input. Loading
anything malformed raises :class:`GenomeError` naming the key (and the node or
edge) at fault. No pickle anywhere.

Version 2 added the grafted-module attributes: a node may hold ``"frozen": true``
and ``"module": {"name", "hash", "graft"}``, an edge ``"frozen": true``. They are
written only when set, so a genome without modules differs from its version 1 file
in the version alone; version 1 files still load (every gene unfrozen).

Version 3 added the budget attributes (``genomes.budgets``): a hidden node may hold
``"order": [ints]`` (a permutation of its neurons; written only when not the
identity) and ``"drop": int`` (written only when set). A genome without them is
still written as version 2, byte for byte what it was, so only files that need the
new keys carry the new version (an older reader refuses them instead of silently
losing the orders). Version 1 and 2 files load as before.

Version 4 added the adaptive genes (``genomes.adaptive``): an exit node (role
``"exit"``) holds ``"threshold": float``; a skip-gated hidden node ``"skip"`` (an
array of shape [1]) and every feed-forward edge into it ``"skip"`` (shape
[width_src]). Only a genome with adaptive genes is written as version 4.

Version 5 added sparse edges (``mutation.sparsify``): an edge may hold ``"mask"``,
its connections, as a 0/1 array of the weight's shape. Only a genome with a sparse edge
is written as version 5; versions 1-4 load as before (every edge dense).
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
from .genome import Genome, order_key, set_order

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
FORMAT_VERSION = 5
#: Versions ``from_dict`` reads (1: before grafted modules; its genes are unfrozen;
#: 2: before budget orders; 3: before adaptive genes; 4: before sparse edges).
READ_VERSIONS = (1, 2, 3, 4, 5)
#: The version written for a genome with adaptive genes and no sparse edge.
ADAPTIVE_VERSION = 4
#: The version written for a genome with budget attributes and no adaptive genes.
BUDGET_VERSION = 3
#: The version written for a genome without budget orders or drop ranks.
PLAIN_VERSION = 2
#: Largest node id or innovation number read back: 2**53 is the last integer that
#: JSON readers holding numbers as doubles (and the report's JavaScript) keep exact.
MAX_ID = 2**53
#: Largest node width read back: array sizes (width x width) must not overflow int64.
MAX_WIDTH = 2**31 - 1


def encode_array(a: np.ndarray) -> dict[str, Any]:
    """Return a JSON-ready, bit-exact encoding of a float32 array."""
    a = np.asarray(a, dtype="<f4")
    return {"dtype": "float32", "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numbers_only(x: Any, where: str) -> None:
    """Refuse anything but (nested lists of) JSON numbers: no strings, bools or nulls."""
    stack = [x]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(v)
        elif not _is_number(v):
            raise GenomeError(f"{where}: should hold numbers only, got {type(v).__name__} {v!r:.40}")


def decode_array(x: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    """Decode ``encode_array`` output (or a plain list of numbers) of the given shape.

    Raises:
        GenomeError: naming ``where`` for a malformed encoding, a wrong shape, or a
            value that is NaN or infinite in float32.
    """
    try:
        if isinstance(x, dict):
            if x.get("dtype") != "float32":
                raise GenomeError(f"{where}: dtype should be 'float32', got {x.get('dtype')!r:.40}")
            raw = base64.b64decode(x["b64"], validate=True)
            arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
            stored_shape = x["shape"]
            if not isinstance(stored_shape, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in stored_shape
            ):
                raise GenomeError(
                    f"{where}.shape: should be a list of non-negative ints, got {stored_shape!r:.40}"
                )
            stored = tuple(stored_shape)
            if stored != shape or arr.size != int(np.prod(shape, dtype=np.int64)):
                raise GenomeError(f"{where}: shape should be {shape}, got {stored} with {arr.size} values")
            arr = arr.reshape(shape)
        else:
            _numbers_only(x, where)
            with np.errstate(over="ignore"):  # a hand-written 1e39 becomes inf: refused below
                arr = np.array(x, dtype=np.float32)
    except GenomeError:
        raise
    except base64.binascii.Error:
        raise GenomeError(f"{where}.b64: not a float32 array (invalid base64)") from None
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise GenomeError(f"{where}: not a float32 array ({type(exc).__name__})") from None
    if arr.shape != shape:
        raise GenomeError(f"{where}: shape should be {shape}, got {arr.shape}")
    bad = np.argwhere(~np.isfinite(arr))
    if len(bad):
        at = "" if arr.ndim == 0 else "[" + ", ".join(str(int(i)) for i in bad[0]) + "]"
        raise GenomeError(
            f"{where}{at}: is {arr[tuple(bad[0])]} in float32, expected a finite number"
        )
    return arr


def _node_dict(n: int, a: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": int(n),
        "role": a["role"],
        "width": int(a["width"]),
        "activation": a["activation"],
        "bias": encode_array(a["bias"]),
        "gate": encode_array(a["gate"]),
    }
    if a.get("frozen", False):
        out["frozen"] = True
    m = a.get("module")
    if m is not None:
        out["module"] = {"name": str(m["name"]), "hash": str(m["hash"]), "graft": int(m["graft"])}
    order = order_key(a)
    if order is not None:
        out["order"] = list(order)
    if a.get("drop") is not None:
        out["drop"] = int(a["drop"])
    if a["role"] == "exit":
        out["threshold"] = float(a["threshold"])
    if a.get("skip") is not None:
        out["skip"] = encode_array(a["skip"])
    return out


def _edge_dict(s: int, d: int, a: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "src": int(s),
        "dst": int(d),
        "innovation": int(a["innovation"]),
        "enabled": bool(a["enabled"]),
        "recurrent": bool(a["recurrent"]),
        "weight": encode_array(a["weight"]),
        "gate": encode_array(np.asarray(a["gate"])),
    }
    if a.get("frozen", False):
        out["frozen"] = True
    if a.get("mask") is not None:
        out["mask"] = encode_array(a["mask"].astype(np.float32))
    if a.get("skip") is not None:
        out["skip"] = encode_array(a["skip"])
    return out


def to_dict(genome: Genome) -> dict[str, Any]:
    """Return a JSON-ready dict holding everything in ``genome``."""
    g = genome.graph
    nodes = [_node_dict(n, a) for n, a in sorted(g.nodes(data=True))]
    edges = [_edge_dict(s, d, a) for s, d, a in sorted(g.edges(data=True))]
    budgets = any("order" in nd or "drop" in nd for nd in nodes)
    adaptive = any("threshold" in nd or "skip" in nd for nd in nodes)
    sparse = any("mask" in ed for ed in edges)
    version = (
        FORMAT_VERSION
        if sparse
        else ADAPTIVE_VERSION
        if adaptive
        else BUDGET_VERSION
        if budgets
        else PLAIN_VERSION
    )
    return {"format": FORMAT, "version": version, "meta": genome.meta, "nodes": nodes, "edges": edges}


def _get(d: Any, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(d, dict):
        raise GenomeError(f"{where}: should be an object, got {type(d).__name__}")
    if key not in d:
        raise GenomeError(f"{where}: missing key {key!r}")
    v = d[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(v, kinds) and not (isinstance(v, bool) and bool not in kinds)
    if not ok:
        names = "/".join(k.__name__ for k in kinds)
        raise GenomeError(f"{where}.{key}: should be {names}, got {v!r:.40}")
    return v


def _get_id(d: Any, key: str, where: str) -> int:
    v = _get(d, key, where, int)
    if not 0 <= v <= MAX_ID:
        raise GenomeError(f"{where}.{key}: should be an int in [0, 2**53], got {v}")
    return v


def _get_frozen(d: dict[str, Any], where: str) -> bool:
    """Read an optional ``frozen`` flag (absent: False)."""
    if "frozen" not in d:
        return False
    return _get(d, "frozen", where, bool)


def _get_module(d: dict[str, Any], where: str) -> dict[str, Any] | None:
    """Read an optional ``module`` object ``{"name", "hash", "graft"}`` (absent or null: None)."""
    m = d.get("module")
    if m is None:
        return None
    where = f"{where}.module"
    if not isinstance(m, dict):
        raise GenomeError(f"{where}: should be an object or null, got {m!r:.40}")
    extra = sorted(set(m) - {"name", "hash", "graft"})
    if extra:
        raise GenomeError(f"{where}: unknown key {extra[0]!r:.40}, expected 'name', 'hash', 'graft'")
    name, digest = _get(m, "name", where, str), _get(m, "hash", where, str)
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise GenomeError(f"{where}.hash: should be 64 lowercase hex digits (sha256), got {digest!r:.80}")
    return {"name": name, "hash": digest, "graft": _get_id(m, "graft", where)}


def _get_order(d: dict[str, Any], width: int, where: str) -> np.ndarray | None:
    """Read an optional ``order`` list (absent or null: None, the identity)."""
    order = d.get("order")
    if order is None:
        return None
    if not isinstance(order, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in order):
        raise GenomeError(f"{where}.order: should be a list of ints, got {order!r:.60}")
    if len(order) != width or sorted(order) != list(range(width)):
        raise GenomeError(f"{where}.order: should be a permutation of range({width}), got {order!r:.60}")
    return np.array(order, dtype=np.int64)


def _get_drop(d: dict[str, Any], where: str) -> int | None:
    """Read an optional ``drop`` rank (absent or null: None)."""
    if d.get("drop") is None:
        return None
    r = _get(d, "drop", where, int)
    if not 0 <= r <= MAX_ID:
        raise GenomeError(f"{where}.drop: should be an int in [0, 2**53], got {r}")
    return r


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
    if version not in READ_VERSIONS:
        raise GenomeError(f"genome.version: should be one of {list(READ_VERSIONS)}, got {version!r}")
    meta = data.get("meta", {})
    if not isinstance(meta, dict):
        raise GenomeError(f"genome.meta: should be an object, got {meta!r}")
    g = nx.DiGraph()
    for k, nd in enumerate(_get(data, "nodes", "genome", list)):
        where = f"genome.nodes[{k}]"
        nid = _get_id(nd, "id", where)
        if nid in g:
            raise GenomeError(f"{where}.id: node {nid} appears twice")
        width = _get(nd, "width", where, int)
        if not 1 <= width <= MAX_WIDTH:
            raise GenomeError(f"{where}.width: should be in [1, 2**31 - 1], got {width}")
        g.add_node(
            nid,
            role=_get(nd, "role", where, str),
            width=width,
            activation=_get(nd, "activation", where, str),
            bias=decode_array(
                _get(nd, "bias", where, (dict, list)), (width,), f"{where} (node {nid}).bias"
            ),
            gate=decode_array(
                _get(nd, "gate", where, (dict, list)), (width,), f"{where} (node {nid}).gate"
            ),
            frozen=_get_frozen(nd, f"{where} (node {nid})"),
            module=_get_module(nd, f"{where} (node {nid})"),
        )
        a = g.nodes[nid]
        set_order(a, _get_order(nd, width, f"{where} (node {nid})"))
        drop = _get_drop(nd, f"{where} (node {nid})")
        if drop is not None:
            a["drop"] = drop
        if "threshold" in nd:
            a["threshold"] = float(_get(nd, "threshold", f"{where} (node {nid})", (int, float)))
        elif a["role"] == "exit":
            raise GenomeError(f"{where} (node {nid}): missing key 'threshold' (an exit node holds one)")
        if nd.get("skip") is not None:
            a["skip"] = decode_array(nd["skip"], (1,), f"{where} (node {nid}).skip")
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
        named = f"{where} (edge {s}->{d})"
        g.add_edge(
            s,
            d,
            innovation=_get_id(ed, "innovation", where),
            enabled=_get(ed, "enabled", where, bool),
            recurrent=_get(ed, "recurrent", where, bool),
            weight=decode_array(_get(ed, "weight", where, (dict, list)), shape, f"{named}.weight"),
            gate=np.float32(decode_array(gate, (), f"{named}.gate")),
            frozen=_get_frozen(ed, named),
        )
        if ed.get("mask") is not None:
            bits = decode_array(ed["mask"], shape, f"{named}.mask")
            if not np.isin(bits, (0.0, 1.0)).all():
                raise GenomeError(f"{named}.mask: every entry should be 0 or 1")
            g.edges[s, d]["mask"] = bits == 1.0
        if ed.get("skip") is not None:
            g.edges[s, d]["skip"] = decode_array(ed["skip"], (shape[1],), f"{named}.skip")
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
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise GenomeError(f"{path}: cannot read genome file ({exc.strerror or 'read error'})") from None
    except UnicodeDecodeError:
        raise GenomeError(f"{path}: not a UTF-8 text file, expected genome JSON") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenomeError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise GenomeError(f"{path}: not a genome: JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal of more than 4300 digits
        raise GenomeError(f"{path}: not valid JSON ({str(exc).splitlines()[0]:.80})") from None
    try:
        return from_dict(data)
    except GenomeError as exc:
        raise GenomeError(f"{path}: {exc}") from None


def to_graphml(genome: Genome, path: str | os.PathLike[str] | None = None) -> nx.DiGraph:
    """Return (and optionally write) a structure-only copy for graph tools.

    Nodes keep ``role``, ``width``, ``activation``; edges keep ``innovation``,
    ``enabled``, ``recurrent`` and the ``weight_norm``. No arrays. A grafted module's
    node adds ``module`` (its name), ``module_hash``, ``graft`` and, when frozen,
    ``frozen = True``; a frozen edge ``frozen = True`` (absent keys: unset, so a
    genome without modules writes what it always did). A node with a budget order
    adds ``order`` (its permutation as space-separated ints), one with a drop rank
    ``drop``. Adaptive genes (``genomes.adaptive``): an exit node (role ``"exit"``)
    adds its ``threshold``, a skip-gated node ``skip`` (its gate's bias), and an edge
    into one ``skip_norm``. A sparse edge adds ``connections`` (its mask's count).
    """
    h = nx.DiGraph()
    for n, a in genome.graph.nodes(data=True):
        extra: dict[str, Any] = {}
        m = a.get("module")
        if m is not None:
            extra = {"module": str(m["name"]), "module_hash": str(m["hash"]), "graft": int(m["graft"])}
        if a.get("frozen", False):
            extra["frozen"] = True
        order = order_key(a)
        if order is not None:
            extra["order"] = " ".join(str(i) for i in order)
        if a.get("drop") is not None:
            extra["drop"] = int(a["drop"])
        if a["role"] == "exit":
            extra["threshold"] = float(a["threshold"])
        if a.get("skip") is not None:
            extra["skip"] = float(a["skip"][0])
        h.add_node(int(n), role=a["role"], width=int(a["width"]), activation=a["activation"], **extra)
    for s, d, a in genome.graph.edges(data=True):
        h.add_edge(
            int(s),
            int(d),
            innovation=int(a["innovation"]),
            enabled=bool(a["enabled"]),
            recurrent=bool(a["recurrent"]),
            weight_norm=float(np.linalg.norm(a["weight"])),
            **({"frozen": True} if a.get("frozen", False) else {}),
            **({"connections": int(np.count_nonzero(a["mask"]))} if a.get("mask") is not None else {}),
            **({"skip_norm": float(np.linalg.norm(a["skip"]))} if a.get("skip") is not None else {}),
        )
    if path is not None:
        import io

        buf = io.BytesIO()
        nx.write_graphml(h, buf)
        atomic_write(path, buf.getvalue())
    return h
