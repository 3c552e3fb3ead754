"""genomes/ is numpy + networkx only: importing it never imports torch."""

from __future__ import annotations

import subprocess
import sys

import genomes


def test_importing_genomes_and_every_submodule_does_not_import_torch():
    code = (
        "import sys, pkgutil, importlib, genomes\n"
        "for m in pkgutil.walk_packages(genomes.__path__, 'genomes.'):\n"
        "    importlib.import_module(m.name)\n"
        "heavy = sorted(m for m in ('torch', 'hybrid', 'hypothesis') if m in sys.modules)\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_exported_name_exists():
    assert sorted(set(genomes.__all__)) == sorted(genomes.__all__)
    missing = [name for name in genomes.__all__ if not hasattr(genomes, name)]
    assert not missing
