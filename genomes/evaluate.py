"""A plain numpy evaluation of a genome's function: the reference for every engine.

Implements the function of ``docs/design.md`` with the deterministic gate values,
one time step after another (``t`` = 0, 1, ...)::

    h_in(t) = g(gate_in) * x(t)
    a_j(t)  = act_j(bias_j + sum_{enabled ff e=(i->j)}        g(gate_e) * (W_e @ h_i(t))
                           + sum_{enabled recurrent e=(i->j)} g(gate_e) * (W_e @ h_i(t-1)))
    h_j(t)  = g(gate_j) * a_j(t)        (output node: h_out = a_out)

``h_i(-1)`` is the initial state (zeros unless given). The state is the ``h`` of the
nodes ``genome.state_layout()`` names, concatenated in that order.

With a ``budget`` (``genomes.budgets``; feed-forward genomes only) every hidden
node's ``h`` is multiplied by its kept-neuron mask at that budget,
``h_j = mask_j * g(gate_j) * a_j``: a removed neuron computes 0, and an edge the
budget's level drops (``BudgetLevel.edges_off``) contributes nothing. Without one
nothing is multiplied (the computation is bit for bit what it was before budgets).

A hidden node with a per-input skip gate (``genomes.adaptive``) is multiplied by its
deterministic decision ``z_j = 1[s_j >= 0]`` per sample; exit heads are computed but
do not change the output (``genomes.adaptive.evaluate_adaptive`` applies the exit
rule).
"""

from __future__ import annotations

import numpy as np

from ._errors import GenomeError
from .activations import activate
from .adaptive import skip_logit
from .budgets import budget_chain
from .gates import gate_value
from .genome import Genome

__all__ = ["evaluate", "evaluate_sequence", "node_activations", "state_layout", "state_size"]


def state_layout(genome: Genome) -> tuple[tuple[int, int], ...]:
    """Return ``(node, width)`` of the state nodes, in state order (``Genome.state_layout``)."""
    return genome.state_layout()


def state_size(genome: Genome) -> int:
    """Return the width of the genome's state vector (0 for a feed-forward genome)."""
    return genome.state_size


def evaluate(
    genome: Genome,
    x: np.ndarray,
    gate: str = "sigmoid",
    dtype: type = np.float64,
    budget: float | None = None,
) -> np.ndarray:
    """Return the genome's output for a batch of inputs or of sequences.

    Args:
        genome: a valid genome.
        x: inputs of shape ``(B, n_inputs)`` (one step from the zero state) or
            sequences of shape ``(B, T, n_inputs)``.
        gate: gate kind, ``"sigmoid"`` or ``"hard_concrete"`` (deterministic values).
        dtype: the float type to compute in (float64 makes a sharp reference).
        budget: a budget in (0, 1] (``genomes.budgets``): compute the sub-network it
            selects (hidden neurons multiplied by ``budget_masks``, the level's
            dropped edges skipped); None: all of it.

    Returns:
        Outputs of shape ``(B, n_outputs)`` or ``(B, T, n_outputs)``.

    Raises:
        GenomeError: if the last dimension of ``x`` is not ``n_inputs``; for a budget
            outside (0, 1] or a budget on a recurrent genome.

    Shape:
        x: (B, n_inputs) -> (B, n_outputs); (B, T, n_inputs) -> (B, T, n_outputs)
    """
    x = np.asarray(x, dtype=dtype)
    if x.ndim == 2 and x.shape[1] == genome.n_inputs:
        return evaluate_sequence(genome, x[:, None, :], gate, dtype, budget=budget)[0][:, 0, :]
    if x.ndim != 3 or x.shape[2] != genome.n_inputs:
        raise GenomeError(
            f"inputs should have shape (B, {genome.n_inputs}) or (B, T, {genome.n_inputs}), "
            f"got {x.shape}"
        )
    return evaluate_sequence(genome, x, gate, dtype, budget=budget)[0]


