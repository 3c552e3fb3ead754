"""Read a config from TOML (with CLI overrides) and write one back, every key out.

Every failure is a :class:`~hybrid.errors.ConfigError` of one line naming the
file, the dotted key, the value seen and what was expected, e.g.
``configs/x.toml: evolution.population: got -3, expected an integer >= 2``.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from ._base import KeyedError
from ._config import SECTIONS, Config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["config_from_dict", "dump_config", "load_config", "loads_config"]

_TYPE_NAMES = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "bool_type": "true or false",
    "tuple_type": "a list",
    "list_type": "a list",
}
_COMPARISONS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}


#: Longest value an error quotes: a 10,000-character name stays one readable line.
_SHOW_MAX = 80


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        v = list(v)
    if isinstance(v, BaseModel):
        return "a table"
    text = repr(v)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = Config
    for part in loc:
        info = model.model_fields.get(part) if isinstance(part, str) else None
        if info is None:
            return None
        model = info.annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _annotation_types(loc: tuple[Any, ...]) -> set[type]:
    """Return the plain types a field's annotation allows (empty if unknown)."""
    parent = _model_at(loc[:-1])
    info = parent.model_fields.get(loc[-1]) if parent and isinstance(loc[-1], str) else None
    found: set[type] = set()
    stack = [info.annotation] if info else []
    while stack:
        t = stack.pop()
        if isinstance(t, type) and not typing.get_args(t):
            found.add(t)
        elif typing.get_origin(t) is typing.Literal:
            found.update(type(a) for a in typing.get_args(t))
        else:
            stack.extend(
                a
                for a in typing.get_args(t)
                if not isinstance(a, (int, float, str)) or isinstance(a, type)
            )
    return found


def _noun(loc: tuple[Any, ...], value: Any) -> str:
    types_ = _annotation_types(loc) if isinstance(loc[-1], str) else set()
    if float in types_ or (not types_ and isinstance(value, float)):
        return "a number"
    return "an integer"


def _message(err: Mapping[str, Any], overridden: set[str]) -> str:
    loc, kind, ctx, value = tuple(err["loc"]), err["type"], err.get("ctx") or {}, err.get("input")
    error = ctx.get("error")
    if isinstance(error, KeyedError):
        loc, value = loc + tuple(error.key.split(".")), error.value
        seen = "not set" if value is None else f"got {_show(value)}"
        text = f"{_dotted(loc)}: {seen}, {error.expected}"
    elif kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        near = difflib.get_close_matches(
            str(loc[-1]), list(model.model_fields) if model else [], n=1
        )
        hint = f" (did you mean '{_dotted(loc[:-1] + (near[0],))}'?)" if near else ""
        text = f"unknown key '{_dotted(loc)}'{hint}"
    elif kind == "missing":
        text = (
            f"missing key '{_dotted(loc)}'" if len(loc) > 1 else f"missing section [{_dotted(loc)}]"
        )
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        text = f"{_dotted(loc)}: got {_show(value)}, expected a table [{_dotted(loc)}]"
    elif kind in _COMPARISONS:
        op, key = _COMPARISONS[kind]
        text = f"{_dotted(loc)}: got {_show(value)}, expected {_noun(loc, value)} {op} {ctx[key]}"
    elif kind == "literal_error":
        text = f"{_dotted(loc)}: got {_show(value)}, expected {ctx['expected']}"
    elif kind in _TYPE_NAMES:
        text = f"{_dotted(loc)}: got {_show(value)}, expected {_TYPE_NAMES[kind]}"
    elif kind == "too_long":
        unit = "characters" if isinstance(value, str) else "item(s)"
        text = f"{_dotted(loc)}: got {_show(value)}, expected at most {ctx['max_length']} {unit}"
    elif kind == "too_short":
        text = f"{_dotted(loc)}: got {_show(value)}, expected at least {ctx['min_length']} item(s)"
    elif kind == "value_error" and error is not None:
        text = f"{_dotted(loc)}: got {_show(value)}, {error}"
    else:
        text = f"{_dotted(loc)}: got {_show(value)}, {err['msg'].lower()}"
    if any(_dotted(loc) == k or _dotted(loc).startswith(k + ".") for k in overridden):
        text += " (from an override)"
    return text.replace("\n", " ")


def config_from_dict(
    data: Mapping[str, Any], source: str = "<config>", overridden: set[str] | None = None
) -> Config:
    """Validate a TOML-shaped dict into a :class:`Config`.

    Args:
        data: ``{section: {key: value}}`` as TOML parses it.
        source: the file (or origin) to name in errors.
        overridden: dotted keys that came from overrides (errors say so).

    Raises:
        ConfigError: one line listing every problem, ``; ``-separated.
    """
    try:
        return Config.model_validate(dict(data))
    except ValidationError as exc:
        problems = [_message(e, overridden or set()) for e in exc.errors()]
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def _wants_string(parts: list[str]) -> bool:
    types_ = _annotation_types(tuple(parts))
    return not types_ or types_ <= {str, type(None)}


