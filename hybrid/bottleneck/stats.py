"""The statistics pass: every member's TINY statistics from one batched forward and backward.

TINY (Verbockhaven et al., TMLR 2024) reads, for a layer with input ``b`` (1 appended
for the bias) and per-sample pre-activation gradient ``dz`` (of a *sum*-reduced
loss), the moments ``S = E[b bᵀ]`` and ``M = E[b dzᵀ]``. In a genome a node's input
is the concatenation of its gated incoming edges' sources, so every moment any node
or candidate needs is a block of two matrices per member:

* ``H``, the member's *features*: the input node's gated input ``g_in * x``, every
  hidden node's gated output ``h = g * act(z)`` (node id order), and a row of ones;
* ``G = E[H Hᵀ]`` and ``D = E[H dzᵀ]``, ``dz`` stacked over the hidden and output
  nodes (node id order).

A node ``j`` reads ``b_j = s_j * H[idx_j]`` (its sources' rows, each scaled by its
edge's gate ``s_j``, and the ones row), so ``S_j = s sᵀ * G[idx, idx]`` and
``M_j = s * D[idx, rows_j]``. The bottleneck ``V = dz - A H`` (``A`` holds every
node's best update ``δW*_j`` scattered into feature columns) never needs to be formed:
``E[H Vᵀ] = D - G Aᵀ`` (:func:`bottleneck_moments`).

One pass of the population engine gives ``H`` and ``dz`` for every member at once:
its activation buffer holds each neuron's ungated output and, after the hand-written
backward, each neuron's pre-activation gradient (:meth:`GraphProgram.last_pass`).
Gates are deterministic (TINY's statistics need a fixed function).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from genomes import Genome, GenomeError
from genomes.gates import gate_value

from ..population import PopulationEngine
from ..population.engine import task_losses

__all__ = ["MemberStats", "collect", "node_input"]


@dataclass(frozen=True)
class MemberStats:
    """One member's features and moments over a statistics batch.

    Attributes:
        genome: the member (the statistics describe its function).
        rows: first feature row of each source node (the input node, then hidden
            nodes in id order); ``one`` is the ones row.
        targets: first row of each hidden or output node in ``dz``.
        H: features ``[F, B]`` (float64).
        dz: per-sample pre-activation gradients ``[R, B]`` of the per-sample loss.
        G: ``E[H Hᵀ]`` ``[F, F]``.
        D: ``E[H dzᵀ]`` ``[F, R]``.
        loss: the mean task loss on the batch.
        gate: the gate kind the values were read with.
    """

    genome: Genome
    rows: dict[int, int]
    one: int
    targets: dict[int, int]
    H: torch.Tensor
    dz: torch.Tensor
    G: torch.Tensor
    D: torch.Tensor
    loss: float
    gate: str

    def width(self, node: int) -> int:
        """Neurons of ``node``."""
        return int(self.genome.graph.nodes[node]["width"])

    def feature_rows(self, node: int) -> np.ndarray:
        """Feature rows of a source node's neurons."""
        return self.rows[node] + np.arange(self.width(node))

    def target_rows(self, node: int) -> np.ndarray:
        """``dz`` rows of a hidden or output node's neurons."""
        return self.targets[node] + np.arange(self.width(node))


