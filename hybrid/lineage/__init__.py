"""The lineage of a run: every genome evaluated, its parents and what made it."""

from .store import GenerationRow, GenomeRow, LineageWriter, structure_dict

__all__ = [
    "GenerationRow",
    "GenomeRow",
    "LineageWriter",
    "structure_dict",
]
