"""What a network with exit heads and skip gates does per input (issue 16), as records.

The reference is :func:`genomes.adaptive.evaluate_adaptive` (numpy: exact per-input
FLOPs); this module turns it into the figures the run folder, ``hybrid status`` and
the report show: average FLOPs per input, the share of inputs leaving at each exit,
each skip gate's execution rate and the number of distinct gate patterns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genomes import Genome
from genomes.adaptive import evaluate_adaptive, is_adaptive

__all__ = ["adaptive_record"]


def adaptive_record(genome: Genome, X: Any, y: Any | None, gate: str) -> dict[str, Any] | None:
    """Return the per-input cost record of an adaptive ``genome`` on ``X`` (None for a plain genome).

    Keys: ``average_flops`` (mean FLOPs per input under the exit rule),
    ``full_path_flops`` (every node, gate and head), ``exits`` (``[{"node",
    "threshold", "share"}]`` in stage order, then ``{"node": "output", "share"}``),
    ``skip_rates`` (``{node: share of inputs the node ran for}``), ``gate_patterns``
    (distinct combinations of exit taken and skip decisions) and, with ``y``,
    ``accuracy`` (of the exit-rule outputs) and ``full_path_accuracy``.
    """
    if not is_adaptive(genome):
        return None
    X = np.asarray(X, np.float64)
    r = evaluate_adaptive(genome, X, gate)
    n = max(len(X), 1)
    counts = np.bincount(r.exit, minlength=len(r.plan.exits) + 1)
    g = genome.graph
    exits: list[dict[str, Any]] = [
        {"node": int(e), "threshold": float(g.nodes[e]["threshold"]), "share": float(counts[k] / n)}
        for k, e in enumerate(r.plan.exits)
    ]
    exits.append({"node": "output", "share": float(counts[-1] / n)})
    pattern = [r.exit] + [r.runs[k].astype(np.int64) for k in sorted(r.runs)]
    patterns = len({tuple(col) for col in np.stack(pattern, 1)}) if len(X) else 0
    out: dict[str, Any] = {
        "average_flops": float(r.flops.mean()) if len(X) else 0.0,
        "full_path_flops": int(r.plan.full_flops),
        "exits": exits,
        "skip_rates": {str(k): float(v.mean()) for k, v in sorted(r.runs.items())},
        "gate_patterns": patterns,
    }
    if y is not None and len(X):
        y = np.asarray(y).reshape(-1)
        out["accuracy"] = float((r.outputs.argmax(-1) == y).mean())
        out["full_path_accuracy"] = float((r.output.argmax(-1) == y).mean())
    return out
