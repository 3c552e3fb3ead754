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
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from genomes import Genome, GenomeError
from genomes.genome import is_frozen

from .activations import TORCH_ACTIVATIONS
from .gates import check_gate_kind, draw_gate_noise, gate_layout, gate_values, open_probability

__all__ = [
    "GenomeNet",
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

    Args:
        genome: a valid genome (only read).
        gate: ``"sigmoid"`` or ``"hard_concrete"``.
        generator: where training-mode hard-concrete noise comes from when
            ``forward`` is given none (never the global RNG).

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
        self._structure = genome.structure_key()
        self._genome = genome  # read (budget chains) only, never changed
        self._chain: Any = None
        self._input = genome.input_id
        self._output = genome.output_id
        self.nodes = nn.ParameterDict()
        self.edges = nn.ParameterDict()
        g = genome.graph
        active = genome.active_graph()
        inv = {e: g.edges[e]["innovation"] for e in active.edges}
        self.nodes[_node_key(self._input, "gate")] = _param(g.nodes[self._input]["gate"])
        plan = []
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
                incoming.append((s, _edge_key(s, n, "weight"), _edge_key(s, n, "gate")))
            plan.append((n, a["activation"], _node_key(n, "bias"), node_gate, tuple(incoming)))
        self._plan = tuple(plan)
        recurrent: dict[int, list[tuple[int, str, str]]] = {}
        for s, n in genome.recurrent_edges():
            e = g.edges[s, n]
            self.edges[_edge_key(s, n, "weight")] = _param(e["weight"])
            self.edges[_edge_key(s, n, "gate")] = _param(e["gate"])
            recurrent.setdefault(n, []).append((s, _edge_key(s, n, "weight"), _edge_key(s, n, "gate")))
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

    # ------------------------------------------------------------------ gates
    @property
    def gate_keys(self) -> tuple[str, ...]:
        """Parameter key of every gate run, in :func:`hybrid.gates.gate_layout` order."""
        return self._gate_keys

    @property
    def n_gates(self) -> int:
        """Number of gates (input neurons + hidden neurons + enabled edges)."""
        return sum(self._gate_sizes)

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
                raise ValueError(f"edges_off names ({s}, {d}), which is not an enabled edge of the net")
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
    ) -> Any:
        """Return the genome's output for a batch, or outputs and final state for sequences.

        A 2-D batch is one time step from the zero state (recurrent edges add
        nothing). A 3-D batch runs step by step: recurrent edges read the previous
        step's values (``state`` at the first step), as ``nn.RNN`` does.

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

        Returns:
            ``(B, n_outputs)`` for a 2-D batch; ``(outputs (B, T, n_outputs), final
            state (B, state_size))`` for sequences.

        Raises:
            ValueError: if the last dimension of ``x`` is not ``n_inputs``, or the state
                has the wrong shape.

        Shape:
            x: (B, n_inputs), noise: (n_gates,) -> (B, n_outputs);
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
            return self._step(x, gates, {})[self._output]
        if x.dim() == 2 and x.shape[1] == self.n_inputs and state is None:
            return self._step(x, self.gate_values(noise), {})[self._output]
        if x.dim() != 3 or x.shape[2] != self.n_inputs:
            raise ValueError(
                f"inputs should have shape (B, {self.n_inputs}) or (B, T, {self.n_inputs}), "
                f"got {tuple(x.shape)}"
            )
        b = x.shape[0]
        if state is None:
            state = x.new_zeros(b, self.state_size)
        if tuple(state.shape) != (b, self.state_size):
            raise ValueError(f"state should have shape ({b}, {self.state_size}), got {tuple(state.shape)}")
        gates = self.gate_values(noise)
        widths = [w for _, w in self._state]
        previous = dict(zip([n for n, _ in self._state], state.split(widths, 1), strict=True)) if widths else {}
        outputs = []
        for t in range(x.shape[1]):
            values = self._step(x[:, t], gates, previous)
            outputs.append(values[self._output])
            previous = {n: values[n] for n, _ in self._state}
        final = torch.cat([previous[n] for n, _ in self._state], 1) if self._state else state
        return torch.stack(outputs, 1), final

    def _step(
        self, x: torch.Tensor, gates: dict[str, torch.Tensor], previous: dict[int, torch.Tensor]
    ) -> dict[int, torch.Tensor]:
        """Return every node's ``h`` at one time step (``previous``: the state nodes' last ``h``)."""
        values = {self._input: x * gates[_node_key(self._input, "gate")]}
        for n, activation, bias_key, gate_key, incoming in self._plan:
            pre = self.nodes[bias_key]
            for s, weight_key, edge_gate_key in incoming:
                pre = pre + gates[edge_gate_key] * nn.functional.linear(values[s], self.edges[weight_key])
            if previous:
                for s, weight_key, edge_gate_key in self._recurrent.get(n, ()):
                    pre = pre + gates[edge_gate_key] * nn.functional.linear(previous[s], self.edges[weight_key])
            out = TORCH_ACTIVATIONS[activation](pre)
            values[n] = out if gate_key is None else out * gates[gate_key]
        return values

    def extra_repr(self) -> str:
        """Return the settings line and one line per node with its inputs."""
        lines = [
            f"n_inputs={self.n_inputs}, n_outputs={self.n_outputs}, gate={self.gate!r}, "
            f"n_gates={self.n_gates}",
            self._labels[self._input],
        ]
        for n, _, _, _, incoming in self._plan:
            srcs = ", ".join(str(s) for s, _, _ in incoming)
            recurrent = ", ".join(f"{s}(t-1)" for s, _, _ in self._recurrent.get(n, ()))
            lines.append(f"{self._labels[n]} <- {srcs}" + (f", {recurrent}" if recurrent else ""))
        return "\n".join(lines)


def _numpy(p: torch.Tensor) -> np.ndarray:
    return p.detach().to("cpu", torch.float32).numpy().copy()


def write_back(genome: Genome, net: GenomeNet) -> Genome:
    """Return a new genome holding ``net``'s values (weights, biases, gate logits).

    Disabled edges, unused biases/gates and ``meta`` are copied from
    ``genome`` unchanged; the arrays are float32. ``genome`` is not modified.

    Args:
        genome: the genome ``net`` was built from (or one of identical structure).
        net: a (trained) ``GenomeNet``.

    Returns:
        A valid genome with the same structure.

    Raises:
        GenomeError: if ``net`` was built from a genome of another structure.
    """
    if net._structure != genome.structure_key():
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
        nodes: ``{node: {"bias" | "gate": array}}``, float32 arrays of the node's width.
        edges: ``{(src, dst): {"weight": array, "gate": scalar}}``.

    Returns:
        A copy with those arrays (float32 copies) in place; everything not named
        (disabled and recurrent edges, unused biases and gates, ``meta``) and every
        frozen node's and edge's arrays (grafted modules: never trained) unchanged.
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
    return child


def members_from_flat(
    genomes: Sequence[Genome],
    slices: Sequence[Any],
    structures: Sequence[tuple],
    w: np.ndarray,
    b: np.ndarray,
    g: np.ndarray,
) -> list[Genome]:
    """Return each packed member with its values read off flat arrays: both engines' write-back.

    Args:
        genomes: the members as packed (not modified).
        slices: per member, where its values sit: ``edges`` (the packed edges in
            order), ``weight`` (each edge's first weight entry), ``edge_gate`` (its
            first edge gate), ``bias_nodes``/``bias`` and ``gate_nodes``/``gate``
            (nodes and their first entries).
        structures: each member's ``structure_key()`` when it was packed.
        w, b, g: the flat weights (each edge's matrix row-major), biases and gate logits.

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
        children.append(with_values(genome, nodes, edges))
    return children
