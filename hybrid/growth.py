"""Growth inside training: the reserve rule of Miconi (2016), for any genome.

"Neural networks with differentiable structure" (arXiv 1606.06216) grows a
recurrent network from one neuron during gradient descent. An L1 penalty pulls
every neuron's outgoing weights toward zero; a neuron whose *size* (the sum of its
outgoing absolute weights) falls under a threshold ``T_D`` is *sub-threshold*, a
neuron in reserve. Each node here keeps exactly ``k`` of them:

* more than ``k``: each extra sub-threshold neuron (the smallest first) is deleted
  with probability ``P_del``;
* fewer than ``k`` (gradient descent has mobilised the reserve): one neuron is added
  with probability ``P_add``, with small random incoming weights and outgoing
  weights scaled so that its size is ``T_D``.

The anchor applies the rule at every step. The batched engine applies it every
``every`` steps (it repacks the population then), with the per-step probabilities
compounded over those steps: ``1 - (1 - p) ** every``. A neuron's size counts every
enabled outgoing edge, feed-forward and recurrent (the anchor's "outgoing and
recurrent weights"), through the deterministic gates: ``g_i * sum_e g_e * |W_e[:, i]|``.

:func:`reserve_rule` acts on genomes (pure, like the mutation operators) and
returns, per member, what it did as :class:`~genomes.MutationRecord` s named
``reserve`` (node, added, removed), which the lineage shows beside the breeding
operators. A frozen node (a grafted module's) and a node feeding one keep their
width: the rule skips them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genomes import Genome, MutationRecord, gate_value
from genomes.mutations._neurons import append_neurons, keep_neurons

from .batches import minibatch_indices
from .net import fixed_width
from .population.adam import BatchedAdamW
from .population.recurrent import RecurrentEngine
from .population.sequence import _to, check_sequence_data, evaluate_sequences, train_sequence_engine
from .train import TrainConfig, TrainResult

if TYPE_CHECKING:
    from .metrics import Metrics
    from .tasks import Task

__all__ = ["ReserveConfig", "ReserveEdit", "neuron_sizes", "reserve_rule", "train_growing"]


@dataclass(frozen=True)
class ReserveConfig:
    """The rule's settings; the defaults are the anchor's final ones."""

    k: int = 1  # sub-threshold neurons each node keeps in reserve
    threshold: float = 0.05  # T_D
    p_add: float = 0.01  # per step
    p_delete: float = 0.05  # per step and extra neuron
    l1: float = 1e-4  # A: the L1 penalty on weights leaving hidden neurons
    every: int = 20  # steps between applications (batched engine)

    def chance(self, p: float) -> float:
        """Return the probability of an event of per-step probability ``p`` over ``every`` steps."""
        return 1.0 - (1.0 - p) ** self.every


@dataclass(frozen=True)
class ReserveEdit:
    """What the rule did to one node: neurons kept (old indices) and neurons appended."""

    node: int
    keep: np.ndarray
    added: int


def neuron_sizes(genome: Genome, gate: str) -> dict[int, np.ndarray]:
    """Return each hidden node's neuron sizes ``g_i * sum_e g_e * sum_rows |W_e[:, i]|``.

    Every enabled outgoing edge counts, feed-forward and recurrent (a self-loop too).
    """
    g = genome.graph
    out: dict[int, np.ndarray] = {}
    for n in genome.hidden_nodes():
        size = np.zeros(int(g.nodes[n]["width"]))
        for _, _, a in g.out_edges(n, data=True):
            if a["enabled"]:
                size += float(gate_value(a["gate"], gate)) * np.abs(
                    a["weight"].astype(np.float64)
                ).sum(0)
        out[n] = gate_value(g.nodes[n]["gate"], gate) * size
    return out


def reserve_rule(
    genome: Genome,
    rng: np.random.Generator,
    config: ReserveConfig,
    gate: str,
    gate_init: float,
    max_width: int,
) -> tuple[Genome, list[ReserveEdit], list[MutationRecord]]:
    """Apply the reserve rule once to every hidden node of ``genome`` whose width may change.

    Args:
        genome: a valid genome (not modified).
        rng: the run's seeded generator (draws in node order, then neuron order).
        config: the rule's settings.
        gate: the gate kind (sizes use the deterministic gates).
        gate_init: gate logit of an added neuron.
        max_width: no node grows past this (``mutation.max_node_width``).

    Returns:
        ``(child, edits, records)``: the child (``genome`` itself when nothing
        changed), the per-node edits (to replay on optimiser state) and the lineage
        records, one per node that changed.
    """
    sizes = neuron_sizes(genome, gate)
    p_add, p_delete = config.chance(config.p_add), config.chance(config.p_delete)
    child: Genome | None = None
    edits: list[ReserveEdit] = []
    records: list[MutationRecord] = []
    for n in sorted(sizes):
        if fixed_width(genome, n):  # a grafted module's node, or one feeding it: never resized
            continue
        size = sizes[n]
        width = len(size)
        sub = np.flatnonzero(size < config.threshold)
        removed: list[int] = []
        added = 0
        if len(sub) > config.k:
            extra = sub[np.argsort(size[sub], kind="stable")][: len(sub) - config.k]
            for i in extra:
                if width - len(removed) > 1 and rng.random() < p_delete:
                    removed.append(int(i))
        elif len(sub) < config.k and width < max_width and rng.random() < p_add:
            added = 1
        if not removed and not added:
            continue
        if child is None:
            child = genome.copy()
        keep = np.setdiff1d(np.arange(width), removed)
        if removed:
            keep_neurons(child, n, keep)
        if added:
            _add_neuron(child, n, rng, config.threshold, gate_init)
        edits.append(ReserveEdit(n, keep, added))
        records.append(
            MutationRecord("reserve", {"node": int(n), "added": added, "removed": sorted(removed)})
        )
    return (genome if child is None else child), edits, records


def _add_neuron(
    genome: Genome, node: int, rng: np.random.Generator, threshold: float, gate_init: float
) -> None:
    """Append one neuron to ``node`` in place: small random inputs, outgoing size ``threshold``."""
    append_neurons(genome, node, 1, rng, gate_init)
    g = genome.graph
    for s, _ in g.in_edges(node):
        w = g.edges[s, node]["weight"]
        w[-1] *= 0.1  # small random inputs (LeCun normal, shrunk)
    outgoing = [d for _, d in g.out_edges(node) if g.edges[node, d]["enabled"]]
    cols = [rng.normal(size=g.edges[node, d]["weight"].shape[0]) for d in outgoing]
    total = sum(float(np.abs(c).sum()) for c in cols)
    for d, c in zip(outgoing, cols, strict=True):
        w = g.edges[node, d]["weight"]
        w[:, -1] = (c * threshold / max(total, 1e-12)).astype(np.float32)


def _replay(genome: Genome, edits: list[ReserveEdit]) -> Genome:
    """Return a copy of a moment genome with the rule's edits replayed (new neurons: zeros)."""
    if not edits:
        return genome
    child = genome.copy()
    for e in edits:
        if len(e.keep) != child.node(e.node)["width"]:
            keep_neurons(child, e.node, e.keep)
        if e.added:  # Adam's moments of a new neuron start at zero
            append_neurons(child, e.node, e.added, None, 0.0)
    return child


