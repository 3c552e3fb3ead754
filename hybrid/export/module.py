"""The exported network as a plain ``nn.Module``: no gates, only live structure.

:class:`ExportedNet` is built from an :class:`~hybrid.export.plan.ExportPlan`:
one ``nn.Linear`` per live node (its input is the concatenation of the nodes it
reads), a bias-only ``nn.Parameter`` for a constant node, and the feature
standardisation as buffers. Its ``state_dict`` has the same keys as the class
that the ``python`` export format writes (:mod:`hybrid.export.codegen`), so either
loads the other's weights.

A recurrent genome's plan becomes a :class:`RecurrentExportedNet`: the same
layers, read over time. ``step(x_t, state)`` computes one time step and
``forward(x, state=None)`` loops it over ``x``'s time axis, returning the outputs
and the final state (layout: :class:`~hybrid.export.plan.StatePlan`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from genomes import Genome

from ..activations import TORCH_ACTIVATIONS
from .plan import ExportPlan, plan_export

__all__ = [
    "ExportedNet",
    "RecurrentExportedNet",
    "exported_net",
    "gate_name",
    "layer_name",
    "to_module",
]


def layer_name(node: int, constant: bool) -> str:
    """Return the attribute name of node ``node``'s layer (``node5`` / ``node5_bias``)."""
    return f"node{node}_bias" if constant else f"node{node}"


def gate_name(node: int) -> str:
    """Return the name of the buffer holding node ``node``'s neuron gates for the state."""
    return f"node{node}_gate"


def _stats(
    values: Sequence[float] | np.ndarray | None, n: int, fill: float, what: str
) -> torch.Tensor:
    if values is None:
        return torch.full((n,), fill, dtype=torch.float32)
    t = torch.as_tensor(np.asarray(values, dtype=np.float32))
    if t.shape != (n,):
        raise ValueError(
            f"{what} should have {n} values (one per feature), got shape {tuple(t.shape)}"
        )
    if not torch.isfinite(t).all() or (what == "feature_std" and not (t > 0).all()):
        raise ValueError(
            f"{what} should be finite{' and > 0' if what == 'feature_std' else ''}, got {t.tolist()}"
        )
    return t


def _fill(values: Sequence[float | None] | None, n: int) -> torch.Tensor | None:
    """Return the fill buffer (NaN = leave missing) or None when nothing is filled."""
    if values is None or all(v is None for v in values):
        return None
    if len(values) != n:
        raise ValueError(f"feature_fill should have {n} values (one per feature), got {len(values)}")
    t = torch.tensor([float("nan") if v is None else float(v) for v in values], dtype=torch.float32)
    if torch.isinf(t).any():
        raise ValueError(f"feature_fill should be finite or None, got {t.tolist()}")
    return t


