"""Write an exported genome to disk in one of four formats, plus a JSON sidecar.

Formats (``FORMATS``; every file is loadable without hybrid):

* ``python``: ``<name>.py``, a readable module defining ``ExportedNet`` and
  ``load()`` (needs only torch), and ``<stem>.state_dict.pt``, its weights
  (``torch.load(..., weights_only=True)``).
* ``torchscript``: ``<name>.pt`` from ``torch.jit.trace`` (``torch.jit.load``).
* ``pt2``: ``<name>.pt2`` from ``torch.export.export`` with a dynamic batch
  dimension (``torch.export.load(path).module()``).
* ``onnx``: ``<name>.onnx`` from the dynamo ONNX exporter, input ``x``, output
  ``y``, dynamic batch. Needs the ``onnx`` extra.

Every module takes raw features and standardises them itself (filling missing
features first when the sidecar has ``feature_fill``).

A recurrent genome (``genomes.state_layout`` not empty) exports a module over
time: input ``x`` (B, T, F) and a state (B, S), output ``(y (B, T, n_out),
final_state (B, S))``, batch and T both dynamic. ``python`` loops ``step`` over T
in plain code and ``torchscript`` is a scripted loop over a traced step (both take
``state=None`` for zeros); ``pt2`` and ``onnx`` are one
``torch._higher_order_ops.scan`` over T (an ONNX ``Scan``; inputs ``x``,
``state``, outputs ``y``, ``final_state``), whose ``state`` input is required
(zeros to start). The sidecar's ``state`` says what S is.

With ``budgets`` (feed-forward genomes; :mod:`hybrid.export.budgets`), ``python``
and ``torchscript`` write one module whose ``forward(x, budget=1.0)`` runs only the
sub-network ``budget`` selects (every level of the budget chain is in the file, on
views of the full weights); ``pt2`` and ``onnx`` write one file per listed budget,
``<stem>.b<budget><suffix>`` (``model.b0.25.onnx``), each that budget's plain
sub-network. The sidecar (``<name>.json`` of the requested name) then has
``budgets`` (per listed budget: ``budget``, ``level``, ``removed`` (removals: skip edges and neurons), ``flops``,
``flops_share``, ``n_parameters``, ``file`` for per-budget formats, and the scores
a run export adds) and ``budget_levels`` (``count``, ``flops`` of every level,
``min_budget``, ``rule``). Without budgets nothing changes.

An adaptive genome (exit heads and skip gates, ``genomes.adaptive``;
:mod:`hybrid.export.adaptive`) exports its per-input control flow in ``python`` and
``torchscript`` (``forward(x)`` stops each sample at the first exit sure enough,
runs a skip-gated node only where its gate opens; ``forward_flops(x)`` returns
``(outputs, flops)``). ``pt2`` and ``onnx`` have static graphs: they compute every
path for every sample and select each sample's output (same outputs, full cost),
and are written only when asked for with ``all_paths=True`` (``hybrid export
--all-paths``). ``thresholds`` overrides the exits' thresholds. The sidecar then has
``adaptive``: ``exits`` (stage order), ``thresholds``, ``skip_gates``, ``stages``,
``control_flow`` (``"data-dependent"`` or ``"all-paths"``), ``full_flops``,
``rule`` and ``flops``.

An export of a table task (the sidecar has an ``encoding``) also writes
``preprocess.py`` beside the module: a copy of :mod:`hybrid.tasks.preprocess`
with the run's encoding, whose ``encode(rows)`` turns raw rows (text categories,
missing values) into the module's input without hybrid. Each export also writes ``<name>.json``, the
sidecar: whatever the caller passed (``genome_id``, ``run``, ``task``,
``class_labels``, ``metrics``, ``encoding``, ...) plus ``format``,
``export_format``, ``files``, ``gate``, ``n_inputs``, ``n_outputs``,
``n_parameters``, ``feature_mean``, ``feature_std``, ``feature_fill`` (when the
module fills missing values), for a recurrent genome ``state`` (see
:func:`state_info`), for a genome with sparse edges ``sparse`` (the module's dense
matrices hold the absent connections as zeros: ``stored_weights``,
``absent_connections``), and the versions used.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import pprint
import sys
import tempfile
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch._higher_order_ops import scan

from genomes import GATE_KINDS, Genome, GenomeError
from genomes.adaptive import exit_nodes, is_adaptive
from genomes.budgets import check_budgets
from genomes.serialize import atomic_write

from .. import __version__
from ..errors import HybridError
from .adaptive import AdaptiveExport, AdaptiveNet, AllPathsNet, adaptive_info, plan_adaptive
from .budgets import BudgetedNet, BudgetPlan, budget_file_tag, level_plan, plan_budgets
from .codegen import render_python
from .module import ExportedNet, RecurrentExportedNet, exported_net
from .plan import ExportPlan, plan_export

__all__ = [
    "FORMATS",
    "PREPROCESS_FILE",
    "SIDECAR_FORMAT",
    "ExportError",
    "ExportResult",
    "export_genome",
    "preprocess_source",
    "state_info",
]

SIDECAR_FORMAT = "hybrid.export"
ONNX_INSTALL = 'pip install -c constraints.txt -e ".[onnx]"'


class ExportError(HybridError):
    """An export cannot be written: unknown format, missing extra, bad sidecar."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        format: the format name.
        path: the main file (the module, program or model).
        files: every file written, the main one first and the sidecar last.
        n_parameters: parameters of the exported module.
        sidecar: the JSON sidecar's content.
    """

    format: str
    path: Path
    files: tuple[Path, ...]
    n_parameters: int
    sidecar: dict[str, Any]


Writer = Callable[[ExportedNet, ExportPlan, Path, Mapping[str, Any]], list[Path]]


def _save_bytes(path: Path, save: Callable[[io.BytesIO], Any]) -> None:
    buf = io.BytesIO()
    save(buf)
    atomic_write(path, buf.getvalue())


def _example(plan: ExportPlan) -> torch.Tensor:
    # Batch 2: torch.export specialises sizes 0 and 1, so a dynamic batch needs >= 2.
    return torch.zeros(2, plan.n_inputs)


def _python_source(
    net: ExportedNet,
    plan: ExportPlan,
    weights: str,
    sidecar: Mapping[str, Any],
    budgets: BudgetPlan | None = None,
    adaptive: AdaptiveExport | None = None,
) -> str:
    task = sidecar.get("task") or {}
    run = sidecar.get("run") or {}
    run_name = run.get("name") if isinstance(run, Mapping) else run
    genome_id = sidecar.get("genome_id")
    title = "A genome" if genome_id is None else f"Genome {genome_id!r}"
    if run_name:
        title += f" of run {run_name!r}"
    if task.get("name"):
        title += f", task {task['name']!r}"
    return render_python(
        plan,
        weights=weights,
        title=title + ".",
        class_labels=sidecar.get("class_labels") or (),
        outputs="logits" if task.get("kind") == "classification" else "raw outputs",
        impute=net.imputes,
        table=bool(sidecar.get("encoding")),
        budgets=budgets,
        adaptive=adaptive,
    )


def _write_python(
    net: ExportedNet, plan: ExportPlan, path: Path, sidecar: Mapping[str, Any]
) -> list[Path]:
    weights = path.with_name(f"{path.stem}.state_dict.pt")
    _save_bytes(weights, lambda f: torch.save(net.state_dict(), f))
    atomic_write(path, _python_source(net, plan, weights.name, sidecar))
    return [path, weights]


def _write_budgeted_python(
    net: BudgetedNet, budgets: BudgetPlan, path: Path, sidecar: Mapping[str, Any]
) -> list[Path]:
    """Write the budgeted module's source and weights (``forward(x, budget=1.0)``)."""
    weights = path.with_name(f"{path.stem}.state_dict.pt")
    _save_bytes(weights, lambda f: torch.save(net.state_dict(), f))
    atomic_write(path, _python_source(net, budgets.plan, weights.name, sidecar, budgets))
    return [path, weights]


