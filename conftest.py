"""Root pytest setup: what ``--doctest-modules`` may import.

The docstring examples of ``genomes`` and ``hybrid`` run with the tests (see
``[tool.pytest.ini_options]`` in pyproject.toml), so collection imports every
module of both packages. A module that needs an optional extra at import time is
left out when that extra is missing, so a plain ``.[dev]`` install still collects
cleanly; the tests of those modules skip on their own (``pytest.importorskip``).
"""

from __future__ import annotations

import importlib.util

#: Module file -> the top-level package its import needs (an optional extra).
_NEEDS = {
    "hybrid/distributed.py": "distributed",  # the `distributed` extra
}

collect_ignore = [path for path, pkg in _NEEDS.items() if importlib.util.find_spec(pkg) is None]
collect_ignore.append("hybrid/__main__.py")  # importing it runs the CLI (`python -m hybrid`)