class ExportedNet(nn.Module):
    """A genome's function as an ordinary, gate-free PyTorch module.

    Takes raw features: ``forward`` first fills missing (NaN) features with
    ``feature_fill`` (the training mean or median; only when the task imputes),
    then standardises them with the training
    statistics, ``(x - feature_mean) / feature_std`` (buffers), then drops the
    features whose input gate was closed, then runs the live nodes in
    topological order, ``h_j = act_j(node_j(cat(h_sources)))``. Outputs are the
    network's raw outputs (logits for classification). Every parameter trains with
    any optimiser; there is nothing hybrid-specific left.

    Args:
        plan: the folded network (:func:`hybrid.export.plan.plan_export`).
        feature_mean: per-feature training mean (default 0).
        feature_std: per-feature training standard deviation, > 0 (default 1).
        feature_fill: per-feature value for a NaN input, None for "leave it NaN"
            (default: no filling and no ``feature_fill`` buffer).

    Raises:
        ValueError: if the statistics do not have one finite value per feature
            (or a standard deviation is not > 0), or if ``plan`` is recurrent and
            the class is not :class:`RecurrentExportedNet`.

    Shape:
        Input: (B, n_inputs) raw features. Output: (B, n_outputs).
    """

    n_inputs: int
    n_outputs: int
    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(
        self,
        plan: ExportPlan,
        feature_mean: Sequence[float] | np.ndarray | None = None,
        feature_std: Sequence[float] | np.ndarray | None = None,
        feature_fill: Sequence[float | None] | None = None,
    ) -> None:
        super().__init__()
        if (plan.is_recurrent and not isinstance(self, RecurrentExportedNet)) or (
            plan.is_adaptive and type(self).__name__ != "AdaptiveNet"
        ):
            # (5 lines, as before issue 16: the exported files' debug info holds line numbers)
            raise ValueError(_wrong_class(plan))
        self.n_inputs, self.n_outputs = plan.n_inputs, plan.n_outputs
        fill = _fill(feature_fill, plan.n_inputs)
        self._impute = fill is not None
        if fill is not None:
            self.register_buffer("feature_fill", fill)
        self.register_buffer(
            "feature_mean", _stats(feature_mean, plan.n_inputs, 0.0, "feature_mean")
        )
        self.register_buffer("feature_std", _stats(feature_std, plan.n_inputs, 1.0, "feature_std"))
        self._select = not plan.keeps_all_inputs
        if self._select:
            # Structure, not state: not persistent, so state_dict holds only trainables and stats.
            index = torch.tensor(plan.input_index, dtype=torch.long)
            self.register_buffer("input_index", index, persistent=False)
        steps = []
        for layer in plan.layers:
            name = layer_name(layer.id, layer.is_constant)
            if layer.is_constant:
                self.register_parameter(name, nn.Parameter(torch.from_numpy(layer.bias.copy())))
            else:
                linear = nn.Linear(layer.weight.shape[1], layer.width)
                with torch.no_grad():
                    linear.weight.copy_(torch.from_numpy(layer.weight))
                    linear.bias.copy_(torch.from_numpy(layer.bias))
                self.add_module(name, linear)
            steps.append((layer.id, name, layer.sources, layer.activation))
        self._input_id = plan.input_id
        self._output_id = plan.output_id
        self._steps = tuple(steps)
        self._summary = tuple(
            f"node {layer.id}: {layer.role} {layer.activation}[{layer.width}] <- "
            + (
                ", ".join(
                    [str(s) for s in layer.sources]
                    + [f"{s}(t-1)" for s in layer.recurrent_sources]
                )
                or "constant"
            )
            for layer in plan.layers
        )

    @property
    def imputes(self) -> bool:
        """Whether ``forward`` fills NaN features from the ``feature_fill`` buffer."""
        return self._impute

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Return the input node's values for raw features ``x``: filled, standardised, kept.

        Shape:
            x: (B, n_inputs) -> (B, kept features)
        """
        if self._impute:
            x = torch.where(torch.isnan(x), self.feature_fill, x)
        x = (x - self.feature_mean) / self.feature_std
        return x.index_select(1, self.input_index) if self._select else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the network's outputs for raw features ``x``.

        Shape:
            x: (B, n_inputs) -> (B, n_outputs)
        """
        values = {self._input_id: self._prepare(x)}
        for node, name, sources, activation in self._steps:
            if not sources:
                pre = getattr(self, name).expand(x.shape[0], -1)
            elif len(sources) == 1:
                pre = getattr(self, name)(values[sources[0]])
            else:
                pre = getattr(self, name)(torch.cat([values[s] for s in sources], dim=1))
            values[node] = TORCH_ACTIVATIONS[activation](pre)
        return values[self._output_id]

    def extra_repr(self) -> str:
        """Return the sizes and one line per node with what it reads."""
        return "\n".join((f"n_inputs={self.n_inputs}, n_outputs={self.n_outputs}", *self._summary))


