"""The lineage of a run: every genome evaluated, its parents and what made it.

Write side: :class:`LineageWriter` (used by the search). Read side::

    with hybrid.lineage.open("runs/spirals") as lin:
        best = lin.best()
        for rec in lin.path_to_root(best.id):
            print(rec.generation, rec.id, rec.operator_text)
"""

from .ancestry import Step, ancestry
from .diff import StructureDiff, structure_diff
from .reader import Lineage, LineageError, open
from .records import EdgeInfo, GenerationRecord, GenomeRecord, NodeInfo, Operator, Structure
from .store import PRUNED, SCHEMA_VERSION, GenerationRow, GenomeRow, LineageWriter, structure_dict

__all__ = [
    "PRUNED",
    "SCHEMA_VERSION",
    "EdgeInfo",
    "GenerationRecord",
    "GenerationRow",
    "GenomeRecord",
    "GenomeRow",
    "Lineage",
    "LineageError",
    "LineageWriter",
    "NodeInfo",
    "Operator",
    "Step",
    "Structure",
    "StructureDiff",
    "ancestry",
    "open",
    "structure_diff",
    "structure_dict",
]
