"""Where to grow: TINY's closed-form candidates for every member, solved in batches.

From each member's statistics (:mod:`.stats`) three kinds of growth are solved,
every problem of a kind across all members in one batched solve (:mod:`.solve`):

* ``widen`` a hidden node ``k``: new neurons reading ``k``'s inputs and feeding every
  node ``k`` feeds; ``S = S_k``, ``N = E[b_k (-V_J)ᵀ]`` with ``V_J`` the bottlenecks of
  ``k``'s consumers side by side.
* ``node`` between ``i`` and ``j``: a new node reading ``h_i`` (and a bias) and
  feeding ``j``: ``S = E[[h_i;1][h_i;1]ᵀ]``, ``N = E[[h_i;1] (-V_j)ᵀ]``.
* ``edge`` ``i -> j`` (a skip connection, linear): ``W = (S_i⁺ N_ij)ᵀ``, gain
  ``tr(Nᵀ S⁺ N)``.

Frozen genes (grafted modules) are never grown: a node that is frozen or feeds a
frozen node is never widened (its width is part of a frozen edge), and no new node or
edge goes into a frozen node.

A node's bottleneck ``V_j = dz_j - δW*_j b_j`` is what its own inputs cannot fix by
the best step of its existing weights; all of them come from one product
(:func:`cross_moments`). Gains are TINY's first-order gains: ``σ'(0) Σ λ²`` of the
kept neurons (``σ'(0)`` of relu taken as 1, its right derivative) and ``tr(Nᵀ S⁺ N)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import torch

from genomes.gates import gate_value

from ..net import fixed_width, is_frozen
from . import solve
from .stats import MemberStats, node_input

__all__ = ["Candidate", "Settings", "best_candidates", "cross_moments"]

#: σ'(0) by activation (relu: its right derivative; the new neurons' first-order gain).
SLOPE_AT_ZERO = {
    "identity": 1.0,
    "relu": 1.0,
    "tanh": 1.0,
    "sigmoid": 0.25,
    "gelu": 0.5,
    "sin": 1.0,
    "gauss": 0.0,
    "softplus": 0.5,
}


@dataclass(frozen=True)
class Settings:
    """How candidates are solved (``[bottleneck]`` of a config).

    Attributes:
        numerical_threshold: eigenvalues of ``S`` below this share of the largest
            are dropped (pseudo-inverse): dead ReLUs and closed gates make ``S`` singular.
        statistical_threshold: new neurons need ``λ`` above this share of the largest.
        max_new: at most this many new neurons per growth event.
        max_node_width: no node grows past this (the mutation config's cap).
        new_node_activation: activation of a new node.
        significance: a growth is kept only if its line-batch drop is at least this many
            standard errors of the per-row drops (0: no test).
        split: how the amplitude ``γ`` is shared by new neurons' fan-in and fan-out:
            ``"tiny"`` scales both by ``γ`` (TINY's and gromo's ``γ ω σ(γ α b)``);
            ``"balanced"`` gives the fan-in unit scale (each new neuron's
            pre-activation has standard deviation 1 on the statistics batch) and the
            fan-out the whole amplitude (see :mod:`.ops`).
        amplitude: which ``γ`` of those that pass is grown: ``"largest_drop"`` or
            ``"smallest_passing"`` (the smallest grid value that passes).
    """

    numerical_threshold: float = 1e-6
    statistical_threshold: float = 1e-3
    max_new: int = 4
    max_node_width: int = 256
    new_node_activation: str = "relu"
    significance: float = 0.0
    split: str = "tiny"
    amplitude: str = "largest_drop"


@dataclass(frozen=True)
class Candidate:
    """One growth of one member, solved.

    Attributes:
        kind: ``"widen"``, ``"node"`` or ``"edge"``.
        src: the widened node (widen) or the source ``i``.
        dst: the destination ``j`` (node, edge); -1 for widen.
        alpha: fan-in ``[k, K]`` over the new neurons' input (last column: bias);
            None for an edge.
        omega: fan-out ``[w_out, k]`` (widen: consumers' rows stacked) or the edge's
            weight ``[w_j, w_i]``.
        lam: kept singular values (empty for an edge).
        gain: TINY's first-order gain.
        activation: the new neurons' activation (widen: the node's; node: the setting).
        consumers: ``(node, first row in omega)`` of each node the new neurons feed.
        fan_in_scale: with the ``"balanced"`` split, each new neuron's fan-in scale
            ``c`` (``[k]``): fan-in ``c α``, fan-out ``(γ² / c) ω``; None: TINY's split.
    """

    kind: str
    src: int
    dst: int
    alpha: np.ndarray | None
    omega: np.ndarray
    lam: np.ndarray
    gain: float
    activation: str = "identity"
    consumers: tuple[tuple[int, int], ...] = field(default_factory=tuple)
    fan_in_scale: np.ndarray | None = None


def _pad_stack(mats: Sequence[torch.Tensor], shape: tuple[int, int]) -> torch.Tensor:
    out = torch.zeros(len(mats), *shape, dtype=torch.float64)
    for i, m in enumerate(mats):
        out[i, : m.shape[0], : m.shape[1]] = m
    return out


def _node_problem(
    st: MemberStats, node: int
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A node's input rows and edge-gate scales, its ``S`` and ``M``."""
    rows, scale, _ = node_input(st, node)
    s = torch.as_tensor(scale)
    S = st.G[rows][:, rows] * s[:, None] * s[None, :]
    M = st.D[rows][:, st.target_rows(node)] * s[:, None]
    return rows, s, S, M


def cross_moments(stats: Sequence[MemberStats], settings: Settings) -> list[torch.Tensor]:
    """Return each member's ``C = E[H Vᵀ] = D - G Aᵀ`` (bottlenecks of every node).

    ``A`` scatters every hidden and output node's ``δW*_j`` (one batched solve over
    all members' nodes) into feature columns, so ``V = dz - A H``.
    """
    problems = []
    for m, st in enumerate(stats):
        for n in st.targets:
            rows, scale, S, M = _node_problem(st, n)
            problems.append((m, n, rows, scale, S, M))
    if not problems:
        return [st.D.clone() for st in stats]
    k = max(p[4].shape[0] for p in problems)
    w = max(p[5].shape[1] for p in problems)
    delta, _ = solve.optimal_delta(
        _pad_stack([p[4] for p in problems], (k, k)),
        _pad_stack([p[5] for p in problems], (k, w)),
        threshold=settings.numerical_threshold,
        relative=True,
    )
    A = [torch.zeros(st.D.shape[1], st.D.shape[0], dtype=torch.float64) for st in stats]
    for (m, n, rows, scale, _, _), d in zip(problems, delta, strict=True):
        tr = stats[m].target_rows(n)
        sub = d[: len(tr), : len(rows)] * scale[None, :]
        A[m][torch.as_tensor(tr)[:, None], torch.as_tensor(rows)[None, :]] += sub
    return [st.D - st.G @ a.t() for st, a in zip(stats, A, strict=True)]


def _consumers(st: MemberStats, node: int) -> list[int]:
    """Nodes ``node`` feeds through an enabled edge whose gate is open (a closed one passes nothing)."""
    g = st.genome.graph
    out = []
    for _, d in st.genome.feedforward_graph().out_edges(node):
        e = g.edges[node, d]
        if e["enabled"] and float(gate_value(e["gate"], st.gate)) > 0.0:
            out.append(d)
    return sorted(out)


def _pairs(st: MemberStats, need_free: bool) -> list[tuple[int, int]]:
    genome = st.genome
    g = genome.graph
    ff = genome.feedforward_graph()
    sources = [genome.input_id, *sorted(genome.hidden_nodes())]
    free = sorted(n for n in genome.hidden_nodes() if not is_frozen(g.nodes[n]))
    dests = [*free, genome.output_id]  # nothing new goes into a frozen node
    out = []
    for i in sources:
        blocked = nx.ancestors(ff, i) | {i}  # j -> ... -> i: a path i -> j would close a cycle
        for j in dests:
            if j in blocked or (need_free and g.has_edge(i, j)):
                continue
            out.append((i, j))
    return out


def best_candidates(
    stats: Sequence[MemberStats], settings: Settings, kinds: Sequence[str] = ("widen", "node", "edge")
) -> list[dict[str, list[Candidate]]]:
    """Return each member's candidates of each kind, best first (batched solves).

    Members with nothing to act on get an empty list for that kind.
    """
    cross = cross_moments(stats, settings)
    out: list[dict[str, list[Candidate]]] = [{k: [] for k in kinds} for _ in stats]
    if "widen" in kinds:
        _widen(stats, cross, settings, out)
    if "node" in kinds:
        _new_nodes(stats, cross, settings, out)
    if "edge" in kinds:
        _edges(stats, cross, settings, out)
    for d in out:
        for v in d.values():
            v.sort(key=lambda c: -c.gain)
    return out


def _neurons(problems: list, settings: Settings) -> solve.Neurons | None:
    if not problems:
        return None
    k = max(p["S"].shape[0] for p in problems)
    w = max(p["N"].shape[1] for p in problems)
    return solve.optimal_neurons(
        _pad_stack([p["S"] for p in problems], (k, k)),
        _pad_stack([p["N"] for p in problems], (k, w)),
        numerical_threshold=settings.numerical_threshold,
        statistical_threshold=settings.statistical_threshold,
        relative=True,
        max_new=settings.max_new,
    )


def _keep(sol: solve.Neurons, i: int, p: dict, room: int, act: str) -> tuple | None:
    count = min(int(sol.count[i]), room)
    if count <= 0:
        return None
    k_in, w_out = p["S"].shape[0], p["N"].shape[1]
    alpha = sol.alpha[i, :count, :k_in].numpy()
    omega = sol.omega[i, :w_out, :count].numpy()
    lam = sol.lam[i, :count].numpy()
    gain = SLOPE_AT_ZERO.get(act, 1.0) * float(np.sum(lam**2))
    return alpha, omega, lam, gain


def _widen(stats, cross, settings, out) -> None:
    problems = []
    for m, st in enumerate(stats):
        g = st.genome.graph
        for k in sorted(st.genome.hidden_nodes()):
            if fixed_width(st.genome, k):
                continue
            room = settings.max_node_width - int(g.nodes[k]["width"])
            cons = _consumers(st, k)
            if room <= 0 or not cons:
                continue
            rows, scale, S, _ = _node_problem(st, k)
            cols = np.concatenate([st.target_rows(j) for j in cons])
            N = -cross[m][rows][:, cols] * scale[:, None]
            at, starts = 0, []
            for j in cons:
                starts.append((j, at))
                at += st.width(j)
            problems.append({"m": m, "k": k, "S": S, "N": N, "room": room, "cons": tuple(starts)})
    sol = _neurons(problems, settings)
    for i, p in enumerate(problems):
        act = stats[p["m"]].genome.graph.nodes[p["k"]]["activation"]
        kept = _keep(sol, i, p, p["room"], act)
        if kept is None:
            continue
        alpha, omega, lam, gain = kept
        out[p["m"]]["widen"].append(
            Candidate("widen", p["k"], -1, alpha, omega, lam, gain, act, p["cons"])
        )


def _new_nodes(stats, cross, settings, out) -> None:
    problems = []
    for m, st in enumerate(stats):
        for i, j in _pairs(st, need_free=False):
            rows = np.concatenate([st.feature_rows(i), [st.one]])
            S = st.G[rows][:, rows]
            N = -cross[m][rows][:, st.target_rows(j)]
            problems.append({"m": m, "i": i, "j": j, "S": S, "N": N})
    sol = _neurons(problems, settings)
    act = settings.new_node_activation
    room = min(settings.max_new, settings.max_node_width)
    for n, p in enumerate(problems):
        kept = _keep(sol, n, p, room, act)
        if kept is None:
            continue
        alpha, omega, lam, gain = kept
        out[p["m"]]["node"].append(
            Candidate("node", p["i"], p["j"], alpha, omega, lam, gain, act, ((p["j"], 0),))
        )


def _edges(stats, cross, settings, out) -> None:
    problems = []
    for m, st in enumerate(stats):
        for i, j in _pairs(st, need_free=True):
            rows = st.feature_rows(i)
            problems.append(
                {"m": m, "i": i, "j": j, "S": st.G[rows][:, rows], "N": -cross[m][rows][:, st.target_rows(j)]}
            )
    if not problems:
        return
    k = max(p["S"].shape[0] for p in problems)
    w = max(p["N"].shape[1] for p in problems)
    weight, gain = solve.optimal_edge(
        _pad_stack([p["S"] for p in problems], (k, k)),
        _pad_stack([p["N"] for p in problems], (k, w)),
        threshold=settings.numerical_threshold,
        relative=True,
    )
    for n, p in enumerate(problems):
        wi, wj = p["S"].shape[0], p["N"].shape[1]
        g = float(gain[n])
        if not g > 0.0:
            continue
        W = weight[n, :wj, :wi].numpy()
        out[p["m"]]["edge"].append(Candidate("edge", p["i"], p["j"], None, W, np.zeros(0), g, "identity", ((p["j"], 0),)))
