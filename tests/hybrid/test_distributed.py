"""Searches on a Dask cluster: same results as the local paths, worker deaths survived.

The cluster tests start a real ``distributed.LocalCluster`` (worker processes, TCP
on 127.0.0.1) and skip when the ``distributed`` extra is not installed.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hybrid.distributed as hybrid_distributed
from genomes import Genome, InnovationTracker
from hybrid.cli import main
from hybrid.config import Config, loads_config
from hybrid.distributed import DaskCluster, gate_columns, train_shard
from hybrid.errors import ClusterError, ConfigError
from hybrid.population import PopulationEngine, evaluate_population, train_population
from hybrid.search import Search
from hybrid.train import TrainConfig
from tests.hybrid.tiny import tiny_toml
from tests.strategies import populations_strategy


def _config(
    tmp_path: Path,
    name: str,
    backend: str,
    address: str | None = None,
    gate: str = "sigmoid",
    engine: str = "batched",
    steps: int = 20,
    generations: int = 3,
    folds: str | int = "off",
) -> Config:
    text = tiny_toml(
        tmp_path,
        steps=steps,
        gate=gate,
        engine=engine,
        generations=generations,
        backend=backend,
        folds=folds,
    )
    overrides: dict[str, Any] = {"run.name": name}
    if address is not None:
        overrides["parallel.address"] = address
    return loads_config(text, source="tiny.toml", overrides=overrides)


def _stats(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def _assert_same_run(a: Path, b: Path) -> None:
    """Same champion and per-generation stats (floats to 1e-6: reductions may differ)."""
    sa, sb = _stats(a), _stats(b)
    assert len(sa) == len(sb)
    for ga, gb in zip(sa, sb, strict=True):
        assert ga.keys() == gb.keys()
        for key, va in ga.items():
            if isinstance(va, float):
                assert gb[key] == pytest.approx(va, abs=1e-6), (ga["generation"], key)
            else:
                assert gb[key] == va, (ga["generation"], key)
    ma = json.loads((a / "best" / "metrics.json").read_text())
    mb = json.loads((b / "best" / "metrics.json").read_text())
    assert ma["genome_id"] == mb["genome_id"]
    assert mb["test_metric"] == pytest.approx(ma["test_metric"], abs=1e-6)


def _local_cluster(**dask_config: Any) -> Any:
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set(dask_config):
        return distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A two-worker LocalCluster (one thread each), closed after the module's tests."""
    local = _local_cluster()
    try:
        yield local
    finally:
        local.close()


# ------------------------------------------------------------ pure functions


@settings(max_examples=25)
@given(populations_strategy(gate="hard_concrete"))
def test_gate_columns_are_the_batched_engines_member_gate_runs(pop) -> None:
    engine = PopulationEngine(pop, "hard_concrete")
    expected = [0] + [engine.layout.members[m].gates[1] for m in range(len(pop))]
    assert gate_columns(pop) == expected
    assert expected[-1] == engine.n_gates


@settings(max_examples=15)
@given(populations_strategy(gate="hard_concrete", size=st.integers(2, 6)), st.data())
def test_shards_train_as_the_whole_population_trains(pop, data) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, pop[0].n_inputs)).astype(np.float32)
    y = rng.integers(0, pop[0].n_outputs, 30)
    noise = data.draw(st.sampled_from([0.0, 0.3]))  # input noise: one stream, drawn after the gate noise
    config = TrainConfig(steps=5, batch_size=8, lr=0.02, penalty=0.05, gate="hard_concrete", input_noise=noise)
    Xv = rng.normal(size=(9, pop[0].n_inputs)).astype(np.float32)
    yv = rng.integers(0, pop[0].n_outputs, 9)
    whole, whole_results, whole_val = train_population(
        pop, torch.tensor(X), torch.tensor(y), config, torch.Generator().manual_seed(7),
        X_val=torch.tensor(Xv), y_val=torch.tensor(yv),
    )
    cut = data.draw(st.integers(1, len(pop) - 1))
    cols = gate_columns(pop)
    parts = [
        train_shard(pop[a:b], X, y, config, 7, (cols[a], cols[b], cols[-1]), "cpu", 1, Xv, yv)
        for a, b in ((0, cut), (cut, len(pop)))
    ]
    genomes = parts[0].genomes + parts[1].genomes
    results = parts[0].results + parts[1].results
    val = parts[0].validation + parts[1].validation
    for v, wv in zip(val, whole_val, strict=True):
        assert v.loss == pytest.approx(wv.loss, rel=1e-4, abs=1e-5, nan_ok=True)
    for g, w, r, wr in zip(genomes, whole, results, whole_results, strict=True):
        assert r.status == wr.status
        assert r.train_loss == pytest.approx(wr.train_loss, rel=1e-5, abs=1e-6, nan_ok=True)
        for n in g.graph.nodes:
            np.testing.assert_allclose(g.node(n)["gate"], w.node(n)["gate"], rtol=1e-4, atol=1e-5)
        for e in g.graph.edges:
            np.testing.assert_allclose(
                g.edge(*e)["weight"], w.edge(*e)["weight"], rtol=1e-4, atol=1e-5
            )


