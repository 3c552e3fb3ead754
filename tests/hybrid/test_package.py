"""The public surface of ``hybrid``: cheap to import, every advertised name resolves."""

from __future__ import annotations

import subprocess
import sys

import pytest

import hybrid


def test_import_hybrid_does_not_import_torch() -> None:
    code = "import sys, hybrid; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", hybrid.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(hybrid, name) is not None


def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        hybrid.no_such_thing  # noqa: B018
