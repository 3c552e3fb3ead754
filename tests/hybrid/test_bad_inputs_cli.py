"""``hybrid run`` on bad configs, data and flags: exit 2, one line, no run folder.

The in-process suites (``test_bad_config_files``, ``test_bad_input_data``,
``tests/genomes/test_bad_genome_files``) hold the many cases; these check the
command line end to end on a few of each kind, and one through a real process
(``python -m hybrid``) to see that no traceback is printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hybrid.cli import main

XOR = '[task]\nname = "xor"\n[evolution]\ngenerations = 1\npopulation = 4\n'


def _csv_task(rows: str) -> tuple[str, dict[str, str]]:
    return (
        '[task]\npath = "d.csv"\ntarget = "label"\nkind = "classification"\n',
        {"d.csv": "a,label\n" + rows},
    )


def _npz_task(kind: str = "classification") -> str:
    return f'[task]\npath = "d.npz"\nkind = "{kind}"\n'


#: case id -> (config text, extra files {name: text or arrays}, extra argv, message fragment)
CASES: dict[str, tuple[str, dict, list[str], str]] = {
    "toml syntax": ("[task\n", {}, [], "not valid TOML"),
    "lr above its bound": (XOR + "[training]\nlr = 40.0\n", {}, [], "training.lr"),
    "input noise negative": (XOR + "[training]\ninput_noise = -0.1\n", {}, [], "training.input_noise"),
    "input noise not a number": (XOR + '[training]\ninput_noise = "a"\n', {}, [], "training.input_noise"),
    "hidden too wide": (XOR + "[genome]\nhidden = [65536]\n", {}, [], "genome.hidden[0]"),
    "unknown key": (XOR + "[training]\nepochs = 3\n", {}, [], "unknown key 'training.epochs'"),
    "seed flag negative": (XOR, {}, ["--seed", "-5"], "run.seed"),
    "generations flag zero": (XOR, {}, ["--generations", "0"], "evolution.generations"),
    "name flag climbing out": (XOR, {}, ["--name", "../x"], "run.name"),
    "device flag unknown": (XOR, {}, ["--device", "tpu"], "run.device"),
    "csv nan feature": (*_csv_task("".join(f"{'nan' if i == 4 else i},{i % 2}\n" for i in range(30))), [], "missing values in column 'a' (1)"),
    "csv fractional labels": (*_csv_task("".join(f"{i},{i % 2 + 0.5}\n" for i in range(30))), [], "not an integer"),
    "csv data file missing": (_npz_task().replace("d.npz", "gone.npz"), {}, [], "file not found"),
    "npz not a zip": (_npz_task(), {"d.npz": "X,y\n1,0\n"}, [], "not an NPZ archive"),
    "npz zero-d y": (_npz_task(), {"d.npz": {"X": np.ones((30, 2)), "y": np.array(0)}}, [], "array 'y' has shape ()"),
    "npz features overflowing float32": (
        _npz_task(), {"d.npz": {"X": np.arange(60.0).reshape(30, 2) * 1e200, "y": np.arange(30) % 2}}, [],
        "not finite in float32",
    ),
    "npz regression y of three dimensions": (
        _npz_task("regression"), {"d.npz": {"X": np.ones((30, 2)), "y": np.zeros((30, 2, 3))}}, [],
        "array 'y' has shape (30, 2, 3)",
    ),
}  # fmt: skip


def _write(folder: Path, files: dict) -> None:
    for name, content in files.items():
        if isinstance(content, dict):
            np.savez(folder / name, **content)
        else:
            (folder / name).write_text(content)


@pytest.mark.parametrize("case", sorted(CASES))
def test_run_refuses_bad_input_with_exit_2_one_line_and_no_run_folder(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    text, files, argv, fragment = CASES[case]
    _write(tmp_path, files)
    (tmp_path / "bad.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["run", "bad.toml", "--plain", *argv]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("hybrid run: error: "), err
    assert fragment in lines[0] and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no runs/ folder, nothing else


def test_a_missing_config_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_python_m_hybrid_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(_npz_task())
    (tmp_path / "d.npz").write_bytes(b"\x80\x04K\x01.")  # a pickle named .npz
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "hybrid", "run", "bad.toml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "not an NPZ archive" in proc.stderr and "pickle" not in proc.stderr.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml", "d.npz"]
