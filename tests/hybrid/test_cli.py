"""The command line: user errors are one line on stderr and exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid.cli import main

GOOD = """
[task]
name = "xor"

[training]
steps = 5

[evolution]
population = 4
generations = 1
"""


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def cfg(tmp_path: Path):
    def write(text: str, name: str = "c.toml") -> str:
        p = tmp_path / name
        p.write_text(text)
        return str(p)

    return write


def _run(path: str, tmp_path: Path, *extra: str) -> list[str]:
    return ["run", path, "--runs-dir", str(tmp_path / "runs"), "--plain", *extra]


def test_malformed_toml(cfg, tmp_path, capsys) -> None:
    _fails(capsys, _run(cfg("[task\nname = 1"), tmp_path), "c.toml", "TOML")


def test_unknown_key(cfg, tmp_path, capsys) -> None:
    _fails(capsys, _run(cfg(GOOD + "\n[training.extra]\n"), tmp_path), "c.toml", "training.extra")
    _fails(capsys, _run(cfg(GOOD.replace("steps", "stpes")), tmp_path), "training.stpes")


def test_wrong_type(cfg, tmp_path, capsys) -> None:
    _fails(capsys, _run(cfg(GOOD.replace("steps = 5", 'steps = "five"')), tmp_path), "training.steps", "five")


def test_out_of_range(cfg, tmp_path, capsys) -> None:
    _fails(capsys, _run(cfg(GOOD.replace("population = 4", "population = -3")), tmp_path), "evolution.population", "-3")


def test_bad_override(cfg, tmp_path, capsys) -> None:
    _fails(capsys, _run(cfg(GOOD), tmp_path, "--generations", "0"), "evolution.generations")


def test_missing_config_file(tmp_path, capsys) -> None:
    _fails(capsys, _run(str(tmp_path / "nope.toml"), tmp_path), "nope.toml")


def test_missing_csv(cfg, tmp_path, capsys) -> None:
    text = '[task]\npath = "missing.csv"\ntarget = "y"\nkind = "classification"\n'
    _fails(capsys, _run(cfg(text), tmp_path), "missing.csv")


def test_csv_without_target_column(cfg, tmp_path, capsys) -> None:
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,0\n3,4,1\n" * 10)
    text = '[task]\npath = "d.csv"\ntarget = "y"\nkind = "classification"\n'
    _fails(capsys, _run(cfg(text), tmp_path), "d.csv", "'y'")


def test_csv_with_non_numeric_feature(cfg, tmp_path, capsys) -> None:
    (tmp_path / "d.csv").write_text("a,b,y\n1,2,0\n3,oops,1\n" * 10)
    text = '[task]\npath = "d.csv"\ntarget = "y"\nkind = "classification"\n'
    line = _fails(capsys, _run(cfg(text), tmp_path), "d.csv", "column 'b', line 3: not a number")
    assert "oops" not in line  # a cell is never quoted: the path may lead to a file not meant for logs


def test_existing_run_dir_is_refused_then_overwritten(cfg, tmp_path, capsys) -> None:
    path = cfg(GOOD)
    assert main(_run(path, tmp_path)) == 0
    capsys.readouterr()
    _fails(capsys, _run(path, tmp_path), "exists", "hybrid resume")
    assert main(_run(path, tmp_path, "--overwrite")) == 0


def test_resume_of_a_non_run_folder(tmp_path, capsys) -> None:
    _fails(capsys, ["resume", str(tmp_path)], str(tmp_path))


def test_run_then_status_and_tasks(cfg, tmp_path, capsys) -> None:
    assert main(_run(cfg(GOOD), tmp_path)) == 0
    out = capsys.readouterr().out
    assert "champion" in out and "best" in out
    assert main(["status", str(tmp_path / "runs" / "c")]) == 0
    assert "finished" in capsys.readouterr().out
    assert main(["tasks"]) == 0
    listing = capsys.readouterr().out
    for name in ("xor", "spirals", "circles", "digits", "breast_cancer", "wine"):
        assert name in listing


def test_export_of_the_champion_and_a_bad_genome_id(cfg, tmp_path, capsys) -> None:
    assert main(_run(cfg(GOOD), tmp_path)) == 0
    run = tmp_path / "runs" / "c"
    assert main(["export", str(run), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.py").is_file()
    capsys.readouterr()
    _fails(capsys, ["export", str(run), "seven"], "seven")
    _fails(capsys, ["export", str(run), "--format", "bogus"], "bogus")
