"""``hybrid report``: one self-contained HTML page, for finished and unfinished runs."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from hybrid.cli import main
from hybrid.errors import RunDirError
from hybrid.lineage import GenomeRecord
from hybrid.report import build_report, pareto_front, write_report
from tests.hybrid.images import decoded_png
from tests.hybrid.test_lineage import make_tiny_run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_run(tmp_path_factory.getbasetemp() / "lineage_run")


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_is_one_page_in_the_run_folder_with_every_figure_embedded(run: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    assert main(["report", str(copy)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {copy / 'report.html'}"
    page = (copy / "report.html").read_text()
    images = _images(page)
    assert len(images) == 6 and all(img.startswith(PNG) for img in images)
    decoded = [decoded_png(img) for img in images]
    assert all(  # six different figures, not one drawn six times
        a.shape != b.shape or not np.array_equal(a, b)
        for i, a in enumerate(decoded) for b in decoded[i + 1 :]
    )
    for heading in ("Fitness and size", "Species, and accuracy against size", "The champion's lineage", "The champion"):
        assert f"<h2>{heading}" in page
    assert "finished (generations)" in page
    assert 'src="http' not in page and "<script" not in page  # nothing to fetch


def test_report_of_an_unfinished_run_uses_the_champion_so_far(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "unfinished"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "best")
    from hybrid.lineage import open as open_lineage

    with open_lineage(copy) as lin:
        page = build_report(lin)
        champion = lin.generations()[-1].stats["champion_id"]
    assert "not finished" in page and f"champion <b>{champion}</b>" in page
    assert len(_images(page)) == 6


def test_report_needs_a_lineage_store(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("")
    with pytest.raises(RunDirError, match="no lineage.sqlite"):
        write_report(tmp_path)


def _rec(gid: int, metric: float | None, size: int, status: str = "ok") -> GenomeRecord:
    return GenomeRecord(gid, 0, (), (), 0, status, 0.0, 0.0, metric, size, 2 * size, size, False)


def test_pareto_front_keeps_only_genomes_nothing_beats_on_both_counts() -> None:
    records = [_rec(0, 0.5, 10), _rec(1, 0.7, 20), _rec(2, 0.6, 30), _rec(3, 0.9, 50), _rec(4, 0.9, 60),
               _rec(5, 0.4, 10), _rec(6, None, 5, "failed"), _rec(7, 0.99, 1, "failed")]
    assert [r.id for r in pareto_front(records)] == [0, 1, 3]
