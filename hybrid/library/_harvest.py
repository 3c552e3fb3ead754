"""Cut a module out of a genome of a run folder (``hybrid modules add``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from genomes import Genome, modules

from ..rundir import open_run_dir
from ._files import LibraryError

__all__ = ["harvest_run"]


def harvest_run(
    run_dir: str | os.PathLike[str],
    genome_ref: str | int = "best",
    nodes: Iterable[int] | None = None,
    *,
    name: str,
) -> tuple[modules.ModuleSpec, dict[str, Any], dict[str, Any]]:
    """Harvest a module from genome ``genome_ref`` of the run in ``run_dir``.

    The genome is found as ``hybrid export`` finds it (``"best"``: ``best/genome.json``;
    an id: the lineage store). The gate kind is the run's ``training.gate``; the
    task's standardisation (``task.json`` feature_mean/feature_std) goes with the
    module when the module reads the genome's input node.

    Args:
        run_dir: the run folder.
        genome_ref: ``"best"`` or a genome id (an int or a string of digits).
        nodes: the node ids to cut out; None: the whole genome (harvest's default: every
            hidden node and the output node).
        name: the module's name.

    Returns:
        ``(spec, source, metrics)``: the module; ``{"run_dir", "genome_id", "task",
        "gate"}``; the genome's recorded metrics (``metric`` and ``val_metric``, and
        ``test_metric`` for the champion).

    Raises:
        RunDirError: not a run folder, or a file of it is missing or malformed.
        LineageError: a genome id the lineage store does not hold with weights.
        LibraryError: a sequence task or a recurrent genome.
        GenomeError: the nodes do not form a module (``genomes.modules.harvest``).
    """
    from ..export.run import _best, _from_lineage, _genome_id  # hybrid export's resolution

    run = open_run_dir(run_dir)
    config = run.load_config()
    task = run.read_task()
    gate = config.training.gate
    gid = _genome_id(genome_ref)
    champion = gid is None
    if task.sequence:
        raise LibraryError(
            f"{run.task_path}: task {task.name!r} is a sequence task; modules are feed-forward and "
            "are harvested from runs on rows only"
        )
    genome, recorded = _best(run) if champion else _from_lineage(run, gid)
    gid = genome.meta.get("id") if champion else gid
    if genome.is_recurrent:
        raise LibraryError(
            f"{run.path}: genome {gid} is recurrent; modules are feed-forward and are harvested "
            "from feed-forward genomes only"
        )
    chosen = None if nodes is None else sorted(set(nodes))  # None: harvest's whole genome
    mean = scale = None
    if chosen is None or _reads_input(genome, chosen):
        mean = np.asarray(task.feature_mean, dtype=np.float64)
        scale = np.asarray(task.feature_std, dtype=np.float64)
    spec = modules.harvest(genome, chosen, gate, name=name, mean=mean, scale=scale)
    source = {
        "run_dir": os.path.abspath(run_dir),
        "genome_id": gid,
        "task": task.name,
        "gate": gate,
    }
    return spec, source, _metrics(config.task.metric, recorded, champion=champion)


def _reads_input(genome: Genome, nodes: list[int]) -> bool:
    """Whether an enabled edge goes from the genome's input node into ``nodes``."""
    active = genome.active_graph()
    inp = genome.input_id
    return any(active.has_edge(inp, n) for n in nodes if n in active)


def _metrics(metric: str, recorded: dict[str, Any], *, champion: bool) -> dict[str, Any]:
    """Return the metric name and the validation (and test) values, as real metric values."""
    from ..metrics import metric_value

    out: dict[str, Any] = {"metric": recorded.get("metric", metric)}
    val = recorded.get("val_metric")
    if champion:  # best/metrics.json holds real values
        out["val_metric"] = val
        out["test_metric"] = recorded.get("test_metric")
    else:  # a lineage record holds the fitness (higher is better)
        out["val_metric"] = None if val is None else metric_value(metric, val)
    return out
