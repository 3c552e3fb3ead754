"""The population engine: all members' functions, penalties and gates as one module.

:class:`PopulationEngine` packs P genomes (:mod:`hybrid.population.layout`) and
computes every member's output in one pass (:mod:`hybrid.population.program`). Each
member computes exactly ``GenomeNet``'s function (:mod:`hybrid.net`); gates are
folded into the weights first::

    W_eff[r, c] = g(gate_e) * W_e[r, c] * g(gate_src[c])    (output node: no gate)

so the activation buffer holds ungated activations and the input is stored once
for the whole population. Gate values come from :mod:`hybrid.gates`; the noise of
training-mode hard-concrete gates is one row of ``draw_gate_noise(n_gates, ...)``
whose member slices follow ``hybrid.gates.gate_layout`` (so a one-member population
draws exactly what ``GenomeNet`` draws).

Budgets (issue 17, :mod:`genomes.budgets`): ``forward(..., scale=)`` multiplies every
gate value by a factor before folding, so a budget mask on a hidden neuron folds
exactly like its gate (``h_j = mask_j * g(gate_j) * a_j``: the columns that read a
removed neuron become zero), and a skip edge the budget's level drops
(``BudgetLevel.edges_off``) gets factor 0 on its edge gate (its block adds nothing). :meth:`PopulationEngine.budget_scale` builds that factor
for one budget per member from each member's budget chain (built once per engine).
Without ``scale`` the code path is exactly the one of before budgets existed.

Frozen genes (grafted modules) are computed like any other; ``engine.frozen`` flags
their entries for the optimiser (None when the population has none, so populations
without modules run exactly the code they ran before frozen genes existed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from genomes import Genome, GenomeError
from genomes.adaptive import is_adaptive
from genomes.budgets import budget_chain, check_budget

from ..gates import check_gate_kind, gate_values, open_probability
from ..net import members_from_flat
from .layout import Layout, pack
from .program import GraphProgram, graph_apply

__all__ = ["BudgetTable", "PackedGates", "PopulationEngine"]

#: Per-sample multiply-adds one bucket's kernel launches are worth, by device type:
#: a GPU does far more arithmetic per launch, so it pads more to launch less.
MERGE_MACS = {"cpu": 512.0, "cuda": 65536.0}


class PackedGates:
    """Gate values and penalties of a packed population: shared by both population engines.

    Needs ``gates`` (every member's gate logits, member after member, each in
    :func:`hybrid.gates.gate_layout` order), ``gate`` (the kind) and ``_gate_table``
    (a padded ``[P, G]`` index of each member's gates; ``len(gates)`` for padding).

    ``sample_gates`` (True): training-mode hard-concrete gates are sampled from the
    noise; False while the gates do not train (``TrainConfig.train_gates`` False, the
    final fit): a gate that cannot learn takes its deterministic value, the one the
    fitted network is evaluated and exported with. The training loops set it from
    ``train_gates`` (and back to True); the noise is still drawn, so the random
    streams are the same either way.
    """

    sample_gates: bool = True

    gates: torch.Tensor
    gate: str
    _gate_table: torch.Tensor

    def gate_values(
        self, noise: torch.Tensor | None = None, training: bool = False
    ) -> torch.Tensor:
        """Return every gate's value: deterministic, or sampled when training hard-concrete.

        Raises:
            ValueError: for training-mode hard-concrete gates without noise.

        Shape:
            noise: (n_gates,) -> (n_gates,)
        """
        return gate_values(self.gates, self.gate, noise, training and self.sample_gates)

    def penalty(self) -> torch.Tensor:
        """Return each member's structure penalty (``GenomeNet.penalty``).

        Shape:
            (P,)
        """
        probs = open_probability(self.gates, self.gate)
        padded = torch.cat([probs, probs.new_zeros(1)])
        return padded[self._gate_table].sum(1)


class BudgetTable:
    """Every member's budget levels as gate-scale rows: budgets to masks without Python per step.

    For member ``m`` the entries are the chain's distinct levels
    (``BudgetChain.levels()``, full network first) and, last, the smallest level
    (``BudgetChain.level(len(removals))``, what a budget below ``min_budget``
    selects), so that entry ``k`` of a budget ``b`` is exactly
    ``chain.select(b)``: ``k`` counts the distinct levels whose FLOPs exceed
    ``b x full`` (``select``'s tolerance).

    Attributes:
        chains: each member's ``BudgetChain``.
        keep: ``[P, L + 1, G]`` bool, whether each of the member's gates (``_gate_table``
            columns) keeps its value at each entry (inputs: always; an edge: unless
            the level drops it, ``BudgetLevel.edges_off``).
        flops: ``[P, L]`` float64 FLOPs of each distinct level (padding: -1).
        entry_flops: ``[P, L + 1]`` int64 FLOPs of each entry (entry ``n_levels[m]``: the
            smallest level; entries past it: padding).
        n_levels: ``[P]`` distinct levels of each member (its smallest entry's index).
        full: ``[P]`` float64 FLOPs of the full network.
        min_budget: ``[P]`` float64 ``BudgetChain.min_budget``.
    """

    def __init__(self, engine: PopulationEngine) -> None:
        lay = engine.layout
        chains = [budget_chain(g, engine.gate) for g in engine.genomes]
        entries = []
        for chain in chains:
            # every level once (BudgetChain.levels() and min_budget would build them twice)
            every = [chain.level(k) for k in range(len(chain.removals) + 1)]
            firsts = [lv for k, lv in enumerate(every) if k == 0 or lv.flops != every[k - 1].flops]
            entries.append((firsts, every[-1]))
        p = lay.n_members
        n_max = max(len(lv) for lv, _ in entries)
        width = engine._gate_table.shape[1]
        keep = np.ones((p, n_max + 1, width), bool)
        flops = np.full((p, n_max), -1.0)
        for m, ((levels, smallest), mem) in enumerate(zip(entries, lay.members, strict=True)):
            flops[m, : len(levels)] = [lv.flops for lv in levels]
            rows = [*levels] + [smallest] * (n_max + 1 - len(levels))
            g0 = mem.gates[0]
            for node, start in zip(mem.gate_nodes, mem.gate, strict=True):
                if engine.genomes[m].graph.nodes[node]["role"] != "hidden":
                    continue
                mask = np.stack([lv.masks[node] for lv in rows])
                keep[m, :, start - g0 : start - g0 + mask.shape[1]] = mask
            if any(lv.edges_off for lv in rows):
                at = mem.edge_gate - g0
                for k, e in enumerate(mem.edges):
                    keep[m, :, at + k] = [e not in lv.edges_off for lv in rows]
        dev = engine.device
        self.keep = torch.as_tensor(keep, device=dev)
        self.flops = torch.as_tensor(flops, dtype=torch.float64, device=dev)
        self.n_levels = torch.as_tensor([len(lv) for lv, _ in entries], dtype=torch.long, device=dev)
        full = [float(lv[0].flops) for lv, _ in entries]
        smallest = [float(s.flops) for _, s in entries]
        self.full = torch.as_tensor(full, dtype=torch.float64, device=dev)
        # BudgetChain.min_budget: the smallest level's share of the full FLOPs (1.0 if none)
        shares = [1.0 if f == 0 else s / f for f, s in zip(full, smallest, strict=True)]
        self.min_budget = torch.as_tensor(shares, dtype=torch.float64, device=dev)
        entry_flops = np.zeros((p, n_max + 1), np.int64)
        entry_flops[:, :n_max] = np.maximum(flops, 0)
        entry_flops[np.arange(p), [len(lv) for lv, _ in entries]] = smallest
        #: FLOPs of each entry's level (``[P, L + 1]``; entry ``n_levels``: the smallest).
        self.entry_flops = torch.as_tensor(entry_flops, device=dev)
        self.chains = tuple(chains)

    def entries(self, budgets: torch.Tensor) -> torch.Tensor:
        """Return the entry ``chain.select(b)`` is, for one budget per member.

        Shape:
            budgets: (P,) float64 in (0, 1] -> (P,) int64
        """
        limit = budgets.to(torch.float64) * self.full
        over = self.flops > (limit + 1e-9 * limit.clamp_min(1.0)).unsqueeze(1)
        return over.sum(1)


class PopulationEngine(PackedGates):
    """P genomes packed into padded tensors, run together.

    ``weights``, ``biases`` and ``gates`` hold every member's values (layout in
    :mod:`hybrid.population.layout`); nothing else is trained.

    Args:
        genomes: valid genomes sharing ``n_inputs`` and ``n_outputs`` (only read).
        gate: ``"sigmoid"`` or ``"hard_concrete"``.
        device: where to run (default CPU).
        dtype: float dtype of parameters and buffers.
        merge_macs: bucket merge threshold (see :func:`~hybrid.population.layout.pack`);
            default by device type (``MERGE_MACS``).

    Raises:
        ValueError: for an unknown gate kind.
        GenomeError: for an empty population, members of different widths, or a
            member with recurrent edges.

    Attributes:
        frozen: per trained tensor ``(weights, biases, gates)``, a bool tensor of the
            entries that belong to frozen genes (grafted modules: never trained) or
            are a sparse edge's absent connections (exactly 0, never trained);
            None when no member has either.
    """

    def __init__(
        self,
        genomes: Sequence[Genome],
        gate: str = "sigmoid",
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        merge_macs: float | None = None,
    ) -> None:
        self.gate = check_gate_kind(gate)
        self.device = torch.device(device if device is not None else "cpu")
        self.dtype = dtype
        self.genomes = tuple(genomes)
        for i, genome in enumerate(self.genomes):
            if genome.is_recurrent:
                raise GenomeError(
                    f"member {i} has recurrent edges: the feed-forward population engine cannot run "
                    "it (use hybrid.population.RecurrentEngine)"
                )
            if is_adaptive(genome):
                raise GenomeError(
                    f"member {i} has exit heads or skip gates: the population engine cannot run "
                    "them (use hybrid.population.AdaptiveEngine)"
                )
        if merge_macs is None:
            merge_macs = MERGE_MACS.get(self.device.type, MERGE_MACS["cuda"])
        self.layout: Layout = pack(self.genomes, merge_macs)
        lay = self.layout
        self.program = GraphProgram(lay, self.device, dtype)
        idx = {"device": self.device, "dtype": torch.long}
        fl = {"device": self.device, "dtype": dtype}
        #: The trained tensors: padded weights, one bias per buffer row, gate logits.
        self.weights = torch.tensor(lay.weights, **fl)
        self.biases = torch.tensor(lay.biases, **fl)
        self.gates = torch.tensor(lay.gates, **fl)
        self.members = tuple(
            torch.as_tensor(m, **idx) for m in (lay.weight_member, lay.bias_member, lay.gate_member)
        )
        self._col_edge = torch.as_tensor(lay.col_edge_gate, **idx)
        self._col_src = torch.as_tensor(lay.col_src_gate, **idx)
        self._in_edge = torch.as_tensor(lay.in_edge_gate, **idx)
        self._in_member = torch.as_tensor(lay.in_member, **idx)
        self._in_gate = torch.as_tensor(lay.in_gate, **idx)
        # Penalty: each member's gates (contiguous) gathered into a padded [P, G] table.
        starts = np.array([m.gates[0] for m in lay.members])
        sizes = np.array([m.gates[1] - m.gates[0] for m in lay.members])
        width = max(int(sizes.max()), 1)
        table = starts[:, None] + np.arange(width)[None, :]
        table = np.where(np.arange(width)[None, :] < sizes[:, None], table, len(lay.gates))
        self._gate_table = torch.as_tensor(table, **idx)
        self._budget_table: BudgetTable | None = None
        self.frozen: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        if lay.has_frozen:
            self.frozen = tuple(
                torch.as_tensor(f, device=self.device)
                for f in (lay.weight_frozen, lay.bias_frozen, lay.gate_frozen)
            )

    def __repr__(self) -> str:
        lay = self.layout
        buckets = sum(1 for lvl in lay.levels for grp in lvl if grp.fan_in)
        return (
            f"PopulationEngine(P={lay.n_members}, in={lay.n_inputs}, out={lay.n_outputs}, "
            f"gate={self.gate!r}, device={self.device}, levels={len(lay.levels)}, "
            f"buckets={buckets}, padding_efficiency={lay.padding_efficiency:.0%})"
        )

    @property
    def params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The trained tensors ``(weights, biases, gates)``."""
        return self.weights, self.biases, self.gates

    # ----------------------------------------------------------------- sizes
    @property
    def n_members(self) -> int:
        """Number of members P."""
        return self.layout.n_members

    @property
    def padding_efficiency(self) -> float:
        """Multiply-adds of real edges / multiply-adds executed (forward, per sample)."""
        return self.layout.padding_efficiency

    @property
    def n_gates(self) -> int:
        """Number of gates of all members (the width of a noise row)."""
        return len(self.layout.gates)

    def nbytes(self) -> int:
        """Return the bytes of parameters, index tensors and work buffers."""
        own = [*self.params, *self.members, self._col_edge, self._col_src, self._in_edge]
        own += [self._in_member, self._in_gate, self._gate_table]
        return self.program.nbytes() + sum(t.numel() * t.element_size() for t in own)

    # ---------------------------------------------------------------- function
    def forward(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None = None,
        training: bool = False,
        scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return every member's output for the shared batch ``x``.

        Args:
            x: inputs, on the engine's device.
            noise: uniform noise for training-mode hard-concrete gates.
            training: use training-mode gates.
            scale: a factor on every gate value (:meth:`budget_scale`: 0 on the
                neurons a budget removes, 1 elsewhere); None: none.

        Raises:
            ValueError: if ``x`` does not have ``n_inputs`` columns.

        Shape:
            x: (B, n_inputs); noise: (n_gates,); scale: (n_gates,) -> (P, B, n_outputs)
        """
        lay = self.layout
        if x.dim() != 2 or x.shape[1] != lay.n_inputs:
            raise ValueError(f"inputs should have shape (B, {lay.n_inputs}), got {tuple(x.shape)}")
        values = self.gate_values(noise, training)
        if scale is not None:
            values = values * scale
        values = torch.cat(
            [values, values.new_zeros(1)]
        )  # index n_gates: a closed gate for padding
        cols = values[self._col_edge] * values[self._col_src]
        in_scale = values[self._in_edge][:, None] * values[self._in_gate][self._in_member]
        xt = x.t().to(self.dtype).contiguous()
        out = graph_apply(self.program, xt, self.weights, cols, in_scale, self.biases)
        return out.view(lay.n_members, lay.n_outputs, -1).transpose(1, 2)

    __call__ = forward

    # ----------------------------------------------------------------- budgets
    @property
    def budget_table(self) -> BudgetTable:
        """Every member's budget chain as gate-scale rows (built on first use, then kept).

        Raises:
            GenomeError: if a member's neuron ``order`` is not a permutation.
        """
        if self._budget_table is None:
            self._budget_table = BudgetTable(self)
        return self._budget_table

    def budget_scale(self, budgets: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """Return the gate-value factor that runs member ``m`` at ``budgets[m]``.

        Member ``m`` computes ``genomes.evaluate(genome, x, gate, budget=budgets[m])``
        when ``forward`` gets this ``scale``: the masks of ``chain.select(b)`` on its
        hidden neurons' gates, 0 on the gates of the edges it drops, 1 on every other
        gate.

        Raises:
            GenomeError: for a budget outside (0, 1] or not one per member.

        Shape:
            budgets: (P,) -> (n_gates,)
        """
        if isinstance(budgets, torch.Tensor):
            b = budgets.to(self.device, torch.float64).reshape(-1)
            if not bool(((b > 0) & (b <= 1)).all()):
                raise GenomeError(f"budgets should be in (0, 1], got {b.tolist()}")
        else:
            b = torch.tensor(
                [check_budget(v, f"budgets[{m}]") for m, v in enumerate(budgets)],
                dtype=torch.float64,
                device=self.device,
            )
        if b.numel() != self.n_members:
            raise GenomeError(f"budgets should give one budget per member ({self.n_members}), got {b.numel()}")
        return self.entry_scale(self.budget_table.entries(b))

    def entry_scale(self, entries: torch.Tensor) -> torch.Tensor:
        """Return the gate-value factor for one :class:`BudgetTable` entry per member.

        Shape:
            entries: (P,) int64 -> (n_gates,)
        """
        table = self.budget_table
        rows = table.keep[torch.arange(self.n_members, device=self.device), entries]
        scale = torch.ones(self.n_gates + 1, dtype=self.dtype, device=self.device)
        scale[self._gate_table] = rows.to(self.dtype)
        return scale[:-1]

    def smallest_scale(self) -> torch.Tensor:
        """Return the gate-value factor that runs every member at its chain's smallest level.

        Shape:
            -> (n_gates,)
        """
        return self.entry_scale(self.budget_table.n_levels)

    # -------------------------------------------------------------- write back
    def write_back(self) -> list[Genome]:
        """Return new genomes holding each member's current values.

        Disabled and recurrent edges, unused biases and gates and ``meta`` are copied
        unchanged (``hybrid.net.write_back`` semantics); untrained values come back
        bit for bit.

        Raises:
            GenomeError: if a genome's structure changed since packing.
        """
        lay = self.layout
        w, b, g = (t.detach().to("cpu", torch.float32).numpy() for t in self.params)
        w, b = w[lay.weight_pos], b[lay.bias_row]
        return members_from_flat(self.genomes, lay.members, lay.structure, w, b, g)


def task_losses(
    out: torch.Tensor,
    y: torch.Tensor,
    loss: str,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return each member's mean task loss (``hybrid.metrics.task_loss`` per member).

    Args:
        out: every member's outputs (logits for ``cross_entropy``).
        y: the shared targets.
        loss: ``"cross_entropy"`` or ``"mse"``.
        mask: which samples each member may learn from (K-fold fitness): a member's
            loss is the mean over its own samples, 0 when it has none in the batch.
            None: every sample counts for every member.
        weights: each sample's weight (``class_weight = "balanced"``): a member's loss
            is then the weighted mean ``sum(w * l) / sum(w)`` over its samples, as
            ``F.cross_entropy(weight=...)`` computes it.

    Shape:
        out: (P, B, n_out); y: (B,) or (B, n_out); mask: (P, B) bool; weights: (B,) -> (P,)
    """
    if weights is not None:
        return _weighted_losses(out, y, loss, mask, weights)
    if mask is None and loss != "cross_entropy":
        return F.mse_loss(out, y.expand_as(out), reduction="none").mean((1, 2))
    per = sample_losses(out, y, loss)
    if mask is None:
        return per.mean(1)
    count = mask.sum(1).clamp_min(1).to(per.dtype)  # an all-masked batch: loss 0, no gradient
    return torch.where(mask, per, torch.zeros((), dtype=per.dtype, device=per.device)).sum(1) / count


def sample_losses(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Return each member's task loss on each sample (``task_losses`` before the mean).

    Shape:
        out: (P, B, n_out); y: (B,) or (B, n_out) -> (P, B)
    """
    p, b = out.shape[:2]
    if loss == "cross_entropy":
        # F.cross_entropy's values bit for bit; its 2-D nll_loss path is ~1.5x slower on CPU.
        logp = torch.log_softmax(out.transpose(1, 2), 1)  # (P, n_out, B): the engine's layout
        return -logp.gather(1, y.view(1, 1, b).expand(p, 1, b)).view(p, b)
    return F.mse_loss(out, y.expand_as(out), reduction="none").mean(2)


def _weighted_losses(
    out: torch.Tensor, y: torch.Tensor, loss: str, mask: torch.Tensor | None, weights: torch.Tensor
) -> torch.Tensor:
    """:func:`task_losses` with per-sample weights: ``sum(w * l) / sum(w)`` per member."""
    p, b = out.shape[:2]
    per = sample_losses(out, y, loss)
    w = weights.to(per.dtype).view(1, b).expand(p, b)
    zero = torch.zeros((), dtype=per.dtype, device=per.device)
    if mask is not None:
        w = torch.where(mask, w, zero)
    total = torch.where(w > 0, per * w, zero).sum(1)  # a weight-0 sample adds nothing, even an inf loss
    return total / w.sum(1).clamp_min(torch.finfo(per.dtype).tiny)