def _write_budgeted_torchscript(
    net: BudgetedNet, budgets: BudgetPlan, path: Path, sidecar: Mapping[str, Any]
) -> list[Path]:
    """Script the generated budgeted class (the python format's) with the weights; save it."""
    return _write_scripted(net, _python_source(net, budgets.plan, "unused", sidecar, budgets), path)


def _write_scripted(net: torch.nn.Module, text: str, path: Path) -> list[Path]:
    """Script the generated class of ``text`` (python format source) holding ``net``'s weights; save it.

    ``torch.jit.script`` reads the class's source, so the source is written to a
    temporary file and imported from there while scripting.
    """
    name = f"_hybrid_scripted_{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"{name}.py"
        source.write_text(text)
        spec = importlib.util.spec_from_file_location(name, source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
            model = module.ExportedNet()
            model.load_state_dict(net.state_dict())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit: asked for
                scripted = torch.jit.script(model.eval())
                _save_bytes(path, lambda f: torch.jit.save(scripted, f))
        finally:
            del sys.modules[name]
    return [path]


def _write_torchscript(
    net: ExportedNet, plan: ExportPlan, path: Path, sidecar: Mapping[str, Any]
) -> list[Path]:
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export; the format was asked for.
        warnings.simplefilter("ignore", DeprecationWarning)
        if isinstance(net, RecurrentExportedNet):
            cell = torch.jit.trace(_StepCell(net), _step_example(plan))
            traced = torch.jit.script(_ScriptedSequence(cell, plan.n_inputs, plan.state_size))
        else:
            traced = torch.jit.trace(net, _example(plan))
        _save_bytes(path, lambda f: torch.jit.save(traced, f))
    return [path]


class _StepCell(torch.nn.Module):
    """``net.step`` as a module's forward, for ``torch.jit.trace``."""

    def __init__(self, net: RecurrentExportedNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.step(x, state)


class _ScriptedSequence(torch.nn.Module):
    """A traced step looped over time; compiled by ``torch.jit.script`` (T stays dynamic)."""

    def __init__(self, cell: torch.nn.Module, n_inputs: int, state_size: int) -> None:
        super().__init__()
        self.cell = cell
        self.n_inputs = n_inputs
        self.state_size = state_size

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3 or x.size(2) != self.n_inputs:
            raise ValueError("x should have shape (B, T, n_inputs)")
        if state is None:
            state = torch.zeros(x.size(0), self.state_size, dtype=x.dtype, device=x.device)
        elif state.dim() != 2 or state.size(0) != x.size(0) or state.size(1) != self.state_size:
            raise ValueError("state should have shape (B, state_size)")
        outputs: list[torch.Tensor] = []
        for t in range(x.size(1)):
            y, state = self.cell(x[:, t], state)
            outputs.append(y)
        return torch.stack(outputs, dim=1), state


class _ScanSequence(torch.nn.Module):
    """``net.step`` scanned over the time axis, the form ``torch.export`` keeps with T dynamic."""

    def __init__(self, net: RecurrentExportedNet) -> None:
        super().__init__()
        self.net = net

    def _combine(self, state: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, new_state = self.net.step(x, state)
        return new_state.clone(), y.clone()  # scan forbids outputs aliasing inputs or each other

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Time-major in and out, axes moved here: torch 2.11's scan stacked the outputs
        # along dim 0 whatever its `dim` (2.13 moves them back), so (T, B) came out.
        final_state, y = scan(self._combine, state, x.movedim(1, 0))
        return y.movedim(0, 1), final_state


def _step_example(plan: ExportPlan) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(2, plan.n_inputs), torch.zeros(2, plan.state_size)


def _exported_program(net: ExportedNet, plan: ExportPlan) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1)
    if not isinstance(net, RecurrentExportedNet):
        return torch.export.export(net, (_example(plan),), dynamic_shapes={"x": {0: batch}})
    # Example T = 3 (not 0 or 1, which torch.export would specialise).
    steps = torch.export.Dim("steps", min=1)
    example = (torch.zeros(2, 3, plan.n_inputs), torch.zeros(2, plan.state_size))
    dynamic = {"x": {0: batch, 1: steps}, "state": {0: batch}}
    with warnings.catch_warnings():
        # Tracing scan touches torch.jit.script_method inside torch: its warning, not ours.
        warnings.filterwarnings(
            "ignore", "`torch.jit.script_method` is deprecated", DeprecationWarning
        )
        return torch.export.export(_ScanSequence(net), example, dynamic_shapes=dynamic)


def _write_pt2(
    net: ExportedNet, plan: ExportPlan, path: Path, sidecar: Mapping[str, Any]
) -> list[Path]:
    program = _exported_program(net, plan)
    _save_bytes(path, lambda f: torch.export.save(program, f))
    return [path]


def _write_onnx(
    net: ExportedNet, plan: ExportPlan, path: Path, sidecar: Mapping[str, Any]
) -> list[Path]:
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(
            f"{path}: format 'onnx' needs {' and '.join(missing)} (the onnx extra): {ONNX_INSTALL}"
        )
    names = (["x", "state"], ["y", "final_state"]) if plan.is_recurrent else (["x"], ["y"])
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The exporter logs optional torchvision ops it skips and torch-internal
        # deprecations: noise for someone exporting a small MLP.
        warnings.simplefilter("ignore", FutureWarning)
        logger.setLevel(logging.ERROR)
        model = Path(tmp) / path.name
        try:
            program = _exported_program(net, plan)
            torch.onnx.export(
                program,
                f=str(model),
                input_names=names[0],
                output_names=names[1],
                external_data=False,
                verbose=False,
            )
        finally:
            logger.setLevel(level)
        atomic_write(path, model.read_bytes())
    return [path]


#: Format name -> (file suffix, writer). Tests run over every entry.
FORMATS: dict[str, tuple[str, Writer]] = {
    "python": (".py", _write_python),
    "torchscript": (".pt", _write_torchscript),
    "pt2": (".pt2", _write_pt2),
    "onnx": (".onnx", _write_onnx),
}


#: The line of hybrid.tasks.preprocess that an export fills with the run's encoding.
_ENCODING_LINE = "ENCODING: dict[str, Any] | None = None\n"
PREPROCESS_FILE = "preprocess.py"


def preprocess_source(encoding: Mapping[str, Any]) -> str:
    """Return ``preprocess.py``: :mod:`hybrid.tasks.preprocess` holding ``encoding``.

    The encoding enters the source as a Python literal (strings, numbers, None).
    """
    from ..tasks import preprocess

    source = Path(preprocess.__file__).read_text(encoding="utf-8")
    assert source.count(_ENCODING_LINE) == 1, "hybrid.tasks.preprocess lost its ENCODING line"
    literal = pprint.pformat(dict(encoding), width=96, sort_dicts=False)
    return source.replace(_ENCODING_LINE, f"ENCODING: dict[str, Any] | None = {literal}\n")


def _sparse_info(plan: ExportPlan) -> dict[str, Any]:
    """``sparse`` for a plan with sparse edges (``mutation.sparsify``), else nothing.

    ``stored_weights``: weight entries the module holds (its dense matrices);
    ``absent_connections``: those that are zeros standing for no connection, so
    ``n_parameters`` = stored weights + biases - absent connections.
    """
    parts = (*plan.layers, *plan.exits)
    absent = sum(int(layer.weight.size) - layer.n_weights for layer in parts)
    if not absent:
        return {}
    stored = sum(int(layer.weight.size) for layer in parts)
    return {"sparse": {"stored_weights": stored, "absent_connections": absent}}


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def _check_sidecar(genome: Genome, sidecar: Mapping[str, Any], where: Path) -> None:
    for key, value in (("n_inputs", genome.n_inputs), ("n_outputs", genome.n_outputs)):
        if key in sidecar and sidecar[key] != value:
            raise ExportError(
                f"{where}: sidecar {key} is {sidecar[key]!r} but the genome has {value}"
            )
    for name, array in genome.iter_arrays():
        if not np.isfinite(array).all():
            raise ExportError(f"{where}: genome array {name} holds NaN or inf; a module made from it would too")
    labels = sidecar.get("class_labels") or []
    for label in labels:
        if isinstance(label, bool) or not isinstance(label, str | int | float) or (
            isinstance(label, float) and not np.isfinite(label)
        ):
            raise ExportError(f"{where}: class label {label!r} should be a string or a finite number")
    if labels and len(labels) != genome.n_outputs:
        raise ExportError(
            f"{where}: class_labels should have {genome.n_outputs} entries (one per output), got {len(labels)}"
        )
    encoding = sidecar.get("encoding")
    if encoding:
        width = sum(
            1 if c["kind"] == "numeric" else len(c["categories"]) for c in encoding["columns"]
        )
        if width != genome.n_inputs:
            raise ExportError(
                f"{where}: sidecar encoding describes {width} inputs but the genome has {genome.n_inputs}"
            )


def state_info(plan: ExportPlan, fmt: str) -> dict[str, Any]:
    """Return the sidecar's ``state`` entry of a recurrent plan: what the state is.

    Keys: ``size`` (S), ``layout`` (one entry per node, in state order: ``node``,
    ``neurons`` (kept neuron indices), ``offset`` (first column in the state),
    ``genome_offset`` (first column of the node in the genome's state), ``gated``
    (the stored value carries the node's neuron gates)), ``genome_size``
    (``genomes.state_size``), ``genome_index`` (the genome state's column of each
    exported column), ``holds`` and ``initial`` (sentences).
    """
    return {
        "size": plan.state_size,
        "layout": [
            {
                "node": part.node,
                "neurons": list(part.neurons),
                "offset": part.offset,
                "genome_offset": part.genome_offset,
                "gated": part.gate is not None,
            }
            for part in plan.state
        ],
        "genome_size": plan.genome_state_size,
        "genome_index": list(plan.state_index),
        "holds": (
            "per sequence, the previous step's h = gate * value of each kept neuron of every "
            "node a live recurrent edge reads, by node id: the genome's state "
            "(genomes.evaluate_sequence) at genome_index; the genome's other columns (closed "
            "neurons, nodes no live recurrent edge reads) cannot change the outputs from a "
            "state the genome produced"
        ),
        "initial": (
            "state=None starts from zeros"
            if fmt in ("python", "torchscript")
            else "the state input is required: zeros (B, size) to start"
        ),
    }


def export_genome(
    genome: Genome,
    out_path: str | os.PathLike[str],
    fmt: str = "python",
    gate: str = "sigmoid",
    sidecar: Mapping[str, Any] | None = None,
    budgets: Sequence[float] | None = None,
    budget_metrics: Sequence[Mapping[str, Any]] | None = None,
    all_paths: bool = False,
    thresholds: float | Mapping[int, float] | None = None,
) -> ExportResult:
    """Export ``genome`` as a module file of format ``fmt``, plus its JSON sidecar.

    Args:
        genome: a valid genome (only read).
        out_path: the main file to write; its suffix must be the format's
            (``.py``, ``.pt``, ``.pt2``, ``.onnx``). Folders are created.
        fmt: a key of ``FORMATS``.
        gate: gate kind whose deterministic values are folded into the weights.
        sidecar: facts to record in the sidecar (JSON-ready, numpy allowed). Its
            ``feature_mean`` and ``feature_std`` (if given) are also built into the
            module, which then takes raw features.
        budgets: None (the default: today's export, unchanged), or budgets in
            (0, 1], strictly increasing, of a feed-forward genome
            (:mod:`hybrid.export.budgets`). ``python`` and ``torchscript`` write
            one module whose ``forward(x, budget=1.0)`` runs the sub-network
            ``budget`` selects (every level is in it); ``pt2`` and ``onnx`` write
            one file per budget, ``<stem>.b<budget><suffix>`` (e.g.
            ``model.b0.25.onnx``), computing that budget's sub-network. The sidecar's
            ``budgets`` describes each listed budget's level.
        budget_metrics: with ``budgets``, one mapping per budget merged into its
            sidecar entry (e.g. ``val_metric``, ``test_metric``).
        all_paths: for an adaptive genome (exits or skip gates,
            :mod:`hybrid.export.adaptive`) in ``pt2`` or ``onnx``: write the
            module that computes every path for every sample and selects each
            sample's output (same outputs, full cost). Without it those formats
            refuse an adaptive genome. ``python`` and ``torchscript`` always run
            the data-dependent control flow (a sample computes only what it reaches).
        thresholds: exit thresholds to export instead of the genome's: one value
            in (0, 1] for every exit, or values by exit node id.

    Returns:
        What was written. With budgets in ``pt2``/``onnx``, ``path`` is the
        largest budget's file; ``n_parameters`` is the full network's.

    Raises:
        ExportError: for an unknown format or gate, a suffix that does not match,
            statistics or labels that do not fit the genome, a missing extra,
            budgets that are not in (0, 1] and strictly increasing, budgets for
            a recurrent or adaptive genome, an adaptive genome in ``pt2``/``onnx``
            without ``all_paths``, or thresholds outside (0, 1] or for a genome
            without exits.
    """
    path = Path(out_path)
    if fmt not in FORMATS:
        raise ExportError(f"{path}: format should be one of {sorted(FORMATS)}, got {fmt!r}")
    if gate not in GATE_KINDS:
        raise ExportError(f"{path}: gate should be one of {GATE_KINDS}, got {gate!r}")
    suffix, writer = FORMATS[fmt]
    if path.suffix != suffix:
        raise ExportError(f"{path}: a {fmt} export should end in {suffix!r}")
    sidecar = dict(sidecar or {})
    _check_sidecar(genome, sidecar, path)
    if is_adaptive(genome) or thresholds is not None:
        if budgets is not None:
            raise ExportError(
                f"{path}: budgets are for genomes without exits or skip gates; export it without budgets"
            )
        return _export_adaptive(genome, path, fmt, gate, sidecar, all_paths, thresholds)
    if budgets is not None:
        return _export_budgets(genome, path, fmt, gate, sidecar, budgets, budget_metrics)
    plan = plan_export(genome, gate)
    try:
        net = exported_net(
            plan,
            sidecar.get("feature_mean"),
            sidecar.get("feature_std"),
            sidecar.get("feature_fill"),
        )
    except ValueError as exc:
        raise ExportError(f"{path}: {exc}") from None
    net.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    files = writer(net, plan, path, sidecar)
    return _finish(net, plan, fmt, gate, path, files, sidecar)


def _finish(
    net: ExportedNet,
    plan: ExportPlan,
    fmt: str,
    gate: str,
    path: Path,
    files: list[Path],
    sidecar: dict[str, Any],
    extra: Mapping[str, Any] | None = None,
    main: Path | None = None,
) -> ExportResult:
    """Write ``preprocess.py`` (tables) and the sidecar ``<path>.json``; return the result."""
    if sidecar.get("encoding"):
        pre = path.with_name(PREPROCESS_FILE)
        atomic_write(pre, preprocess_source(sidecar["encoding"]))
        files.append(pre)
    fill = {}
    if net.imputes:  # NaN (no fill) is not JSON: null
        fill = {"feature_fill": [None if v != v else v for v in net.feature_fill.tolist()]}
    info = {
        "format": SIDECAR_FORMAT,
        "version": 1,
        "export_format": fmt,
        "files": [f.name for f in files],
        **sidecar,
        "gate": gate,
        "n_inputs": plan.n_inputs,
        "n_outputs": plan.n_outputs,
        "n_parameters": plan.n_parameters,
        **_sparse_info(plan),
        "input": (
            ("sequences (B, T, n_inputs) of " if plan.is_recurrent else "")
            + "raw features: the module computes (x - feature_mean) / feature_std first"
            + (" at every step" if plan.is_recurrent else "")
            + ("; NaN features are replaced by feature_fill (null: none) before" if net.imputes else "")
            + ("; raw table rows become features with preprocess.encode(rows)" if sidecar.get("encoding") else "")
            + ((extra or {}).get("input_note") or "")
        ),
        **({"state": state_info(plan, fmt)} if plan.is_recurrent else {}),
        "feature_mean": net.feature_mean.tolist(),
        "feature_std": net.feature_std.tolist(),
        **fill,
        "class_labels": list(sidecar.get("class_labels") or []),
        "hybrid_version": __version__,
        "torch_version": torch.__version__,
        **{k: v for k, v in (extra or {}).items() if k != "input_note"},
    }
    side = path.with_name(path.name + ".json")
    atomic_write(side, json.dumps(info, indent=1, default=_jsonable) + "\n")
    return ExportResult(fmt, main or path, (*files, side), plan.n_parameters, info)


def _export_budgets(
    genome: Genome,
    path: Path,
    fmt: str,
    gate: str,
    sidecar: dict[str, Any],
    budgets: Sequence[float],
    budget_metrics: Sequence[Mapping[str, Any]] | None,
) -> ExportResult:
    """``export_genome`` with budgets (see there): the budgeted module or one file per budget."""
    try:
        listed = check_budgets(budgets)
    except GenomeError as exc:
        raise ExportError(f"{path}: {exc}") from None
    if budget_metrics is not None and len(budget_metrics) != len(listed):
        raise ExportError(
            f"{path}: budget_metrics should have {len(listed)} entries (one per budget), "
            f"got {len(budget_metrics)}"
        )
    if genome.is_recurrent or genome.state_size:
        raise ExportError(
            f"{path}: budgets are for feed-forward genomes; this genome has recurrent edges "
            "(export it without budgets)"
        )
    try:
        bp = plan_budgets(genome, gate)
    except GenomeError as exc:
        raise ExportError(f"{path}: {exc}") from None
    stats = (sidecar.get("feature_mean"), sidecar.get("feature_std"), sidecar.get("feature_fill"))
    try:
        net = BudgetedNet(bp, *stats, listed=listed).eval()
    except ValueError as exc:
        raise ExportError(f"{path}: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    full = bp.level_flops[0]
    entries = []
    files: list[Path] = []
    for i, b in enumerate(listed):
        index = bp.level(b)
        level = bp.levels[index]
        entry: dict[str, Any] = {
            "budget": b,
            "level": index,
            "removed": level.removed,
            "flops": level.flops,
            "flops_share": level.flops / full if full else 1.0,
            "n_parameters": level.n_parameters,
        }
        if fmt in _PER_BUDGET:
            one = path.with_name(f"{path.stem}.{budget_file_tag(b)}{path.suffix}")
            plan = level_plan(genome, level, gate)
            files += FORMATS[fmt][1](exported_net(plan, *stats).eval(), plan, one, sidecar)
            entry["file"] = one.name
        entries.append({**entry, **dict(budget_metrics[i] if budget_metrics else {})})
    if fmt not in _PER_BUDGET:
        writer = _write_budgeted_python if fmt == "python" else _write_budgeted_torchscript
        files = writer(net, bp, path, sidecar)
        note = "; forward(x, budget=1.0) runs the sub-network that budget (0, 1] selects"
    else:
        note = "; each file computes one budget's sub-network (budgets[i].file)"
    extra = {
        "input_note": note,
        "budgets": entries,
        "budget_levels": {
            "count": len(bp.levels),
            "flops": list(bp.level_flops),
            "min_budget": bp.chain.min_budget,
            "rule": (
                "a budget b selects the level with the fewest removals (skip edges, then neurons) whose flops "
                "<= b x flops[0] (the smallest level when none): genomes.budgets"
            ),
        },
    }
    main = files[0] if fmt not in _PER_BUDGET else path.with_name(entries[-1]["file"])
    return _finish(net, bp.plan, fmt, gate, path, files, sidecar, extra, main)


#: Formats that write one file per budget (the others: one module taking ``budget``).
_PER_BUDGET = ("pt2", "onnx")

#: Formats with static graphs: an adaptive genome exports every path (``all_paths``).
_ALL_PATHS = ("pt2", "onnx")


def _export_adaptive(
    genome: Genome,
    path: Path,
    fmt: str,
    gate: str,
    sidecar: dict[str, Any],
    all_paths: bool,
    thresholds: float | Mapping[int, float] | None,
) -> ExportResult:
    """``export_genome`` of an adaptive genome (see there and :mod:`hybrid.export.adaptive`)."""
    if fmt in _ALL_PATHS and not all_paths:
        raise ExportError(
            f"{path}: format {fmt!r} has no data-dependent control flow, so an adaptive genome "
            "(exits or skip gates) would compute every path for every sample; ask for it with "
            "all_paths=True (hybrid export --all-paths), or use python or torchscript"
        )
    if thresholds is not None and not exit_nodes(genome):
        raise ExportError(f"{path}: thresholds given, but the genome has no exit nodes")
    if genome.is_recurrent:
        raise ExportError(f"{path}: exits and skip gates are for feed-forward genomes")
    try:
        ad = plan_adaptive(genome, gate, thresholds)
    except GenomeError as exc:
        raise ExportError(f"{path}: {exc}") from None
    stats = (sidecar.get("feature_mean"), sidecar.get("feature_std"), sidecar.get("feature_fill"))
    try:
        net = AdaptiveNet(ad, *stats).eval()
    except ValueError as exc:
        raise ExportError(f"{path}: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "python":
        weights = path.with_name(f"{path.stem}.state_dict.pt")
        _save_bytes(weights, lambda f: torch.save(net.state_dict(), f))
        atomic_write(path, _python_source(net, ad.plan, weights.name, sidecar, adaptive=ad))
        files = [path, weights]
    elif fmt == "torchscript":
        files = _write_scripted(net, _python_source(net, ad.plan, "unused", sidecar, adaptive=ad), path)
    else:
        files = FORMATS[fmt][1](AllPathsNet(net).eval(), ad.plan, path, sidecar)  # type: ignore[arg-type]
    flow = "all-paths" if fmt in _ALL_PATHS else "data-dependent"
    note = (
        "; forward(x) returns each sample's output under the exit rule"
        + ("; forward_flops(x) also each sample's FLOPs" if flow == "data-dependent" else "")
    )
    extra = {"input_note": note, "adaptive": adaptive_info(ad, flow)}
    return _finish(net, ad.plan, fmt, gate, path, files, sidecar, extra)
