"""Write an export plan as a readable, standalone Python file (needs only torch).

The generated file defines ``ExportedNet`` (one ``nn.Linear`` per live genome node,
named ``node<id>``, a forward in topological order with one commented line per
node) and ``load()``, which reads the weights saved next to it with
``torch.load(..., weights_only=True)``. Its ``state_dict`` keys equal those of
:class:`hybrid.export.module.ExportedNet`, whose ``state_dict`` is what gets saved.

For a recurrent genome the class has ``step(x, state)``, one time step with one
commented line per node (``prev<id>`` is node <id> at the previous step, sliced
from the state), and ``forward(x, state=None)``, a plain loop of ``step`` over the
time axis; ``STATE_SIZE`` and ``STATE_LAYOUT`` describe the state. Its
``state_dict`` keys equal :class:`hybrid.export.module.RecurrentExportedNet`'s.

A budgeted export (``budgets``: :class:`hybrid.export.budgets.BudgetPlan`) has
``forward(x, budget: float = 1.0)``: ``level(budget)`` picks the row of
``LEVEL_WIDTHS`` (kept neurons of every layer; 0 = skipped) by a binary search on
``LEVEL_FLOPS``, and each node is one commented block computing only its kept
neurons from ``level_weights`` (views of the full weights; cached contiguous copies
when gradients are off). The class compiles with
``torch.jit.script`` (the ``torchscript`` format scripts it).

An adaptive export (``adaptive``: :class:`hybrid.export.adaptive.AdaptiveExport`)
has ``forward(x)`` and ``forward_flops(x) -> (outputs, flops)``, which runs the
stages with data-dependent control flow (one commented block per node, exit and
skip gate; the FLOPs are integer constants of the plan). It also compiles with
``torch.jit.script``.
"""

from __future__ import annotations

import inspect
import json
import math
import pprint
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import __version__
from .module import gate_name, layer_name
from .plan import ExportPlan, LayerPlan

if TYPE_CHECKING:
    from .adaptive import AdaptiveExport
    from .budgets import BudgetPlan

__all__ = ["ACTIVATION_CODE", "render_python"]

#: Source for each activation in ``genomes.ACTIVATIONS``, applied to ``{}`` (used once).
ACTIVATION_CODE: dict[str, str] = {
    "identity": "{}",
    "relu": "torch.relu({})",
    "tanh": "torch.tanh({})",
    "sigmoid": "torch.sigmoid({})",
    "gelu": 'F.gelu({}, approximate="tanh")',
    "sin": "torch.sin({})",
    "gauss": "torch.exp(-torch.square({}))",
    "softplus": "F.softplus({})",
}

_HEADER = '''\
"""{title}

A plain PyTorch module exported by hybrid {version}: importing this file needs
only torch. {n_parameters} parameters; the genome's {gate} gates are folded into
the weights and everything they closed is gone.

``ExportedNet`` takes RAW features: ``forward`` first standardises them with the
training statistics, ``(x - feature_mean) / feature_std`` (buffers saved with the
weights), and returns the network's {outputs}.{impute_note}

Load and use::

    model = load()  # weights from {weights_name} next to this file
{usage}
"""

from __future__ import annotations

from pathlib import Path

import torch
{functional}from torch import nn

#: The trained weights (a state_dict), next to this file.
WEIGHTS = {weights}
#: Output i is the score of class CLASS_LABELS[i] (empty if the task is not classification).
CLASS_LABELS = [{class_labels}]
{state_constants}
'''

_LOAD = '''

def load(weights: str | Path | None = None, map_location: str | torch.device = "cpu") -> ExportedNet:
    """Return an ``ExportedNet`` holding the exported weights, in eval mode.

    Args:
        weights: the state_dict file (default: ``WEIGHTS`` next to this file).
        map_location: device to load the tensors onto.
    """
    path = Path(__file__).with_name(WEIGHTS) if weights is None else Path(weights)
    model = ExportedNet()
    model.load_state_dict(torch.load(path, map_location=map_location, weights_only=True))
    return model.eval()
'''


def _literal(value: Any) -> str:
    """Return a Python literal for a class label: a string, an int or a finite float.

    Raises:
        ValueError: any other value (NaN and inf have no literal: ``nan`` would be a
            name in the generated file).
    """
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"class label {value!r} should be a string or a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"class label {value!r} is not finite")
    return repr(value)


