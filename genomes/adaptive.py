"""Compute that adapts to each input: exit heads and per-input skip gates (the contract).

Two gene kinds make a genome's cost depend on its input (``docs/design.md``,
"Compute that adapts to each input"):

* **Exit node** (role ``"exit"``): width ``n_outputs``, activation ``identity``,
  ``bias`` ``[n_out]``, ``gate`` held at zero (unused), and ``threshold``, a float in
  (0, 1]. Exactly one incoming edge, enabled and feed-forward, from a hidden node
  (its *source*); no outgoing edge. Its logits are the ordinary edge rule,
  ``bias + g(gate_e) * W_e @ h_src``. Exits need ``n_outputs >= 2`` (classes).
* **Skip gate** on a hidden node ``j``: node attribute ``skip`` (float32 ``[1]``, the
  gate's bias ``c_j``); every feed-forward edge into ``j`` then carries ``skip``
  (float32 ``[width_src]``), and no other edge does::

      s_j = c_j + sum over enabled ff e = (i -> j) of g(gate_e) * (skip_e . h_i)
      z_j = 1 if s_j >= 0 else 0           (deterministic, per sample)
      h_j = z_j * g(gate_j) * a_j          (a skipped node contributes zero)

  Training engines use straight-through hard Gumbel-softmax: ``z = 1[s + L >= 0]``
  forward (``L`` logistic noise), the gradient of ``sigmoid(s + L)`` backward
  (:data:`SKIP_INIT` opens a new gate with margin: function preserving).

Adaptive genes need a feed-forward genome without budget attributes or grafted
modules (``Genome.validate`` refuses the mix).

**Stages.** Exits are tried in order of their reach cost (the FLOPs of every live
ancestor node, its skip gate, and the head; ties by node id). Stage ``k`` computes
the live hidden ancestors of exit ``k`` that no earlier stage computed (topological
order), then the exit's head; the last stage computes the remaining live hidden
nodes and the output node. A sample stops at the first exit whose confidence (max
softmax) is ``>= threshold``; its output is that exit's logits, else the output's.

**FLOPs per sample** (2 per multiply-add of a live weight: ``ActiveStructure``'s
unit) count what the sample ran: for every live node of every stage it reached,
its skip gate (``2 x`` the live source neurons of its live edges), and its live
incoming edges (``2 x rows x cols``) only if it ran; the head of every exit it
tried. An edge is charged to its destination whether its source ran or not (a
skipped source feeds zeros that a dense implementation still multiplies). A genome
without adaptive genes costs exactly ``ActiveStructure.flops``.

**Thresholds** are fitted on validation data (:func:`fit_threshold`): one shared
value from :data:`THRESHOLD_GRID`, the one with the lowest mean FLOPs whose accuracy
is within ``tolerance`` of the full-path accuracy (ties: the larger value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._errors import GenomeError
from .activations import activate
from .complexity import active_structure
from .gates import gate_value
from .genome import Genome

__all__ = [
    "EXIT",
    "SKIP_INIT",
    "THRESHOLD_GRID",
    "AdaptivePlan",
    "AdaptiveResult",
    "Stage",
    "adaptive_plan",
    "check_threshold",
    "confidence",
    "evaluate_adaptive",
    "exit_index",
    "exit_nodes",
    "fit_threshold",
    "threshold_for_flops",
    "is_adaptive",
    "skip_logit",
    "skip_nodes",
    "with_thresholds",
]

#: The role of an exit node.
EXIT = "exit"
#: Bias of a new skip gate: open with margin (P(closed) under training noise ~ 5%).
SKIP_INIT = 3.0
#: The thresholds :func:`fit_threshold` chooses from.
THRESHOLD_GRID: tuple[float, ...] = (
    0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.965, 0.975, 0.985, 0.99, 0.995, 0.999, 1.0,
)


def exit_nodes(genome: Genome) -> list[int]:
    """Return the exit node ids, sorted by id (the stage order is :attr:`AdaptivePlan.exits`)."""
    return sorted(n for n, r in genome.graph.nodes(data="role") if r == EXIT)


def skip_nodes(genome: Genome) -> list[int]:
    """Return the ids of the hidden nodes with a skip gate, sorted."""
    return sorted(n for n, a in genome.graph.nodes(data=True) if a.get("skip") is not None)


def is_adaptive(genome: Genome) -> bool:
    """Return whether the genome has an exit node or a skip gate."""
    return any(a["role"] == EXIT or a.get("skip") is not None for _, a in genome.graph.nodes(data=True))


def check_threshold(value: object, where: str = "threshold") -> float:
    """Return ``value`` as a float in (0, 1].

    Raises:
        GenomeError: naming ``where``, for anything else (bools and NaN included).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise GenomeError(f"{where} should be a number in (0, 1], got {value!r:.40}")
    v = float(value)
    if not 0.0 < v <= 1.0:
        raise GenomeError(f"{where} should be in (0, 1], got {v!r}")
    return v


