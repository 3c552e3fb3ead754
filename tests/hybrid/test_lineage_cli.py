"""``hybrid lineage`` and ``hybrid show`` on a small real run."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest

import hybrid.lineage as lineage
from hybrid.cli import main
from tests.hybrid.images import decoded_png
from tests.hybrid.test_lineage import make_tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_run(tmp_path_factory.getbasetemp() / "lineage_run")


@pytest.fixture(scope="module")
def facts(run: Path) -> dict:
    with lineage.open(run) as lin:
        best = lin.best()
        path = lin.path_to_root(best.id)
        champions = {g.champion for g in lin.generations()}
        bare = next(r.id for r in lin.records(generation=0) if r.id not in champions)
        return {"best": best.id, "path": [r.id for r in path], "bare": bare, "ancestors": lin.ancestors(best.id)}


def _out(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_table_traces_the_champion_back_to_generation_0(run: Path, facts: dict, capsys) -> None:
    out = _out(capsys, "lineage", str(run))
    assert f"ancestry of genome {facts['best']} (the run's champion)" in out
    assert "initial" in out  # the generation-0 row
    unfolded = _out(capsys, "lineage", str(run), "best", "--all")
    for gid in facts["path"]:
        assert f" {gid} " in unfolded


def test_graphml_loads_with_networkx_and_holds_every_ancestor(run: Path, facts: dict, tmp_path: Path, capsys) -> None:
    out = tmp_path / "anc.graphml"
    assert main(["lineage", str(run), str(facts["best"]), "--format", "graphml", "-o", str(out)]) == 0
    g = nx.read_graphml(out, node_type=int)
    assert set(g.nodes) == set(facts["ancestors"]) | {facts["best"]}
    assert nx.is_directed_acyclic_graph(g)
    root = facts["path"][-1]
    assert g.nodes[root]["generation"] == 0 and g.nodes[root]["on_path"] is True
    assert all(g.nodes[c]["generation"] == g.nodes[p]["generation"] + 1 for p, c in g.edges)


def test_json_has_the_steps_oldest_first_and_the_graph(run: Path, facts: dict, capsys) -> None:
    doc = json.loads(_out(capsys, "lineage", str(run), "best", "--format", "json", "--all"))
    assert doc["genome"] == facts["best"]
    assert [s["id"] for s in doc["steps"]] == facts["path"][::-1]
    assert doc["steps"][0]["parents"] == [] and doc["steps"][0]["structure_change"] is None
    assert {n["id"] for n in doc["nodes"]} >= set(facts["path"])


def test_dot_is_a_digraph_with_parent_child_edges(run: Path, facts: dict, capsys) -> None:
    out = _out(capsys, "lineage", str(run), "--format", "dot")
    assert out.startswith("digraph lineage {") and out.rstrip().endswith("}")
    child, parent = facts["path"][0], facts["path"][1]
    assert f"  {parent} -> {child}" in out


def test_depth_limits_the_graph_to_that_many_parent_steps(run: Path, facts: dict, capsys) -> None:
    doc = json.loads(_out(capsys, "lineage", str(run), "--format", "json", "--depth", "1", "--all"))
    assert [s["id"] for s in doc["steps"]] == facts["path"][:2][::-1]
    assert max(n["generation"] for n in doc["nodes"]) - min(n["generation"] for n in doc["nodes"]) == 1


def test_show_prints_the_structure_and_draws_a_png(run: Path, facts: dict, tmp_path: Path, capsys) -> None:
    png = tmp_path / "best.png"
    out = _out(capsys, "show", str(run), "best", "--png", str(png))
    assert f"genome {facts['best']}" in out and "nodes" in out and "edges" in out
    decoded_png(png)


def test_show_of_a_genome_without_weights_draws_its_structure(run: Path, facts: dict, tmp_path: Path, capsys) -> None:
    png = tmp_path / "bare.png"
    out = _out(capsys, "show", str(run), str(facts["bare"]), "--png", str(png))
    assert "weights not stored" in out
    decoded_png(png)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lineage", "{run}", "999999"], "no genome 999999"),
        (["lineage", "{run}", "abc"], "integer id or 'best'"),
        (["lineage", "{run}", "--depth", "-1"], "--depth should be >= 0"),
        (["lineage", "{tmp}"], "not a run folder"),
        (["show", "{run}", "-5"], "no genome -5"),
        (["report", "{tmp}"], "not a run folder"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(run: Path, tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    code = main([a.format(run=run, tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