def _docstring_text(text: str) -> str:
    """Return ``text`` safe inside a triple-quoted docstring (quotes, backslashes, newlines escaped)."""
    return json.dumps(text)[1:-1]


def _neurons(layer: LayerPlan) -> str:
    if layer.width == layer.genome_width:
        return f"{layer.width} neurons"
    return f"{layer.width} of {layer.genome_width} neurons kept"


def _reads(layer: LayerPlan, input_id: int) -> str:
    if layer.is_constant:
        return "constant: no live input, value act(bias)"
    names = [f"{s} (input)" if s == input_id else str(s) for s in layer.sources]
    names += [
        f"{s} (input) at t-1" if s == input_id else f"{s} at t-1" for s in layer.recurrent_sources
    ]
    return "reads node" + ("s " if len(names) > 1 else " ") + ", ".join(names)


def _init_lines(plan: ExportPlan, impute: bool) -> list[str]:
    n = plan.n_inputs
    lines = [
        f"# Training statistics of the {n} features (loaded with the weights).",
        f'self.register_buffer("feature_mean", torch.zeros({n}))',
        f'self.register_buffer("feature_std", torch.ones({n}))',
    ]
    if impute:
        lines += [
            "# Value for a missing (NaN) feature: the training mean or median; NaN = none.",
            f'self.register_buffer("feature_fill", torch.zeros({n}))',
        ]
    if not plan.keeps_all_inputs:
        lines += [
            "# Features whose input gate is open; the others cannot change the output.",
            f'self.register_buffer("input_index", torch.tensor({list(plan.input_index)}), '
            "persistent=False)",
        ]
    for layer in plan.layers:
        name = layer_name(layer.id, layer.is_constant)
        lines.append(
            f"# node {layer.id}: {layer.role} {layer.activation}, {_neurons(layer)}; "
            f"{_reads(layer, plan.input_id)}"
        )
        if layer.is_constant:
            lines.append(f"self.{name} = nn.Parameter(torch.zeros({layer.width}))")
        else:
            lines.append(f"self.{name} = nn.Linear({layer.weight.shape[1]}, {layer.width})")
    gated = [part for part in plan.state if part.gate is not None]
    if gated:
        lines.append("# Neuron gates of nodes in the state: it holds gate * value, as the genome.")
    for part in gated:
        lines.append(f'self.register_buffer("{gate_name(part.node)}", torch.ones({part.width}))')
    return lines


def input_line(plan: ExportPlan) -> str:
    """The generated line that reads the input node's kept features off ``x``."""
    inp, kept = plan.input_id, len(plan.input_index)
    if plan.keeps_all_inputs:
        return f"h{inp} = x  # node {inp}: input, {kept} features"
    return f"h{inp} = x.index_select(1, self.input_index)  # node {inp}: input, {kept} of {plan.n_inputs} features"


def _forward_lines(plan: ExportPlan, impute: bool) -> list[str]:
    lines = ["x = torch.where(torch.isnan(x), self.feature_fill, x)"] if impute else []
    lines.append("x = (x - self.feature_mean) / self.feature_std")
    inp = plan.input_id
    if any(inp in layer.sources for layer in plan.layers):
        lines.append(input_line(plan))
    for layer in plan.layers:
        name = layer_name(layer.id, layer.is_constant)
        if layer.is_constant:
            pre = f"self.{name}"
        elif len(layer.sources) == 1:
            pre = f"self.{name}(h{layer.sources[0]})"
        else:
            pre = f"self.{name}(torch.cat([{', '.join(f'h{s}' for s in layer.sources)}], dim=1))"
        value = ACTIVATION_CODE[layer.activation].format(pre)
        if layer.is_constant:
            value += ".expand(x.shape[0], -1)"
        if layer.role == "output":
            lines.append(f"return {value}  # node {layer.id}: output")
        else:
            lines.append(f"h{layer.id} = {value}  # node {layer.id}")
    return lines


