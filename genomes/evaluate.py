"""A plain numpy evaluation of a genome's function: the reference for every engine.

Implements the function of ``docs/design.md`` with the deterministic gate values::

    h_in = g(gate_in) * x
    a_j  = act_j(bias_j + sum_{enabled e=(i->j)} g(gate_e) * (W_e @ h_i))
    h_j  = g(gate_j) * a_j        (output node: h_out = a_out)

Recurrent edges read the previous time step; a single evaluation starts from a zero
state, so they contribute nothing here.
"""

from __future__ import annotations

import numpy as np

from ._errors import GenomeError
from .activations import activate
from .gates import gate_value
from .genome import Genome

__all__ = ["evaluate"]


def evaluate(
    genome: Genome, x: np.ndarray, gate: str = "sigmoid", dtype: type = np.float64
) -> np.ndarray:
    """Return the genome's output for a batch of inputs.

    Args:
        genome: a valid genome.
        x: inputs of shape ``(B, n_inputs)``.
        gate: gate kind, ``"sigmoid"`` or ``"hard_concrete"`` (deterministic values).
        dtype: the float type to compute in (float64 makes a sharp reference).

    Returns:
        Outputs of shape ``(B, n_outputs)``.

    Raises:
        GenomeError: if ``x`` does not have ``n_inputs`` columns.

    Shape:
        x: (B, n_inputs) -> (B, n_outputs)
    """
    x = np.asarray(x, dtype=dtype)
    if x.ndim != 2 or x.shape[1] != genome.n_inputs:
        raise GenomeError(f"inputs should have shape (B, {genome.n_inputs}), got {x.shape}")
    g = genome.graph
    active = genome.active_graph()
    values: dict[int, np.ndarray] = {}
    for n in genome.topological_order():
        a = g.nodes[n]
        if a["role"] == "input":
            values[n] = x * gate_value(a["gate"], gate, dtype)
            continue
        pre = np.broadcast_to(a["bias"].astype(dtype), (x.shape[0], a["width"])).copy()
        for s in active.predecessors(n):
            e = g.edges[s, n]
            pre += gate_value(e["gate"], gate, dtype) * (values[s] @ e["weight"].astype(dtype).T)
        out = activate(a["activation"], pre)
        if a["role"] == "hidden":
            out = out * gate_value(a["gate"], gate, dtype)
        values[n] = out
    return values[genome.output_id]
