"""A genome's ancestry as steps: what each ancestor changed and what it gained.

The path follows first (fitter) parents from generation 0 to the genome. Each step
pairs a genome with that parent: its operators, the structural diff, and the metric
and size change. Elites are re-recorded every generation under a new id, so a
long-lived genome shows up as a run of ``elite`` steps with no structural change;
:func:`ancestry` folds such runs into one step (``elite x7``) unless told not to.
"""

from __future__ import annotations

from dataclasses import dataclass

from .diff import StructureDiff, structure_diff
from .reader import Lineage
from .records import GenomeRecord, Structure

__all__ = ["Step", "ancestry"]

#: Elite runs shorter than this stay as separate steps (folding 2 saves nothing).
MIN_FOLD = 3


@dataclass(frozen=True)
class Step:
    """One step down the ancestry: ``record`` and how it differs from ``parent``.

    Attributes:
        record: the genome at this step (for a folded run: the run's last elite).
        parent: its first parent (for a folded run: the parent of the run's first
            elite); None for the root.
        diff: the structural change from ``parent`` (None for the root).
        elites: how many elite steps this step folds (0: an ordinary step).
        first_generation: the generation the step starts in (a folded run spans
            ``first_generation..record.generation``).
    """

    record: GenomeRecord
    parent: GenomeRecord | None
    diff: StructureDiff | None
    elites: int = 0
    first_generation: int = 0

    @property
    def operator_text(self) -> str:
        """The step's operators as one line (``elite x7`` for a folded run)."""
        if self.elites:
            return f"elite x{self.elites}"
        return self.record.operator_text

    @property
    def metric_change(self) -> float | None:
        """Change of the validation metric from the parent (None if either is missing)."""
        a, b = (self.parent.val_metric if self.parent else None), self.record.val_metric
        return None if a is None or b is None else b - a

    @property
    def size_change(self) -> int | None:
        """Change of active parameters from the parent (None if either is missing)."""
        a, b = (self.parent.active_params if self.parent else None), self.record.active_params
        return None if a is None or b is None else b - a

    @property
    def generations(self) -> str:
        """``"7"`` or, for a folded run, ``"3-9"``."""
        g = self.record.generation
        return f"{self.first_generation}-{g}" if self.first_generation != g else str(g)


def ancestry(lineage: Lineage, genome_id: int, depth: int | None = None, fold: bool = True) -> list[Step]:
    """Return the steps from the root (or ``depth`` steps up) down to ``genome_id``.

    Args:
        lineage: the open store.
        genome_id: the genome whose ancestry to trace.
        depth: how many parent steps to go back (None: to generation 0).
        fold: fold runs of at least ``MIN_FOLD`` elite steps into one step.

    Returns:
        Steps oldest first; the first has ``parent`` None when it is the root,
        else it is the oldest step within ``depth``.

    Raises:
        LineageError: unknown genome id.
    """
    path = lineage.path_to_root(genome_id, depth=None if depth is None else depth + 1)[::-1]
    structures = lineage.structures(r.id for r in path)
    # With ``depth``, the oldest record may be there only as the first step's parent.
    start = 1 if depth is not None and len(path) > depth + 1 else 0
    steps: list[Step] = []
    for k in range(start, len(path)):
        rec, par = path[k], (path[k - 1] if k > 0 else None)
        diff = structure_diff(structures[par.id], structures[rec.id]) if par else None
        steps.append(Step(rec, par, diff, 0, rec.generation))
    return _fold(steps, structures) if fold else steps


def _fold(steps: list[Step], structures: dict[int, Structure]) -> list[Step]:
    out: list[Step] = []
    k = 0
    while k < len(steps):
        j = k
        while j < len(steps) and steps[j].record.is_elite:
            j += 1
        if j - k >= MIN_FOLD:
            first, last = steps[k], steps[j - 1]
            diff = structure_diff(structures[first.parent.id], structures[last.record.id]) if first.parent else None
            out.append(Step(last.record, first.parent, diff, j - k, first.record.generation))
            k = j
        else:
            out.append(steps[k])
            k += 1
    return out
