"""Malformed run folders, lineage stores, best/, stats and CLI flags: one line, exit 2, no traceback.

One tiny finished run is made per module; each case copies it, damages one thing,
runs one ``hybrid`` command in-process and checks that the user gets one line on
stderr naming the problem, exit status 2 (or 3), no traceback, and that nothing
was written outside the run folder.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from hybrid.cli import main
from tests.hybrid.tiny import tiny_toml


def make_finished_run(root: Path) -> Path:
    """Run the tiny search (2 generations) under ``root``; return its run folder."""
    cfg = root / "tiny.toml"
    cfg.write_text(tiny_toml(root / "runs", generations=2, steps=5))
    assert main(["run", str(cfg), "--plain"]) == 0
    return root / "runs" / "tiny"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_finished_run(tmp_path_factory.mktemp("finished"))


# --------------------------------------------------------------- damage helpers
def _sql(run: Path, statement: str, *args: object) -> None:
    conn = sqlite3.connect(run / "lineage.sqlite")
    with conn:
        conn.execute(statement, args)
    conn.close()


def _write(rel: str, text: str) -> Callable[[Path, Path], None]:
    def damage(run: Path, out: Path) -> None:
        (run / rel).write_text(text)

    return damage


def _edit_json(rel: str, **changes: object) -> Callable[[Path, Path], None]:
    def damage(run: Path, out: Path) -> None:
        data = json.loads((run / rel).read_text())
        for k, v in changes.items():
            if v is _DROP:
                data.pop(k)
            else:
                data[k] = v
        (run / rel).write_text(json.dumps(data))

    return damage


_DROP = object()


def _raw_json(rel: str, key: str, text: str) -> Callable[[Path, Path], None]:
    """Set ``key`` to the raw JSON ``text`` (``1e999`` parses as inf without NaN/Infinity)."""

    def damage(run: Path, out: Path) -> None:
        data = json.loads((run / rel).read_text())
        data[key] = "@@"
        (run / rel).write_text(json.dumps(data).replace('"@@"', text))

    return damage


def _last_stats(**changes: object) -> Callable[[Path, Path], None]:
    def damage(run: Path, out: Path) -> None:
        lines = (run / "stats.jsonl").read_text().splitlines()
        last = json.loads(lines[-1])
        for k, v in changes.items():
            if v is _DROP:
                last.pop(k)
            else:
                last[k] = v
        lines[-1] = json.dumps(last)
        (run / "stats.jsonl").write_text("\n".join(lines) + "\n")

    return damage


def _stats_line(line: str) -> Callable[[Path, Path], None]:
    def damage(run: Path, out: Path) -> None:
        with open(run / "stats.jsonl", "a") as f:
            f.write(line + "\n")

    return damage


def _sql_damage(statement: str, *args: object) -> Callable[[Path, Path], None]:
    return lambda run, out: _sql(run, statement, *args)


def _symlink_out(rel: str, as_dir: bool) -> Callable[[Path, Path], None]:
    def damage(run: Path, out: Path) -> None:
        target = out / "elsewhere"
        target.mkdir(exist_ok=True)
        p = run / rel
        if p.is_dir():
            shutil.copytree(p, target, dirs_exist_ok=True)
            shutil.rmtree(p)
        elif p.exists():
            shutil.copy(p, target / p.name)
            p.unlink()
        p.symlink_to(target if as_dir else target / Path(rel).name)

    return damage


def _remove(rel: str) -> Callable[[Path, Path], None]:
    def damage(run: Path, out: Path) -> None:
        p = run / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()

    return damage


def _bytes(rel: str, data: bytes) -> Callable[[Path, Path], None]:
    def damage(run: Path, out: Path) -> None:
        (run / rel).write_bytes(data)
        for extra in ("-wal", "-shm"):
            Path(f"{run / rel}{extra}").unlink(missing_ok=True)

    return damage


def _genome_edit(edit: Callable[[dict], None]) -> Callable[[Path, Path], None]:
    def damage(run: Path, out: Path) -> None:
        g = json.loads((run / "best" / "genome.json").read_text())
        edit(g)
        (run / "best" / "genome.json").write_text(json.dumps(g))

    return damage


def _nan_bias(g: dict) -> None:
    node = next(n for n in g["nodes"] if n["role"] == "output")
    bias = np.full(node["bias"]["shape"], np.nan, dtype=np.float32)
    node["bias"]["b64"] = base64.b64encode(bias.tobytes()).decode()


def _stored_weights(edit: Callable[[dict], object]) -> Callable[[Path, Path], None]:
    """Replace every stored genome (weights column) by ``edit(genome dict)``."""

    def damage(run: Path, out: Path) -> None:
        conn = sqlite3.connect(run / "lineage.sqlite")
        with conn:
            for gid, text in conn.execute("SELECT id, weights FROM genomes WHERE weights IS NOT NULL").fetchall():
                conn.execute("UPDATE genomes SET weights = ? WHERE id = ?", (json.dumps(edit(json.loads(text))), gid))
        conn.close()

    return damage


def _unfinished_creation(run: Path, out: Path) -> None:
    for p in list(run.iterdir()):
        if p.name not in ("checkpoints", "best"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    for sub in ("checkpoints", "best"):
        shutil.rmtree(run / sub)
        (run / sub).mkdir()


def _nothing(run: Path, out: Path) -> None:
    pass


def _file_as(rel: str) -> Callable[[Path, Path], None]:
    """Make a plain file at ``out/rel`` (an output path's parent that is not a folder)."""

    def damage(run: Path, out: Path) -> None:
        (out / rel).write_text("not a folder")

    return damage


def _dir_at(rel: str) -> Callable[[Path, Path], None]:
    def damage(run: Path, out: Path) -> None:
        (out / rel).mkdir()

    return damage


def _both(*steps: Callable[[Path, Path], None]) -> Callable[[Path, Path], None]:
    def damage(run: Path, out: Path) -> None:
        for step in steps:
            step(run, out)

    return damage


# ----------------------------------------------------------------------- cases
M = "best/metrics.json"
G = "best/genome.json"
T = "task.json"
ALL_GENOMES = "UPDATE genomes SET {}"
CASES: list[tuple[str, Callable[[Path, Path], None], list[str], str]] = [
    # status: best/metrics.json
    ("metrics-not-json", _write(M, "{oops"), ["status", "{run}"], "metrics.json"),
    ("metrics-empty-object", _write(M, "{}"), ["status", "{run}"], "genome_id"),
    ("metrics-a-list", _write(M, "[1, 2]"), ["status", "{run}"], "metrics.json"),
    ("metrics-a-string", _write(M, '"done"'), ["status", "{run}"], "metrics.json"),
    ("metrics-empty-file", _write(M, ""), ["status", "{run}"], "metrics.json"),
    ("metrics-test-metric-string", _edit_json(M, test_metric="0.9"), ["status", "{run}"], "test_metric"),
    ("metrics-test-metric-nan", _write(M, '{"test_metric": NaN}'), ["status", "{run}"], "NaN"),
    ("metrics-genome-id-string", _edit_json(M, genome_id="12"), ["status", "{run}"], "genome_id"),
    ("metrics-genome-id-bool", _edit_json(M, genome_id=True), ["status", "{run}"], "genome_id"),
    ("metrics-unknown-metric", _edit_json(M, metric="f1"), ["status", "{run}"], "metric"),
    ("metrics-no-stop-reason", _edit_json(M, stop_reason=_DROP), ["status", "{run}"], "stop_reason"),
    ("metrics-params-float", _edit_json(M, active_parameters=3.5), ["status", "{run}"], "active_parameters"),
    ("metrics-is-a-folder", _both(_remove(M), lambda r, o: (r / M).mkdir()), ["status", "{run}"], "metrics.json"),
    ("metrics-not-utf8", _bytes(M, b"\xff\xfe{"), ["status", "{run}"], "metrics.json"),
    # status: stats.jsonl
    ("stats-no-best-metric", _last_stats(best_metric=_DROP), ["status", "{run}"], "best_metric"),
    ("stats-best-metric-string", _last_stats(best_metric="high"), ["status", "{run}"], "best_metric"),
    ("stats-no-champion", _last_stats(champion_id=_DROP), ["status", "{run}"], "champion_id"),
    ("stats-species-float", _last_stats(n_species=1.5), ["status", "{run}"], "n_species"),
    ("stats-generation-string", _last_stats(generation="1"), ["status", "{run}"], "generation"),
    ("stats-line-not-json", _stats_line("{oops"), ["status", "{run}"], "stats.jsonl"),
    ("stats-line-a-list", _stats_line("[1]"), ["status", "{run}"], "stats.jsonl"),
    ("stats-line-infinity", _stats_line('{"generation": 2, "best_metric": Infinity}'), ["status", "{run}"], "Infinity"),
    ("stats-not-utf8", _bytes("stats.jsonl", b"\xff\n"), ["status", "{run}"], "stats.jsonl"),
    # the run folder itself
    ("no-config", _remove("config.toml"), ["status", "{run}"], "not a run folder"),
    ("config-garbage", _write("config.toml", "[[[\n"), ["status", "{run}"], "config.toml"),
    ("unfinished-creation-status", _unfinished_creation, ["status", "{run}"], "interrupted"),
    ("unfinished-creation-resume", _unfinished_creation, ["resume", "{run}"], "interrupted"),
    ("missing-run-folder", _nothing, ["status", "{out}/nope"], "no such run folder"),
    ("run-folder-is-a-file", _file_as("afile"), ["status", "{out}/afile"], "no such run folder"),
    ("best-symlink-out-status", _symlink_out("best", True), ["status", "{run}"], "outside the run folder"),
    ("stats-symlink-out", _symlink_out("stats.jsonl", False), ["status", "{run}"], "outside the run folder"),
    ("checkpoints-symlink-out-resume", _symlink_out("checkpoints", True), ["resume", "{run}"], "outside"),
    ("lineage-symlink-out-report", _symlink_out("lineage.sqlite", False), ["report", "{run}"], "outside"),
    ("report-symlink-out", _symlink_out("report.html", False), ["report", "{run}"], "outside"),
    ("best-symlink-out-export", _symlink_out("best", True), ["export", "{run}"], "outside"),
    # lineage store
    ("lineage-0-bytes", _bytes("lineage.sqlite", b""), ["lineage", "{run}"], "lineage.sqlite"),
    ("lineage-garbage", _bytes("lineage.sqlite", b"not a database" * 100), ["lineage", "{run}"], "lineage.sqlite"),
    ("lineage-missing", _remove("lineage.sqlite"), ["lineage", "{run}"], "lineage.sqlite"),
    ("lineage-version-0", _sql_damage("PRAGMA user_version = 0"), ["lineage", "{run}"], "version 0"),
    ("lineage-version-99", _sql_damage("PRAGMA user_version = 99"), ["lineage", "{run}"], "version 99"),
    ("lineage-no-genomes-table", _sql_damage("DROP TABLE genomes"), ["lineage", "{run}"], "lineage.sqlite"),
    ("parents-not-json", _sql_damage(ALL_GENOMES.format("parents = '{oops'")), ["lineage", "{run}"], "parents"),
    ("parents-an-object", _sql_damage(ALL_GENOMES.format("parents = '{}'")), ["lineage", "{run}"], "parents"),
    ("parents-strings", _sql_damage(ALL_GENOMES.format("parents = '[\"a\"]'")), ["lineage", "{run}"], "parents"),
    ("parents-null-text", _sql_damage(ALL_GENOMES.format("parents = 'null'")), ["lineage", "{run}"], "parents"),
    ("operators-not-json", _sql_damage(ALL_GENOMES.format("operators = 'x'")), ["lineage", "{run}"], "operators"),
    ("operators-ints", _sql_damage(ALL_GENOMES.format("operators = '[1, 2]'")), ["lineage", "{run}"], "operators"),
    ("operators-no-op", _sql_damage(ALL_GENOMES.format("operators = '[{}]'")), ["lineage", "{run}"], "operators"),
    ("status-unknown", _sql_damage(ALL_GENOMES.format("status = 'zombie'")), ["lineage", "{run}"], "status"),
    ("val-metric-text", _sql_damage(ALL_GENOMES.format("val_metric = 'good'")), ["lineage", "{run}"], "val_metric"),
    ("active-params-text", _sql_damage(ALL_GENOMES.format("active_params = 'many'")), ["lineage", "{run}"], "active_params"),
    ("generation-text", _sql_damage(ALL_GENOMES.format("generation = 'first'")), ["lineage", "{run}"], "generation"),
    ("structure-not-json", _sql_damage(ALL_GENOMES.format("structure = 'x'")), ["show", "{run}", "best"], "structure"),
    ("structure-no-nodes", _sql_damage(ALL_GENOMES.format("structure = '{}'")), ["show", "{run}", "best"], "structure"),
    (
        "structure-bad-activation",
        _sql_damage(ALL_GENOMES.format("structure = json_replace(structure, '$.nodes[0].activation', 'evil')")),
        ["show", "{run}", "best"],
        "structure",
    ),
    ("weights-not-json", _sql_damage("UPDATE genomes SET weights = 'x' WHERE weights IS NOT NULL"), ["show", "{run}", "best"], "weights"),
    ("weights-a-list", _stored_weights(lambda g: []), ["show", "{run}", "best"], "weights"),
    ("weights-wrong-genome", _stored_weights(lambda g: {"format": "nope"}), ["show", "{run}", "best"], "weights"),
    ("weights-no-nodes-export", _stored_weights(lambda g: {k: v for k, v in g.items() if k != "nodes"}), ["export", "{run}", "12"], "weights"),
    ("gate-unknown", _sql_damage("UPDATE meta SET value = '\"magic\"' WHERE key = 'gate'"), ["show", "{run}", "best"], "gate"),
    ("gate-not-json", _sql_damage("UPDATE meta SET value = 'magic' WHERE key = 'gate'"), ["show", "{run}", "best"], "gate"),
    ("meta-seed-markup", _sql_damage("UPDATE meta SET value = '\"<b>1</b>\"' WHERE key = 'seed'"), ["report", "{run}"], "seed"),
    ("generations-stats-not-json", _sql_damage("UPDATE generations SET stats = '{oops'"), ["report", "{run}"], "stats"),
    ("generations-best-text", _sql_damage("UPDATE generations SET best_metric = 'x'"), ["report", "{run}"], "best_metric"),
    ("generations-champion-null", _sql_damage("UPDATE generations SET n_species = 'x'"), ["report", "{run}"], "n_species"),
    ("report-metrics-empty", _write(M, "{}"), ["report", "{run}"], "metrics.json"),
    # lineage / show / report / export output paths and arguments
    ("lineage-o-missing-folder", _nothing, ["lineage", "{run}", "--format", "json", "-o", "{out}/no/x.json"], "does not exist"),
    ("lineage-o-parent-a-file", _file_as("f"), ["lineage", "{run}", "--format", "dot", "-o", "{out}/f/x.dot"], "not a folder"),
    ("lineage-o-a-folder", _dir_at("d"), ["lineage", "{run}", "--format", "graphml", "-o", "{out}/d"], "is a folder"),
    ("lineage-bad-genome", _nothing, ["lineage", "{run}", "abc"], "abc"),
    ("lineage-unknown-genome", _nothing, ["lineage", "{run}", "999999"], "999999"),
    ("lineage-negative-depth", _nothing, ["lineage", "{run}", "--depth", "-1"], "--depth"),
    ("show-png-missing-folder", _nothing, ["show", "{run}", "best", "--png", "{out}/no/g.png"], "does not exist"),
    ("show-png-parent-a-file", _file_as("f"), ["show", "{run}", "best", "--png", "{out}/f/g.png"], "not a folder"),
    ("show-png-a-folder", _dir_at("d"), ["show", "{run}", "best", "--png", "{out}/d"], "is a folder"),
    ("show-unknown-genome", _nothing, ["show", "{run}", "424242"], "424242"),
    ("report-o-missing-folder", _nothing, ["report", "{run}", "-o", "{out}/no/r.html"], "does not exist"),
    ("report-o-parent-a-file", _file_as("f"), ["report", "{run}", "-o", "{out}/f/r.html"], "not a folder"),
    ("report-o-a-folder", _dir_at("d"), ["report", "{run}", "-o", "{out}/d"], "is a folder"),
    ("export-out-missing-folder", _nothing, ["export", "{run}", "--out", "{out}/no/m.py"], "does not exist"),
    ("export-out-parent-a-file", _file_as("f"), ["export", "{run}", "--out", "{out}/f/m.py"], "not a folder"),
    ("export-out-deep-missing", _nothing, ["export", "{run}", "--out", "{out}/a/b/c"], "does not exist"),
    ("export-bad-format", _nothing, ["export", "{run}", "--format", "exe"], "format"),
    ("export-bad-genome", _nothing, ["export", "{run}", "abc"], "abc"),
    # export: best/ and task.json
    ("best-genome-not-json", _write(G, "{oops"), ["export", "{run}"], "genome.json"),
    ("best-genome-missing", _remove(G), ["export", "{run}"], "genome.json"),
    ("best-genome-meta-id-code", _genome_edit(lambda g: g["meta"].update(id='1"""\nimport os\n"""')), ["export", "{run}"], "meta.id"),
    ("best-genome-nan-bias", _genome_edit(_nan_bias), ["export", "{run}"], "bias"),
    ("export-metrics-string-metric", _edit_json(M, test_metric="high"), ["export", "{run}"], "test_metric"),
    ("task-missing", _remove(T), ["export", "{run}"], "task.json"),
    ("task-empty-object", _write(T, "{}"), ["export", "{run}"], "task.json"),
    ("task-not-json", _write(T, "{oops"), ["export", "{run}"], "task.json"),
    ("task-nan-class-label", _edit_json(T, class_labels=[float("nan"), 1]), ["export", "{run}"], "NaN"),
    ("task-inf-class-label", _raw_json(T, "class_labels", "[1e999, 1]"), ["export", "{run}"], "class_labels"),
    ("task-infinity-feature-mean", _edit_json(T, feature_mean=[0.0, 1e308 * 10]), ["export", "{run}"], "Infinity"),
    ("task-1e999-feature-std", _raw_json(T, "feature_std", "[1.0, 1e999]"), ["export", "{run}"], "feature_std"),
    ("task-unknown-kind", _edit_json(T, kind="ranking"), ["export", "{run}"], "kind"),
    ("task-zero-std", _edit_json(T, feature_std=[0.0, 1.0]), ["export", "{run}"], "feature_std"),
    ("task-short-mean", _edit_json(T, feature_mean=[0.0]), ["export", "{run}"], "feature_mean"),
    ("task-n-inputs-string", _edit_json(T, n_inputs="2"), ["export", "{run}"], "n_inputs"),
    ("task-labels-too-few", _edit_json(T, class_labels=["a"]), ["export", "{run}"], "class_labels"),
    # resume over a damaged lineage store
    ("resume-lineage-0-bytes", _bytes("lineage.sqlite", b""), ["resume", "{run}", "--plain"], "lineage.sqlite"),
    ("resume-lineage-garbage", _bytes("lineage.sqlite", b"x" * 4096), ["resume", "{run}", "--plain"], "lineage.sqlite"),
    ("resume-lineage-version-0", _sql_damage("PRAGMA user_version = 0"), ["resume", "{run}", "--plain"], "version 0"),
    ("resume-lineage-emptied", _sql_damage("DELETE FROM generations"), ["resume", "{run}", "--plain"], "lost history"),
]


def _snapshot(root: Path, skip: Path) -> dict[str, bytes | None]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p == skip or skip in p.parents:
            continue
        out[str(p)] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return out


def test_there_are_at_least_70_distinct_cases() -> None:
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names)) >= 70


@pytest.mark.parametrize(("damage", "argv", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_damaged_run_folder_or_bad_flag_is_one_line_and_exit_2(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage, argv, needle
) -> None:
    run = tmp_path / "runs" / "tiny"
    shutil.copytree(finished, run, symlinks=True)
    out = tmp_path / "out"
    out.mkdir()
    damage(run, out)
    before = _snapshot(tmp_path, run)
    capsys.readouterr()
    code = main([a.format(run=run, out=out) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith(("run folder:", "gen "))]
    assert code in (2, 3), err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0], lines[0]
    assert _snapshot(tmp_path, run) == before  # nothing written outside the run folder