def with_thresholds(genome: Genome, thresholds: float | dict[int, float]) -> Genome:
    """Return a copy of ``genome`` whose exits hold ``thresholds`` (one for all, or by exit id).

    Raises:
        GenomeError: for a threshold outside (0, 1] or an id that is not an exit.
    """
    child = genome.copy()
    exits = exit_nodes(child)
    if isinstance(thresholds, dict):
        for n, v in thresholds.items():
            if n not in exits:
                raise GenomeError(f"thresholds: node {n} is not an exit node (exits: {exits})")
            child.graph.nodes[n]["threshold"] = check_threshold(v, f"threshold of exit {n}")
    else:
        v = check_threshold(thresholds)
        for n in exits:
            child.graph.nodes[n]["threshold"] = v
    return child


@dataclass(frozen=True)
class Stage:
    """One stage of adaptive inference.

    Attributes:
        nodes: live hidden nodes computed in this stage, in topological order.
        exit: the exit tried after them; None for the last stage (the output node).
    """

    nodes: tuple[int, ...]
    exit: int | None


@dataclass(frozen=True)
class AdaptivePlan:
    """How a genome runs adaptively, and what each part costs (one sample, FLOPs).

    Attributes:
        stages: the stages in order (the last one ends at the output node).
        exits: the live exits in stage order (``stages[k].exit``).
        node_flops: every live hidden, output and exit node: the FLOPs of its live
            incoming edges (an exit: its head).
        skip_flops: every live node with a skip gate: the FLOPs of the gate.
        full_flops: everything live: what a sample that runs every node and tries
            every exit costs.
    """

    stages: tuple[Stage, ...]
    exits: tuple[int, ...]
    node_flops: dict[int, int]
    skip_flops: dict[int, int]
    full_flops: int

    def stage_base(self) -> np.ndarray:
        """Return the FLOPs each stage costs when every skip-gated node in it is skipped.

        Shape:
            -> (len(stages),) int64
        """
        out = []
        for st in self.stages:
            cost = sum(self.skip_flops.get(n, 0) for n in st.nodes)
            cost += sum(self.node_flops[n] for n in st.nodes if n not in self.skip_flops)
            cost += self.node_flops[st.exit] if st.exit is not None else 0
            out.append(cost)
        return np.asarray(out, np.int64)


def adaptive_plan(genome: Genome, gate: str = "sigmoid") -> AdaptivePlan:
    """Return the stages and costs of ``genome`` under the deterministic gates of kind ``gate``.

    Works for any feed-forward genome; one without exits has a single stage.

    Raises:
        GenomeError: for a genome with recurrent edges.
    """
    if genome.is_recurrent:
        raise GenomeError("adaptive inference is for feed-forward genomes; this one has recurrent edges")
    live = active_structure(genome, gate)
    g = genome.graph
    kept = {n: int(m.sum()) for n, m in live.neurons.items()}
    node_flops: dict[int, int] = {n: 0 for n in live.neurons if g.nodes[n]["role"] != "input"}
    skip_flops: dict[int, int] = {}
    for s, d in live.edges:
        node_flops[d] += 2 * live.entries(s, d)
        if g.nodes[d].get("skip") is not None:
            skip_flops[d] = skip_flops.get(d, 0) + 2 * kept[s]
    for n in node_flops:
        if g.nodes[n].get("skip") is not None:
            skip_flops.setdefault(n, 0)
    order = [n for n in genome.topological_order() if n in node_flops and g.nodes[n]["role"] == "hidden"]
    preds: dict[int, set[int]] = {n: set() for n in live.neurons}
    for s, d in live.edges:
        preds[d].add(s)

    def ancestors(n: int) -> set[int]:
        seen: set[int] = set()
        todo = list(preds[n])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(preds[m])
        return seen

    def cost(nodes: set[int]) -> int:
        return sum(node_flops.get(n, 0) + skip_flops.get(n, 0) for n in nodes)

    reach = {e: cost(ancestors(e)) + node_flops[e] for e in node_flops if g.nodes[e]["role"] == EXIT}
    exits = tuple(sorted(reach, key=lambda e: (reach[e], e)))
    done: set[int] = set()
    stages = []
    for e in exits:
        need = ancestors(e)
        nodes = tuple(n for n in order if n in need and n not in done)
        done.update(nodes)
        stages.append(Stage(nodes, e))
    stages.append(Stage(tuple(n for n in order if n not in done), None))
    full = sum(node_flops.values()) + sum(skip_flops.values())
    return AdaptivePlan(tuple(stages), exits, node_flops, skip_flops, full)


