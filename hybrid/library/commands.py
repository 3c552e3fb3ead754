"""The ``hybrid modules`` command (``hybrid.cli`` parses, these run)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._files import LibraryError
from ._store import Entry, Library

__all__ = ["add_modules_arguments", "run_modules"]

_LIBRARY_HELP = "the module library folder (default: ./modules)"


def add_modules_arguments(p: argparse.ArgumentParser) -> None:
    """Declare ``hybrid modules``' sub-commands: add, list, show, remove, verify."""
    sub = p.add_subparsers(dest="modules_command", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help, description=help)
        q.add_argument("--library", default="modules", metavar="PATH", help=_LIBRARY_HELP)
        return q

    add = action(
        "add", "harvest a module from a genome of a run and store it (creates the library)"
    )
    add.add_argument("run_dir")
    add.add_argument("genome", nargs="?", default="best", help="a genome id, or best (default)")
    add.add_argument("--name", required=True, help="the entry's name: [A-Za-z0-9][A-Za-z0-9._-]*")
    add.add_argument(
        "--nodes", help="node ids to cut out, comma-separated (default: the whole genome)"
    )
    add.add_argument("--description", default="", help="free text shown by `hybrid modules list`")
    add.add_argument("--overwrite", action="store_true", help="replace an entry of that name")
    action("list", "list the library's modules")
    show = action("show", "print everything recorded about a module")
    show.add_argument("name")
    rm = action("remove", "delete a module from the library")
    rm.add_argument("name")
    ver = action("verify", "check that modules' files still hash to what was recorded")
    ver.add_argument("names", nargs="*", metavar="NAME", help="the modules to check (default: all)")


def run_modules(args: argparse.Namespace) -> int:
    """Run one ``hybrid modules`` action.

    Raises:
        HybridError: a missing library or entry, bad ``--nodes``, a bad run folder,
            nodes that do not form a module, or an entry whose files changed.
    """
    return _ACTIONS[args.modules_command](args)


def _add(args: argparse.Namespace) -> int:
    from ._harvest import harvest_run
    from ._store import check_name

    check_name(args.name)
    nodes = _parse_nodes(args.nodes)
    spec, source, metrics = harvest_run(args.run_dir, args.genome, nodes, name=args.name)
    library = Library(args.library, create=True)
    e = library.add(
        spec, description=args.description, source=source, metrics=metrics, overwrite=args.overwrite
    )
    print(f"{e.name} {e.hash[:12]} {e.in_width}->{e.out_width} {e.n_parameters} parameters")
    return 0


def _parse_nodes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        nodes = [int(p) for p in parts]
    except ValueError:
        raise LibraryError(
            f"--nodes: got {text!r}, expected node ids separated by commas (3,5,8)"
        ) from None
    if any(n < 0 for n in nodes):
        raise LibraryError(f"--nodes: got {text!r}, expected node ids >= 0")
    return nodes


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    library = Library(args.library)
    entries = library.entries()
    table = Table(title=f"module library {library.path} ({len(entries)} modules)")
    for col in ("name", "hash", "in->out", "params", "source task", "metric", "description"):
        table.add_column(col, justify="right" if col == "params" else "left")
    for e in entries:
        table.add_row(
            e.name,
            e.hash[:12],
            f"{e.in_width}->{e.out_width}",
            str(e.n_parameters),
            str((e.source or {}).get("task", "")),
            _metric(e),
            e.description,
        )
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    return 0


def _metric(e: Entry) -> str:
    m = e.metrics
    name = m.get("metric")
    value = m.get("test_metric") if m.get("test_metric") is not None else m.get("val_metric")
    if name is None or value is None:
        return ""
    split = "test" if m.get("test_metric") is not None else "validation"
    return f"{split} {name} {value:.4f}"


def _show(args: argparse.Namespace) -> int:
    library = Library(args.library)
    e = library.entry(args.name)
    doc = json.loads((e.path / "module.json").read_text(encoding="utf-8"))
    print(f"module {e.name}  ({e.path})")
    for key, value in doc.items():
        if key == "structure":
            continue
        print(f"  {key}: {_text(value)}")
    s = doc["structure"]
    print(
        f"  structure: input width {s['in_width']}"
        + (", standardised" if s["standardised"] else "")
    )
    for n in s["nodes"]:
        feeds = [src for src, dst in s["edges"] if dst == n["local"]]
        out = "  (output)" if n["local"] in s["outputs"] else ""
        print(f"    node {n['local']}: width {n['width']} {n['activation']} <- {feeds}{out}")
    print(f"    outputs: {s['outputs']}")
    return 0


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items()) or "-"
    return "-" if value is None or value == "" else str(value)


def _remove(args: argparse.Namespace) -> int:
    library = Library(args.library)
    library.remove(args.name)  # a broken entry too: its files are not read
    print(f"removed {args.name} from {library.path}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    library = Library(args.library)
    checked = library.verify(args.names or None)
    for e in checked:
        print(f"ok {e.name} {e.hash[:12]}")
    print(f"{len(checked)} modules verified in {library.path}")
    return 0


_ACTIONS = {"add": _add, "list": _list, "show": _show, "remove": _remove, "verify": _verify}