# ------------------------------------------------------------------- errors


def test_dask_backend_without_the_extra_names_the_install_command(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(
        ConfigError, match=r"needs the distributed extra: pip install .*\[distributed\]"
    ):
        DaskCluster("tcp://127.0.0.1:8786")


def test_unreachable_scheduler_is_a_cluster_error() -> None:
    pytest.importorskip("distributed")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        ClusterError, match=rf"cannot reach dask scheduler at tcp://127.0.0.1:{port}: "
    ):
        DaskCluster(f"tcp://127.0.0.1:{port}", timeout=0.5)


def test_cli_dask_address_sets_the_backend_and_reports_a_bad_address(tmp_path, capsys) -> None:
    pytest.importorskip("distributed")
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(
        tiny_toml(
            tmp_path,
            steps=5,
            gate="sigmoid",
            engine="batched",
            generations=1,
            backend="none",
        )
    )
    assert main(["run", str(cfg), "--dask-address", "no-port-here", "--plain"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith(
        "hybrid run: error: cannot reach dask scheduler at no-port-here: "
    )
    assert not (tmp_path / "tiny").exists()  # no half-made run folder to --overwrite later


# ------------------------------------------------------------------ cluster


def test_dask_search_matches_the_local_joblib_search(tmp_path, cluster) -> None:
    # Sigmoid gates: joblib trains per genome, the cluster in batched shards; both
    # follow the same minibatches, so they must agree to float tolerance.
    Search.start(_config(tmp_path, "joblib", "joblib")).run()
    Search.start(_config(tmp_path, "dask", "dask", cluster.scheduler_address)).run()
    _assert_same_run(tmp_path / "joblib", tmp_path / "dask")


def test_dask_shards_replay_the_in_process_batched_engine_with_hard_concrete_gates(
    tmp_path, cluster
) -> None:
    Search.start(_config(tmp_path, "local", "none", gate="hard_concrete")).run()
    Search.start(
        _config(tmp_path, "dask", "dask", cluster.scheduler_address, gate="hard_concrete")
    ).run()
    _assert_same_run(tmp_path / "local", tmp_path / "dask")


def test_dask_shards_replay_the_in_process_k_fold_run(tmp_path, cluster) -> None:
    # K-fold fitness: each shard gets its slice of the member folds, as of the noise columns.
    Search.start(_config(tmp_path, "local", "none", gate="hard_concrete", folds=3)).run()
    Search.start(
        _config(tmp_path, "dask", "dask", cluster.scheduler_address, gate="hard_concrete", folds=3)
    ).run()
    _assert_same_run(tmp_path / "local", tmp_path / "dask")


@pytest.mark.slow
def test_dask_per_genome_jobs_equal_joblib_jobs_exactly(tmp_path, cluster) -> None:
    # The loop engine: one job per member, the same train_one call as joblib's.
    Search.start(_config(tmp_path, "joblib", "joblib", gate="hard_concrete", engine="loop")).run()
    Search.start(
        _config(
            tmp_path, "dask", "dask", cluster.scheduler_address, gate="hard_concrete", engine="loop"
        )
    ).run()
    assert _stats(tmp_path / "joblib") == _stats(tmp_path / "dask")


def test_training_data_is_broadcast_once_for_all_generations(cluster) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2)).astype(np.float32)
    y = rng.integers(0, 2, 40)
    tracker = InnovationTracker()
    pop = [Genome.minimal(2, 2, rng, tracker, hidden=(3,)) for _ in range(4)]
    config = TrainConfig(steps=3, batch_size=16)
    with DaskCluster(cluster.scheduler_address, workers=2) as dc:
        calls = []
        scatter = dc.client.scatter
        dc.client.scatter = lambda *a, **k: calls.append(k) or scatter(*a, **k)
        Xv, yv = X[:8], y[:8]
        for seed in range(3):
            trained, results, validation = dc.train(pop, X, y, config, seed, X_val=Xv, y_val=yv)
            assert len(trained) == len(results) == len(validation) == 4
            ref = evaluate_population(trained, Xv, yv, config)
            assert [v.loss for v in validation] == pytest.approx([r.loss for r in ref], rel=1e-6)
        # One broadcast for three generations; jobs then carry only genomes. (Which
        # workers hold a copy later is the active memory manager's business.)
        assert len(calls) == 1 and calls[0]["broadcast"] is True


