"""Strict JSON for run-folder files: NaN/inf never written, every read checked."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import RunDirError

__all__ = ["dumps_json"]


def _finite(value: Any, where: str, replaced: dict[str, str]) -> Any:
    """Return ``value`` with every NaN/inf float replaced by None (noted in ``replaced``)."""
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()  # numpy scalars and arrays
    if isinstance(value, float) and not math.isfinite(value):
        replaced[where or "."] = repr(value)
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v, f"{where}.{k}" if where else str(k), replaced) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v, f"{where}[{i}]", replaced) for i, v in enumerate(value)]
    return value


def dumps_json(obj: Mapping[str, Any], *, indent: int | None = 1) -> str:
    """Return ``obj`` as strict JSON: NaN and inf become ``null``, and say why.

    Every replaced value is listed under the key ``"not_finite"`` (dotted key ->
    ``'nan'``/``'inf'``/``'-inf'``), so a reader can tell a missing number from one
    that was not finite. numpy scalars and arrays are written as numbers and lists.

    With ``indent=None`` the text is one compact line (``stats.jsonl``).

    >>> dumps_json({"loss": float("nan"), "n": 3}, indent=None)
    '{"loss":null,"n":3,"not_finite":{"loss":"nan"}}'
    """
    replaced: dict[str, str] = {}
    clean = _finite(dict(obj), "", replaced)
    if replaced:
        clean["not_finite"] = replaced
    compact = (",", ":") if indent is None else None
    return json.dumps(clean, indent=indent, separators=compact, allow_nan=False)


def _first_error(path: Path, exc: ValidationError) -> RunDirError:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "missing":
        return RunDirError(f"{path}: key {key!r} is missing")
    got = err.get("input")
    shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
    return RunDirError(f"{path}: key {key!r}: {err['msg'].lower()}, got {shown}")


def _loads_object(text: str, where: str) -> dict[str, Any]:
    """Parse one JSON object; anything else is one ``RunDirError`` starting with ``where``."""
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{where} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except ValueError as exc:
        raise RunDirError(f"{where}: {exc}") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{where}: should hold a JSON object, got {type(data).__name__}")
    return data


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    return _loads_object(text, str(path))


def _no_constant(name: str) -> Any:
    raise ValueError(f"holds {name}, which is not JSON (expected a number or null)")


