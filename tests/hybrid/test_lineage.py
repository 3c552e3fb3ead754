"""The lineage store's read side on a small real run: parents, paths, champions, genomes."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

import hybrid.lineage as lineage
from genomes import load
from hybrid.config import loads_config
from hybrid.errors import RunDirError
from hybrid.lineage import LineageError, structure_diff
from hybrid.search import Search

#: A run small enough to make once per test module (~5 s on one core), varied
#: enough to hold crossovers, elites, growth, closed gates and several species.
TINY = """
[run]
name = "{name}"
seed = 3
runs_dir = "{runs}"

[task]
name = "circles"
n_samples = 120
noise = 0.1

[genome]
hidden = [3]

[training]
steps = 20
gate = "hard_concrete"
penalty = 0.01

[evolution]
population = 8
generations = {generations}
elitism = 1
crossover_rate = 0.5
survival_fraction = 0.6

[speciation]
target_species = 2
stagnation = 2

[mutation]
add_node = 0.4
widen = 0.4
add_edge = 0.3
prune_neurons = 0.2
"""
POPULATION = 8
GENERATIONS = 4


def tiny_config_text(runs: Path, name: str = "tiny", generations: int = GENERATIONS) -> str:
    """Return the tiny run's config (TOML) writing to ``runs/name``."""
    return TINY.format(name=name, runs=runs.as_posix(), generations=generations)


def make_tiny_run(base: Path) -> Path:
    """Run the tiny search into ``base/tiny`` once; later calls reuse the folder."""
    run = base / "tiny"
    if not (run / "best" / "metrics.json").is_file():
        config = loads_config(tiny_config_text(base), source="tiny.toml")
        Search.start(config, overwrite=True).run()
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_run(tmp_path_factory.getbasetemp() / "lineage_run")


@pytest.fixture()
def lin(run: Path):
    with lineage.open(run) as store:
        yield store


def test_every_genome_after_generation_0_has_parents_from_the_previous_generation(lin) -> None:
    records = lin.records()
    by_id = {r.id: r for r in records}
    assert {r.generation for r in records} == set(range(GENERATIONS))
    for r in records:
        if r.generation == 0:
            assert r.parents == () and r.operator_text == "initial"
        else:
            assert r.parents, r
            assert all(by_id[p].generation == r.generation - 1 for p in r.parents)


def test_each_generation_holds_exactly_the_population(lin) -> None:
    for g in range(GENERATIONS):
        assert len(lin.records(generation=g)) == POPULATION


def test_champions_path_to_root_ends_in_generation_0_one_generation_per_step(lin) -> None:
    path = lin.path_to_root(lin.best().id)
    assert path[0].id == lin.best().id
    assert path[-1].generation == 0 and path[-1].parents == ()
    assert [r.generation for r in path] == list(range(path[0].generation, -1, -1))
    assert all(child.parents[0] == parent.id for child, parent in zip(path, path[1:], strict=False))


def test_best_is_the_finished_runs_champion_with_its_weights(lin, run: Path) -> None:
    metrics = json.loads((run / "best" / "metrics.json").read_text())
    best = lin.best()
    assert best.id == metrics["genome_id"] and best.has_weights
    assert lin.genome(best.id) == load(run / "best" / "genome.json")
    assert lin.resolve("best") == best.id


def test_each_generations_champion_is_its_best_and_keeps_weights(lin) -> None:
    for gen in lin.generations():
        champ = lin.champion(gen.generation)
        members = lin.records(generation=gen.generation)
        assert champ.val_metric == max(m.val_metric for m in members if m.val_metric is not None)
        assert lin.genome(champ.id).n_parameters() == champ.n_parameters


def test_last_generation_keeps_weights_earlier_ones_only_for_champions(lin) -> None:
    champions = {g.champion for g in lin.generations()}
    for r in lin.records():
        assert r.has_weights == (r.generation == GENERATIONS - 1 or r.id in champions), r


def test_genome_without_weights_says_only_the_structure_is_stored(lin) -> None:
    champions = {g.champion for g in lin.generations()}
    bare = next(r for r in lin.records(generation=0) if r.id not in champions)
    with pytest.raises(LineageError, match="only its structure is stored"):
        lin.genome(bare.id)
    assert lin.structure(bare.id).nodes  # the structure is still there


def test_ancestors_and_descendants_mirror_each_other(lin) -> None:
    best = lin.best().id
    ancestors = lin.ancestors(best)
    assert {r.id for r in lin.path_to_root(best)[1:]} <= ancestors
    for a in ancestors:
        assert best in lin.descendants(a)
    assert not lin.ancestors(lin.path_to_root(best)[-1].id)


def test_graph_is_a_dag_of_parent_child_edges_built_once(lin) -> None:
    import networkx as nx

    g = lin.graph
    assert lin.graph is g and nx.is_directed_acyclic_graph(g)
    assert g.number_of_nodes() == POPULATION * GENERATIONS
    for r in lin.records():
        assert [p for p, _, k in sorted(g.in_edges(r.id, data="rank"), key=lambda e: e[2])] == list(r.parents)


def test_elites_keep_their_parents_structure(lin) -> None:
    elites = [r for r in lin.records() if r.is_elite]
    assert elites
    for r in elites:
        assert structure_diff(lin.structure(r.parents[0]), lin.structure(r.id)).empty


def test_growth_operators_show_up_in_the_structural_diff(lin) -> None:
    seen = 0
    for r in lin.records():
        if len(r.parents) != 1:
            continue
        before, after = lin.structure(r.parents[0]), lin.structure(r.id)
        after_ids = {n.id for n in after.nodes}
        diff = structure_diff(before, after)
        for op in r.operators:
            if op.op == "add_node" and op.args["node"] in after_ids:
                assert op.args["node"] in diff.nodes_added
                seen += 1
            if op.op == "add_edge" and (op.args["src"], op.args["dst"]) in {(e.src, e.dst) for e in after.edges}:
                assert (op.args["src"], op.args["dst"]) in diff.edges_added
                seen += 1
    assert seen, "the tiny run grew nothing: make its mutation rates larger"


def test_records_are_frozen(lin) -> None:
    rec = lin.best()
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.id = 0  # type: ignore[misc]


def test_unknown_genome_and_generation_are_user_errors(lin) -> None:
    for call in (lambda: lin.record(10**6), lambda: lin.path_to_root(-1), lambda: lin.champion(99),
                 lambda: lin.resolve("nope"), lambda: lin.genome(10**6)):
        with pytest.raises(LineageError):
            call()


def test_open_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="not a run folder"):
        lineage.open(tmp_path)


def test_store_opens_read_only(lin) -> None:
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        lin.conn.execute("DELETE FROM genomes")
