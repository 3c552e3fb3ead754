"""Fold a genome's deterministic gates into plain weights: the export plan.

An exported network has no gates. Every deterministic gate value is multiplied
into the weights it scales, so the function is the same::

    input gate g_in[k]       -> column k of every weight leaving the input node
    edge gate g_e            -> the whole weight matrix W_e
    neuron gate g_j[n]       -> column n of every weight leaving hidden node j

and what a closed gate (value exactly 0) multiplies is removed: closed input
features, closed neurons (their incoming rows, bias and outgoing columns), closed
and disabled edges, and then every node with no live path to the output. (A sparse edge's absent
connections, zero weights where its ``mask`` is False, stay zeros in the dense matrix: ``LayerPlan.mask``
says which entries are connections, and the counts read it.) What is
left is exactly ``genomes.active_structure(genome, gate)``, and the plan's
parameter count equals its ``n_parameters``.

A *recurrent* genome (``genomes.state_layout`` not empty) exports a network over
time: a live recurrent edge ``i -> j`` (enabled, gate open, both ends live) reads
node ``i``'s value at the previous step. Its weight (edge gate folded in) is a
further block of columns of layer ``j``'s weight, after the feed-forward sources,
reading the *state*: the concatenation, sorted by node id, of the kept neurons of
every node that is the source of a live recurrent edge. The state holds exactly
what the genome's state holds for those neurons, ``h_i = g_i * a_i``, so the
source's neuron gates are NOT folded into a recurrent weight; the exported module
multiplies them into the stored value instead (``StatePlan.gate``). Where no
neuron or node was pruned, the exported state is the genome's
(``genomes.evaluate_sequence``) state; otherwise ``ExportPlan.state_index`` maps
each exported state column to the genome's.

A *constant node* is a live hidden node none of whose inputs is live (all closed):
its value is ``act(bias)`` whatever the input. It is kept as a bias-only layer
rather than folded into the biases downstream, so the parameter count still equals
``active_structure(...).n_parameters`` and the bias stays trainable.

An *adaptive* genome (``genomes.adaptive``) keeps its live exit heads
(``ExportPlan.exits``: layers of role ``"exit"``, reading one hidden node) and the
skip gates of its live hidden nodes (``ExportPlan.skips``: a weight over the same
input as the node's layer, gates folded as for the layer, and the gate's bias);
``layers`` stays the hidden and output nodes, output last, and the parameter count
includes heads and gates (``ActiveStructure.n_parameters`` does). How they run is
:mod:`hybrid.export.adaptive`'s.

The plan is plain numpy (float32 arrays, folded in float64); the torch module
(:mod:`hybrid.export.module`) and the generated source
(:mod:`hybrid.export.codegen`) are both built from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genomes import ActiveStructure, Genome, active_structure, gate_value, state_layout
from genomes.genome import is_sparse

__all__ = ["ExportPlan", "LayerPlan", "SkipPlan", "StatePlan", "plan_export"]


@dataclass(frozen=True)
class LayerPlan:
    """One live hidden or output node of the exported network: one layer.

    Attributes:
        id: the genome node id.
        role: ``"hidden"`` or ``"output"``.
        activation: activation name (``genomes.ACTIVATIONS``).
        genome_width: the genome node's width (closed neurons included).
        neurons: indices of the genome node's neurons that are kept.
        sources: ids of the nodes it reads at the same step, in order; their kept
            neurons are concatenated to form the layer's input. Empty for a
            constant node.
        weight: float32 [width, sum of the sources' widths + sum of the
            recurrent sources' widths], gates folded in (see the module
            docstring for what a recurrent block folds).
        bias: float32 [width].
        recurrent_sources: ids of the nodes it reads at the previous step
            (live recurrent edges into it), ascending; their state slices follow
            the sources' values in the layer's input. Empty in a feed-forward plan.
        mask: bool, ``weight``'s shape: which entries are connections, where a
            source edge is sparse (``mutation.sparsify``: its ``mask``); None
            where every entry is. The exported layer computes the
            whole matrix (the absent connections are zeros in it); counts read
            the mask.
    """

    id: int
    role: str
    activation: str
    genome_width: int
    neurons: tuple[int, ...]
    sources: tuple[int, ...]
    weight: np.ndarray
    bias: np.ndarray
    recurrent_sources: tuple[int, ...] = ()
    mask: np.ndarray | None = None

    @property
    def n_weights(self) -> int:
        """Connections of the layer: its weight entries, the mask's where there is one."""
        return int(self.weight.size if self.mask is None else np.count_nonzero(self.mask))

    @property
    def width(self) -> int:
        """Number of kept neurons (the layer's output size)."""
        return len(self.neurons)

    @property
    def is_constant(self) -> bool:
        """True for a node with no live input: its value is ``act(bias)``."""
        return not self.sources and not self.recurrent_sources

    @property
    def n_parameters(self) -> int:
        """Connections plus biases of the layer."""
        return self.n_weights + int(self.bias.size)