@dataclass(frozen=True)
class AdaptiveResult:
    """Per-input results of adaptive inference (:func:`evaluate_adaptive`).

    Attributes:
        outputs: each sample's output under the exit rule (the logits of the exit it
            stopped at, or the output node's).
        flops: each sample's FLOPs (what it ran).
        exit: the stage each sample stopped at (``k < len(plan.exits)``: exit
            ``plan.exits[k]``; ``len(plan.exits)``: it ran to the output node).
        output: the output node's value for every sample (the full path).
        heads: every exit's logits for every sample (full path), in stage order.
        runs: for each live skip-gated node, whether it ran for each sample.
        stage_flops: ``stage_flops[k, b]``: what sample ``b`` costs if it stops at
            stage ``k`` (cumulative; the rule picks ``stage_flops[exit[b], b]``).
        plan: the stages and costs.
    """

    outputs: np.ndarray
    flops: np.ndarray
    exit: np.ndarray
    output: np.ndarray
    heads: np.ndarray
    runs: dict[int, np.ndarray]
    stage_flops: np.ndarray
    plan: AdaptivePlan


def confidence(logits: np.ndarray) -> np.ndarray:
    """Return the max softmax probability along the last axis (stable: ``1 / sum exp(l - max)``).

    Shape:
        (..., n_out) -> (...)
    """
    z = np.asarray(logits, np.float64)
    return 1.0 / np.exp(z - z.max(-1, keepdims=True)).sum(-1)


