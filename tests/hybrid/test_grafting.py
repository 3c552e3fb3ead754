"""Grafted modules in the search: library -> insert_module -> lineage, frozen bits, resume, refusals.

A tiny circles run is the source: its champion's hidden node goes into a library,
and a second run on the same task grafts it (``mutation.insert_module = 1``). Same
task and seed, so the same standardisation: the grafted copies hold the library's
arrays bit for bit, and must still after generations of training, write-back and
crossover. A run is reproducible with its library, a resume is refused once the
entry changed, and a sequence task refuses grafting.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genomes import load
from hybrid.cli import main
from hybrid.config import loads_config
from hybrid.errors import HybridError
from hybrid.grafting import module_use
from hybrid.library import Library, harvest_run
from hybrid.lineage.reader import open as open_lineage
from hybrid.search import Search
from tests.hybrid.tiny import tiny_toml


def _library(tmp_path: Path) -> tuple[Library, str]:
    src = Search.start(loads_config(tiny_toml(tmp_path / "src", generations=2), source="src.toml")).run()
    genome = load(Path(src.run_dir) / "best" / "genome.json")
    spec, source, metrics = harvest_run(Path(src.run_dir), "best", genome.hidden_nodes()[:1], name="circ")
    (tmp_path / "lib").mkdir()
    library = Library(tmp_path / "lib")
    library.add(spec, source=source, metrics=metrics)
    return library, spec.name


def _target_toml(tmp_path: Path, runs: str, generations: int = 3, frozen: bool = True) -> str:
    text = tiny_toml(tmp_path / runs, seed=0, generations=generations)  # the source's data and split
    text = text.replace("[mutation]\n", "[mutation]\ninsert_module = 1.0\n", 1)
    return text + f'\n[modules]\nlibrary = "{tmp_path / "lib"}"\nfrozen = {str(frozen).lower()}\n'


def _stats(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]


def test_a_search_grafts_library_modules_and_keeps_them_frozen(tmp_path: Path) -> None:
    library, name = _library(tmp_path)
    spec = library.get(name)
    result = Search.start(loads_config(_target_toml(tmp_path, "t"), source="t.toml")).run()
    with open_lineage(result.run_dir) as lin:
        use = module_use(lin)
        grafts = [op for rec in lin.records() for op in rec.operators if op.op == "insert_module"]
        last = max(g.generation for g in lin.generations())
        genomes = [lin.genome(r.id) for r in lin.records(generation=last) if r.has_weights]
    assert use["grafts"] > 0 and use["modules"] == {name: use["grafts"]}
    assert all(op.args["hash"] == spec.content_hash() and op.args["frozen"] for op in grafts)
    # every frozen copy, after generations of training and breeding, is the library's bits
    biases = {a.tobytes() for a in spec.arrays().values()}
    seen = 0
    for genome in genomes:
        for _, a in genome.graph.nodes(data=True):
            if a.get("frozen", False):
                assert a["module"]["hash"] == spec.content_hash()
                assert a["bias"].tobytes() in biases
                seen += 1
        for *_, a in genome.graph.edges(data=True):
            if a.get("frozen", False):
                assert a["weight"].tobytes() in biases
    assert seen > 0, "no grafted module survived to the last generation"
    assert json.loads((Path(result.run_dir) / "modules.json").read_text())["modules"] == [
        {"name": name, "hash": spec.content_hash()}
    ]


def test_a_grafting_run_repeats_itself_and_status_reports_module_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _library(tmp_path)
    a = Search.start(loads_config(_target_toml(tmp_path, "a"), source="a.toml")).run()
    b = Search.start(loads_config(_target_toml(tmp_path, "b"), source="b.toml")).run()
    assert _stats(a.run_dir) == _stats(b.run_dir)
    assert main(["status", str(a.run_dir)]) == 0
    assert "descending from a graft" in capsys.readouterr().out


def test_resume_refuses_a_library_entry_that_changed(tmp_path: Path) -> None:
    library, name = _library(tmp_path)
    run_dir = Search.start(loads_config(_target_toml(tmp_path, "t", generations=2), source="t.toml")).run().run_dir
    # the entry is replaced by another module of the same name
    spec = library.get(name)
    bias = spec.nodes[0].bias.copy()
    bias[0] += 1.0
    from dataclasses import replace

    changed = replace(spec, nodes=(replace(spec.nodes[0], bias=bias), *spec.nodes[1:]))
    library.add(changed, overwrite=True)
    with pytest.raises(HybridError, match=f"'{name}'"):
        Search.resume(run_dir)


def test_a_sequence_task_refuses_grafting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "lib").mkdir()
    cfg = tmp_path / "s.toml"
    cfg.write_text('[task]\nname = "parity"\n\n[evolution]\npopulation = 4\ngenerations = 1\n\n'
                   f'[mutation]\ninsert_module = 0.1\n\n[modules]\nlibrary = "{tmp_path / "lib"}"\n')  # fmt: skip
    code = main(["run", str(cfg), "--plain", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "mutation.insert_module" in err[0]


def test_a_missing_library_is_one_line_before_any_run_folder(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(_target_toml(tmp_path, "t").replace(str(tmp_path / "lib"), str(tmp_path / "nowhere")))
    code = main(["run", str(cfg), "--plain"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nowhere" in err[0]
    assert not (tmp_path / "t" / "tiny").exists()


def test_a_module_that_reads_other_features_cannot_be_stitched(tmp_path: Path, capsys) -> None:
    _library(tmp_path)  # a circles module: it reads circles' 2 standardised features
    cfg = tmp_path / "d.toml"
    cfg.write_text(_target_toml(tmp_path, "d").replace('name = "circles"\nn_samples = 120', 'name = "wine"'))
    code = main(["run", str(cfg), "--plain"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "'circ'" in err[0] and "cannot be stitched" in err[0]


def test_modules_start_grafts_part_of_generation_zero_and_preserves_its_function(tmp_path: Path) -> None:
    import numpy as np

    from genomes import evaluate
    from hybrid.generation import initial_state
    from hybrid.grafting import load_modules
    from hybrid.tasks import load_task

    library, name = _library(tmp_path)
    text = _target_toml(tmp_path, "t").replace("insert_module = 1.0", "insert_module = 0.0")
    plain = loads_config(text, source="t.toml")
    config = loads_config(text.replace("[modules]\n", "[modules]\nstart = 0.5\n"), source="t.toml")
    task = load_task(config.task, config.run.seed)
    before = initial_state(plain, task, load_modules(plain)).members  # start = 0: no graft
    after = initial_state(config, task, load_modules(config)).members
    grafted = [m for m in after if m.operators]
    assert len(grafted) == round(0.5 * len(after)) and all(m.genome.grafts() for m in grafted)
    assert all(m.operators[0]["op"] == "insert_module" and m.operators[0]["args"]["module"] == name for m in grafted)
    assert all(not m.genome.grafts() for m in after if not m.operators)
    x = task.X_val[:16]
    for b, a in zip(before, after, strict=True):  # a graft joins as a zero branch: same function
        np.testing.assert_array_equal(evaluate(b.genome, x), evaluate(a.genome, x))
    result = Search.start(config).run()
    with open_lineage(result.run_dir) as lin:
        assert module_use(lin)["grafts"] >= len(grafted)


def test_modules_start_without_a_library_is_one_line(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(tiny_toml(tmp_path / "t", seed=0, generations=1) + "\n[modules]\nstart = 0.5\n")
    code = main(["run", str(cfg), "--plain"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "modules.start" in err[0]
