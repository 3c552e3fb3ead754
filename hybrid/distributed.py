"""Train a generation on a Dask cluster.

:class:`DaskCluster` holds one ``distributed.Client`` for a whole search: to the
scheduler at ``parallel.address``, or to a ``LocalCluster`` of ``parallel.workers``
processes it starts when no address is set. The driver keeps selection, lineage
and checkpoints; the cluster only trains.

Work placement. With the batched engine a generation is split into
``parallel.workers`` contiguous shards, each trained by the batched engine on one
worker: its per-step overhead is paid once per shard instead of once per member,
which makes shards far cheaper than per-genome jobs. The shard count comes from the
config, never from the cluster's current size, so a run does not depend on which
workers happened to be up. Each shard replays exactly what the in-process batched
engine does for those members inside the whole population: the same minibatches
(drawn from the generation's seed) and, for hard-concrete gates, its columns of
the whole population's noise (see :func:`gate_columns`). With the loop engine each
job is one member trained as a population of one (:func:`hybrid.backends.train_one`),
exactly as the local joblib backend trains it. Given a validation split, each job
also evaluates its members on it from the engine that trained them.

Data travels once: the training (and validation) split is scattered to every worker (broadcast)
the first time it is seen and reused by every later generation; a job carries only
its genomes. (The scheduler's active memory manager may drop idle replicas; a
worker that needs the data again fetches it from a peer, not from the driver.) A
worker that dies mid-generation has its jobs rerun elsewhere by the scheduler (up
to ``distributed.scheduler.allowed-failures`` deaths per job); if it held the last
copy of the data, which the scheduler cannot recompute, the data is scattered again
and the generation's jobs resubmitted. Jobs are pure functions of their inputs, so
a rerun returns what the first run would have.

Jobs go through distributed's futures API (``submit``/``gather``), which is what
joblib's Dask backend wraps, rather than through joblib itself: joblib 1.6's Dask
backend hangs for ever when a job's workers keep dying (the scheduler's
``KilledWorker`` reaches its concurrent future, but not the completion callback
that ``Parallel`` waits on), where ``gather`` raises it and we report it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError
from typing import Any

import numpy as np
import torch

from genomes import Genome

from .backends import join_trained, train_one
from .errors import ClusterError, ConfigError
from .gates import n_gates
from .population import Trained, train_population
from .train import TrainConfig

__all__ = ["DaskCluster", "gate_columns", "train_shard"]

#: Times a generation's jobs are resubmitted after their training data was lost, or they
#: met a worker that dropped or refused a connection.
RESUBMISSIONS = 3
#: Seconds to wait before scattering again after a failed connection, times the attempt
#: (a nanny restarts a killed worker in about a second).
RETRY_WAIT_S = 0.5
#: How `pip` installs what this module needs (named in the error when it is missing).
INSTALL_HINT = "pip install -c constraints.txt -e '.[distributed]'"


def gate_columns(genomes: Sequence[Genome]) -> list[int]:
    """Return where each member's gates start in the population's noise row, and the total.

    The batched engine lays gates out member-major, each member in
    :func:`hybrid.gates.gate_layout` order.

    Returns:
        ``len(genomes) + 1`` offsets: member ``i``'s gates are columns
        ``[out[i], out[i + 1])``; ``out[-1]`` is the width of a noise row.
    """
    out = [0]
    for g in genomes:
        out.append(out[-1] + n_gates(g))
    return out


def train_shard(
    genomes: Sequence[Genome],
    X: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    seed: int,
    columns: tuple[int, int, int],
    device: str,
    threads: int,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    folds: tuple[np.ndarray, Sequence[int]] | None = None,
) -> Trained:
    """Train a slice of the population as the batched engine trains it within the whole.

    The twin of ``hybrid.population.train_population`` for a slice: the same
    minibatch schedule from ``seed``, then (hard-concrete gates) the whole
    population's noise drawn from the same generator, of which the slice's members
    see columns ``columns[0]:columns[1]``.

    Args:
        genomes: the slice (not modified).
        X, y: the training split.
        config: training settings.
        seed: the generation's training seed.
        columns: ``(first, end, total)`` gate columns of the slice and the noise row width.
        device: torch device.
        threads: torch intra-op threads.
        X_val, y_val: a validation split to evaluate the slice on (optional).
        folds: K-fold fitness: the fold id of each row of ``X`` and of each member of
            the slice.

    Returns:
        The slice's :class:`~hybrid.population.Trained`, as ``train_population`` returns it.
    """
    torch.set_num_threads(threads)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    X_t, y_t = torch.tensor(X, device=device), torch.tensor(y, device=device)
    val = {}
    if X_val is not None:
        val = {"X_val": torch.tensor(X_val, device=device), "y_val": torch.tensor(y_val, device=device)}
    return train_population(
        genomes, X_t, y_t, config, generator, noise_columns=columns, **val, folds=folds
    )


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            f"parallel.backend = 'dask' needs the distributed extra: {INSTALL_HINT}"
        ) from None
    return distributed


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _killed(futures: Sequence[Any]) -> BaseException | None:
    """Return the ``KilledWorker`` error of the first job that has one, else None."""
    from distributed import KilledWorker

    for f in futures:
        if f.status == "error" and isinstance(exc := f.exception(), KilledWorker):
            return exc
    return None


async def _probe(address: str, timeout: float) -> None:
    from distributed.comm import connect

    comm = await connect(address, timeout=timeout)
    await comm.close()


def check_scheduler(address: str, timeout: float = 10.0) -> None:
    """Raise unless a Dask scheduler answers at ``address``.

    Raises:
        ConfigError: the ``distributed`` package is not installed.
        ClusterError: nothing answers, or the address is malformed.
    """
    _import_distributed()
    try:
        asyncio.run(_probe(address, timeout))
    except (OSError, ValueError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach dask scheduler at {address}: {_one_line(exc)}") from None


class DaskCluster:
    """A client to a Dask scheduler (or to a LocalCluster it starts) that trains generations.

    Use it as a context manager, or call :meth:`close`: it owns the client and any
    LocalCluster it started.

    Args:
        address: the scheduler, e.g. ``tcp://host:8786``; None starts a
            ``LocalCluster`` of ``workers`` processes on 127.0.0.1 (one thread each).
        workers: jobs in flight: the number of shards per generation (batched
            engine), and the LocalCluster's processes.
        timeout: seconds to wait for the scheduler to answer.

    Raises:
        ConfigError: the ``distributed`` package is not installed.
        ClusterError: the scheduler cannot be reached or the address is malformed.
    """

    def __init__(self, address: str | None, workers: int = 1, timeout: float = 10.0) -> None:
        distributed = _import_distributed()
        self.workers = workers
        self._local = None
        self._data: tuple[tuple[Any, ...], list[Any]] | None = None  # (arrays, their futures)
        if address is None:
            self._local = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,  # torch's own threads (run.threads) do the rest
                processes=True,  # training holds the GIL: threads would run one at a time
                host="127.0.0.1",
                dashboard_address=":0",  # any free port: 8787 may be another cluster's
            )
            address = self._local.scheduler_address
        self.address = address
        try:
            check_scheduler(address, timeout)
        except ClusterError:
            self._close_local()
            raise
        self.client = distributed.Client(address, timeout=timeout, set_as_default=False)

    def __enter__(self) -> DaskCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "local" if self._local is not None else "remote"
        return f"DaskCluster({self.address!r}, {kind}, workers={self.workers})"

    def close(self) -> None:
        """Close the client and stop the LocalCluster if this object started it."""
        self._data = None
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        self._close_local()

    def _close_local(self) -> None:
        if self._local is not None:
            self._local.close()
            self._local = None

    def _scattered(self, *arrays: np.ndarray | None) -> list[Any]:
        """Return futures of ``arrays`` (None stays None), scattering them the first time or once lost."""
        d = self._data
        live = d is not None and all(f.status == "finished" for f in d[1] if f is not None)
        if not live or len(d[0]) != len(arrays) or any(a is not b for a, b in zip(d[0], arrays, strict=True)):
            given = [a for a in arrays if a is not None]
            it = iter(self.client.scatter(given, broadcast=True, hash=False))
            self._data = (arrays, [None if a is None else next(it) for a in arrays])
        return self._data[1]

    def _submit(
        self,
        genomes: Sequence[Genome],
        fx: Any,
        fy: Any,
        config: TrainConfig,
        seed: int,
        engine: str,
        device: str,
        threads: int,
        fxv: Any = None,
        fyv: Any = None,
        folds: tuple[np.ndarray, Sequence[int]] | None = None,
    ) -> list[Any]:
        """Submit a generation's jobs: ``workers`` shards (batched engine) or one per genome."""
        if engine != "batched":
            own = [None] * len(genomes) if folds is None else [(folds[0], (f,)) for f in folds[1]]
            return [
                self.client.submit(
                    train_one, g, fx, fy, config, seed, device, threads, fxv, fyv, f, pure=False
                )
                for g, f in zip(genomes, own, strict=True)
            ]
        cols = gate_columns(genomes)
        bounds = (
            np.linspace(0, len(genomes), min(self.workers, len(genomes)) + 1).round().astype(int)
        )
        futures = []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            span = (cols[a], cols[b], cols[-1])
            part = None if folds is None else (folds[0], tuple(folds[1][a:b]))
            args = (list(genomes[a:b]), fx, fy, config, seed, span, device, threads, fxv, fyv, part)
            futures.append(self.client.submit(train_shard, *args, pure=False))
        return futures

    def train(
        self,
        genomes: Sequence[Genome],
        X: np.ndarray,
        y: np.ndarray,
        config: TrainConfig,
        seed: int,
        *,
        engine: str = "batched",
        device: str = "cpu",
        threads: int = 1,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        folds: tuple[np.ndarray, Sequence[int]] | None = None,
    ) -> Trained:
        """Train every genome on the cluster; return trained genomes, results (and validation) in order.

        A job whose worker dies is rerun by the scheduler. If the training data is
        lost with it (the scheduler's active memory manager keeps one replica of
        idle scattered data, and scattered data cannot be recomputed), the data is
        scattered again and the generation's jobs resubmitted, up to
        ``RESUBMISSIONS`` times: jobs are pure, so a rerun returns the same results.
        A scatter that meets a worker closing its connection or not answering
        (killed, or being restarted by its nanny) is retried the same way, after a
        short wait.

        Args:
            genomes: the population (not modified).
            X, y: the training split; scattered once, reused while the same arrays come.
            config: training settings.
            seed: the generation's training seed.
            engine: "batched" (``workers`` shards) or "loop" (one job per genome).
            device: torch device on the workers.
            threads: torch intra-op threads per job.
            X_val, y_val: a validation split, scattered with the training split; each
                job evaluates its members on it.
            folds: K-fold fitness (see :func:`hybrid.backends.train_members`); each job
                gets the row fold ids and its members' folds.

        Returns:
            A :class:`~hybrid.population.Trained`; ``validation`` None without ``X_val``.

        Raises:
            ClusterError: a job's workers kept dying (more than
                ``distributed.scheduler.allowed-failures`` times), or the data kept
                being lost.
        """
        distributed = _import_distributed()
        for attempt in range(RESUBMISSIONS + 1):
            futures: list[Any] = []
            try:
                fx, fy, fxv, fyv = self._scattered(X, y, X_val, y_val)
                futures = self._submit(
                    genomes, fx, fy, config, seed, engine, device, threads, fxv, fyv, folds
                )
                out = self.client.gather(futures)
                break
            except OSError as exc:
                # a worker the scheduler still lists closed its connection or does not
                # answer (distributed's CommClosedError and connect timeouts are OSErrors):
                # it died, or its nanny is restarting it; wait, then scatter again
                if attempt == RESUBMISSIONS:
                    raise ClusterError(
                        f"dask workers dropped or refused connections {attempt + 1} times in one "
                        f"generation: {_one_line(exc)}"
                    ) from None
                self._data = None
                time.sleep(RETRY_WAIT_S * (attempt + 1))
            except (distributed.KilledWorker, CancelledError) as exc:
                died = exc if isinstance(exc, distributed.KilledWorker) else _killed(futures)
                if died is not None:
                    raise ClusterError(
                        "dask workers kept dying while training "
                        f"(distributed.scheduler.allowed-failures): {_one_line(died)}"
                    ) from None
                if attempt == RESUBMISSIONS:  # a job's input was lost with its worker
                    raise ClusterError(
                        f"dask workers lost the training data {attempt + 1} times in one "
                        f"generation: {_one_line(exc)}"
                    ) from None
                self._data = None
            finally:  # no-op once gathered; stops the other jobs on an error or Ctrl-C
                if futures:
                    self.client.cancel(futures)
        return join_trained(out)
