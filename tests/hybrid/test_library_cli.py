"""``hybrid modules`` end to end on a tiny real run: add, list, show, remove, verify, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from genomes import Genome, evaluate, load, modules, save
from genomes.genome import edge_attrs
from hybrid.cli import main
from hybrid.config import loads_config
from hybrid.library import Library, harvest_run
from hybrid.search import Search

#: input(2) -> hidden 2 (width 4) -> hidden 3 (width 3) -> output 1 (width 2), 2 generations.
TINY = """
[run]
name = "tiny"
seed = 1
runs_dir = "{runs}"

[task]
name = "circles"
n_samples = 80

[genome]
hidden = [4, 3]

[training]
steps = 5

[evolution]
population = 4
generations = 2
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.getbasetemp() / "library_runs"
    Search.start(
        loads_config(TINY.format(runs=runs.as_posix()), source="tiny.toml"), overwrite=True
    ).run()
    return runs / "tiny"


@pytest.fixture(scope="module")
def champion(run: Path) -> Genome:
    return load(run / "best" / "genome.json")


@pytest.fixture
def lib(tmp_path: Path) -> Path:
    return tmp_path / "lib"


def _ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["modules", *argv]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def _fails(capsys: pytest.CaptureFixture[str], *argv: str, needles: tuple[str, ...] = ()) -> str:
    code = main(["modules", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("hybrid modules: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_add_the_whole_champion_then_get_it_back(
    run: Path, champion: Genome, lib: Path, capsys
) -> None:
    out = _ok(
        capsys,
        "add",
        str(run),
        "--name",
        "whole",
        "--library",
        str(lib),
        "--description",
        "all of it",
    )
    spec = Library(lib).get("whole")
    assert out.strip() == f"whole {spec.content_hash()[:12]} 2->2 {spec.n_parameters} parameters"
    assert spec.in_width == champion.n_inputs and spec.out_width == champion.n_outputs
    task = json.loads((run / "task.json").read_text())
    assert np.array_equal(spec.mean, np.asarray(task["feature_mean"]))
    assert np.array_equal(spec.scale, np.asarray(task["feature_std"]))
    x = np.random.default_rng(0).standard_normal((16, 2))  # standardised features
    np.testing.assert_allclose(
        modules.module_forward(spec, x), evaluate(champion, x, "sigmoid"), rtol=1e-5, atol=1e-6
    )
    e = Library(lib).entries()[0]
    assert e.description == "all of it"
    assert e.source == {
        "run_dir": str(run.absolute()),
        "genome_id": champion.meta["id"],
        "task": "circles",
        "gate": "sigmoid",
    }
    best = json.loads((run / "best" / "metrics.json").read_text())
    assert e.metrics == {
        "metric": "accuracy",
        "val_metric": best["val_metric"],
        "test_metric": best["test_metric"],
    }


def test_nodes_choose_the_sub_graph_and_the_standardisation_follows_the_input(
    run: Path, champion: Genome, lib: Path, capsys
) -> None:
    first, second = champion.hidden_nodes()
    _ok(
        capsys,
        "add",
        str(run),
        "best",
        "--name",
        "first",
        "--nodes",
        str(first),
        "--library",
        str(lib),
    )
    _ok(
        capsys, "add", str(run), "--name", "second", "--nodes", f" {second} ", "--library", str(lib)
    )
    a, b = Library(lib).get("first"), Library(lib).get("second")
    assert (a.in_width, a.out_width, a.mean is not None) == (2, 4, True)
    assert (b.in_width, b.out_width, b.mean is None) == (4, 3, True)
    assert a.structure()["standardised"] and not b.structure()["standardised"]


def test_a_genome_id_from_the_lineage(run: Path, lib: Path, capsys) -> None:
    import hybrid.lineage as lineage

    with lineage.open(run) as lin:
        gid = next(r.id for r in lin.records() if r.has_weights and r.val_metric is not None)
    _ok(capsys, "add", str(run), str(gid), "--name", f"g{gid}", "--library", str(lib))
    e = Library(lib).entry(f"g{gid}")
    assert e.source["genome_id"] == gid
    assert set(e.metrics) == {"metric", "val_metric"} and 0.0 <= e.metrics["val_metric"] <= 1.0


def test_list_show_remove_verify(run: Path, lib: Path, capsys) -> None:
    _ok(
        capsys,
        "add",
        str(run),
        "--name",
        "alpha",
        "--library",
        str(lib),
        "--description",
        "the champion",
    )
    _ok(capsys, "add", str(run), "--name", "beta", "--nodes", "2", "--library", str(lib))
    h = Library(lib).entry("alpha").hash
    out = _ok(capsys, "list", "--library", str(lib))
    for needle in (
        "alpha",
        "beta",
        h[:12],
        "2->2",
        "2->4",
        "circles",
        "test accuracy",
        "the champion",
    ):
        assert needle in out, out
    assert out.index("alpha") < out.index("beta")
    out = _ok(capsys, "show", "alpha", "--library", str(lib))
    for needle in (
        f"hash: {h}",
        "in_width: 2",
        "out_width: 2",
        "format: hybrid.module",
        "task=circles",
        "gate=sigmoid",
        "structure: input width 2, standardised",
        "outputs:",
        "created:",
    ):
        assert needle in out, out
    out = _ok(capsys, "verify", "--library", str(lib))
    assert "ok alpha" in out and "ok beta" in out and "2 modules verified" in out
    assert "1 modules verified" in _ok(capsys, "verify", "beta", "--library", str(lib))
    assert "removed beta" in _ok(capsys, "remove", "beta", "--library", str(lib))
    out = _ok(capsys, "list", "--library", str(lib))
    assert "alpha" in out and "beta" not in out


def test_overwrite_replaces_an_entry(run: Path, lib: Path, capsys) -> None:
    _ok(capsys, "add", str(run), "--name", "m", "--nodes", "2", "--library", str(lib))
    _fails(
        capsys,
        "add",
        str(run),
        "--name",
        "m",
        "--library",
        str(lib),
        needles=("entry 'm' exists", "--overwrite"),
    )
    _ok(capsys, "add", str(run), "--name", "m", "--library", str(lib), "--overwrite")
    assert Library(lib).entry("m").out_width == 2


def test_a_changed_entry_is_refused_by_verify_and_show_still_reads_it(
    run: Path, lib: Path, capsys
) -> None:
    _ok(capsys, "add", str(run), "--name", "m", "--library", str(lib))
    path = lib / "m" / "weights.safetensors"
    arrays = load_file(path)
    key = sorted(k for k in arrays if k.endswith(".weight"))[0]
    arrays[key].flat[0] += np.float32(0.5)
    save_file(arrays, path)
    _fails(
        capsys,
        "verify",
        "--library",
        str(lib),
        needles=(
            f"module library entry 'm' ({lib / 'm'})",
            "its files hash to",
            "the entry changed on disk",
        ),
    )
    assert "hash:" in _ok(capsys, "show", "m", "--library", str(lib))
    _ok(capsys, "remove", "m", "--library", str(lib))


@pytest.mark.parametrize("action", [["list"], ["show", "x"], ["remove", "x"], ["verify"]])
def test_a_missing_library(action: list[str], tmp_path: Path, capsys) -> None:
    _fails(
        capsys,
        *action,
        "--library",
        str(tmp_path / "none"),
        needles=(f"module library {tmp_path / 'none'}: no such folder", "hybrid modules add"),
    )


def test_bad_input_is_one_line_and_exit_2(run: Path, lib: Path, tmp_path: Path, capsys) -> None:
    lib.mkdir()
    r, L = str(run), ("--library", str(lib))
    _fails(capsys, "show", "nope", *L, needles=("no entry 'nope'", "entries: none"))
    _fails(capsys, "verify", "nope", *L, needles=("no entry 'nope'",))
    _fails(capsys, "remove", "nope", *L, needles=("no entry 'nope'",))
    _fails(
        capsys,
        "add",
        r,
        "--name",
        "m",
        "--nodes",
        "2,x",
        *L,
        needles=("--nodes", "'2,x'", "commas"),
    )
    _fails(capsys, "add", r, "--name", "m", "--nodes", "", *L, needles=("--nodes",))
    _fails(capsys, "add", r, "--name", "m", "--nodes=-2", *L, needles=("--nodes",))
    _fails(
        capsys, "add", r, "--name", "m", "--nodes", "2,1", *L, needles=("harvest: nodes [1, 2]",)
    )
    _fails(capsys, "add", r, "--name=-m", *L, needles=("module name '-m'",))
    _fails(capsys, "add", str(tmp_path), "--name", "m", *L, needles=("not a run folder",))
    _fails(
        capsys, "add", str(tmp_path / "none"), "--name", "m", *L, needles=("no such run folder",)
    )
    _fails(capsys, "add", r, "abc", "--name", "m", *L, needles=("'abc'",))
    _fails(capsys, "add", r, "999", "--name", "m", *L, needles=("999",))
    assert Library(lib).names() == []


def test_sequence_tasks_and_recurrent_genomes_are_refused(
    run: Path, champion: Genome, tmp_path: Path
) -> None:
    seq = shutil.copytree(run, tmp_path / "seq")
    task = json.loads((seq / "task.json").read_text())
    (seq / "task.json").write_text(
        json.dumps(task | {"sequence": True, "per_step": False, "stream": False, "T": 4})
    )
    with pytest.raises(Exception, match="is a sequence task") as exc:
        harvest_run(seq, "best", name="m")
    assert exc.value.exit_code == 2
    rec = shutil.copytree(run, tmp_path / "rec")
    g = champion.copy()
    h = champion.hidden_nodes()[0]
    width = g.node(h)["width"]
    g.graph.add_edge(h, h, **edge_attrs(10_000, np.zeros((width, width)), recurrent=True))
    save(g.validate(), rec / "best" / "genome.json")
    with pytest.raises(Exception, match="is recurrent") as exc:
        harvest_run(rec, "best", name="m")
    assert exc.value.exit_code == 2
