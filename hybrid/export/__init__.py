"""Export a genome as a plain PyTorch module that runs without hybrid.

``to_module`` folds the deterministic gates into the weights and keeps only the
live structure (``genomes.active_structure``); ``export_genome`` writes it in one
of ``FORMATS`` with a JSON sidecar; ``export_run`` does that for a run folder.
Importing this package imports torch (``import hybrid`` does not import it).
"""

from .codegen import ACTIVATION_CODE, render_python
from .formats import FORMATS, SIDECAR_FORMAT, ExportError, ExportResult, export_genome
from .module import ExportedNet, to_module
from .plan import ExportPlan, LayerPlan, plan_export
from .run import export_run, run_module

__all__ = [
    "ACTIVATION_CODE",
    "FORMATS",
    "SIDECAR_FORMAT",
    "ExportError",
    "ExportPlan",
    "ExportResult",
    "ExportedNet",
    "LayerPlan",
    "export_genome",
    "export_run",
    "plan_export",
    "render_python",
    "run_module",
    "to_module",
]