def _step_lines(plan: ExportPlan, impute: bool) -> list[str]:
    """Return the body of a recurrent plan's ``step(x, state)``: one time step."""
    lines = ["x = torch.where(torch.isnan(x), self.feature_fill, x)"] if impute else []
    lines.append("x = (x - self.feature_mean) / self.feature_std")
    inp = plan.input_id
    reads_input = any(inp in layer.sources for layer in plan.layers)
    if reads_input or any(part.node == inp for part in plan.state):
        lines.append(input_line(plan))
    for part in plan.state:
        lines.append(
            f"prev{part.node} = state[:, {part.offset}:{part.offset + part.width}]"
            f"  # node {part.node} at t-1"
        )
    for layer in plan.layers:
        name = layer_name(layer.id, layer.is_constant)
        reads = [f"h{s}" for s in layer.sources] + [f"prev{s}" for s in layer.recurrent_sources]
        if layer.is_constant:
            pre = f"self.{name}"
        elif len(reads) == 1:
            pre = f"self.{name}({reads[0]})"
        else:
            pre = f"self.{name}(torch.cat([{', '.join(reads)}], dim=1))"
        value = ACTIVATION_CODE[layer.activation].format(pre)
        if layer.is_constant:
            value += ".expand(x.shape[0], -1)"
        role = ": output" if layer.role == "output" else ""
        lines.append(f"h{layer.id} = {value}  # node {layer.id}{role}")
    parts = [
        f"h{part.node}" if part.gate is None else f"h{part.node} * self.{gate_name(part.node)}"
        for part in plan.state
    ]
    if len(parts) == 1:
        lines.append(f"state = {parts[0]}")
    elif parts:
        lines.append(f"state = torch.cat([{', '.join(parts)}], dim=1)")
    lines.append(f"return h{plan.output_id}, state")
    return lines


_SEQUENCE_FORWARD = '''
    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the outputs at every step and the final state.

        ``x`` is (B, T, n_inputs) raw features; ``state`` the state before the first
        step, (B, STATE_SIZE), zeros if None. Returns ((B, T, n_outputs), (B, STATE_SIZE)).
        """
        if x.dim() != 3:
            raise ValueError(f"x should have shape (B, T, n_inputs), got {tuple(x.shape)}")
        if state is None:
            state = x.new_zeros(x.shape[0], STATE_SIZE)
        outputs = []
        for t in range(x.shape[1]):
            y, state = self.step(x[:, t], state)
            outputs.append(y)
        return torch.stack(outputs, dim=1), state
'''


def _state_constants(plan: ExportPlan) -> str:
    """Return the STATE_SIZE / STATE_LAYOUT lines of a recurrent plan's file ("" otherwise)."""
    if not plan.is_recurrent:
        return ""
    layout = ", ".join(f"({part.node}, {list(part.neurons)})" for part in plan.state)
    return (
        f"#: Values the state holds per sequence (forward's state, (B, STATE_SIZE)).\n"
        f"STATE_SIZE = {plan.state_size}\n"
        "#: The state, in order: (genome node id, the node's kept neuron indices); it holds\n"
        "#: gate * value for each, what the genome's state holds.\n"
        f"STATE_LAYOUT = [{layout}]\n"
    )


def _usage(plan: ExportPlan) -> str:
    x = "torch.as_tensor(features, dtype=torch.float32)"
    if not plan.is_recurrent:
        return f"    y = model({x})  # (B, {plan.n_inputs}) -> (B, {plan.n_outputs})"
    return (
        f"    y, state = model({x})  # (B, T, {plan.n_inputs}) -> (B, T, {plan.n_outputs})\n"
        f"    y2, state = model(more_features, state)  # carry on; state: (B, {plan.state_size})"
    )


_BUDGET_NOTE = """
Here the standardisation is folded into the weights of the layers reading the
input (weight / feature_std, bias - weight @ feature_mean / feature_std): the
buffers record the statistics, ``forward`` does not apply them again.

One network, many budgets: ``forward(x, budget)`` runs only the sub-network that
``budget`` in (0, 1] selects: the level with the fewest removals (skip edges, then
neurons) whose FLOPs are at most ``budget x`` the full network's (the smallest level
below that). Hidden neurons are stored most important first, so a level multiplies
the leading rows and columns of each weight and skips dropped nodes and the products
of the skip edges a level drops. With gradients on, a level runs on views of the
parameters (the module trains like any other); without, on contiguous copies made
the first time the level runs and rebuilt whenever a parameter changes in place
or moves (changes made through ``.data`` are not seen: use ``torch.no_grad()``).
The layers run neuron-major (a node's values are a (width, B) matrix, ``W @ h + b``:
faster on a CPU for narrow layers), so the output is a transposed view: shape
(B, n_outputs), not contiguous (``.contiguous()`` makes it so)."""

