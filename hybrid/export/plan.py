"""Fold a genome's deterministic gates into plain weights: the export plan.

An exported network has no gates. Every deterministic gate value is multiplied
into the weights it scales, so the function is the same::

    input gate g_in[k]       -> column k of every weight leaving the input node
    edge gate g_e            -> the whole weight matrix W_e
    neuron gate g_j[n]       -> column n of every weight leaving hidden node j

and what a closed gate (value exactly 0) multiplies is removed: closed input
features, closed neurons (their incoming rows, bias and outgoing columns), closed
and disabled edges, and then every node with no live path to the output. What is
left is exactly ``genomes.active_structure(genome, gate)``, and the plan's
parameter count equals its ``n_parameters``.

A *constant node* is a live hidden node none of whose inputs is live (all closed):
its value is ``act(bias)`` whatever the input. It is kept as a bias-only layer
rather than folded into the biases downstream, so the parameter count still equals
``active_structure(...).n_parameters`` and the bias stays trainable.

The plan is plain numpy (float32 arrays, folded in float64); the torch module
(:mod:`hybrid.export.module`) and the generated source
(:mod:`hybrid.export.codegen`) are both built from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genomes import Genome, active_structure, gate_value

__all__ = ["ExportPlan", "LayerPlan", "plan_export"]


@dataclass(frozen=True)
class LayerPlan:
    """One live hidden or output node of the exported network: one layer.

    Attributes:
        id: the genome node id.
        role: ``"hidden"`` or ``"output"``.
        activation: activation name (``genomes.ACTIVATIONS``).
        genome_width: the genome node's width (closed neurons included).
        neurons: indices of the genome node's neurons that are kept.
        sources: ids of the nodes it reads, in order; their kept neurons are
            concatenated to form the layer's input. Empty for a constant node.
        weight: float32 [width, sum of the sources' widths], gates folded in.
        bias: float32 [width].
    """

    id: int
    role: str
    activation: str
    genome_width: int
    neurons: tuple[int, ...]
    sources: tuple[int, ...]
    weight: np.ndarray
    bias: np.ndarray

    @property
    def width(self) -> int:
        """Number of kept neurons (the layer's output size)."""
        return len(self.neurons)

    @property
    def is_constant(self) -> bool:
        """True for a node with no live input: its value is ``act(bias)``."""
        return not self.sources

    @property
    def n_parameters(self) -> int:
        """Weights plus biases of the layer."""
        return int(self.weight.size + self.bias.size)


@dataclass(frozen=True)
class ExportPlan:
    """The gate-free network an export writes, in topological order.

    Attributes:
        gate: the gate kind whose deterministic values were folded.
        n_inputs: number of raw features the network takes.
        n_outputs: number of outputs.
        input_id: the genome's input node id (``sources`` refer to it).
        input_index: the features kept (open input gates), ascending.
        layers: the live hidden and output nodes, topologically ordered; the
            output node is last.
    """

    gate: str
    n_inputs: int
    n_outputs: int
    input_id: int
    input_index: tuple[int, ...]
    layers: tuple[LayerPlan, ...]

    @property
    def output_id(self) -> int:
        """Id of the output node (the last layer)."""
        return self.layers[-1].id

    @property
    def keeps_all_inputs(self) -> bool:
        """True if no input feature is dropped (no closed input gate)."""
        return len(self.input_index) == self.n_inputs

    @property
    def n_parameters(self) -> int:
        """Weights plus biases of all layers."""
        return sum(layer.n_parameters for layer in self.layers)

    def width(self, node: int) -> int:
        """Return the kept width of ``node`` (the input node or a layer)."""
        if node == self.input_id:
            return len(self.input_index)
        return next(layer.width for layer in self.layers if layer.id == node)


def plan_export(genome: Genome, gate: str = "sigmoid") -> ExportPlan:
    """Return the gate-free plan of ``genome``'s function under deterministic gates.

    Args:
        genome: a valid genome (only read).
        gate: gate kind, ``"sigmoid"`` or ``"hard_concrete"``.

    Returns:
        The plan; ``plan.n_parameters == active_structure(genome, gate).n_parameters``.

    Raises:
        ValueError: for an unknown gate kind.

    Example:
        >>> import numpy as np
        >>> from genomes import InnovationTracker
        >>> g = Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), hidden=[4])
        >>> plan_export(g).n_parameters  # 3*4 + 4 + 4*2 + 2
        26
    """
    structure = active_structure(genome, gate)
    g = genome.graph
    kept = {n: np.flatnonzero(mask) for n, mask in structure.neurons.items()}
    # Per-neuron scale each node's output carries: its neuron gates (input gates
    # for the input node); the output node has none.
    scale = {
        n: gate_value(g.nodes[n]["gate"], gate, np.float64)
        for n in structure.neurons
        if n != structure.output
    }
    sources: dict[int, list[int]] = {n: [] for n in structure.neurons}
    for s, d in structure.edges:
        if not g.edges[s, d]["recurrent"]:  # one step from the zero state (recurrent exports: to come)
            sources[d].append(s)
    order = [n for n in genome.topological_order() if n in structure.neurons]
    layers = []
    for n in order:
        if n == structure.input:
            continue
        rows = kept[n]
        parts = [np.zeros((len(rows), 0))]
        for s in sources[n]:
            e = g.edges[s, n]
            cols = kept[s]
            w = e["weight"].astype(np.float64)[np.ix_(rows, cols)]
            parts.append(w * gate_value(e["gate"], gate, np.float64) * scale[s][cols])
        a = g.nodes[n]
        layers.append(
            LayerPlan(
                id=int(n),
                role=a["role"],
                activation=a["activation"],
                genome_width=int(a["width"]),
                neurons=tuple(int(i) for i in rows),
                sources=tuple(int(s) for s in sources[n]),
                weight=np.concatenate(parts, axis=1).astype(np.float32),
                bias=a["bias"][rows].astype(np.float32),
            )
        )
    plan = ExportPlan(
        gate=gate,
        n_inputs=genome.n_inputs,
        n_outputs=genome.n_outputs,
        input_id=int(structure.input),
        input_index=tuple(int(i) for i in kept[structure.input]),
        layers=tuple(layers),
    )
    assert plan.layers[-1].id == structure.output, "the output node should come last"
    recurrent = sum(
        int(structure.neurons[d].sum()) * int(structure.neurons[s].sum())
        for s, d in structure.edges
        if g.edges[s, d]["recurrent"]
    )
    assert plan.n_parameters == structure.n_parameters - recurrent, "plan and active structure disagree"
    return plan
