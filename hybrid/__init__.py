"""hybrid: neuroevolution plus gradient descent over graph genomes.

``import hybrid`` stays cheap (no torch): the names below load their module on
first use.

Example:
    >>> import hybrid
    >>> config = hybrid.load_config("configs/xor.toml")          # doctest: +SKIP
    >>> result = hybrid.Search.start(config).run()               # doctest: +SKIP
    >>> result = hybrid.search(X, y, kind="classification")      # doctest: +SKIP

``hybrid.search`` is the module :mod:`hybrid.search` and, called, the array API
:func:`hybrid.api.search` (a package attribute and a submodule cannot differ).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported lazily).
_LAZY = {
    "GenomeNet": "hybrid.net",
    "write_back": "hybrid.net",
    "TrainConfig": "hybrid.train",
    "TrainResult": "hybrid.train",
    "train_genome": "hybrid.train",
    "Metrics": "hybrid.metrics",
    "evaluate_genome": "hybrid.metrics",
    "PopulationEngine": "hybrid.population",
    "train_population": "hybrid.population",
    "evaluate_population": "hybrid.population",
    "Config": "hybrid.config",
    "load_config": "hybrid.config",
    "Task": "hybrid.tasks",
    "load_task": "hybrid.tasks",
    "Search": "hybrid.search",
    "search": "hybrid.api",
    "SearchState": "hybrid.state",
    "StepContext": "hybrid.generation",
    "GenerationReport": "hybrid.generation",
    "step": "hybrid.generation",
    "Reporter": "hybrid.reporters",
    "SearchResult": "hybrid.champion",
    "to_module": "hybrid.export",
    "export_run": "hybrid.export",
    "open_lineage": "hybrid.lineage",
    "HybridError": "hybrid.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name == "open_lineage":
        return importlib.import_module("hybrid.lineage").open
    if name == "search":  # the submodule, callable: hybrid.search(X, y) is hybrid.api.search
        return importlib.import_module("hybrid.search")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hybrid' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