_BUDGET_USAGE = "\n    y = model(x, budget=0.25)  # the sub-network within a quarter of the FLOPs"

_LEVEL = '''
    def level(self, budget: float) -> int:
        """Return the index of the level ``budget`` selects (a row of LEVEL_WIDTHS)."""
        if not (budget > 0.0 and budget <= 1.0):
            raise ValueError("budget should be in (0, 1], got " + str(budget))
        return select_level(self.level_flops, budget)

'''


def _select_level_source() -> str:
    """``hybrid.export.budgets.select_level`` as the generated file defines it (it runs without hybrid)."""
    from .budgets import select_level  # budgets imports this module's neighbours: import at use

    return inspect.getsource(select_level).replace("Sequence[int]", "list[int]")


def _spread_source() -> str:
    """``spread`` of :mod:`hybrid.export.budgets`, as the generated file defines it."""
    from .budgets import spread  # budgets imports this module's neighbours: import at use

    return "\n\n" + inspect.getsource(spread)


def _cached_level_source() -> str:
    """``BudgetedNet.cached_level`` as the generated class defines it (TorchScript leaves it out)."""
    from .budgets import BudgetedNet  # budgets imports this module's neighbours: import at use

    return "\n    @torch.jit.unused\n" + inspect.getsource(BudgetedNet.cached_level)



def _optional_edges(budgets: BudgetPlan) -> list[tuple[int, int]]:
    """Return the plan's edges some level drops (``BudgetPlan.edges_off``), by layer then source."""
    off = set().union(*budgets.edges_off) if budgets.edges_off else set()
    return [(s, layer.id) for layer in budgets.plan.layers for s in layer.sources if (s, layer.id) in off]


def _budget_constants(budgets: BudgetPlan) -> str:
    """Return the LAYERS / LEVEL_FLOPS / LEVEL_WIDTHS (/ EDGES / LEVEL_EDGES) lines of a budgeted file."""
    layers = [layer.id for layer in budgets.plan.layers]
    rows = pprint.pformat([list(w) for w in budgets.widths], width=96, compact=True)
    text = (
        "#: Genome node of each layer, in the order of LEVEL_WIDTHS' columns (output last).\n"
        f"LAYERS = {layers}\n"
        "#: FLOPs per sample of each budget level, full network first (never increasing).\n"
        f"LEVEL_FLOPS = {pprint.pformat(list(budgets.level_flops), width=96, compact=True)}\n"
        "#: Kept neurons of each layer at each level (0: the node is skipped).\n"
        f"LEVEL_WIDTHS = {rows}\n"
    )
    edges = _optional_edges(budgets)
    if edges:
        on = [[e not in off for e in edges] for off in budgets.edges_off]
        text += (
            "#: (source, layer) edges that some levels drop (skip edges).\n"
            f"EDGES = {edges}\n"
            "#: Whether each of EDGES is computed at each level.\n"
            f"LEVEL_EDGES = {pprint.pformat(on, width=96, compact=True)}\n"
        )
    from .budgets import spreads_input  # budgets imports this module's neighbours: import at use

    return text + "\n\n" + _select_level_source() + (_spread_source() if spreads_input(budgets.plan) else "")


def _budget_sources(budgets: BudgetPlan, i: int) -> list[tuple[int, str, str]]:
    """Return, for layer ``i``'s sources: (source, weight columns, condition it is kept on).

    The columns are the source's block of the layer's weight (the level's prefix of a
    hidden source); the condition is "" when every level computing the layer keeps
    the block, else e.g. ``k5 > 0 and edges[0]``.
    """
    plan = budgets.plan
    layer = plan.layers[i]
    index = {la.id: j for j, la in enumerate(plan.layers)}
    flags = {e: j for j, e in enumerate(_optional_edges(budgets))}
    n_in = len(plan.input_index)
    out = []
    for s, at in zip(layer.sources, budgets.offsets[i], strict=True):
        if s == plan.input_id:
            cols = f"{at or ''}:{at + n_in}" if len(layer.sources) > 1 else ""
        else:
            cols = f":k{s}" if at == 0 else f"{at}:{at} + k{s}"
        src_kept = s == plan.input_id or all(w[index[s]] > 0 for w in budgets.widths if w[i] > 0)
        flag = flags.get((s, layer.id))
        conds = ([] if src_kept else [f"k{s} > 0"]) + ([] if flag is None else [f"edges[{flag}]"])
        out.append((s, cols, " and ".join(conds)))
    return out


