"""Adaptive export: exit heads and per-input skip gates (issue 16, ``genomes.adaptive``).

An adaptive genome's function depends on its input through control flow: a sample
stops at the first exit head sure enough of its class, and a skip-gated hidden node
runs only for the samples whose gate logit ``s >= 0``. Two ways to export it:

* **data-dependent** (:class:`AdaptiveNet`; the ``python`` and ``torchscript``
  formats, whose generated class has the same code): ``forward`` runs the stages
  of :func:`genomes.adaptive.adaptive_plan` in order on the samples still running.
  After stage ``k``'s nodes it computes exit ``k``'s logits for those samples;
  the ones whose confidence (max softmax, in float64 as the reference) is
  ``>= threshold`` are finished (their output row written) and the rest continue
  (``index_select``: a sample that stopped computes nothing more). A skip-gated
  node computes its gate for the running samples and its layer only for the rows
  with ``s >= 0`` (zeros elsewhere). ``forward_flops(x)`` returns ``(outputs,
  flops)``: each sample's FLOPs, equal to
  :func:`genomes.adaptive.evaluate_adaptive`'s (integer constants of the plan).
* **all-paths** (:class:`AllPathsNet`; ``pt2`` and ``onnx``, which need a static
  graph): every node and head runs for every sample, skipped nodes are zeroed by
  ``torch.where`` on their masks, and each sample's output is selected among the
  heads and the output node with ``torch.where``. Same outputs, but every sample
  costs the full path (``AdaptivePlan.full_flops``); an export in these formats
  must be asked for explicitly (``all_paths=True``, ``hybrid export --all-paths``).

The gates are folded into the weights as for any export
(:mod:`hybrid.export.plan`; a skip gate's logit is a one-row ``nn.Linear``
``node<id>_skip`` on the node's own input, an exit head an ``nn.Linear``
``node<id>``), so the module holds exactly ``active_structure(...).n_parameters``
parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from genomes import Genome
from genomes.adaptive import Stage, adaptive_plan, with_thresholds

from ..activations import TORCH_ACTIVATIONS
from .codegen import ACTIVATION_CODE, input_line
from .module import ExportedNet, layer_name
from .plan import ExportPlan, LayerPlan, plan_export

__all__ = [
    "AdaptiveExport",
    "AdaptiveNet",
    "AllPathsNet",
    "adaptive_info",
    "plan_adaptive",
    "skip_name",
]


def skip_name(node: int, constant: bool = False) -> str:
    """Return the attribute name of node ``node``'s skip gate.

    ``node5_skip`` (an ``nn.Linear(in, 1)``), or ``node5_skip_bias`` (a bias-only
    ``nn.Parameter`` [1]) for a constant node's gate, which reads nothing.
    """
    return f"node{node}_skip_bias" if constant else f"node{node}_skip"


@dataclass(frozen=True)
class AdaptiveExport:
    """An adaptive genome's export plan and its stages, thresholds and per-part FLOPs.

    Attributes:
        plan: the folded network; ``plan.exits`` and ``plan.skips`` hold the heads
            and skip gates.
        stages: :attr:`genomes.adaptive.AdaptivePlan.stages` (the last one ends at
            the output node, which is not in its ``nodes``).
        thresholds: each exit's threshold, in stage order.
        node_flops: FLOPs per sample of every live hidden, output and exit node.
        skip_flops: FLOPs per sample of every live skip gate.
        full_flops: FLOPs of a sample that runs everything (all-paths cost).
    """

    plan: ExportPlan
    stages: tuple[Stage, ...]
    thresholds: tuple[float, ...]
    node_flops: Mapping[int, int]
    skip_flops: Mapping[int, int]
    full_flops: int

    @property
    def exits(self) -> tuple[int, ...]:
        """The live exits in stage order."""
        return tuple(st.exit for st in self.stages if st.exit is not None)


def plan_adaptive(
    genome: Genome, gate: str = "sigmoid", thresholds: float | Mapping[int, float] | None = None
) -> AdaptiveExport:
    """Return the adaptive export plan of a feed-forward ``genome``.

    Args:
        genome: a valid feed-forward genome (adaptive or not).
        gate: gate kind.
        thresholds: None (each exit's own), one value for every exit, or values by
            exit node id (:func:`genomes.adaptive.with_thresholds`).

    Raises:
        GenomeError: for a recurrent genome, a threshold outside (0, 1] or an id
            that is not an exit (one line).
    """
    if thresholds is not None:
        genome = with_thresholds(
            genome, dict(thresholds) if isinstance(thresholds, Mapping) else thresholds
        )
    ap = adaptive_plan(genome, gate)
    plan = plan_export(genome, gate)
    layers = {layer.id: layer for layer in plan.layers}
    staged = [n for st in ap.stages for n in st.nodes] + [plan.output_id]
    assert sorted(staged) == sorted(layers), (
        "the stages and the export plan disagree on the live nodes"
    )
    assert {e.id for e in plan.exits} == set(ap.exits), (
        "the stages and the export plan disagree on the exits"
    )
    for layer in (*plan.layers, *plan.exits):
        assert 2 * layer.n_weights == ap.node_flops[layer.id], f"node {layer.id}: FLOPs disagree"
    for part in plan.skips:
        assert 2 * part.weight.size == ap.skip_flops[part.node], (
            f"skip gate {part.node}: FLOPs disagree"
        )
    g = genome.graph
    return AdaptiveExport(
        plan=plan,
        stages=ap.stages,
        thresholds=tuple(float(g.nodes[e]["threshold"]) for e in ap.exits),
        node_flops=dict(ap.node_flops),
        skip_flops=dict(ap.skip_flops),
        full_flops=int(ap.full_flops),
    )


def adaptive_info(ad: AdaptiveExport, control_flow: str) -> dict[str, object]:
    """Return the sidecar's ``adaptive`` entry: exits, thresholds, skip gates and what runs.

    ``control_flow`` is ``"data-dependent"`` (python/torchscript: a sample runs
    only what it reaches) or ``"all-paths"`` (pt2/onnx: every sample runs
    everything; the outputs are the same).
    """
    return {
        "exits": list(ad.exits),
        "thresholds": list(ad.thresholds),
        "skip_gates": [part.node for part in ad.plan.skips],
        "stages": [{"nodes": list(st.nodes), "exit": st.exit} for st in ad.stages],
        "control_flow": control_flow,
        "full_flops": ad.full_flops,
        "rule": (
            "a sample stops at the first exit (stage order) whose max softmax >= its threshold "
            "(output: those logits), else the output node's; a skip-gated node runs where its "
            "gate logit s >= 0 (zeros elsewhere): genomes.adaptive"
        ),
        "flops": (
            "per sample, what it ran: forward_flops(x) returns (outputs, flops)"
            if control_flow == "data-dependent"
            else f"every sample runs the full path: {ad.full_flops} FLOPs"
        ),
    }


def _confidence(logits: torch.Tensor) -> torch.Tensor:
    """Max softmax in float64, as ``genomes.adaptive.confidence``: ``1 / sum exp(l - max)``."""
    z = logits.double()
    return 1.0 / torch.exp(z - z.max(dim=1, keepdim=True).values).sum(dim=1)


class AdaptiveNet(ExportedNet):
    """An adaptive genome's function with data-dependent control flow (see the module docstring).

    Args:
        adaptive: the adaptive plan (:func:`plan_adaptive`).
        feature_mean, feature_std, feature_fill: as for :class:`ExportedNet`.

    Shape:
        Input: (B, n_inputs) raw features. Output: (B, n_outputs);
        ``forward_flops``: ((B, n_outputs), (B,) int64).
    """

    def __init__(
        self,
        adaptive: AdaptiveExport,
        feature_mean: Sequence[float] | np.ndarray | None = None,
        feature_std: Sequence[float] | np.ndarray | None = None,
        feature_fill: Sequence[float | None] | None = None,
    ) -> None:
        super().__init__(adaptive.plan, feature_mean, feature_std, feature_fill)
        plan = adaptive.plan
        for head in plan.exits:
            linear = nn.Linear(head.weight.shape[1], head.width)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(head.weight))
                linear.bias.copy_(torch.from_numpy(head.bias))
            self.add_module(layer_name(head.id, False), linear)
        for part in plan.skips:
            if not part.weight.size:  # a constant node's gate: its bias alone
                bias = nn.Parameter(torch.from_numpy(part.bias.copy()))
                self.register_parameter(skip_name(part.node, True), bias)
                continue
            linear = nn.Linear(part.weight.size, 1)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(part.weight).reshape(1, -1))
                linear.bias.copy_(torch.from_numpy(part.bias))
            self.add_module(skip_name(part.node), linear)
        self.adaptive = adaptive
        self._layer = {layer.id: layer for layer in (*plan.layers, *plan.exits)}
        self._skipped = {part.node for part in plan.skips}
        self._later = _read_later(adaptive)
        self._summary += (
            "exits (stage order): "
            + (
                ", ".join(
                    f"{e}>={q:g}" for e, q in zip(adaptive.exits, adaptive.thresholds, strict=True)
                )
                or "none"
            )
            + "; skip gates: "
            + (", ".join(str(n) for n in sorted(self._skipped)) or "none"),
        )

    def _input(self, node: int, values: dict[int, torch.Tensor]) -> torch.Tensor | None:
        sources = self._layer[node].sources
        if not sources:
            return None
        if len(sources) == 1:
            return values[sources[0]]
        return torch.cat([values[s] for s in sources], dim=1)

    def _apply(self, node: int, inp: torch.Tensor | None, n: int) -> torch.Tensor:
        layer = self._layer[node]
        name = layer_name(node, layer.is_constant)
        pre = getattr(self, name).expand(n, -1) if inp is None else getattr(self, name)(inp)
        return TORCH_ACTIVATIONS[layer.activation](pre)

    def _gate(self, node: int, inp: torch.Tensor | None, n: int) -> torch.Tensor:
        """Return the skip gate's ``s >= 0`` per running sample."""
        if inp is None:
            return getattr(self, skip_name(node, True)).expand(n) >= 0
        return getattr(self, skip_name(node))(inp)[:, 0] >= 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return each sample's output under the exit rule, for raw features ``x``.

        Shape:
            x: (B, n_inputs) -> (B, n_outputs)
        """
        return self.forward_flops(x)[0]

    def forward_flops(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return each sample's output and the FLOPs it ran (``evaluate_adaptive``'s).

        Shape:
            x: (B, n_inputs) -> ((B, n_outputs), (B,) int64)
        """
        ad = self.adaptive
        x = self._prepare(x)
        b = x.shape[0]
        out = x.new_zeros(b, self.n_outputs)
        flops = torch.zeros(b, dtype=torch.int64, device=x.device)
        rows = torch.arange(b, device=x.device)  # the samples still running
        cost = torch.zeros(b, dtype=torch.int64, device=x.device)
        values = {self._input_id: x}
        last = len(ad.stages) - 1
        for k, stage in enumerate(ad.stages):
            n = rows.shape[0]
            for node in stage.nodes:
                inp = self._input(node, values)
                if node in self._skipped:
                    on = self._gate(node, inp, n)
                    run = torch.nonzero(on)[:, 0]
                    width = self._layer[node].width
                    h = x.new_zeros(n, width)
                    if run.numel():
                        part = None if inp is None else inp.index_select(0, run)
                        h = h.index_copy(0, run, self._apply(node, part, run.shape[0]))
                    cost = cost + ad.skip_flops[node] + on.long() * ad.node_flops[node]
                else:
                    h = self._apply(node, inp, n)
                    cost = cost + ad.node_flops[node]
                values[node] = h
            if k == last:
                y = self._apply(self._output_id, self._input(self._output_id, values), n)
                cost = cost + ad.node_flops[self._output_id]
                out = out.index_copy(0, rows, y)
                flops = flops.index_copy(0, rows, cost)
                break
            e = stage.exit
            assert e is not None
            logits = self._apply(e, self._input(e, values), n)
            cost = cost + ad.node_flops[e]
            done = _confidence(logits) >= ad.thresholds[k]
            stop = torch.nonzero(done)[:, 0]
            out = out.index_copy(0, rows.index_select(0, stop), logits.index_select(0, stop))
            flops = flops.index_copy(0, rows.index_select(0, stop), cost.index_select(0, stop))
            keep = torch.nonzero(~done)[:, 0]
            rows, cost = rows.index_select(0, keep), cost.index_select(0, keep)
            values = {m: v.index_select(0, keep) for m, v in values.items() if m in self._later[k]}
            if rows.numel() == 0:
                break
        return out, flops

    def all_paths(self, x: torch.Tensor) -> torch.Tensor:
        """Return the same outputs as ``forward``, running every node and head for every sample.

        Static control flow (``torch.where`` on skip masks and exit decisions): the
        form ``torch.export`` and ONNX keep.

        Shape:
            x: (B, n_inputs) -> (B, n_outputs)
        """
        ad = self.adaptive
        x = self._prepare(x)
        b = x.shape[0]
        values = {self._input_id: x}
        for node, _, _, _ in self._steps:
            inp = self._input(node, values)
            h = self._apply(node, inp, b)
            if node in self._skipped:
                h = torch.where(self._gate(node, inp, b)[:, None], h, torch.zeros_like(h))
            values[node] = h
        y = values[self._output_id]
        for k in range(len(ad.exits) - 1, -1, -1):
            e = ad.exits[k]
            logits = self._apply(e, self._input(e, values), b)
            y = torch.where((_confidence(logits) >= ad.thresholds[k])[:, None], logits, y)
        return y


class AllPathsNet(nn.Module):
    """:meth:`AdaptiveNet.all_paths` as a module's ``forward`` (what ``pt2``/``onnx`` export)."""

    def __init__(self, net: AdaptiveNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the exit-rule outputs (every path computed). Shape: (B, n_inputs) -> (B, n_outputs)."""
        return self.net.all_paths(x)


def _read_later(ad: AdaptiveExport) -> tuple[frozenset[int], ...]:
    """For every stage but the last, the nodes computed so far (the input included) that a later stage reads."""
    plan = ad.plan
    reads = {layer.id: set(layer.sources) for layer in (*plan.layers, *plan.exits)}
    out = []
    done = {plan.input_id}
    for k in range(len(ad.stages) - 1):
        done.update(ad.stages[k].nodes)
        later = [n for st in ad.stages[k + 1 :] for n in st.nodes]
        later += [st.exit for st in ad.stages[k + 1 :] if st.exit is not None] + [plan.output_id]
        out.append(frozenset(s for n in later for s in reads[n] if s in done))
    return tuple(out)


# ---------------------------------------------------------------- generated source


def _value(layer: LayerPlan, inp: str, n: str) -> str:
    name = layer_name(layer.id, layer.is_constant)
    pre = f"self.{name}.expand({n}, -1)" if layer.is_constant else f"self.{name}({inp})"
    return ACTIVATION_CODE[layer.activation].format(pre)


def _input_expr(layer: LayerPlan) -> str:
    if not layer.sources:
        return ""
    if len(layer.sources) == 1:
        return f"h{layer.sources[0]}"
    return f"torch.cat([{', '.join(f'h{s}' for s in layer.sources)}], dim=1)"


def adaptive_init_lines(ad: AdaptiveExport) -> list[str]:
    """Return the ``__init__`` lines declaring the exit heads and skip gates."""
    lines = []
    order = {e: k for k, e in enumerate(ad.exits)}
    for head in ad.plan.exits:
        lines.append(
            f"# node {head.id}: exit head reading node {head.sources[0]}, tried at stage "
            f"{order[head.id]} (threshold {ad.thresholds[order[head.id]]!r})"
        )
        lines.append(
            f"self.{layer_name(head.id, False)} = nn.Linear({head.weight.shape[1]}, {head.width})"
        )
    for part in ad.plan.skips:
        lines.append(f"# skip gate of node {part.node}: the node runs where this logit >= 0")
        if part.weight.size:
            lines.append(f"self.{skip_name(part.node)} = nn.Linear({part.weight.size}, 1)")
        else:
            lines.append(
                f"self.{skip_name(part.node, True)} = nn.Parameter(torch.zeros(1))  # no live input"
            )
    return lines


def adaptive_forward_lines(ad: AdaptiveExport, impute: bool) -> list[str]:
    """Return the body of the generated ``forward_flops(x)``: the stages, one block per node."""
    plan = ad.plan
    layers = {layer.id: layer for layer in (*plan.layers, *plan.exits)}
    skipped = {part.node for part in plan.skips}
    later = _read_later(ad)
    lines = ["x = torch.where(torch.isnan(x), self.feature_fill, x)"] if impute else []
    lines += [
        "x = (x - self.feature_mean) / self.feature_std",
        f"out = x.new_zeros(x.shape[0], {plan.n_outputs})  # each sample's output, written when it stops",
        "flops = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)",
        "rows = torch.arange(x.shape[0], device=x.device)  # the samples still running (rows of x)",
        "cost = torch.zeros_like(rows)  # the FLOPs each running sample has spent",
    ]
    lines.append(input_line(plan))
    last = len(ad.stages) - 1
    for k, stage in enumerate(ad.stages):
        ends = (
            f"exit {stage.exit}" if stage.exit is not None else f"the output node {plan.output_id}"
        )
        nodes = ", ".join(str(n) for n in stage.nodes) or "none"
        lines.append(f"# stage {k}: nodes {nodes}; then {ends}")
        lines.append("n = rows.shape[0]")
        for node in stage.nodes:
            layer = layers[node]
            lines.append(f"# node {node}: hidden {layer.activation}, {layer.width} neurons")
            expr = _input_expr(layer)
            if node not in skipped:
                lines.append(f"h{node} = {_value(layer, expr, 'n')}")
                lines.append(f"cost = cost + {ad.node_flops[node]}")
                continue
            lines.append("#   skip gate: computed only for the samples whose gate logit is >= 0")
            if expr:
                lines.append(f"in{node} = {expr}")
                lines.append(f"on{node} = self.{skip_name(node)}(in{node})[:, 0] >= 0")
            else:
                lines.append(f"on{node} = self.{skip_name(node, True)}.expand(n) >= 0")
            lines.append(f"run{node} = torch.nonzero(on{node})[:, 0]")
            sub = f"in{node}.index_select(0, run{node})" if expr else ""
            lines.append(
                f"h{node} = x.new_zeros(n, {layer.width}).index_copy("
                f"0, run{node}, {_value(layer, sub, f'run{node}.shape[0]')})"
            )
            lines.append(
                f"cost = cost + {ad.skip_flops[node]} + on{node}.long() * {ad.node_flops[node]}"
                "  # the gate; the node where it ran"
            )
        if k == last:
            o = layers[plan.output_id]
            lines.append(f"# node {o.id}: output {o.activation}")
            lines.append(f"y = {_value(o, _input_expr(o), 'n')}")
            lines.append(f"cost = cost + {ad.node_flops[o.id]}")
            lines.append("return out.index_copy(0, rows, y), flops.index_copy(0, rows, cost)")
            break
        e = stage.exit
        assert e is not None
        head = layers[e]
        lines.append(f"# exit {e}: its logits for the running samples; the sure ones stop here")
        lines.append(f"logits = {_value(head, _input_expr(head), 'n')}")
        lines.append(f"cost = cost + {ad.node_flops[e]}")
        lines.append(f"done = confidence(logits) >= {ad.thresholds[k]!r}")
        lines.append("stop = torch.nonzero(done)[:, 0]")
        lines.append(
            "out = out.index_copy(0, rows.index_select(0, stop), logits.index_select(0, stop))"
        )
        lines.append(
            "flops = flops.index_copy(0, rows.index_select(0, stop), cost.index_select(0, stop))"
        )
        lines.append("keep = torch.nonzero(~done)[:, 0]")
        lines.append("rows = rows.index_select(0, keep)")
        lines.append("cost = cost.index_select(0, keep)")
        for m in sorted(later[k]):
            lines.append(f"h{m} = h{m}.index_select(0, keep)")
        lines.append("if rows.shape[0] == 0:")
        lines.append("    return out, flops")
    return lines


ADAPTIVE_NOTE = """

Compute that adapts to each input: ``forward`` runs the network in stages; after
each stage an exit head scores the samples still running, and those whose
confidence (max softmax) reaches the exit's threshold stop there, with that exit's
logits as their output; the others run on. A skip-gated node runs only for the
samples whose gate logit is >= 0 (zeros for the others). ``forward_flops(x)``
returns the outputs and each sample's FLOPs (what it ran)."""

ADAPTIVE_USAGE = "\n    y, flops = model.forward_flops(x)  # and each sample's FLOPs (int64)"

ADAPTIVE_FUNCTIONS = '''

def confidence(logits: torch.Tensor) -> torch.Tensor:
    """Return the max softmax probability of each row, in float64: 1 / sum exp(l - max)."""
    z = logits.double()
    return 1.0 / torch.exp(z - z.max(dim=1, keepdim=True).values).sum(dim=1)
'''


def adaptive_constants(ad: AdaptiveExport) -> str:
    """Return the constants of an adaptive file (exits, thresholds, FLOPs) and its helper function."""
    return (
        "#: The exits in the order they are tried (genome node ids) and their thresholds.\n"
        f"EXITS = {list(ad.exits)}\n"
        f"THRESHOLDS = {list(ad.thresholds)}\n"
        "#: Nodes with a skip gate.\n"
        f"SKIP_GATES = {[part.node for part in ad.plan.skips]}\n"
        "#: FLOPs per sample of running every node, gate and head.\n"
        f"FULL_FLOPS = {ad.full_flops}\n" + ADAPTIVE_FUNCTIONS
    )