class RecurrentExportedNet(ExportedNet):
    """A recurrent genome's function over time as a plain, gate-free module.

    The layers are :class:`ExportedNet`'s; a layer's input is the values of its
    sources at this step followed by the previous step's values of its recurrent
    sources, read from the state. The state is the concatenation, by node id, of
    the kept neurons of every source of a live recurrent edge, holding what the
    genome holds, ``h = gate * value`` (the gates are the buffers
    ``node<id>_gate``; none for the output node or where every gate is 1).
    Standardisation (and filling) applies to every step's features.

    Args:
        plan: the folded network of a recurrent genome.
        feature_mean, feature_std, feature_fill: as for :class:`ExportedNet`.

    Raises:
        ValueError: as :class:`ExportedNet`.

    Shape:
        Input: x (B, T, n_inputs) raw features, state (B, state_size) or None
        (zeros). Output: ((B, T, n_outputs), (B, state_size)).
    """

    state_size: int

    def __init__(
        self,
        plan: ExportPlan,
        feature_mean: Sequence[float] | np.ndarray | None = None,
        feature_std: Sequence[float] | np.ndarray | None = None,
        feature_fill: Sequence[float | None] | None = None,
    ) -> None:
        super().__init__(plan, feature_mean, feature_std, feature_fill)
        self.state_size = plan.state_size
        self._recurrent = {layer.id: layer.recurrent_sources for layer in plan.layers}
        state = []
        for part in plan.state:
            if part.gate is not None:
                self.register_buffer(gate_name(part.node), torch.from_numpy(part.gate.copy()))
            state.append((part.node, part.width, part.gate is not None))
        self._state = tuple(state)
        self._summary += (
            "state: "
            + (", ".join(f"{node}[{width}]" for node, width, _ in self._state) or "none")
            + f" ({self.state_size} values)",
        )

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return one time step's outputs and the new state.

        Shape:
            x: (B, n_inputs) raw features, state: (B, state_size)
            -> ((B, n_outputs), (B, state_size))
        """
        values = {self._input_id: self._prepare(x)}
        previous = {}
        if self._state:  # split, not slices: the ONNX exporter cannot take slices inside a Scan
            parts = torch.split(state, [width for _, width, _ in self._state], dim=1)
            previous = {node: part for (node, _, _), part in zip(self._state, parts, strict=True)}
        for node, name, sources, activation in self._steps:
            inputs = [values[s] for s in sources] + [previous[s] for s in self._recurrent[node]]
            if not inputs:
                pre = getattr(self, name).expand(x.shape[0], -1)
            elif len(inputs) == 1:
                pre = getattr(self, name)(inputs[0])
            else:
                pre = getattr(self, name)(torch.cat(inputs, dim=1))
            values[node] = TORCH_ACTIVATIONS[activation](pre)
        parts = [
            values[node] * getattr(self, gate_name(node)) if gated else values[node]
            for node, _, gated in self._state
        ]
        new_state = torch.cat(parts, dim=1) if parts else state
        return values[self._output_id], new_state

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the outputs at every step and the final state.

        Args:
            x: raw features, (B, T, n_inputs).
            state: the state before the first step, (B, state_size); None for zeros.

        Returns:
            ``(outputs (B, T, n_outputs), final_state (B, state_size))``.

        Raises:
            ValueError: for an ``x`` or ``state`` of another shape.
        """
        tracing = torch.jit.is_tracing()  # (TensorBoard's add_graph): shapes are tensors then
        if not tracing and (x.dim() != 3 or x.shape[2] != self.n_inputs):
            raise ValueError(
                f"x should have shape (B, T, {self.n_inputs}), got {tuple(x.shape)}"
            )
        if state is None:
            state = x.new_zeros(x.shape[0], self.state_size)
        elif not tracing and tuple(state.shape) != (x.shape[0], self.state_size):
            raise ValueError(
                f"state should have shape ({x.shape[0]}, {self.state_size}), "
                f"got {tuple(state.shape)}"
            )
        outputs = []
        for t in range(x.shape[1]):
            y, state = self.step(x[:, t], state)
            outputs.append(y)
        if not outputs:
            return x.new_zeros(x.shape[0], 0, self.n_outputs), state
        return torch.stack(outputs, dim=1), state