def _optional(budgets: BudgetPlan, i: int) -> bool:
    """Whether some level skips layer ``i`` (its width there is 0)."""
    return min(w[i] for w in budgets.widths) == 0


def _budget_head_lines(budgets: BudgetPlan, widths: bool = True) -> list[str]:
    """The lines reading the level's widths (and computed edges) off ``at_level``."""
    lines = ["widths = self.level_widths[at_level]"] if widths else []
    if _optional_edges(budgets):
        lines.append("edges = self.level_edges[at_level]  # which of EDGES are computed")
    return lines


def _budget_weights_lines(budgets: BudgetPlan) -> list[str]:
    """Return the body of ``level_weights(at_level)``: each kept bias and weight block, by key."""
    from .budgets import spreads_input  # budgets imports this module's neighbours: import at use

    plan = budgets.plan
    inp = plan.input_id
    spread = spreads_input(plan)
    lines = [*_budget_head_lines(budgets), "w: dict[str, torch.Tensor] = {}"]
    for i, layer in enumerate(plan.layers):
        name = layer_name(layer.id, layer.is_constant)
        k = f"k{layer.id}"
        lines.append(f"# node {layer.id}: {layer.role} {layer.activation}, {_neurons(layer)}")
        lines.append(f"{k} = widths[{i}]")
        if layer.is_constant:
            body = [f'w["{layer.id}"] = self.{name}[:{k}, None]']
        else:
            body = [f'w["{layer.id}"] = self.{name}.bias[:{k}, None]']
            for s, cols, cond in _budget_sources(budgets, i):
                block = f"self.{name}.weight[:{k}, {cols}]" if cols else f"self.{name}.weight[:{k}]"
                if s == inp and spread:
                    block = f"spread({block}, self.input_index, {plan.n_inputs})"
                line = f'w["{s}->{layer.id}"] = {block}'
                body += [f"if {cond}:", f"    {line}"] if cond else [line]
        if _optional(budgets, i):
            lines.append(f"if {k} > 0:")
            body = [f"    {line}" for line in body]
        lines += body
    return [*lines, "return w"]


def _budget_forward_lines(budgets: BudgetPlan, impute: bool) -> list[str]:
    """Return the body of a budgeted plan's ``forward(x, budget)``: one block per node."""
    from .budgets import spreads_input  # budgets imports this module's neighbours: import at use

    plan = budgets.plan
    optional = [_optional(budgets, i) for i in range(len(plan.layers))]
    lines = [
        "if torch.jit.is_scripting() or torch.is_grad_enabled():",
        "    at_level = self.level(budget)",
        "    w = self.level_weights(at_level)  # views of the parameters: gradients reach them",
        "else:",
        "    at_level, w = self.cached_level(budget)  # contiguous copies, rebuilt when a parameter changes",
        *_budget_head_lines(budgets, widths=any(optional)),
    ]
    if impute:
        lines.append("x = torch.where(torch.isnan(x), self.feature_fill, x)")
    lines.append("# (x - feature_mean) / feature_std is folded into the weights of the layers reading x")
    inp = plan.input_id
    if any(inp in layer.sources for layer in plan.layers):
        kept, n = len(plan.input_index), plan.n_inputs
        if spreads_input(plan):
            read = f"x.t()  # node {inp}: input, {kept} of {n} features (the others meet zero weights)"
        elif plan.keeps_all_inputs:
            read = f"x.t()  # node {inp}: input, {kept} features"
        else:
            read = f"x.index_select(1, self.input_index).t()  # node {inp}: input, {kept} of {n} features"
        lines.append("# neuron-major: each node's values are a (width, B) matrix, W @ h + b")
        lines.append(f"h{inp} = {read}")
    for i, layer in enumerate(plan.layers):
        k = f"k{layer.id}"
        lines.append(
            f"# node {layer.id}: {layer.role} {layer.activation}, {_neurons(layer)}; "
            f"{_reads(layer, inp)}"
        )
        if optional[i]:  # the weights hold only what the level computes: k is read by the ifs alone
            lines.append(f"{k} = widths[{i}]")
        bias = f'w["{layer.id}"]'
        body = []
        sources = [] if layer.is_constant else _budget_sources(budgets, i)
        first = next((s for s, _, cond in sources if not cond), None)
        if first is None:
            body.append(f"pre = {bias}.expand(-1, x.shape[0])")
        else:
            body.append(f'pre = torch.addmm({bias}, w["{first}->{layer.id}"], h{first})')
        for s, _, cond in sources:
            if s == first:
                continue
            add = f'pre = torch.addmm(pre, w["{s}->{layer.id}"], h{s})'
            body += [f"if {cond}:  # node {s} -> {layer.id} is kept", f"    {add}"] if cond else [add]
        value = ACTIVATION_CODE[layer.activation].format("pre")
        if layer.role == "output":
            lines += body
            value = value if value == "pre" else f"({value})"
            lines.append(f"return {value}.t()  # node {layer.id}: output, back to (B, n_outputs) (a view)")
        elif optional[i]:
            lines.append(f"h{layer.id} = x  # a placeholder where node {layer.id} is skipped ({k} == 0)")
            lines.append(f"if {k} > 0:")
            lines += [f"    {line}" for line in body]
            lines.append(f"    h{layer.id} = {value}")
        else:
            lines += body
            lines.append(f"h{layer.id} = {value}")
    return lines