def _as_genomes(engine: RecurrentEngine, tensors: list[torch.Tensor]) -> list[Genome]:
    """Return the members with ``tensors`` (laid out as ``engine.params``) in place of their values."""
    params = engine.params
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, t in zip(params, tensors, strict=False):
            p.copy_(t)
        for p in params[len(tensors) :]:
            p.zero_()
        try:
            return engine.write_back()
        finally:
            for p, v in zip(params, saved, strict=True):
                p.copy_(v)


def _load_moments(
    optimizer: BatchedAdamW, moments: tuple[list[Genome], list[Genome], int] | None, gate: str, device: Any
) -> None:
    """Set ``optimizer``'s moments and step count from moment genomes (the members that stay)."""
    if moments is None:
        return
    m_genomes, v_genomes, t = moments
    for genomes, target in ((m_genomes, optimizer.exp_avg), (v_genomes, optimizer.exp_avg_sq)):
        packed = RecurrentEngine(genomes, gate, device=device, dtype=optimizer.params[0].dtype)
        for dst, src in zip(target, packed.params, strict=False):
            dst.copy_(src)
    for v, member in zip(optimizer.exp_avg_sq, optimizer.members, strict=True):
        v[member == len(optimizer.lrs)] = 1.0  # padding, as BatchedAdamW sets it
    optimizer.t = t