@dataclass(frozen=True)
class StatePlan:
    """One slice of the exported state: a node read at the previous step.

    Attributes:
        node: the genome node id (the source of a live recurrent edge).
        neurons: indices of the node's neurons that are kept, ascending.
        offset: first column of the slice in the exported state.
        genome_offset: first column of the node in the genome's state vector
            (``genomes.state_layout`` order).
        gate: float32 [width], the node's neuron gate values (input gates for the
            input node) that the stored value carries, ``h = gate * value``, as
            in the genome; None where every one is exactly 1 (always for the
            output node).
    """

    node: int
    neurons: tuple[int, ...]
    offset: int
    genome_offset: int
    gate: np.ndarray | None

    @property
    def width(self) -> int:
        """Number of kept neurons (columns of the slice)."""
        return len(self.neurons)

    @property
    def genome_index(self) -> tuple[int, ...]:
        """The genome state's column of each column of the slice."""
        return tuple(self.genome_offset + n for n in self.neurons)


@dataclass(frozen=True)
class SkipPlan:
    """The skip gate of a live hidden node (``genomes.adaptive``), gates folded in.

    The gate's logit reads the same input as the node's layer (the kept neurons of
    its sources, concatenated in ``LayerPlan.sources`` order)::

        s = bias + weight . cat(sources)     # the node runs where s >= 0

    Each source's block is ``g(gate_e) * skip_e * g_src`` on the source's kept
    neurons (input gates for the input node), so ``s`` equals the genome's ``s_j``.

    Attributes:
        node: the genome node id.
        weight: float32 [sum of the sources' kept widths].
        bias: float32 [1], the gate's bias ``c_j``.
    """

    node: int
    weight: np.ndarray
    bias: np.ndarray

    @property
    def n_parameters(self) -> int:
        """Weights plus the bias."""
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
        state: the slices of the state, by node id; empty for a feed-forward
            plan.
        genome_state_size: ``genomes.state_size(genome)``, the width of the
            genome's own state (>= ``state_size``); 0 for a feed-forward genome.
        exits: the live exit heads (``genomes.adaptive``), by node id: layers of
            role ``"exit"`` (identity, one source). Empty without exits.
        skips: the skip gates of live hidden nodes, by node id. Empty without.
    """

    gate: str
    n_inputs: int
    n_outputs: int
    input_id: int
    input_index: tuple[int, ...]
    layers: tuple[LayerPlan, ...]
    state: tuple[StatePlan, ...] = ()
    genome_state_size: int = 0
    exits: tuple[LayerPlan, ...] = ()
    skips: tuple[SkipPlan, ...] = ()

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
        """Weights plus biases of all layers, exit heads and skip gates."""
        return sum(part.n_parameters for part in (*self.layers, *self.exits, *self.skips))

    @property
    def is_adaptive(self) -> bool:
        """True if the plan has a live exit head or skip gate (``genomes.adaptive``)."""
        return bool(self.exits or self.skips)

    @property
    def is_recurrent(self) -> bool:
        """True if the genome is recurrent: the network runs over time with a state.

        A recurrent genome whose every recurrent edge is closed or dead still
        exports a network over time, with a state of size 0.
        """
        return self.genome_state_size > 0

    @property
    def state_size(self) -> int:
        """Columns of the exported state (0 for a feed-forward plan)."""
        return sum(part.width for part in self.state)

    @property
    def state_index(self) -> tuple[int, ...]:
        """The genome state's column of each exported state column, in order."""
        return tuple(i for part in self.state for i in part.genome_index)

    def width(self, node: int) -> int:
        """Return the kept width of ``node`` (the input node or a layer)."""
        if node == self.input_id:
            return len(self.input_index)
        return next(layer.width for layer in self.layers if layer.id == node)