def evaluate_sequence(
    genome: Genome,
    x: np.ndarray,
    gate: str = "sigmoid",
    dtype: type = np.float64,
    state: np.ndarray | None = None,
    budget: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the genome over sequences and return its outputs and final state.

    Args:
        genome: a valid genome.
        x: sequences of shape ``(B, T, n_inputs)``.
        gate: gate kind (deterministic values).
        dtype: the float type to compute in.
        state: the initial state ``(B, state_size)``; zeros when None.
        budget: a budget in (0, 1] (see :func:`evaluate`); None: the whole network.

    Returns:
        ``(outputs, final_state)``.

    Raises:
        GenomeError: for inputs or a state of the wrong shape; for a budget outside
            (0, 1] or a budget on a recurrent genome.

    Shape:
        x: (B, T, n_inputs), state: (B, S) -> ((B, T, n_outputs), (B, S))
    """
    x = np.asarray(x, dtype=dtype)
    if x.ndim != 3 or x.shape[2] != genome.n_inputs:
        raise GenomeError(f"sequences should have shape (B, T, {genome.n_inputs}), got {x.shape}")
    b, steps = x.shape[0], x.shape[1]
    layout = genome.state_layout()
    size = sum(w for _, w in layout)
    if state is None:
        state = np.zeros((b, size), dtype)
    state = np.asarray(state, dtype=dtype)
    if state.shape != (b, size):
        raise GenomeError(f"state should have shape ({b}, {size}), got {state.shape}")
    masks, off = (
        (None, frozenset()) if budget is None else _hidden_masks(genome, budget, gate, dtype)
    )
    order, incoming, recurrent = _wiring(genome)
    previous: dict[int, np.ndarray] = {}
    start = 0
    for n, w in layout:
        previous[n] = state[:, start : start + w]
        start += w
    outputs = np.empty((b, steps, genome.n_outputs), dtype)
    for t in range(steps):
        values, _ = _step(
            genome, order, incoming, recurrent, x[:, t], previous, gate, dtype, masks, off
        )
        outputs[:, t] = values[genome.output_id]
        previous = {n: values[n] for n, _ in layout}
    final = np.concatenate([previous[n] for n, _ in layout], axis=1) if layout else state
    return outputs, final


def _hidden_masks(
    genome: Genome, budget: float, gate: str, dtype: type
) -> tuple[dict[int, np.ndarray], frozenset[tuple[int, int]]]:
    """Return every hidden node's budget mask as 0/1 values of ``dtype``, and the dropped edges."""
    level = budget_chain(genome, gate).select(budget)
    masks = {n: level.masks[n].astype(dtype) for n in genome.hidden_nodes()}
    return masks, level.edges_off


def _wiring(genome: Genome) -> tuple[list[int], dict[int, list[int]], dict[int, list[int]]]:
    """Return the topological order, each node's enabled feed-forward inputs and recurrent inputs."""
    order = genome.topological_order()
    active = genome.active_graph()
    incoming = {n: list(active.predecessors(n)) for n in order}
    recurrent: dict[int, list[int]] = {}
    for s, d in genome.recurrent_edges():
        recurrent.setdefault(d, []).append(s)
    return order, incoming, recurrent


def node_activations(
    genome: Genome, x: np.ndarray, gate: str = "sigmoid", dtype: type = np.float64
) -> dict[int, np.ndarray]:
    """Return every node's activation ``a_j`` before its neuron gates, for one step.

    The input node's entry is ``x`` itself, the output node's the output. Used to
    look inside a genome (e.g. at what a grafted module computes).

    Args:
        genome: a valid genome.
        x: inputs of shape ``(B, n_inputs)`` (one step from the zero state).
        gate: gate kind (deterministic values).
        dtype: the float type to compute in.

    Returns:
        ``{node id: (B, width) array}``.

    Raises:
        GenomeError: if ``x`` is not of shape ``(B, n_inputs)``.
    """
    x = np.asarray(x, dtype=dtype)
    if x.ndim != 2 or x.shape[1] != genome.n_inputs:
        raise GenomeError(f"inputs should have shape (B, {genome.n_inputs}), got {x.shape}")
    order, incoming, recurrent = _wiring(genome)
    zeros = {n: np.zeros((x.shape[0], w), dtype) for n, w in genome.state_layout()}
    _, pre_gate = _step(genome, order, incoming, recurrent, x, zeros, gate, dtype)
    return pre_gate


def _step(
    genome: Genome,
    order: list[int],
    incoming: dict[int, list[int]],
    recurrent: dict[int, list[int]],
    xt: np.ndarray,
    previous: dict[int, np.ndarray],
    gate: str,
    dtype: type,
    masks: dict[int, np.ndarray] | None = None,
    off: frozenset[tuple[int, int]] = frozenset(),
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """One time step: return ``(h, a)`` of every node (after and before neuron gates).

    ``masks`` (hidden node -> 0/1 [width]) multiply the hidden ``h`` when given;
    the feed-forward edges in ``off`` are skipped.
    """
    g = genome.graph
    b = xt.shape[0]
    values: dict[int, np.ndarray] = {}
    pre_gate: dict[int, np.ndarray] = {}
    for n in order:
        a = g.nodes[n]
        if a["role"] == "input":
            pre_gate[n] = xt
            values[n] = xt * gate_value(a["gate"], gate, dtype)
            continue
        pre = np.broadcast_to(a["bias"].astype(dtype), (b, a["width"])).copy()
        for s in incoming[n]:
            if off and (s, n) in off:
                continue
            pre += _edge_term(g.edges[s, n], values[s], gate, dtype)
        for s in recurrent.get(n, ()):
            pre += _edge_term(g.edges[s, n], previous[s], gate, dtype)
        out = activate(a["activation"], pre)
        pre_gate[n] = out
        if a["role"] == "hidden":
            out = out * gate_value(a["gate"], gate, dtype)
            if masks is not None:
                out = out * masks[n]
            if a.get("skip") is not None:  # a per-input skip gate (genomes.adaptive)
                out = out * (skip_logit(genome, n, values, gate, dtype) >= 0)[:, None].astype(dtype)
        values[n] = out
    return values, pre_gate


def _edge_term(e: dict, h: np.ndarray, gate: str, dtype: type) -> np.ndarray:
    """One edge's contribution ``g(gate_e) * (W_e @ h)`` for a batch of source values."""
    return gate_value(e["gate"], gate, dtype) * (h @ e["weight"].astype(dtype).T)
