"""The public surface of ``hybrid``: cheap to import, every advertised name resolves."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys

import pytest

import hybrid


def test_import_hybrid_does_not_import_torch() -> None:
    code = "import sys, hybrid; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", sorted(set(hybrid.__all__) - {"__version__"}))
def test_every_public_name_is_the_object_its_module_defines(name: str) -> None:
    module = importlib.import_module(hybrid._LAZY[name])
    expected = module.open if name == "open_lineage" else getattr(module, name)
    if name == "search":  # the submodule hybrid.search, callable as hybrid.api.search
        expected = importlib.import_module("hybrid.search")
    assert getattr(hybrid, name) is expected
    assert callable(expected)  # classes and functions only: no data behind a lazy name
    assert name in dir(hybrid)


def test_the_version_is_the_installed_distribution_version() -> None:
    try:
        installed = importlib.metadata.version("hybrid")
    except importlib.metadata.PackageNotFoundError:  # a checkout on PYTHONPATH has no metadata
        pytest.skip("hybrid is imported from a checkout, not installed")
    assert hybrid.__version__ == installed


def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        hybrid.no_such_thing  # noqa: B018


def test_hybrid_search_is_the_module_and_calls_the_array_api(monkeypatch: pytest.MonkeyPatch) -> None:
    import hybrid.api
    import hybrid.search

    assert hybrid.search.Search is not None  # the module's names stay reachable
    monkeypatch.setattr(hybrid.api, "search", lambda *a, **k: ("called", a, k))
    assert hybrid.search(1, 2, kind="regression") == ("called", (1, 2), {"kind": "regression"})