def train_growing(
    genomes: list[Genome],
    task: Task,
    config: TrainConfig,
    generator: torch.Generator,
    rng: np.random.Generator,
    reserve: ReserveConfig,
    *,
    window: int | None,
    device: str,
    gate_init: float,
    max_width: int,
) -> tuple[list[Genome], list[TrainResult], list[Metrics], list[list[dict[str, Any]]]]:
    """Train members on a sequence task with the reserve rule applied between chunks of steps.

    ``config.steps`` steps in chunks of ``reserve.every``; after each chunk but the
    last, every member's trained genome goes through :func:`reserve_rule` and the
    population is packed again. The optimiser's moments and step count carry over
    for the neurons that stay (new neurons start at zero, as Adam's do), and the
    L1 penalty ``reserve.l1 * RecurrentEngine.weight_l1()`` joins each member's loss.
    A stream task starts each chunk at a new offset from the zero state. A member
    that fails (NaN/inf loss) keeps its input genome and trains no further.

    Returns:
        ``(genomes, results, validation metrics, growth records)`` as
        :func:`hybrid.sequences.train_sequence_members`.
    """

    n_in, n_out = genomes[0].n_inputs, genomes[0].n_outputs
    data = check_sequence_data(task.X_train, task.y_train, task.mask_train, n_in, n_out, config.loss)
    X, y, mask = _to(data, device)
    p = len(genomes)
    current = list(genomes)
    results: list[TrainResult | None] = [None] * p
    records: list[list[dict[str, Any]]] = [[] for _ in range(p)]
    done = [0] * p
    moments: tuple[list[Genome], list[Genome], int] | None = None
    chunks = max(1, math.ceil(config.steps / reserve.every))
    l1 = (lambda engine: reserve.l1 * engine.weight_l1()) if reserve.l1 else None
    for c in range(chunks):
        n = min(reserve.every, config.steps - c * reserve.every)
        live = [i for i in range(p) if results[i] is None or results[i].status == "ok"]
        if not live or n <= 0:
            break
        engine = RecurrentEngine([current[i] for i in live], config.gate, device=device)
        batches = None if window is not None else minibatch_indices(X.shape[0], config.batch_size, n, generator)
        held: dict[str, BatchedAdamW] = {}

        def hook(optimizer: BatchedAdamW, moments=moments, held=held) -> None:
            held["optimizer"] = optimizer
            _load_moments(optimizer, moments, config.gate, device)

        chunk = train_sequence_engine(
            engine, X, y, mask, replace(config, steps=n), batches, generator, window=window,
            extra_loss=l1, optimizer_hook=hook,
        )  # fmt: skip
        trained = engine.write_back()
        optimizer = held["optimizer"]
        m_genomes = _as_genomes(engine, optimizer.exp_avg)
        v_genomes = _as_genomes(engine, optimizer.exp_avg_sq)
        next_m, next_v = [], []
        last = c == chunks - 1
        for j, i in enumerate(live):
            r = chunk[j]
            done[i] += r.steps
            if r.status == "failed":
                results[i] = replace(r, steps=done[i])
                current[i] = genomes[i]
                continue
            results[i] = replace(r, steps=done[i])
            child = trained[j]
            if not last:
                child, edits, recs = reserve_rule(child, rng, reserve, config.gate, gate_init, max_width)
                records[i] += [rec.to_dict() for rec in recs]
                next_m.append(_replay(m_genomes[j], edits))
                next_v.append(_replay(v_genomes[j], edits))
            current[i] = child
        moments = (next_m, next_v, optimizer.t) if next_m else None
    final_results = [r if r is not None else TrainResult("ok", 0, float("nan")) for r in results]
    validation = evaluate_sequences(
        current, task.X_val, task.y_val, task.mask_val, task.floor_val, config, device
    )
    out = []
    for i, (r, v) in enumerate(zip(final_results, validation, strict=True)):
        if r.status == "ok" and not np.isfinite(v.loss):  # trained into non-finite values
            r = replace(r, status="failed")
            current[i] = genomes[i]
        out.append(r)
    return current, out, validation, records