def render_python(
    plan: ExportPlan,
    *,
    weights: str,
    title: str,
    class_labels: Sequence[Any] = (),
    outputs: str = "raw outputs",
    impute: bool = False,
    table: bool = False,
    budgets: BudgetPlan | None = None,
    adaptive: AdaptiveExport | None = None,
) -> str:
    """Return the source of a standalone module file computing ``plan``'s network.

    Args:
        plan: the folded network.
        weights: file name of the state_dict saved next to the generated file.
        title: the docstring's first line (which genome, from which run).
        class_labels: JSON-ready labels, one per output, or empty.
        outputs: what the outputs are, for the docstring (e.g. "logits").
        impute: the module fills NaN features from a ``feature_fill`` buffer first.
        table: the task was a table: the docstring points to ``preprocess.py``.
        budgets: the budgeted plan (its ``plan`` is ``plan``): the class's
            ``forward(x, budget=1.0)`` runs the level ``budget`` selects.
        adaptive: the adaptive plan (its ``plan`` is ``plan``): the class runs
            exits and skip gates with data-dependent control flow and has
            ``forward_flops(x)``.

    Returns:
        Python source that imports only torch.

    Every value from outside (title, labels, file name) enters the source as an
    escaped literal, never as raw text.

    Raises:
        KeyError: for an activation with no entry in ``ACTIVATION_CODE``.
        ValueError: for a class label with no Python literal (NaN, inf, not a
            string or number), or an adaptive plan without ``adaptive``.
    """
    from . import adaptive as adaptive_source  # it imports this module: import at use

    if plan.is_adaptive and adaptive is None:
        raise ValueError(
            "the plan has exit heads or skip gates: pass adaptive=plan_adaptive(genome, gate)"
        )

    missing = {layer.activation for layer in (*plan.layers, *plan.exits)} - ACTIVATION_CODE.keys()
    if missing:
        raise KeyError(f"no source for activation(s) {sorted(missing)} in ACTIVATION_CODE")
    uses_functional = budgets is not None or any(
        "F." in ACTIVATION_CODE[layer.activation] for layer in plan.layers
    )
    head = _HEADER.format(
        title=_docstring_text(title),
        version=__version__,
        n_parameters=plan.n_parameters,
        gate=plan.gate,
        outputs=outputs,
        weights=json.dumps(weights),
        weights_name=_docstring_text(weights),
        n_inputs=plan.n_inputs,
        n_outputs=plan.n_outputs,
        class_labels=", ".join(_literal(v) for v in class_labels),
        functional="import torch.nn.functional as F\n" if uses_functional else "",
        impute_note=("\nA missing feature (NaN) is replaced by ``feature_fill`` first." if impute else "")
        + (
            "\nRaw table rows (text categories included) become features with\n"
            "``preprocess.encode(rows)`` from ``preprocess.py`` next to this file."
            if table
            else ""
        )
        + (
            "\n\nThe network is recurrent: it runs over time, one ``step`` per position of\n"
            "the sequence, carrying a state of STATE_SIZE values (STATE_LAYOUT)."
            if plan.is_recurrent
            else ""
        )
        + (_BUDGET_NOTE if budgets is not None else "")
        + (adaptive_source.ADAPTIVE_NOTE if adaptive is not None else ""),
        usage=_usage(plan)
        + (_BUDGET_USAGE if budgets is not None else "")
        + (adaptive_source.ADAPTIVE_USAGE if adaptive is not None else ""),
        state_constants=(
            _budget_constants(budgets)
            if budgets is not None
            else adaptive_source.adaptive_constants(adaptive)
            if adaptive is not None
            else _state_constants(plan)
        ),
    )
    if plan.is_recurrent:
        size = plan.state_size
        shape = (
            f"        Input: (B, T, {plan.n_inputs}) raw features and a state (B, {size}) or None.",
            f"        Output: (B, T, {plan.n_outputs}) and the final state (B, {size}).",
        )
        body = [
            "",
            "    def step(",
            "        self, x: torch.Tensor, state: torch.Tensor",
            "    ) -> tuple[torch.Tensor, torch.Tensor]:",
            '        """Return one step from raw x (B, n_inputs): outputs and the new state."""',
            *(f"        {line}" for line in _step_lines(plan, impute)),
            *_SEQUENCE_FORWARD.rstrip("\n").split("\n"),
        ]
    elif budgets is not None:
        shape = (
            f"        Input: (B, {plan.n_inputs}) raw features and a budget in (0, 1]. "
            f"Output: (B, {plan.n_outputs}).",
        )
        body = [
            *_LEVEL.rstrip("\n").split("\n"),
            *_cached_level_source().rstrip("\n").split("\n"),
            "",
            "    def level_weights(self, at_level: int) -> dict[str, torch.Tensor]:",
            '        """Return the level\'s biases (k, 1) and weight blocks (k, source width), for addmm(b, W, h)."""',
            *(f"        {line}" for line in _budget_weights_lines(budgets)),
            "",
            "    def forward(self, x: torch.Tensor, budget: float = 1.0) -> torch.Tensor:",
            '        """Return the outputs of the sub-network ``budget`` selects, for raw x (B, n_inputs)."""',
            *(f"        {line}" for line in _budget_forward_lines(budgets, impute)),
        ]
    elif adaptive is not None:
        shape = (
            f"        Input: (B, {plan.n_inputs}) raw features. Output: (B, {plan.n_outputs}), each "
            "sample's output under the exit rule.",
        )
        body = [
            "",
            "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
            '        """Return the outputs for raw features ``x`` of shape (B, n_inputs)."""',
            "        return self.forward_flops(x)[0]",
            "",
            "    @torch.jit.export",
            "    def forward_flops(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:",
            '        """Return the outputs (B, n_outputs) and the FLOPs each sample ran (B,) int64."""',
            *(f"        {line}" for line in adaptive_source.adaptive_forward_lines(adaptive, impute)),
        ]
    else:
        shape = (
            f"        Input: (B, {plan.n_inputs}) raw features. Output: (B, {plan.n_outputs}).",
        )
        body = [
            "",
            "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
            '        """Return the outputs for raw features ``x`` of shape (B, n_inputs)."""',
            *(f"        {line}" for line in _forward_lines(plan, impute)),
        ]
    cls = [
        "class ExportedNet(nn.Module):",
        '    """The exported network; attribute ``node<id>`` is genome node <id>.',
        "",
        "    Shape:",
        *shape,
        '    """',
        "",
        "    def __init__(self) -> None:",
        "        super().__init__()",
        *(f"        {line}" for line in _init_lines(plan, impute)),
        *(
            f"        {line}"
            for line in (adaptive_source.adaptive_init_lines(adaptive) if adaptive is not None else [])
        ),
        *(
            [
                "        # The budget levels (see LEVEL_FLOPS and LEVEL_WIDTHS).",
                "        self.level_flops = LEVEL_FLOPS",
                "        self.level_widths = LEVEL_WIDTHS",
                *(["        self.level_edges = LEVEL_EDGES"] if _optional_edges(budgets) else []),
            ]
            if budgets is not None
            else []
        ),
        *body,
    ]
    return head + "\n" + "\n".join(cls) + "\n" + _LOAD
