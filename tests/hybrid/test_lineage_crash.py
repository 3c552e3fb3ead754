"""The lineage store survives ``kill -9`` mid-run, and ``hybrid resume`` appends to it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hybrid.lineage as lineage
from tests.hybrid.test_lineage import POPULATION, tiny_config_text

GENERATIONS = 6


def _generations_on_disk(run: Path) -> int:
    stats = run / "stats.jsonl"
    return stats.read_text().count("\n") if stats.exists() else 0


def _per_generation(db: Path) -> dict[int, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT generation, COUNT(*) FROM genomes GROUP BY generation"))
    finally:
        conn.close()


def test_sigkill_leaves_a_sound_store_that_resume_completes(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config_text(tmp_path, name="kill", generations=GENERATIONS))
    run = tmp_path / "kill"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "hybrid", "run", str(cfg), "--plain"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _generations_on_disk(run) < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the run ended (or hung) before it could be killed")
        time.sleep(0.01)
    time.sleep(0.1)  # somewhere inside the next generation (training or writing)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    db = run / "lineage.sqlite"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    killed = _per_generation(db)
    assert 2 <= len(killed) < GENERATIONS, "killed too late to test anything"
    assert set(killed.values()) == {POPULATION}, "a generation was left half-written"
    with lineage.open(run) as lin:  # readable as it is, without resuming
        assert lin.path_to_root(lin.best().id)[-1].generation == 0

    out = subprocess.run([sys.executable, "-m", "hybrid", "resume", str(run), "--plain"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert _per_generation(db) == {g: POPULATION for g in range(GENERATIONS)}
    with lineage.open(run) as lin:
        records = lin.records()
        assert len({r.id for r in records}) == len(records) == POPULATION * GENERATIONS
        assert [g.generation for g in lin.generations()] == list(range(GENERATIONS))
        by_id = {r.id for r in records}
        assert all(set(r.parents) <= by_id for r in records)
        assert lin.path_to_root(lin.best().id)[-1].generation == 0
