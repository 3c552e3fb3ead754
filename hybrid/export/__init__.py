"""Export a genome as a plain PyTorch module that runs without hybrid.

``to_module`` folds the deterministic gates into the weights and keeps only the
live structure (``genomes.active_structure``); ``export_genome`` writes it in one
of ``FORMATS`` with a JSON sidecar; ``export_run`` does that for a run folder.
A recurrent genome exports a module over time (``RecurrentExportedNet``:
``forward(x (B, T, F), state=None) -> (outputs, final_state)``). A feed-forward
genome exported with ``budgets`` (issue 17, :mod:`hybrid.export.budgets`) gives a
``BudgetedNet``: ``forward(x, budget=1.0)`` runs only the sub-network the budget
selects. An adaptive genome (exit heads and skip gates, issue 16,
:mod:`hybrid.export.adaptive`) gives an ``AdaptiveNet``: ``forward(x)`` stops each
sample at the first sure exit and runs a skip-gated node only where its gate opens;
``forward_flops(x)`` also returns each sample's FLOPs.
Importing this package imports torch (``import hybrid`` does not import it).
"""

from .adaptive import AdaptiveExport, AdaptiveNet, AllPathsNet, plan_adaptive
from .budgets import BudgetedNet, BudgetPlan, plan_budgets
from .codegen import ACTIVATION_CODE, render_python
from .formats import FORMATS, SIDECAR_FORMAT, ExportError, ExportResult, export_genome, state_info
from .module import ExportedNet, RecurrentExportedNet, exported_net, to_module
from .plan import ExportPlan, LayerPlan, SkipPlan, StatePlan, plan_export
from .run import export_run, run_module

__all__ = [
    "ACTIVATION_CODE",
    "AdaptiveExport",
    "AdaptiveNet",
    "AllPathsNet",
    "BudgetPlan",
    "BudgetedNet",
    "FORMATS",
    "SIDECAR_FORMAT",
    "ExportError",
    "ExportPlan",
    "ExportResult",
    "ExportedNet",
    "LayerPlan",
    "RecurrentExportedNet",
    "SkipPlan",
    "StatePlan",
    "export_genome",
    "export_run",
    "exported_net",
    "plan_adaptive",
    "plan_budgets",
    "plan_export",
    "render_python",
    "run_module",
    "state_info",
    "to_module",
]