def test_a_scatter_that_meets_a_closing_worker_is_retried_then_a_cluster_error(cluster, monkeypatch) -> None:
    # a worker killed or being restarted by its nanny closes the scatter's connection:
    # the generation scatters again (up to RESUBMISSIONS times), then says so in one line
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(hybrid_distributed, "RETRY_WAIT_S", 0.0)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 2)).astype(np.float32)
    y = rng.integers(0, 2, 40)
    pop = [Genome.minimal(2, 2, rng, InnovationTracker(), hidden=(3,)) for _ in range(3)]
    config = TrainConfig(steps=3, batch_size=16)
    with DaskCluster(cluster.scheduler_address, workers=2) as dc:
        scatter, calls = dc.client.scatter, []

        def closing(failures: int, error: Exception | None = None) -> Any:
            def fake(*a: Any, **k: Any) -> Any:
                calls.append(k)
                if len(calls) <= failures:
                    raise error or distributed.comm.CommClosedError(
                        "in <TCP (closed) ConnectionPool.scatter>: Stream is closed"
                    )
                return scatter(*a, **k)

            return fake

        _, want, _ = dc.train(pop, X, y, config, 0)  # scattered without trouble
        dc._data = None
        dc.client.scatter = closing(2)
        trained, results, _ = dc.train(pop, X, y, config, 0)
        assert len(calls) == 3 and len(trained) == len(results) == 3
        assert [r.train_loss for r in results] == [r.train_loss for r in want]  # jobs are pure: the same run
        # a worker the scheduler still lists but that is gone: the connect times out
        calls.clear()
        dc._data = None
        dc.client.scatter = closing(1, OSError("Timed out trying to connect to tcp://127.0.0.1:1 after 30 s"))
        trained, results, _ = dc.train(pop, X, y, config, 0)
        assert len(calls) == 2
        assert [r.train_loss for r in results] == [r.train_loss for r in want]  # jobs are pure: the same run
        calls.clear()
        dc._data = None  # scatter anew: every attempt now meets a closed connection
        dc.client.scatter = closing(10)
        with pytest.raises(ClusterError, match=r"dropped or refused connections 4 times in one generation") as info:
            dc.train(pop, X, y, config, 1)
        assert "\n" not in str(info.value) and len(calls) == hybrid_distributed.RESUBMISSIONS + 1


def test_cli_run_on_a_cluster_records_the_dask_backend(tmp_path, cluster) -> None:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(
        tiny_toml(
            tmp_path,
            steps=5,
            gate="sigmoid",
            engine="batched",
            generations=2,
            backend="none",
        )
    )
    assert main(["run", str(cfg), "--dask-address", cluster.scheduler_address, "--plain"]) == 0
    resolved = (tmp_path / "tiny" / "config.toml").read_text()
    assert 'backend = "dask"' in resolved and f'address = "{cluster.scheduler_address}"' in resolved
    assert len(_stats(tmp_path / "tiny")) == 2


@pytest.mark.slow
def test_dask_backend_without_an_address_starts_and_stops_a_local_cluster(tmp_path) -> None:
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("distributed")

    def workers() -> set[int]:  # spawned processes (multiprocessing's resource tracker stays)
        return {
            p.pid
            for p in psutil.Process().children(recursive=True)
            if "spawn_main" in " ".join(p.cmdline())
        }

    before = workers()
    Search.start(_config(tmp_path, "local", "none")).run()
    Search.start(_config(tmp_path, "dask", "dask")).run()
    _assert_same_run(tmp_path / "local", tmp_path / "dask")
    deadline = time.monotonic() + 30
    while workers() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not workers() - before, "LocalCluster worker processes outlived the search"


