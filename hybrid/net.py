"""Compile a genome into a PyTorch module: the single-genome engine.

:class:`GenomeNet` computes exactly the function of ``docs/design.md``, nodes in
``genome.topological_order()``::

    h_in = g(gate_in) * x
    a_j  = act_j(bias_j + sum_{enabled e=(i->j)} g(gate_e) * (W_e @ h_i))
    h_j  = g(gate_j) * a_j        (output node: h_out = a_out)

with ``g`` a sigmoid or a hard-concrete L0 gate (Louizos, Welling & Kingma 2018,
"Learning Sparse Neural Networks through L0 Regularization"; see
:mod:`hybrid.gates`). Building a net copies the genome's arrays (the genome is
never changed); :func:`write_back` is the separate step that returns a new genome
holding the trained values. ``genomes.evaluate`` is the numpy oracle it is tested
against.

Budgets (issue 17, :mod:`genomes.budgets`): ``forward(x, budget=b)`` runs the
sub-network ``b`` selects on the genome's budget chain, a removed neuron computing 0
(its gate value times its mask: ``h_j = mask_j * g(gate_j) * a_j``) and a dropped skip
edge adding nothing (its gate value times 0), as the population engine does;
``masks=`` (and ``edges_off=``) give a level directly.

Frozen genes (a grafted module's nodes and edges, ``frozen`` attribute set): computed
like any other; their parameters have ``requires_grad=False`` (same keys), and the
write-back (:func:`with_values`) keeps the genome's own arrays for them, bit for bit.

Sparse edges (``mutation.sparsify``, an edge ``mask``): the weight is used as ``W *
mask`` (a non-persistent buffer), equal to ``W`` since absent connections hold 0,
so their gradient is exactly 0 and training leaves them at 0.

Compute that adapts to each input (issue 16, :mod:`genomes.adaptive`): an exit node
is an ordinary node without a neuron gate (like the output); its head is its one
incoming edge. A skip-gated hidden node ``j`` has the parameters ``n{j}_skip`` [1]
(the gate's bias ``c_j``) and ``e{i}_{j}_skip`` [width_i] on each enabled
feed-forward edge into it, and is multiplied per sample by its decision ``z_j``::

    s_j = c_j + sum_{enabled e=(i->j)} g(gate_e) * (skip_e . h_i)
    z_j = 1[s_j >= 0]                                  (eval)
    z_j = hard + (soft - soft.detach())                (training: straight-through)
        hard = 1[s_j + L_j >= 0], soft = sigmoid(s_j + L_j), L_j logistic noise
    h_j = z_j * g(gate_j) * a_j

``forward`` is the output node (what ``genomes.evaluate`` computes),
:meth:`GenomeNet.forward_exits` adds every exit's logits and the decisions (for
training), and :meth:`GenomeNet.infer` is the early-exit computation itself: stage
by stage, only the samples still running, a skip-gated node only for the samples
whose gate is open, with each sample's FLOPs (``genomes.adaptive.evaluate_adaptive``
is its numpy oracle).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from genomes import Genome, GenomeError
from genomes.adaptive import (
    AdaptivePlan,
    adaptive_plan,
    check_threshold,
    exit_nodes,
    skip_nodes,
    with_thresholds,
)
from genomes.genome import is_frozen

from .activations import TORCH_ACTIVATIONS
from .gates import (
    NOISE_EPS,
    check_gate_kind,
    draw_gate_noise,
    gate_layout,
    gate_value,
    gate_values,
    open_probability,
)

__all__ = [
    "GenomeNet",
    "draw_skip_noise",
    "fixed_width",
    "has_frozen",
    "is_frozen",
    "members_from_flat",
    "with_values",
    "write_back",
]


def has_frozen(genome: Genome) -> bool:
    """Whether any node or edge of ``genome`` is frozen (a grafted module's gene)."""
    return bool(genome.frozen_nodes() or genome.frozen_edges())


def fixed_width(genome: Genome, node: int) -> bool:
    """Whether ``node``'s width may not change: it is frozen or feeds a frozen node.

    Adding or removing neurons of a node reshapes every edge into and out of it, and
    a frozen edge (every edge into a frozen node) is never changed.
    """
    return is_frozen(genome.graph.nodes[node]) or genome.feeds_frozen(node)


def _node_key(n: int, what: str) -> str:
    return f"n{n}_{what}"


def _edge_key(s: int, d: int, what: str) -> str:
    return f"e{s}_{d}_{what}"


def _param(a: np.ndarray, frozen: bool = False) -> nn.Parameter:
    # torch.tensor copies: training the net must never write into the genome's arrays.
    return nn.Parameter(torch.tensor(np.asarray(a, dtype=np.float32)), requires_grad=not frozen)


def _trained_key(genome: Genome) -> tuple:
    """The structure key without the exits' thresholds (a net never trains them)."""
    if not exit_nodes(genome):
        return genome.structure_key()
    return with_thresholds(genome, 1.0).structure_key()


def draw_skip_noise(
    batch: int,
    n_skip: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw the logistic noise ``L = log u - log(1 - u)`` of training-mode skip gates.

    ``u`` is uniform (one ``torch.rand`` call on ``generator``, or on torch's default
    generator when None), clamped to ``[NOISE_EPS, 1 - NOISE_EPS]`` so ``L`` is finite.

    Returns:
        Column ``k`` feeds the ``k``-th node of ``genomes.adaptive.skip_nodes(genome)``.

    Shape:
        (batch, n_skip)
    """
    where = generator.device if generator is not None else device
    u = torch.rand((batch, n_skip), generator=generator, device=where, dtype=torch.float64)
    u = torch.clamp(u, NOISE_EPS, 1.0 - NOISE_EPS)
    noise = torch.log(u) - torch.log1p(-u)
    return noise.to(device if device is not None else noise.device, dtype)


class GenomeNet(nn.Module):
    """The function of one genome, as an ``nn.Module`` with one parameter per gene.

    Parameters live in two ``ParameterDict``s keyed by node / edge id:
    ``nodes["n5_bias"]`` [width], ``nodes["n5_gate"]`` [width] (logits),
    ``edges["e0_5_weight"]`` [width_5, width_0], ``edges["e0_5_gate"]`` (scalar
    logit). Only enabled edges (feed-forward and recurrent) get parameters; the
    input node has no bias and the output node no gate (both unused by the function).
    A genome with recurrent edges runs over sequences ``(B, T, F)`` and returns its
    outputs and final state, as ``nn.RNN`` does (see :meth:`forward`). There is no
    ``reset_parameters``: the initial values are the genome's, not an init scheme.

    Gates: in eval mode (and always for ``sigmoid`` gates) the deterministic
    values; in training mode with ``hard_concrete`` gates, one stochastic sample
    per gate per forward from uniform noise that is either passed to ``forward``
    (one row of :func:`hybrid.gates.draw_gate_noise`, laid out as
    :func:`hybrid.gates.gate_layout`) or drawn from ``generator``.

    Adaptive genomes (:mod:`genomes.adaptive`): exit nodes get a bias and their
    head edge's weight and gate (no neuron gate); a skip-gated node ``j`` gets
    ``nodes["n{j}_skip"]`` [1] and ``edges["e{i}_{j}_skip"]`` [width_i] per enabled
    feed-forward edge into it. Skip decisions are deterministic in eval mode and
    straight-through hard Gumbel in training mode, with logistic noise passed as
    ``skip_noise`` (:func:`draw_skip_noise`) or drawn from ``generator`` (torch's
    default generator when there is none, as dropout does).

    Args:
        genome: a valid genome (only read).
        gate: ``"sigmoid"`` or ``"hard_concrete"``.
        generator: where training-mode hard-concrete gate noise and skip-gate noise
            come from when ``forward`` is given none (gate noise: never the global RNG).

    Raises:
        ValueError: for an unknown gate kind.

    Shape:
        Input: (B, n_inputs). Output: (B, n_outputs).
        Sequences: (B, T, n_inputs) and a state (B, state_size) -> ((B, T, n_outputs), (B, state_size)).

    Example:
        >>> import numpy as np
        >>> from genomes import InnovationTracker
        >>> g = Genome.minimal(2, 3, np.random.default_rng(0), InnovationTracker(), hidden=[4])
        >>> GenomeNet(g)(torch.zeros(5, 2)).shape
        torch.Size([5, 3])
    """

    n_inputs: int
    n_outputs: int
    gate: str
    generator: torch.Generator | None

    def __init__(
        self, genome: Genome, gate: str = "sigmoid", generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.gate = check_gate_kind(gate)
        self.generator = generator
        self.n_inputs = genome.n_inputs
        self.n_outputs = genome.n_outputs
        self._structure = _trained_key(genome)
        self._genome = genome  # read (budget chains) only, never changed
        self._chain: Any = None
        self._input = genome.input_id
        self._output = genome.output_id
        self.nodes = nn.ParameterDict()
        self.edges = nn.ParameterDict()
        self._masks: dict[str, str] = {}  # sparse edges: weight key -> its mask buffer's name
        g = genome.graph
        active = genome.active_graph()
        inv = {e: g.edges[e]["innovation"] for e in active.edges}
        self.nodes[_node_key(self._input, "gate")] = _param(g.nodes[self._input]["gate"])
        plan = []
        skips: dict[int, tuple[str, tuple[tuple[int, str, str], ...]]] = {}
        for n in genome.topological_order():
            a = g.nodes[n]
            if a["role"] == "input":
                continue
            frozen = is_frozen(a)
            self.nodes[_node_key(n, "bias")] = _param(a["bias"], frozen)
            node_gate = None
            if a["role"] == "hidden":
                node_gate = _node_key(n, "gate")
                self.nodes[node_gate] = _param(a["gate"], frozen)
            incoming = []
            for s in sorted(active.predecessors(n), key=lambda s, n=n: inv[s, n]):
                e = g.edges[s, n]
                self.edges[_edge_key(s, n, "weight")] = _param(e["weight"], is_frozen(e))
                self.edges[_edge_key(s, n, "gate")] = _param(e["gate"], is_frozen(e))
                if e.get("mask") is not None:  # a sparse edge: W * mask, so absent entries get no gradient
                    name = f"_mask_{_edge_key(s, n, 'weight')}"
                    self.register_buffer(name, torch.tensor(e["mask"].astype(np.float32)), persistent=False)
                    self._masks[_edge_key(s, n, "weight")] = name
                incoming.append((s, _edge_key(s, n, "weight"), _edge_key(s, n, "gate")))
            plan.append((n, a["activation"], _node_key(n, "bias"), node_gate, tuple(incoming)))
            if a.get("skip") is not None:  # a skip gate: a tiny linear layer on the node's input
                self.nodes[_node_key(n, "skip")] = _param(a["skip"], frozen)
                terms = []
                for s, _, edge_gate in incoming:
                    self.edges[_edge_key(s, n, "skip")] = _param(
                        g.edges[s, n]["skip"], is_frozen(g.edges[s, n])
                    )
                    terms.append((s, _edge_key(s, n, "skip"), edge_gate))
                skips[n] = (_node_key(n, "skip"), tuple(terms))
        self._plan = tuple(plan)
        self._plan_index = {p[0]: k for k, p in enumerate(self._plan)}
        self._skips = skips
        self._skip_order = tuple(skip_nodes(genome))
        self._skip_column = {n: k for k, n in enumerate(self._skip_order)}
        self._exits: tuple[int, ...] = (
            adaptive_plan(genome, gate).exits if exit_nodes(genome) else ()
        )
        self._thresholds = {n: float(g.nodes[n]["threshold"]) for n in exit_nodes(genome)}
        recurrent: dict[int, list[tuple[int, str, str]]] = {}
        for s, n in genome.recurrent_edges():
            e = g.edges[s, n]
            self.edges[_edge_key(s, n, "weight")] = _param(e["weight"])
            self.edges[_edge_key(s, n, "gate")] = _param(e["gate"])
            recurrent.setdefault(n, []).append(
                (s, _edge_key(s, n, "weight"), _edge_key(s, n, "gate"))
            )
        self._recurrent = {n: tuple(v) for n, v in recurrent.items()}
        self._state = genome.state_layout()
        self.state_size = sum(w for _, w in self._state)
        runs = gate_layout(genome)
        self._gate_keys = tuple(
            _node_key(k, "gate") if isinstance(k, int) else _edge_key(*k, "gate") for k, _ in runs
        )
        self._gate_sizes = tuple(size for _, size in runs)
        self._labels = {
            n: f"{n}: {a['activation'] if a['role'] == 'hidden' else a['role']}[{a['width']}]"
            for n, a in g.nodes(data=True)
        }

    def _weight(self, key: str) -> torch.Tensor:
        """Edge weight ``key`` as the function uses it: times its mask on a sparse edge.

        The product equals the weight (absent connections hold exactly 0) and makes
        their gradient exactly 0, so any optimiser leaves them at 0.
        """
        w = self.edges[key]
        name = self._masks.get(key)
        return w if name is None else w * getattr(self, name)

    # ------------------------------------------------------------------ gates
    @property
    def gate_keys(self) -> tuple[str, ...]:
        """Parameter key of every gate run, in :func:`hybrid.gates.gate_layout` order."""
        return self._gate_keys

    @property
    def n_gates(self) -> int:
        """Number of gates (input neurons + hidden neurons + enabled edges)."""
        return sum(self._gate_sizes)

    @property
    def exits(self) -> tuple[int, ...]:
        """The live exit nodes in stage order (``adaptive_plan(genome, gate).exits`` as built)."""
        return self._exits

    @property
    def thresholds(self) -> dict[int, float]:
        """Each exit's threshold, read off the genome (a net never trains them)."""
        return dict(self._thresholds)

    @property
    def skip_nodes(self) -> tuple[int, ...]:
        """The skip-gated nodes (``genomes.adaptive.skip_nodes``): the columns of ``skip_noise``."""
        return self._skip_order

    def _get(self, key: str) -> nn.Parameter:
        return self.nodes[key] if key[0] == "n" else self.edges[key]

    def gate_parameters(self) -> list[nn.Parameter]:
        """Return the gate logit parameters in :func:`hybrid.gates.gate_layout` order."""
        return [self._get(k) for k in self._gate_keys]

    def gate_logits(self) -> torch.Tensor:
        """Return every gate logit, concatenated in :func:`hybrid.gates.gate_layout` order.

        Shape:
            (n_gates,)
        """
        return torch.cat([p.reshape(-1) for p in self.gate_parameters()])

    def gate_values(self, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Return the gate values a forward pass uses, keyed by parameter key.

        Deterministic unless training with ``hard_concrete`` gates, where ``noise``
        (uniform, (n_gates,)) or, if None, a draw from ``generator`` is used.

        Raises:
            ValueError: if noise is needed and there is neither noise nor a generator.
        """
        logits = self.gate_logits()
        if self.training and self.gate == "hard_concrete" and noise is None:
            if self.generator is None:
                raise ValueError(
                    "hard_concrete gates in training mode need noise or a generator, got neither "
                    "(net.eval() gives the deterministic gates)"
                )
            noise = draw_gate_noise(logits.numel(), 1, self.generator)[0]
        values = gate_values(logits, self.gate, noise, self.training)
        return self._by_key(values)

    def _by_key(self, values: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self._gate_keys, values.split(self._gate_sizes), strict=True))

    def penalty(self) -> torch.Tensor:
        """Return the structure penalty: the sum of every gate's open probability.

        Matches ``genomes.open_probability`` (expected number of open gates for
        ``hard_concrete``, sum of gate values for ``sigmoid``).

        Shape:
            () scalar.
        """
        return open_probability(self.gate_logits(), self.gate).sum()

    # ---------------------------------------------------------------- forward
    def budget_level(self, budget: float) -> Any:
        """Return the ``genomes.budgets.BudgetLevel`` ``budget`` selects on the genome's chain.

        The chain is the one of the genome the net was built from (its gates as
        built), made once.

        Raises:
            GenomeError: for a budget outside (0, 1] or a recurrent genome.
        """
        from genomes.budgets import budget_chain

        if self._chain is None:
            self._chain = budget_chain(self._genome, self.gate)
        return self._chain.select(budget)

    def budget_masks(self, budget: float) -> dict[int, np.ndarray]:
        """Return the kept-neuron masks of ``budget`` (``budget_level(budget).masks``).

        Raises:
            GenomeError: for a budget outside (0, 1] or a recurrent genome.
        """
        return self.budget_level(budget).masks

    def _masked(
        self,
        gates: dict[str, torch.Tensor],
        masks: Mapping[int, Any],
        edges_off: Collection[tuple[int, int]] = (),
    ) -> dict[str, torch.Tensor]:
        """Return ``gates`` with each hidden node's gate values times its mask, dropped edges' times 0."""
        out = dict(gates)
        for n, _, _, gate_key, _ in self._plan:
            if gate_key is not None and n in masks:
                m = torch.as_tensor(np.asarray(masks[n]), device=gates[gate_key].device)
                out[gate_key] = gates[gate_key] * m.to(gates[gate_key].dtype)
        for s, d in edges_off:
            key = _edge_key(s, d, "gate")
            if key not in out:
                raise ValueError(
                    f"edges_off names ({s}, {d}), which is not an enabled edge of the net"
                )
            out[key] = out[key] * 0
        return out

    def forward(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
        budget: float | None = None,
        masks: Mapping[int, Any] | None = None,
        edges_off: Collection[tuple[int, int]] | None = None,
        skip_noise: torch.Tensor | None = None,
    ) -> Any:
        """Return the genome's output for a batch, or outputs and final state for sequences.

        A 2-D batch is one time step from the zero state (recurrent edges add
        nothing). A 3-D batch runs step by step: recurrent edges read the previous
        step's values (``state`` at the first step), as ``nn.RNN`` does. Skip gates
        apply (every sample runs to the output node: exits are ignored, as
        ``genomes.evaluate`` does; :meth:`infer` is the early-exit computation).

        Args:
            x: inputs ``(B, n_inputs)`` or sequences ``(B, T, n_inputs)``.
            noise: uniform gate noise for training-mode hard-concrete gates
                (ignored otherwise); see :meth:`gate_values`. One draw serves every
                time step.
            state: the initial state of a sequence, ``(B, state_size)``, laid out as
                ``genome.state_layout()``; zeros when None.
            budget: run the sub-network this budget in (0, 1] selects
                (:meth:`budget_level`: its masks and dropped edges); feed-forward
                genomes only.
            masks: ``{hidden node: bool [width]}``, kept neurons (instead of ``budget``).
            edges_off: ``(src, dst)`` edges that add nothing (with ``masks``: a level's
                ``edges_off``; None: none).
            skip_noise: logistic noise of training-mode skip gates, ``(B, n_skip)``
                (``(B, T, n_skip)`` for sequences), columns in :attr:`skip_nodes`
                order (:func:`draw_skip_noise`); ignored in eval mode; drawn when None.

        Returns:
            ``(B, n_outputs)`` for a 2-D batch; ``(outputs (B, T, n_outputs), final
            state (B, state_size))`` for sequences.

        Raises:
            ValueError: if the last dimension of ``x`` is not ``n_inputs``, the state
                or ``skip_noise`` has the wrong shape.

        Shape:
            x: (B, n_inputs), noise: (n_gates,), skip_noise: (B, n_skip) -> (B, n_outputs);
            x: (B, T, n_inputs), state: (B, S) -> ((B, T, n_outputs), (B, S))
        """
        if budget is not None or masks is not None or edges_off is not None:
            if budget is not None and (masks is not None or edges_off is not None):
                raise ValueError("give budget or masks (and edges_off), not both")
            if x.dim() != 2 or x.shape[1] != self.n_inputs or state is not None:
                raise ValueError(
                    f"budgets run a feed-forward batch (B, {self.n_inputs}) without state, got "
                    f"{tuple(x.shape)}"
                )
            if budget is not None:
                level = self.budget_level(budget)
                masks, edges_off = level.masks, level.edges_off
            gates = self._masked(self.gate_values(noise), masks or {}, edges_off or ())
            return self._step(x, gates, {}, self._skip_noise(x, skip_noise))[self._output]
        if x.dim() == 2 and x.shape[1] == self.n_inputs and state is None:
            return self._step(x, self.gate_values(noise), {}, self._skip_noise(x, skip_noise))[
                self._output
            ]
        if x.dim() != 3 or x.shape[2] != self.n_inputs:
            raise ValueError(
                f"inputs should have shape (B, {self.n_inputs}) or (B, T, {self.n_inputs}), "
                f"got {tuple(x.shape)}"
            )
        b = x.shape[0]
        if state is None:
            state = x.new_zeros(b, self.state_size)
        if tuple(state.shape) != (b, self.state_size):
            raise ValueError(
                f"state should have shape ({b}, {self.state_size}), got {tuple(state.shape)}"
            )
        gates = self.gate_values(noise)
        widths = [w for _, w in self._state]
        previous = (
            dict(zip([n for n, _ in self._state], state.split(widths, 1), strict=True))
            if widths
            else {}
        )
        outputs = []
        for t in range(x.shape[1]):
            step_noise = None if skip_noise is None else skip_noise[:, t]
            values = self._step(x[:, t], gates, previous, self._skip_noise(x[:, t], step_noise))
            outputs.append(values[self._output])
            previous = {n: values[n] for n, _ in self._state}
        final = torch.cat([previous[n] for n, _ in self._state], 1) if self._state else state
        return torch.stack(outputs, 1), final

    def forward_exits(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None = None,
        skip_noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor], dict[int, torch.Tensor]]:
        """Return the full path of a batch: the output, every exit's logits and the skip decisions.

        What training needs: every sample runs every node (no early exit), so each
        exit's loss can be taken on every sample. Gates and skip decisions are as in
        :meth:`forward` (straight-through tensors in training mode, so a loss on
        ``z`` reaches the skip parameters).

        Args:
            x: inputs ``(B, n_inputs)``.
            noise: uniform gate noise (see :meth:`forward`).
            skip_noise: logistic skip-gate noise ``(B, n_skip)`` (see :meth:`forward`).

        Returns:
            ``(output, heads, z)``: the output node ``(B, n_out)``; a list of ``(B,
            n_out)`` logits, one per exit in :attr:`exits` order; ``{skip node: (B,)}``
            decisions (0/1 values).

        Raises:
            ValueError: for inputs or ``skip_noise`` of the wrong shape.
        """
        if x.dim() != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"inputs should have shape (B, {self.n_inputs}), got {tuple(x.shape)}")
        z: dict[int, torch.Tensor] = {}
        values = self._step(
            x, self.gate_values(noise), {}, self._skip_noise(x, skip_noise), z, True
        )
        return values[self._output], [values[e] for e in self._exits], z

    def _skip_noise(self, x: torch.Tensor, skip_noise: torch.Tensor | None) -> torch.Tensor | None:
        """Return the logistic noise a training-mode step uses (None in eval mode or without skip gates)."""
        if not self.training or not self._skips:
            return None
        b, n = x.shape[0], len(self._skip_order)
        if skip_noise is None:
            return draw_skip_noise(b, n, self.generator, x.device, x.dtype)
        if tuple(skip_noise.shape) != (b, n):
            raise ValueError(
                f"skip_noise should have shape ({b}, {n}) (batch, skip nodes), got {tuple(skip_noise.shape)}"
            )
        return skip_noise.to(x.device, x.dtype)

    def _skip_logit(
        self, n: int, values: dict[int, torch.Tensor], gates: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Return node ``n``'s skip-gate logit ``s_n`` per sample (sources missing from ``values`` add nothing).

        Shape:
            -> (B,)
        """
        bias_key, terms = self._skips[n]
        s = self.nodes[bias_key].expand(values[self._input].shape[0])
        for src, skip_key, edge_gate_key in terms:
            if src in values:
                s = s + gates[edge_gate_key] * (values[src] @ self.edges[skip_key])
        return s

    def _decide(self, n: int, s: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Return node ``n``'s per-sample decision: ``1[s >= 0]``, or straight-through hard Gumbel with noise."""
        if noise is None:
            return (s >= 0).to(s.dtype)
        t = s + noise[:, self._skip_column[n]]
        soft = torch.sigmoid(t)
        return (t >= 0).to(s.dtype) + (soft - soft.detach())  # forward: exactly the hard value

    def _step(
        self,
        x: torch.Tensor,
        gates: dict[str, torch.Tensor],
        previous: dict[int, torch.Tensor],
        skip_noise: torch.Tensor | None = None,
        decisions: dict[int, torch.Tensor] | None = None,
        exits: bool = False,
    ) -> dict[int, torch.Tensor]:
        """Return every node's ``h`` at one time step (``previous``: the state nodes' last ``h``).

        ``skip_noise``: training-mode logistic noise (None: deterministic skip
        decisions); ``decisions``, when given, receives each skip node's ``z``;
        ``exits``: compute the exit heads too (nothing reads them but the caller).
        """
        values = {self._input: x * gates[_node_key(self._input, "gate")]}
        for n, activation, bias_key, gate_key, incoming in self._plan:
            if not exits and n in self._thresholds:
                continue
            pre = self.nodes[bias_key]
            for s, weight_key, edge_gate_key in incoming:
                pre = pre + gates[edge_gate_key] * nn.functional.linear(values[s], self._weight(weight_key))
            if previous:
                for s, weight_key, edge_gate_key in self._recurrent.get(n, ()):
                    pre = pre + gates[edge_gate_key] * nn.functional.linear(
                        previous[s], self.edges[weight_key]
                    )
            out = TORCH_ACTIVATIONS[activation](pre)
            out = out if gate_key is None else out * gates[gate_key]
            if n in self._skips:
                z = self._decide(n, self._skip_logit(n, values, gates), skip_noise)
                out = out * z[:, None]
                if decisions is not None:
                    decisions[n] = z
            values[n] = out
        return values

    # --------------------------------------------------------------- inference
    def plan(self) -> AdaptivePlan:
        """Return the stages and costs of the net's current values (``adaptive_plan`` of its write-back).

        Raises:
            GenomeError: for a genome with recurrent edges.
        """
        return adaptive_plan(write_back(self._genome, self), self.gate)

    @torch.no_grad()
    def infer(
        self, x: torch.Tensor, thresholds: Sequence[float] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run a batch adaptively: per-sample outputs under the exit rule, FLOPs and stage.

        The early-exit computation itself (``genomes.adaptive.evaluate_adaptive`` is
        its numpy oracle; the exported modules do the same): deterministic gates
        (whatever the mode), the stages of :meth:`plan` in order; stage ``k``
        computes its nodes for the samples still running only, a skip-gated node
        only for the samples whose gate ``s >= 0`` opens (zeros for the others),
        then exit ``k``'s logits; a sample whose confidence (max softmax) reaches
        the exit's threshold stops there with those logits, the rest go on. The
        last stage ends at the output node. Each sample is charged what it ran
        (``genomes.adaptive``'s FLOPs rule).

        Args:
            x: inputs ``(B, n_inputs)``.
            thresholds: one per exit in :meth:`plan` order; None: each exit's
                ``threshold`` (:attr:`thresholds`).

        Returns:
            ``(outputs, flops, stage)``: ``(B, n_out)`` exit-rule outputs, ``(B,)``
            int64 FLOPs, ``(B,)`` int64 stage each sample stopped at (``k <
            len(exits)``: exit ``k``; ``len(exits)``: the output node).

        Raises:
            ValueError: for inputs of the wrong shape.
            GenomeError: for thresholds of the wrong length or outside (0, 1], or a
                genome with recurrent edges.

        Shape:
            x: (B, n_inputs) -> (B, n_outputs), (B,), (B,)
        """
        if x.dim() != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"inputs should have shape (B, {self.n_inputs}), got {tuple(x.shape)}")
        plan = self.plan()
        if thresholds is None:
            thr = [self._thresholds[e] for e in plan.exits]
        else:
            thr = [float(q) for q in thresholds]
            if len(thr) != len(plan.exits):
                raise GenomeError(
                    f"thresholds should be one per exit ({len(plan.exits)}), got {len(thr)}"
                )
            thr = [check_threshold(q, f"thresholds[{k}]") for k, q in enumerate(thr)]
        gates = self._by_key(gate_value(self.gate_logits(), self.gate))
        b = x.shape[0]
        outputs = x.new_zeros(b, self.n_outputs)
        flops = torch.zeros(b, dtype=torch.int64, device=x.device)
        stage = torch.full((b,), len(plan.exits), dtype=torch.int64, device=x.device)
        # The samples still running, and what each of them has cost so far.
        rows = torch.arange(b, device=x.device)
        spent = torch.zeros(b, dtype=torch.int64, device=x.device)
        values = {self._input: x * gates[_node_key(self._input, "gate")]}
        for k, st in enumerate(plan.stages):
            for n in st.nodes:
                values[n], ran = self._infer_node(n, values, gates)
                if n in plan.skip_flops:
                    spent = spent + plan.skip_flops[n] + ran.to(torch.int64) * plan.node_flops[n]
                else:
                    spent = spent + plan.node_flops[n]
            last = st.exit is None
            head = self._output if last else st.exit
            logits, _ = self._infer_node(head, values, gates)
            spent = spent + plan.node_flops[head]
            done = (
                torch.ones_like(rows, dtype=torch.bool) if last else _confidence(logits) >= thr[k]
            )
            outputs[rows[done]] = logits[done]
            flops[rows[done]] = spent[done]
            stage[rows[done]] = k
            going = ~done
            if not bool(going.any()):
                break
            rows, spent = rows[going], spent[going]  # the rest run on, alone
            values = {n: v[going] for n, v in values.items()}
        return outputs, flops, stage

    def _infer_node(
        self, n: int, values: dict[int, torch.Tensor], gates: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return node ``n``'s ``h`` for the running samples and, for a skip-gated node, who ran it.

        Sources not in ``values`` (not live: their contribution is exactly zero) are
        left out. A skip-gated node is computed on the rows whose gate opens only.
        """
        _, activation, bias_key, gate_key, incoming = self._plan[self._plan_index[n]]
        b = values[self._input].shape[0]
        ran = None
        rows = None
        if n in self._skips:
            ran = self._skip_logit(n, values, gates) >= 0
            rows = ran.nonzero().reshape(-1)
        pre = self.nodes[bias_key].expand(b if rows is None else rows.shape[0], -1)
        for s, weight_key, edge_gate_key in incoming:
            if s in values:
                h = values[s] if rows is None else values[s][rows]
                pre = pre + gates[edge_gate_key] * nn.functional.linear(h, self._weight(weight_key))
        out = TORCH_ACTIVATIONS[activation](pre)
        out = out if gate_key is None else out * gates[gate_key]
        if rows is None:
            return out, ran
        full = out.new_zeros(b, out.shape[1])
        full[rows] = out
        return full, ran

    def extra_repr(self) -> str:
        """Return the settings line and one line per node with its inputs."""
        lines = [
            f"n_inputs={self.n_inputs}, n_outputs={self.n_outputs}, gate={self.gate!r}, "
            f"n_gates={self.n_gates}",
            self._labels[self._input],
        ]
        if self._thresholds or self._skips:
            exits = (
                ", ".join(f"{e} (threshold {self._thresholds[e]:g})" for e in self._exits) or "none"
            )
            skips = ", ".join(str(n) for n in self._skip_order) or "none"
            lines[0] += f"\nexits in stage order: {exits}; skip gates: {skips}"
        for n, _, _, _, incoming in self._plan:
            srcs = ", ".join(str(s) for s, _, _ in incoming)
            recurrent = ", ".join(f"{s}(t-1)" for s, _, _ in self._recurrent.get(n, ()))
            note = " [skip gate]" if n in self._skips else ""
            if n in self._thresholds:
                note = f" [threshold {self._thresholds[n]:g}]"
            lines.append(
                f"{self._labels[n]} <- {srcs}" + (f", {recurrent}" if recurrent else "") + note
            )
        return "\n".join(lines)


def _confidence(logits: torch.Tensor) -> torch.Tensor:
    """Max softmax probability per row, in float64 as ``genomes.adaptive.confidence``.

    Shape:
        (B, n_out) -> (B,)
    """
    z = logits.to(torch.float64)
    return 1.0 / torch.exp(z - z.max(-1, keepdim=True).values).sum(-1)


def _numpy(p: torch.Tensor) -> np.ndarray:
    return p.detach().to("cpu", torch.float32).numpy().copy()


def write_back(genome: Genome, net: GenomeNet) -> Genome:
    """Return a new genome holding ``net``'s values (weights, biases, gate logits, skip arrays).

    Disabled edges, unused biases/gates, exit thresholds (a net does not train
    them) and ``meta`` are copied from ``genome`` unchanged; the arrays are
    float32. ``genome`` is not modified.

    Args:
        genome: the genome ``net`` was built from (or one of identical structure;
            its exits' thresholds may differ: they are the ones kept).
        net: a (trained) ``GenomeNet``.

    Returns:
        A valid genome with the same structure.

    Raises:
        GenomeError: if ``net`` was built from a genome of another structure.
    """
    if net._structure != _trained_key(genome):
        raise GenomeError("write_back: the net was built from a genome of a different structure")
    nodes: dict[int, dict[str, np.ndarray]] = {}
    for key, p in net.nodes.items():
        n, what = key[1:].rsplit("_", 1)
        nodes.setdefault(int(n), {})[what] = _numpy(p)
    edges: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    for key, p in net.edges.items():
        pair, what = key[1:].rsplit("_", 1)
        s, d = (int(i) for i in pair.split("_"))
        edges.setdefault((s, d), {})[what] = _numpy(p)
    return with_values(genome, nodes, edges)


def with_values(
    genome: Genome,
    nodes: Mapping[int, Mapping[str, np.ndarray]],
    edges: Mapping[tuple[int, int], Mapping[str, Any]],
) -> Genome:
    """Return a copy of ``genome`` holding trained values: the one write-back.

    Both engines end here (``write_back`` for a ``GenomeNet``,
    ``PopulationEngine.write_back`` for a packed population), so a trained value
    lands in a genome the same way whichever engine trained it.

    Args:
        genome: the genome the values were trained from (not modified).
        nodes: ``{node: {"bias" | "gate": array}}``, float32 arrays of the node's width,
            and ``"skip"`` (a skip gate's bias, [1]).
        edges: ``{(src, dst): {"weight": array, "gate": scalar}}``, and ``"skip"``
            (an edge into a skip-gated node: [width_src]).

    Returns:
        A copy with those arrays (float32 copies) in place; everything not named
        (disabled and recurrent edges, unused biases and gates, exit thresholds,
        ``meta``) and every frozen node's and edge's arrays (grafted modules: never
        trained) unchanged. A sparse edge's weight is written as ``W * mask`` (what
        ``GenomeNet`` computes; the engines never move the absent entries anyway).
    """
    child = genome.copy()
    graph = child.graph
    for n, values in nodes.items():
        if is_frozen(graph.nodes[n]):
            continue
        for what, value in values.items():
            graph.nodes[n][what] = np.array(value, dtype=np.float32)
    for (s, d), values in edges.items():
        if is_frozen(graph.edges[s, d]):
            continue
        for what, value in values.items():
            graph.edges[s, d][what] = (
                np.float32(value) if what == "gate" else np.array(value, dtype=np.float32)
            )
        mask = graph.edges[s, d].get("mask")
        if mask is not None and "weight" in values:  # a sparse edge: the function's W * mask
            graph.edges[s, d]["weight"] = np.where(mask, graph.edges[s, d]["weight"], np.float32(0.0))
    return child


def members_from_flat(
    genomes: Sequence[Genome],
    slices: Sequence[Any],
    structures: Sequence[tuple],
    w: np.ndarray,
    b: np.ndarray,
    g: np.ndarray,
    skip: np.ndarray | None = None,
) -> list[Genome]:
    """Return each packed member with its values read off flat arrays: both engines' write-back.

    Args:
        genomes: the members as packed (not modified).
        slices: per member, where its values sit: ``edges`` (the packed edges in
            order), ``weight`` (each edge's first weight entry), ``edge_gate`` (its
            first edge gate), ``bias_nodes``/``bias`` and ``gate_nodes``/``gate``
            (nodes and their first entries); with ``skip``, optionally also
            ``skip_nodes``/``skip_node`` (skip-gated nodes and where their bias
            sits in ``skip``) and ``skip_edges``/``skip_edge`` (edges into them and
            where their ``[width_src]`` vector starts in ``skip``).
        structures: each member's ``structure_key()`` when it was packed.
        w, b, g: the flat weights (each edge's matrix row-major), biases and gate logits.
        skip: the flat skip-gate parameters (adaptive genomes); None: no skip arrays
            are written back.

    Raises:
        GenomeError: if a genome's structure changed since packing.
    """
    children = []
    for genome, sl, key in zip(genomes, slices, structures, strict=True):
        if genome.structure_key() != key:
            raise GenomeError("write_back: a genome's structure changed after packing")
        graph = genome.graph
        edges = {}
        for k, (s, d) in enumerate(sl.edges):
            shape = graph.edges[s, d]["weight"].shape
            start = sl.weight[k]
            weight = w[start : start + shape[0] * shape[1]].reshape(shape)
            edges[s, d] = {"weight": weight, "gate": g[sl.edge_gate + k]}
        nodes: dict[int, dict[str, np.ndarray]] = {}
        for n, start in zip(sl.bias_nodes, sl.bias, strict=True):
            nodes.setdefault(n, {})["bias"] = b[start : start + graph.nodes[n]["width"]]
        for n, start in zip(sl.gate_nodes, sl.gate, strict=True):
            nodes.setdefault(n, {})["gate"] = g[start : start + graph.nodes[n]["width"]]
        if skip is not None:
            for n, start in zip(
                getattr(sl, "skip_nodes", ()), getattr(sl, "skip_node", ()), strict=True
            ):
                nodes.setdefault(n, {})["skip"] = skip[start : start + 1]
            for (s, d), start in zip(
                getattr(sl, "skip_edges", ()), getattr(sl, "skip_edge", ()), strict=True
            ):
                edges.setdefault((s, d), {})["skip"] = skip[start : start + graph.nodes[s]["width"]]
        children.append(with_values(genome, nodes, edges))
    return children
