"""The exported network as a plain ``nn.Module``: no gates, only live structure.

:class:`ExportedNet` is built from an :class:`~hybrid.export.plan.ExportPlan`:
one ``nn.Linear`` per live node (its input is the concatenation of the nodes it
reads), a bias-only ``nn.Parameter`` for a constant node, and the feature
standardisation as buffers. Its ``state_dict`` has the same keys as the class
that the ``python`` export format writes (:mod:`hybrid.export.codegen`), so either
loads the other's weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from genomes import Genome

from ..activations import TORCH_ACTIVATIONS
from .plan import ExportPlan, plan_export

__all__ = ["ExportedNet", "layer_name", "to_module"]


def layer_name(node: int, constant: bool) -> str:
    """Return the attribute name of node ``node``'s layer (``node5`` / ``node5_bias``)."""
    return f"node{node}_bias" if constant else f"node{node}"


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
            (or a standard deviation is not > 0).

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
            + (", ".join(str(s) for s in layer.sources) or "constant")
            for layer in plan.layers
        )

    @property
    def imputes(self) -> bool:
        """Whether ``forward`` fills NaN features from the ``feature_fill`` buffer."""
        return self._impute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the network's outputs for raw features ``x``.

        Shape:
            x: (B, n_inputs) -> (B, n_outputs)
        """
        if self._impute:
            x = torch.where(torch.isnan(x), self.feature_fill, x)
        x = (x - self.feature_mean) / self.feature_std
        values = {self._input_id: x[:, self.input_index] if self._select else x}
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


def to_module(
    genome: Genome,
    gate: str = "sigmoid",
    *,
    feature_mean: Sequence[float] | np.ndarray | None = None,
    feature_std: Sequence[float] | np.ndarray | None = None,
) -> ExportedNet:
    """Return ``genome``'s function as a plain module, gates folded into the weights.

    Closed gates, disabled edges and dead nodes are gone, so the module has exactly
    ``genomes.active_structure(genome, gate).n_parameters`` parameters. Give the
    training statistics to make it take raw features (it standardises first).

    Args:
        genome: a valid genome (only read).
        gate: gate kind whose deterministic values are folded.
        feature_mean: per-feature training mean (default 0).
        feature_std: per-feature training standard deviation (default 1).

    Returns:
        An :class:`ExportedNet` in eval mode, on the CPU, float32.

    Raises:
        ValueError: for an unknown gate kind or malformed statistics.

    Shape:
        Input: (B, n_inputs) raw features. Output: (B, n_outputs).

    Example:
        >>> import numpy as np
        >>> from genomes import InnovationTracker, active_structure
        >>> g = Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), hidden=[4])
        >>> net = to_module(g)
        >>> sum(p.numel() for p in net.parameters()) == active_structure(g).n_parameters
        True
    """
    return ExportedNet(plan_export(genome, gate), feature_mean, feature_std).eval()