def exit_index(conf: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Return the stage each sample stops at: the first ``k`` with ``conf[k] >= thresholds[k]``.

    Shape:
        conf: (E, B), thresholds: (E,) -> (B,) int64 in [0, E]
    """
    conf = np.asarray(conf, np.float64)
    e = conf.shape[0]
    if e == 0:
        return np.zeros(conf.shape[1] if conf.ndim == 2 else 0, np.int64)
    sure = conf >= np.asarray(thresholds, np.float64).reshape(e, 1)
    return np.where(sure.any(0), sure.argmax(0), e).astype(np.int64)


def evaluate_adaptive(
    genome: Genome,
    x: np.ndarray,
    gate: str = "sigmoid",
    dtype: type = np.float64,
    thresholds: np.ndarray | None = None,
) -> AdaptiveResult:
    """Run ``genome`` adaptively on a batch: per-input outputs, FLOPs and exits (the reference).

    Every node is computed for every sample (the full path), so ``heads`` and
    ``output`` are there for training and threshold fitting; ``outputs`` and
    ``flops`` are what the exit rule gives, i.e. what an implementation that stops
    early computes.

    Args:
        genome: a valid feed-forward genome (adaptive or not).
        x: inputs ``(B, n_inputs)``.
        gate: gate kind (deterministic values).
        dtype: the float type to compute in.
        thresholds: one per exit in stage order; None: each exit's ``threshold``.

    Raises:
        GenomeError: for inputs of the wrong shape, a recurrent genome, or
            thresholds of the wrong length or outside (0, 1].

    Shape:
        x: (B, n_inputs) -> outputs (B, n_out), flops (B,), exit (B,)
    """
    x = np.asarray(x, dtype=dtype)
    if x.ndim != 2 or x.shape[1] != genome.n_inputs:
        raise GenomeError(f"inputs should have shape (B, {genome.n_inputs}), got {x.shape}")
    plan = adaptive_plan(genome, gate)
    g = genome.graph
    if thresholds is None:
        thr = np.asarray([g.nodes[e]["threshold"] for e in plan.exits], np.float64)
    else:
        thr = np.asarray(thresholds, np.float64).reshape(-1)
        if thr.shape != (len(plan.exits),):
            raise GenomeError(f"thresholds should be one per exit ({len(plan.exits)}), got {thr.shape[0]}")
        for k, v in enumerate(thr):
            check_threshold(float(v), f"thresholds[{k}]")
    values, runs = _full_path(genome, x, gate, dtype)
    runs = {n: z for n, z in runs.items() if n in plan.skip_flops}  # live skip-gated nodes only
    b = x.shape[0]
    heads = np.stack([values[e] for e in plan.exits]) if plan.exits else np.zeros((0, b, genome.n_outputs), dtype)
    output = values[genome.output_id]
    base = plan.stage_base()
    per_stage = np.tile(base[:, None], (1, b))
    for k, st in enumerate(plan.stages):
        for n in st.nodes:
            if n in runs:
                per_stage[k] += runs[n].astype(np.int64) * plan.node_flops[n]
    per_stage[-1] += plan.node_flops[genome.output_id]
    stage_flops = np.cumsum(per_stage, axis=0)
    stop = exit_index(confidence(heads), thr)
    stacked = np.concatenate([heads, output[None]], axis=0)
    outputs = stacked[stop, np.arange(b)]
    flops = stage_flops[stop, np.arange(b)]
    return AdaptiveResult(outputs, flops, stop, output, heads, runs, stage_flops, plan)


def _full_path(
    genome: Genome, x: np.ndarray, gate: str, dtype: type
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Return every node's ``h`` (exits and output: their logits) and each skip node's ``z``."""
    g = genome.graph
    active = genome.active_graph()
    values: dict[int, np.ndarray] = {}
    runs: dict[int, np.ndarray] = {}
    b = x.shape[0]
    for n in genome.topological_order():
        a = g.nodes[n]
        if a["role"] == "input":
            values[n] = x * gate_value(a["gate"], gate, dtype)
            continue
        pre = np.broadcast_to(a["bias"].astype(dtype), (b, a["width"])).copy()
        srcs = list(active.predecessors(n))
        for s in srcs:
            e = g.edges[s, n]
            pre += gate_value(e["gate"], gate, dtype) * (values[s] @ e["weight"].astype(dtype).T)
        out = activate(a["activation"], pre)
        if a["role"] == "hidden":
            out = out * gate_value(a["gate"], gate, dtype)
            if a.get("skip") is not None:
                s_logit = skip_logit(genome, n, values, gate, dtype)
                z = s_logit >= 0
                runs[n] = z
                out = out * z[:, None].astype(dtype)
        values[n] = out
    return values, runs


def skip_logit(genome: Genome, n: int, values: dict[int, np.ndarray], gate: str, dtype: type) -> np.ndarray:
    """Return node ``n``'s skip-gate logit ``s_n`` per sample from its sources' ``h`` values.

    Shape:
        -> (B,)
    """
    g = genome.graph
    active = genome.active_graph()
    first = next(iter(values.values()))
    s = np.full(first.shape[0], float(g.nodes[n]["skip"][0]), dtype)
    for src in active.predecessors(n):
        e = g.edges[src, n]
        s = s + gate_value(e["gate"], gate, dtype) * (values[src] @ e["skip"].astype(dtype))
    return s


def fit_threshold(
    heads: np.ndarray,
    output: np.ndarray,
    y: np.ndarray,
    stage_flops: np.ndarray,
    tolerance: float,
    grid: tuple[float, ...] = THRESHOLD_GRID,
) -> tuple[float, float, float]:
    """Return ``(threshold, accuracy, mean FLOPs)``: the shared threshold fitted on these samples.

    The threshold of ``grid`` with the lowest mean FLOPs whose accuracy is at least
    the full-path accuracy (``output``'s) minus ``tolerance`` (a share, 0.005 = half
    a point); ties go to the larger threshold. Without exits: ``(1.0, full-path
    accuracy, mean of the last stage's FLOPs)``.

    Shape:
        heads: (E, B, n_out); output: (B, n_out); y: (B,); stage_flops: (E + 1, B)
    """
    y = np.asarray(y).reshape(-1)
    b = y.shape[0]
    full = float((np.asarray(output).argmax(-1) == y).mean()) if b else 0.0
    if heads.shape[0] == 0 or b == 0:
        return 1.0, full, float(np.asarray(stage_flops[-1], np.float64).mean()) if b else 0.0
    conf = confidence(heads)
    right = np.concatenate([np.asarray(heads).argmax(-1), np.asarray(output).argmax(-1)[None]]) == y[None]
    best: tuple[float, float, float] | None = None
    for q in sorted(grid):
        stop = exit_index(conf, np.full(heads.shape[0], q))
        acc = float(right[stop, np.arange(b)].mean())
        cost = float(np.asarray(stage_flops, np.float64)[stop, np.arange(b)].mean())
        if acc + 1e-12 < full - tolerance:
            continue
        if best is None or cost <= best[2]:
            best = (float(q), acc, cost)
    if best is None:  # no grid value keeps the accuracy: never exit
        return 1.0, full, float(np.asarray(stage_flops[-1], np.float64).mean())
    return best


def threshold_for_flops(
    heads: np.ndarray,
    output: np.ndarray,
    y: np.ndarray,
    stage_flops: np.ndarray,
    max_flops: float,
) -> tuple[float, float, float] | None:
    """Return ``(threshold, accuracy, mean FLOPs)``: the shared threshold that spends a cost.

    Dials an adaptive network to a compute budget after training, as MSDNet fits its
    budgeted thresholds: among one threshold per distinct set of decisions on these
    samples, the one whose mean FLOPs is the largest that is at most ``max_flops``
    (ties to the larger threshold). It does not pick the most accurate setting below
    the budget: on a few hundred samples, settings a sample or two apart in accuracy
    are noise, while more compute on the samples that need it is, on fresh inputs,
    the more accurate (measured in benchmarks/RESULTS.md). None when no threshold is
    that cheap (or there are no exits or samples). The candidates lie midway between
    consecutive distinct confidences the samples reach (and 1.0), never on one: a
    float32 module that computes a confidence a rounding error away takes the same
    decision.

    Shape:
        heads: (E, B, n_out); output: (B, n_out); y: (B,); stage_flops: (E + 1, B)
    """
    y = np.asarray(y).reshape(-1)
    b = y.shape[0]
    if heads.shape[0] == 0 or b == 0:
        return None
    conf = confidence(heads)
    right = np.concatenate([np.asarray(heads).argmax(-1), np.asarray(output).argmax(-1)[None]]) == y[None]
    costs = np.asarray(stage_flops, np.float64)
    # A sample stops at the first stage k whose running max confidence m_k reaches q, so at
    # stage #{k : m_k < q}: moving q up past m_k moves it from stage k to k + 1. Sorting
    # those events gives every candidate's cost and accuracy from two cumulative sums
    # (O(EB log EB), not one pass over the samples per candidate).
    events = np.maximum.accumulate(conf, axis=0).ravel()
    order = np.argsort(events, kind="stable")
    step_cost = (costs[1:] - costs[:-1]).ravel()[order]
    step_right = (right[1:].astype(np.float64) - right[:-1]).ravel()[order]
    cum_cost = np.concatenate([[0.0], np.cumsum(step_cost)])
    cum_right = np.concatenate([[0.0], np.cumsum(step_right)])
    levels = np.unique(conf.reshape(-1))  # ascending
    below = np.concatenate([[levels[0] / 2], levels[:-1]])
    q = np.unique(np.concatenate([[1.0], (levels + below) / 2]))  # 1.0, then midway between levels
    n = np.searchsorted(events[order], q, side="left")  # events below q: stages moved past
    cost = (costs[0].sum() + cum_cost[n]) / b
    ok = np.flatnonzero(cost <= max_flops)
    if not ok.size:
        return None
    i = ok[np.lexsort((q[ok], cost[ok]))[-1]]  # the most costly within the budget, then the largest q
    return float(q[i]), float((right[0].sum() + cum_right[n[i]]) / b), float(cost[i])