def _wrong_class(plan: ExportPlan) -> str:
    """Return why ``ExportedNet`` (or this subclass) cannot run ``plan``."""
    if plan.is_recurrent:
        return "the plan is of a recurrent genome: build a RecurrentExportedNet (exported_net does)"
    return (
        "the plan has exit heads or skip gates (genomes.adaptive): build a "
        "hybrid.export.adaptive.AdaptiveNet (to_module and export_genome do)"
    )


def exported_net(
    plan: ExportPlan,
    feature_mean: Sequence[float] | np.ndarray | None = None,
    feature_std: Sequence[float] | np.ndarray | None = None,
    feature_fill: Sequence[float | None] | None = None,
) -> ExportedNet:
    """Return the module of ``plan``: a :class:`RecurrentExportedNet` for a recurrent genome.

    Raises:
        ValueError: for malformed statistics (see :class:`ExportedNet`).
    """
    cls = RecurrentExportedNet if plan.is_recurrent else ExportedNet
    return cls(plan, feature_mean, feature_std, feature_fill)


def to_module(
    genome: Genome,
    gate: str = "sigmoid",
    *,
    feature_mean: Sequence[float] | np.ndarray | None = None,
    feature_std: Sequence[float] | np.ndarray | None = None,
    budgets: bool | Sequence[float] | None = None,
) -> ExportedNet:
    """Return ``genome``'s function as a plain module, gates folded into the weights.

    Closed gates, disabled edges and dead nodes are gone, so the module has exactly
    ``genomes.active_structure(genome, gate).n_parameters`` parameters. Give the
    training statistics to make it take raw features (it standardises first).
    A recurrent genome gives a :class:`RecurrentExportedNet`, which runs over time.

    Args:
        genome: a valid genome (only read).
        gate: gate kind whose deterministic values are folded.
        feature_mean: per-feature training mean (default 0).
        feature_std: per-feature training standard deviation (default 1).
        budgets: None or False for the plain module (an adaptive genome, with
            exits or skip gates, gives a :class:`hybrid.export.adaptive.AdaptiveNet`:
            ``forward`` stops early per sample, ``forward_flops`` also returns each
            sample's FLOPs); True, or the budgets (in
            (0, 1], strictly increasing) the module is meant for, for a
            :class:`hybrid.export.budgets.BudgetedNet` of a feed-forward genome,
            whose ``forward(x, budget=1.0)`` runs only the sub-network ``budget``
            selects (``genomes.budgets``); any budget in (0, 1] may be passed.

    Returns:
        An :class:`ExportedNet` in eval mode, on the CPU, float32.

    Raises:
        ValueError: for an unknown gate kind or malformed statistics;
            ``GenomeError`` (a ValueError) for budgets that are not in (0, 1] and
            strictly increasing, or budgets for a recurrent or adaptive genome.

    Shape:
        Input: (B, n_inputs) raw features. Output: (B, n_outputs). Recurrent:
        (B, T, n_inputs) and an optional state -> ((B, T, n_outputs), (B, state_size)).

    Example:
        >>> import numpy as np
        >>> from genomes import InnovationTracker, active_structure
        >>> g = Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), hidden=[4])
        >>> net = to_module(g)
        >>> sum(p.numel() for p in net.parameters()) == active_structure(g).n_parameters
        True
    """
    if budgets is None or budgets is False:
        from genomes.adaptive import is_adaptive

        if is_adaptive(genome):
            from .adaptive import AdaptiveNet, plan_adaptive

            return AdaptiveNet(plan_adaptive(genome, gate), feature_mean, feature_std).eval()
        return exported_net(plan_export(genome, gate), feature_mean, feature_std).eval()
    from genomes.budgets import check_budgets

    from .budgets import BudgetedNet, plan_budgets

    listed = () if budgets is True else check_budgets(budgets)
    from genomes import GenomeError
    from genomes.adaptive import is_adaptive

    if is_adaptive(genome):
        raise GenomeError("budgets are for genomes without exits or skip gates (genomes.adaptive)")
    return BudgetedNet(plan_budgets(genome, gate), feature_mean, feature_std, listed=listed).eval()