def node_input(stats: MemberStats, node: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Return a node's input as feature rows and scales, and its sources' blocks.

    ``b = scale * H[rows]``: the node's enabled feed-forward in-edges by source id,
    each source's rows scaled by the edge's deterministic gate, then the ones row
    (scale 1). The blocks are ``(source, first column of its block in b)``.
    """
    g = stats.genome.graph
    rows, scales, blocks, at = [], [], [], 0
    for src in sorted(s for s, _ in stats.genome.feedforward_graph().in_edges(node)):
        e = g.edges[src, node]
        if not e["enabled"]:
            continue
        r = stats.feature_rows(src)
        rows.append(r)
        scales.append(np.full(len(r), float(gate_value(e["gate"], stats.gate))))
        blocks.append((src, at))
        at += len(r)
    rows.append(np.array([stats.one]))
    scales.append(np.ones(1))
    return np.concatenate(rows), np.concatenate(scales), blocks


def _layout(genome: Genome) -> tuple[dict[int, int], int, dict[int, int]]:
    g = genome.graph
    sources = [genome.input_id, *sorted(genome.hidden_nodes())]
    rows, at = {}, 0
    for n in sources:
        rows[n] = at
        at += int(g.nodes[n]["width"])
    targets, t = {}, 0
    for n in [*sorted(genome.hidden_nodes()), genome.output_id]:
        targets[n] = t
        t += int(g.nodes[n]["width"])
    return rows, at, targets


def collect(
    genomes: Sequence[Genome],
    x: np.ndarray,
    y: np.ndarray,
    *,
    loss: str,
    gate: str,
    device: torch.device | str | None = None,
    engine: PopulationEngine | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[MemberStats]:
    """Return every member's statistics from one pass of the population engine.

    Args:
        genomes: feed-forward genomes sharing input and output widths.
        x: the statistics batch, ``(B, n_inputs)`` float.
        y: its targets (class ids for ``cross_entropy``, ``(B, n_out)`` for ``mse``).
        loss: ``"cross_entropy"`` or ``"mse"``; the per-sample loss is differentiated
            (a sum-reduced loss, as TINY's statistics assume).
        gate: the gate kind (values are deterministic).
        device: where to run.
        engine: an engine already packed with exactly ``genomes`` (saves the packing).
        dtype: the engine's dtype when it is made here (float64 for oracle tests: the
            pseudo-inverse square root amplifies float32 rounding of small eigenvalues).

    Raises:
        GenomeError: for a recurrent genome or an empty population.
        ValueError: for a batch that does not match the genomes.
    """
    if not len(genomes):
        raise GenomeError("bottleneck statistics need at least one genome, got none")
    for i, gnm in enumerate(genomes):
        if gnm.is_recurrent:
            raise GenomeError(f"member {i} has recurrent edges: bottleneck growth is feed-forward only")
    eng = engine if engine is not None else PopulationEngine(genomes, gate=gate, device=device, dtype=dtype)
    xt = torch.as_tensor(np.asarray(x), dtype=eng.dtype, device=eng.device)
    yt = torch.as_tensor(np.asarray(y), device=eng.device)
    if loss == "mse":
        yt = yt.to(eng.dtype)
    b = xt.shape[0]
    with torch.enable_grad():
        eng.weights.requires_grad_(True)
        try:
            out = eng.forward(xt)
            per = task_losses(out, yt, loss)  # (P,) means
            (per.sum() * b).backward()  # sum-reduced: dz is each sample's own gradient
        finally:
            eng.weights.requires_grad_(False)
            eng.weights.grad = None
    act, grad = eng.program.last_pass()
    gvals = np.asarray(eng.gate_values().detach().cpu(), np.float64)
    lay = eng.layout
    result = []
    for m, gnm in enumerate(genomes):
        ms = lay.members[m]
        rows, n_feat, targets = _layout(gnm)
        g = gnm.graph
        feat = torch.empty(n_feat + 1, b, dtype=torch.float64, device=eng.device)
        dz = torch.empty(sum(int(g.nodes[n]["width"]) for n in targets), b, dtype=torch.float64)
        gate_at = dict(zip(ms.gate_nodes, ms.gate, strict=True))
        n_in = gnm.n_inputs
        g_in = torch.as_tensor(gvals[gate_at[gnm.input_id] : gate_at[gnm.input_id] + n_in], device=eng.device)
        feat[:n_in] = g_in[:, None] * xt.t().double()
        bias_at = dict(zip(ms.bias_nodes, ms.bias, strict=True))
        for n, t in targets.items():
            width = int(g.nodes[n]["width"])
            buf_rows = torch.as_tensor(lay.bias_row[bias_at[n] : bias_at[n] + width], device=eng.device)
            dz[t : t + width] = grad.index_select(0, buf_rows).double().cpu()
            if n in rows:
                gv = torch.as_tensor(gvals[gate_at[n] : gate_at[n] + width], device=eng.device)
                feat[rows[n] : rows[n] + width] = gv[:, None] * act.index_select(0, buf_rows).double()
        feat[n_feat] = 1.0
        feat = feat.cpu()
        result.append(
            MemberStats(
                genome=gnm,
                rows=rows,
                one=n_feat,
                targets=targets,
                H=feat,
                dz=dz,
                G=feat @ feat.t() / b,
                D=feat @ dz.t() / b,
                loss=float(per[m].detach()),
                gate=gate,
            )
        )
    return result