def _apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any], source: str) -> set[str]:
    done: set[str] = set()
    for key, value in overrides.items():
        parts = key.split(".")
        if len(parts) < 2 or not all(parts):
            raise ConfigError(
                f"{source}: override {key!r}: expected a dotted key such as 'run.seed'"
            )
        table = data
        for i, part in enumerate(parts[:-1]):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(
                    f"{source}: override {key!r}: '{'.'.join(parts[: i + 1])}' is not a table"
                )
        if isinstance(value, str) and not _wants_string(parts):
            try:  # CLI values arrive as text: read "5" as 5, "true" as true, like TOML
                value = tomllib.loads(f"v = {value}")["v"]
            except tomllib.TOMLDecodeError:
                pass  # keep the text; validation reports it with the expected type
        if key in ("task.path", "modules.library") and isinstance(value, str):
            value = os.path.abspath(
                value
            )  # a path given on the command line is relative to the cwd
        table[parts[-1]] = value
        done.add(key)
    return done


def loads_config(
    text: str,
    source: str = "<string>",
    overrides: Mapping[str, Any] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    default_name: str | None = None,
) -> Config:
    """Parse TOML text into a :class:`Config`, applying dotted-key overrides.

    Args:
        text: the TOML document.
        source: the file to name in errors.
        overrides: ``{"run.seed": 3, "evolution.generations": "10", ...}``; text
            values are read as TOML values unless the key holds a string.
        base_dir: folder a relative ``task.path`` is relative to (default: cwd).
        default_name: ``run.name`` when the document does not set one.

    Raises:
        ConfigError: malformed TOML, unknown keys, wrong types, out-of-range values.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", msg)
        where = f"line {m.group(2)}, column {m.group(3)}: {m.group(1)}" if m else msg
        raise ConfigError(f"{source}: not valid TOML ({where})") from None
    except RecursionError:
        raise ConfigError(f"{source}: not a config: TOML nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{source}: not valid TOML ({str(exc).split(':')[0]})") from None
    task, run = data.get("task"), data.get("run")
    if isinstance(task, dict) and isinstance(task.get("path"), str):
        task["path"] = os.path.normpath(
            os.path.join(os.path.abspath(base_dir or "."), task["path"])
        )
    modules = data.get("modules")
    if isinstance(modules, dict) and isinstance(modules.get("library"), str):
        modules["library"] = os.path.normpath(
            os.path.join(os.path.abspath(base_dir or "."), modules["library"])
        )
    if default_name is not None and (run is None or (isinstance(run, dict) and "name" not in run)):
        data.setdefault("run", {})["name"] = default_name
    overridden = _apply_overrides(data, overrides or {}, source)
    return config_from_dict(data, source, overridden)


def load_config(path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None) -> Config:
    """Read a TOML config file, apply CLI overrides, and validate it.

    ``run.name`` defaults to the file's stem; a relative ``task.path`` is relative
    to the file's folder.

    Args:
        path: the TOML file.
        overrides: dotted keys from the CLI, e.g. ``{"run.seed": 3}``.

    Returns:
        The frozen, validated :class:`Config`.

    Raises:
        ConfigError: one line naming the file, key, value seen and what was expected
            (also for a missing or unreadable file).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a folder, expected a TOML config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file, expected TOML") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc.strerror})") from None
    name = re.sub(r"[^A-Za-z0-9._-]", "_", p.stem).lstrip("._-") or "run"
    return loads_config(text, str(p), overrides, base_dir=p.parent, default_name=name)


def _toml_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):  # inline: the sections hold short lists of scalars
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return tomli_w.dumps({"v": v}).split("=", 1)[1].strip()


def dump_config(config: Config) -> str:
    """Return ``config`` as TOML with every key written out and explained.

    Each key is preceded by a comment saying why its default is what it is;
    unset optional keys appear commented out. ``loads_config(dump_config(c)) == c``.
    """
    lines = [
        "# hybrid config, resolved: every key is written out (unset optional keys",
        "# are commented out). `hybrid run` and `hybrid resume` read it as is.",
    ]
    for section, model in SECTIONS.items():
        values = getattr(config, section)
        lines += ["", f"[{section}]"]
        for key, info in model.model_fields.items():
            if info.description:
                lines.append(f"# {info.description}")
            v = getattr(values, key)
            lines.append(f"# {key} = <unset>" if v is None else f"{key} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"
