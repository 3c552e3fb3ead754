"""The lineage store on hand-written histories: atomic generations, reading a live
store, pruned members, elite folding and depth limits."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import hybrid.lineage as lineage
from genomes import Genome, InnovationTracker, MutationConfig, widen
from hybrid.lineage import GenerationRow, GenomeRow, LineageWriter, ancestry


def _row(gid: int, gen: int, genome: Genome, parents: tuple[int, ...] = (), ops: tuple = (),
         metric: float = 0.5, keep: bool = True) -> GenomeRow:
    return GenomeRow(
        id=gid, generation=gen, parents=parents, operators=ops, species=0, status="ok", train_loss=0.1,
        val_loss=0.2, val_metric=metric, active_params=genome.n_parameters(), flops=10, genome=genome,
        keep_weights=keep,
    )


def _summary(gen: int, champion: int) -> GenerationRow:
    return GenerationRow(gen, champion, 0.5, 0.5, 1, 3.0, 0.01, {"generation": gen, "champion_id": champion})


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text("# a run folder needs only this file to be recognised\n")
    return run


def _chain(run: Path, ops_per_generation: list[str]) -> tuple[list[int], Genome]:
    """Write one genome per generation, each the child of the previous one by the given op."""
    rng = np.random.default_rng(0)
    tracker = InnovationTracker()
    genome = Genome.minimal(2, 2, rng, tracker, hidden=(3,))
    w = LineageWriter(run / "lineage.sqlite")
    w.write_generation([_row(0, 0, genome)], _summary(0, 0))
    ids = [0]
    for gen, op in enumerate(ops_per_generation, start=1):
        if op == "widen":
            genome, rec = widen(genome, rng, tracker, MutationConfig())
            ops = (rec.to_dict(),)
        else:
            ops = ({"op": "elite", "args": {}},)
        w.write_generation([_row(gen, gen, genome, (gen - 1,), ops, metric=0.5 + gen / 100)], _summary(gen, gen))
        ids.append(gen)
    w.close()
    return ids, genome


def test_runs_of_elites_fold_into_one_step(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    _chain(run, ["widen", "elite", "elite", "elite", "elite", "widen", "elite", "elite"])
    with lineage.open(run) as lin:
        steps = ancestry(lin, 8)
        assert [s.operator_text.split("(")[0] for s in steps] == ["initial", "widen", "elite x4", "widen", "elite", "elite"]
        folded = steps[2]
        assert folded.record.id == 5 and folded.parent is not None and folded.parent.id == 1
        assert folded.generations == "2-5" and folded.diff is not None and folded.diff.empty
        assert folded.metric_change == pytest.approx(0.04)
        assert len(ancestry(lin, 8, fold=False)) == 9


def test_depth_limits_the_steps_and_keeps_the_oldest_steps_parent(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    _chain(run, ["widen"] * 5)
    with lineage.open(run) as lin:
        steps = ancestry(lin, 5, depth=2)
        assert [s.record.id for s in steps] == [3, 4, 5]
        assert steps[0].parent is not None and steps[0].parent.id == 2
        assert steps[0].diff is not None and steps[0].diff.neurons > 0
        assert [s.record.id for s in ancestry(lin, 5, depth=0)] == [5]
        assert [s.record.id for s in ancestry(lin, 5, depth=50)] == [0, 1, 2, 3, 4, 5]


def test_widen_shows_as_a_width_change_in_the_diff(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    _chain(run, ["widen"])
    with lineage.open(run) as lin:
        (_, step) = ancestry(lin, 1)
        (node, old, new) = step.diff.widths[0]
        added = step.record.operators[0].args["added"]
        assert new - old == added == step.diff.neurons
        assert str(step.record.operators[0]) == f"widen(node={node}, added={added})"


def test_a_failed_write_leaves_no_part_of_the_generation(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    _, genome = _chain(run, ["widen"])
    w = LineageWriter(run / "lineage.sqlite")
    summary = dataclasses.replace(_summary(2, 2), stats={"not json": object()})
    with pytest.raises(TypeError):  # fails after the genome rows went in, before the summary
        w.write_generation([_row(2, 2, genome, (1,)), _row(3, 2, genome, (1,))], summary)
    w.close()
    with lineage.open(run) as lin:
        assert [g.generation for g in lin.generations()] == [0, 1]
        assert lin.records(generation=2) == []


def test_a_reader_sees_the_last_committed_generation_while_one_is_being_written(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    _, genome = _chain(run, ["widen"])
    w = LineageWriter(run / "lineage.sqlite")
    w.conn.execute("BEGIN")
    w.conn.execute("DELETE FROM genomes WHERE generation = 0")  # uncommitted: invisible to readers
    try:
        with lineage.open(run) as lin:
            assert len(lin.records()) == 2
            assert lin.path_to_root(1)[-1].generation == 0
    finally:
        w.conn.execute("ROLLBACK")
        w.close()
    mode = sqlite3.connect(run / "lineage.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_members_of_dropped_species_are_stored_as_pruned(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    genome = Genome.minimal(2, 2, np.random.default_rng(0), InnovationTracker())
    w = LineageWriter(run / "lineage.sqlite")
    failed = dataclasses.replace(_row(2, 0, genome), status="failed")
    w.write_generation([_row(0, 0, genome), _row(1, 0, genome), failed], _summary(0, 0), pruned=[1, 2])
    w.close()
    with lineage.open(run) as lin:
        assert [r.status for r in lin.records()] == ["ok", "pruned", "failed"]


def test_truncate_after_forgets_later_generations(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    _chain(run, ["widen", "widen", "widen"])
    w = LineageWriter(run / "lineage.sqlite")
    w.truncate_after(1)
    w.close()
    with lineage.open(run) as lin:
        assert [r.id for r in lin.records()] == [0, 1]
        assert lin.best().id == 1  # no best/: the latest generation's champion so far


def test_a_run_without_a_store_yet_is_a_clear_error(tmp_path: Path) -> None:
    from hybrid.errors import RunDirError

    with pytest.raises(RunDirError, match="has not completed a generation"):
        lineage.open(_run_dir(tmp_path))


def test_a_damaged_store_is_a_clear_error(tmp_path: Path) -> None:
    from hybrid.errors import RunDirError

    run = _run_dir(tmp_path)
    (run / "lineage.sqlite").write_bytes(b"not a database, just bytes" * 100)
    with pytest.raises(RunDirError, match="not a readable lineage store"):
        lineage.open(run)