def plan_export(
    genome: Genome, gate: str = "sigmoid", structure: ActiveStructure | None = None
) -> ExportPlan:
    """Return the gate-free plan of ``genome``'s function under deterministic gates.

    Args:
        genome: a valid genome (only read).
        gate: gate kind, ``"sigmoid"`` or ``"hard_concrete"``.
        structure: the live structure to keep; default ``active_structure(genome,
            gate)``. A budget level's structure (``genomes.BudgetLevel.structure``,
            feed-forward genomes) gives that sub-network's plan.

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
    if structure is None:
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
        if not g.edges[s, d]["recurrent"]:
            sources[d].append(s)
    recurrent = [(s, d) for s, d in structure.edges if g.edges[s, d]["recurrent"]]
    rec_sources = {n: sorted(s for s, d in recurrent if d == n) for n in structure.neurons}
    order = [n for n in genome.topological_order() if n in structure.neurons]
    layers: list[LayerPlan] = []
    skips: list[SkipPlan] = []
    for n in order:
        if n == structure.input:
            continue
        rows = kept[n]
        parts = [np.zeros((len(rows), 0))]
        masks = [np.zeros((len(rows), 0), bool)]
        skip_parts = [np.zeros(0)]
        for s in sources[n]:
            e = g.edges[s, n]
            cols = kept[s]
            w = e["weight"].astype(np.float64)[np.ix_(rows, cols)]
            parts.append(w * gate_value(e["gate"], gate, np.float64) * scale[s][cols])
            masks.append(e["mask"][np.ix_(rows, cols)] if is_sparse(e) else np.ones(w.shape, bool))
            if e.get("skip") is not None:
                v = e["skip"].astype(np.float64)[cols]
                skip_parts.append(v * gate_value(e["gate"], gate, np.float64) * scale[s][cols])
        for s in rec_sources[n]:  # reads the state, which already carries s's neuron gates
            e = g.edges[s, n]
            w = e["weight"].astype(np.float64)[np.ix_(rows, kept[s])]
            parts.append(w * gate_value(e["gate"], gate, np.float64))
            masks.append(np.ones(w.shape, bool))  # recurrent edges are never sparse
        a = g.nodes[n]
        if a.get("skip") is not None:
            skips.append(
                SkipPlan(
                    node=int(n),
                    weight=np.concatenate(skip_parts).astype(np.float32),
                    bias=np.asarray(a["skip"], np.float32).reshape(1).copy(),
                )
            )
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
                recurrent_sources=tuple(int(s) for s in rec_sources[n]),
                mask=None if all(m.all() for m in masks) else np.concatenate(masks, axis=1),
            )
        )
    layout = state_layout(genome)
    exits = sorted((layer for layer in layers if layer.role == "exit"), key=lambda layer: layer.id)
    plan = ExportPlan(
        gate=gate,
        n_inputs=genome.n_inputs,
        n_outputs=genome.n_outputs,
        input_id=int(structure.input),
        input_index=tuple(int(i) for i in kept[structure.input]),
        layers=tuple(layer for layer in layers if layer.role != "exit"),
        exits=tuple(exits),
        skips=tuple(sorted(skips, key=lambda part: part.node)),
        state=_state_plan(layout, {s for s, _ in recurrent}, kept, scale),
        genome_state_size=sum(width for _, width in layout),
    )
    assert plan.layers[-1].id == structure.output, "the output node should come last"
    assert plan.n_parameters == structure.n_parameters, "plan and active structure disagree"
    return plan


def _state_plan(
    layout: tuple[tuple[int, int], ...],
    nodes: set[int],
    kept: dict[int, np.ndarray],
    scale: dict[int, np.ndarray],
) -> tuple[StatePlan, ...]:
    """Return the state slices of ``nodes`` (sources of live recurrent edges), by node id."""
    parts = []
    offset = genome_offset = 0
    for node, width in layout:
        if node in nodes:
            gates = scale[node][kept[node]].astype(np.float32) if node in scale else None
            if gates is not None and bool((gates == 1).all()):
                gates = None
            parts.append(
                StatePlan(
                    node=int(node),
                    neurons=tuple(int(i) for i in kept[node]),
                    offset=offset,
                    genome_offset=genome_offset,
                    gate=gates,
                )
            )
            offset += len(kept[node])
        genome_offset += width
    assert {p.node for p in parts} == nodes, "a live recurrent source is missing from state_layout"
    return tuple(parts)
