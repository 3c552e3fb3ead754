"""Grafting trained modules in a search: ``mutation.insert_module`` and ``[modules]``.

The search loads the entries of ``modules.library`` it may use once (each checked
against its content hash by :class:`hybrid.library.Library`) and pins their hashes
in the run folder (``modules.json``): a resume whose library entry changed since is
refused, naming the entry, so a resumed run grafts exactly what the first one did.
Breeding then applies :func:`genomes.modules.insert_module` with probability
``mutation.insert_module`` (one entry drawn uniformly per graft), the target task's
feature standardisation passed in so a module whose input is the features sees
them as it was trained.

:func:`module_use` reads a run's lineage: how many of its generation champions
descend from a graft (their own genome or an ancestor's operators name
``insert_module``), the per-run figure issue 18 asks for.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from genomes import Genome, InnovationTracker, MutationConfig, MutationRecord
from genomes.modules import ModuleSpec
from genomes.serialize import atomic_write

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import Config
    from .lineage.reader import Lineage
    from .rundir import RunDir
    from .tasks import Task

__all__ = ["PIN_FILE", "check_fit", "check_pins", "graft_operator", "load_modules", "module_use", "write_pins"]

#: The run folder's record of the library entries a search grafts from, by hash.
PIN_FILE = "modules.json"

Operator = Callable[
    [Genome, np.random.Generator, InnovationTracker, MutationConfig], tuple[Genome, MutationRecord]
]


def load_modules(config: Config) -> tuple[ModuleSpec, ...]:
    """Return the library entries the search may graft (``modules.use``, or all), hash-checked.

    Empty when ``modules.library`` is unset.

    Raises:
        LibraryError: a missing library or entry, or an entry whose files changed.
        ConfigError: the library has no entries to graft.
    """
    path = config.modules.library
    if path is None:
        return ()
    from .library import Library

    library = Library(path)
    names = config.modules.use or tuple(e.name for e in library.entries())
    if not names:
        raise ConfigError(
            f"modules.library: {path} has no entries; add one with `hybrid modules add RUN_DIR --name NAME "
            f"--library {path}`"
        )
    return tuple(library.get(name) for name in names)


def check_fit(specs: tuple[ModuleSpec, ...], task: Task, config: Config) -> None:
    """Refuse a module that no graft could feed in ``task``.

    A module that reads its source task's standardised features (it has a recorded
    standardisation) needs that many features: a stitch from other values would not
    be the input it learned on. Any other width is stitched by a node of that width,
    which may not exceed ``mutation.max_node_width``.

    Raises:
        ConfigError: naming the entry, its input width and what the task offers.
    """
    cap = config.mutation.max_node_width
    for spec in specs:
        if spec.mean is not None and spec.in_width != task.n_inputs:
            raise ConfigError(
                f"modules.library entry {spec.name!r}: reads the {spec.in_width} standardised features of its "
                f"source task, but task {task.name!r} has {task.n_inputs}: its widths cannot be stitched "
                "(harvest nodes that read a hidden node instead, or use another entry)"
            )
        if spec.in_width != task.n_inputs and spec.in_width > cap:
            raise ConfigError(
                f"modules.library entry {spec.name!r}: reads {spec.in_width} values; the stitch node that "
                f"would feed it may not be wider than mutation.max_node_width = {cap}"
            )


def write_pins(run: RunDir, specs: tuple[ModuleSpec, ...]) -> None:
    """Record each entry's name and content hash in the run folder (atomically)."""
    pins = [{"name": s.name, "hash": s.content_hash()} for s in specs]
    atomic_write(run.path / PIN_FILE, json.dumps({"modules": pins}, indent=2) + "\n")


def check_pins(run: RunDir, specs: tuple[ModuleSpec, ...]) -> None:
    """Refuse a library whose entries differ from the ones the run started with.

    Raises:
        ConfigError: an entry changed, appeared or went missing (one line naming it).
    """
    path = run.path / PIN_FILE
    if not path.is_file():
        if specs:
            raise ConfigError(
                f"{path}: missing, but the config names a module library: the run started without one"
            )
        return
    try:
        pins = {p["name"]: p["hash"] for p in json.loads(path.read_text())["modules"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: unreadable ({type(exc).__name__}); expected {{'modules': [{{name, hash}}]}}") from None
    now = {s.name: s.content_hash() for s in specs}
    for name in sorted(set(pins) | set(now)):
        if pins.get(name) != now.get(name):
            was = pins.get(name, "absent")[:12]
            got = now.get(name, "absent")[:12]
            raise ConfigError(
                f"modules.library entry {name!r}: hash {got} now, {was} when the run started "
                f"({path}): the run would graft something else on resume; restore the entry or start a new run"
            )


def graft_operator(specs: tuple[ModuleSpec, ...], task: Task, frozen: bool) -> Operator:
    """Return the ``insert_module`` mutation over ``specs`` for ``task``'s features.

    The operator draws one entry uniformly, then lets
    :func:`genomes.modules.insert_module` place it (host, consumer) with the same
    generator.
    """
    from genomes.modules import insert_module

    mean = np.asarray(task.feature_mean, dtype=np.float64)
    scale = np.asarray(task.feature_std, dtype=np.float64)

    def graft(
        genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, config: MutationConfig
    ) -> tuple[Genome, MutationRecord]:
        spec = specs[int(rng.integers(len(specs)))]
        return insert_module(genome, rng, tracker, config, spec, frozen=frozen, mean=mean, scale=scale)

    return graft


def module_use(lineage: Lineage) -> dict[str, Any]:
    """Return how a run used its library: grafts made, and champions descending from one.

    Returns:
        ``{"grafts": genomes made by insert_module, "modules": {name: grafts},
        "champions": generations with a champion, "champions_with_module": how many
        of those champions have a graft among their ancestors (or themselves)}``.
    """
    grafted: set[int] = set()
    by_module: Counter[str] = Counter()
    for rec in lineage.records():
        for op in rec.operators:
            if op.op == "insert_module":
                grafted.add(rec.id)
                by_module[str(op.args.get("module"))] += 1
    champions = [g.champion for g in lineage.generations() if g.champion is not None]
    with_module = sum(
        1 for c in champions if c in grafted or not grafted.isdisjoint(lineage.ancestors(c))
    )
    return {
        "grafts": len(grafted),
        "modules": dict(sorted(by_module.items())),
        "champions": len(champions),
        "champions_with_module": with_module,
    }