def _kill_when_training(
    client: Any, pids: dict[str, int], run: Path, after: int, count: int, killed: list
) -> None:
    """SIGKILL ``count`` worker processes once ``after`` generations are done and one trains.

    Busy workers holding the scattered training data go first: losing the data's
    last copy is the hardest case (the scheduler cannot recompute scattered data).
    """
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (run / "stats.jsonl").exists() and len(_stats(run)) >= after:
            busy = {a for a, keys in client.processing().items() if keys and a in pids}
            if busy:
                holders = {
                    w for k, ws in client.who_has().items() if "ndarray" in str(k) for w in ws
                }
                order = sorted(pids, key=lambda a: (a not in busy, a not in holders))
                for address in order[:count]:
                    os.kill(pids[address], signal.SIGKILL)
                    killed.append((len(_stats(run)), address))
                return
        time.sleep(0.01)


def _lineage_counts(run: Path) -> tuple[dict[int, tuple[int, int]], int, int]:
    with sqlite3.connect(run / "lineage.sqlite") as conn:
        per_gen = {
            g: (n, d)
            for g, n, d in conn.execute(
                "SELECT generation, COUNT(*), COUNT(DISTINCT id) FROM genomes GROUP BY generation"
            )
        }
        total, distinct = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT id) FROM genomes"
        ).fetchone()
    return per_gen, total, distinct


@pytest.mark.slow
@pytest.mark.parametrize("count", [1, 2], ids=["one-worker", "every-worker"])
def test_killed_workers_jobs_rerun_and_every_member_is_recorded_once(tmp_path, count) -> None:
    # One worker: the scheduler reruns its shard on the other (and, if it held the
    # last copy of the training data, we scatter it again). Every worker: the data
    # is surely lost; it is scattered again to the restarted workers.
    distributed = pytest.importorskip("distributed")
    steps, generations = 2000, 3  # a shard trains for about a second: the kill lands mid-job
    local = _local_cluster()
    try:
        with distributed.Client(local.scheduler_address, set_as_default=False) as client:
            pids = client.run(os.getpid)
            config = _config(
                tmp_path, "dask", "dask", local.scheduler_address,
                gate="hard_concrete", steps=steps, generations=generations,
            )  # fmt: skip
            killed: list[tuple[int, str]] = []
            run = tmp_path / "dask"
            killer = threading.Thread(
                target=_kill_when_training, args=(client, pids, run, 1, count, killed), daemon=True
            )
            killer.start()
            result = Search.start(config).run()
            killer.join()
            assert len(killed) == count and killed[0][0] < generations, "no kill mid-run"
            alive = set(client.scheduler_info()["workers"])
            assert not alive & {a for _, a in killed}  # the scheduler saw them die
    finally:
        local.close()
    assert result.generations == generations
    per_gen, total, distinct = _lineage_counts(run)
    assert per_gen == {g: (8, 8) for g in range(generations)}
    assert total == distinct == 8 * generations
    # Nothing lost, nothing counted twice: the same run as the uninterrupted in-process one.
    reference = _config(
        tmp_path, "local", "none", gate="hard_concrete", steps=steps, generations=generations
    )
    Search.start(reference).run()
    _assert_same_run(tmp_path / "local", run)


def _keep_killing(client: Any, stop: threading.Event, killed: list[str]) -> None:
    """SIGKILL whichever worker is training, again and again, until ``stop`` is set.

    One kill can land just after a job finished (on a loaded machine the scheduler
    calls below take longer than a job): then nothing fails and the next busy worker
    (a restarted one has a new pid, asked for afresh) is killed instead.
    """
    deadline = time.monotonic() + 120
    while not stop.is_set() and time.monotonic() < deadline:
        busy = [a for a, keys in client.processing().items() if keys]
        if busy:
            try:
                pids = client.run(os.getpid, workers=busy[:1])
            except Exception:  # it died or restarted meanwhile: look again
                pids = {}
            for address, pid in pids.items():
                os.kill(pid, signal.SIGKILL)
                killed.append(address)
        time.sleep(0.01)


@pytest.mark.slow
def test_a_job_that_keeps_killing_workers_is_a_cluster_error(tmp_path) -> None:
    distributed = pytest.importorskip("distributed")
    local = _local_cluster(**{"distributed.scheduler.allowed-failures": 0})
    try:
        with distributed.Client(local.scheduler_address, set_as_default=False) as client:
            # generations to spare: the search stops at the first kill that lands mid-job
            config = _config(
                tmp_path, "dask", "dask", local.scheduler_address, steps=2000, generations=6
            )
            killed: list[str] = []
            stop = threading.Event()
            killer = threading.Thread(target=_keep_killing, args=(client, stop, killed), daemon=True)
            killer.start()
            try:
                with pytest.raises(ClusterError, match="dask workers kept dying"):
                    Search.start(config).run()
            finally:
                stop.set()
                killer.join()
            assert killed
    finally:
        local.close()
