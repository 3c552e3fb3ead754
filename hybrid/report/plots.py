"""The report's figures, each returned as PNG bytes (matplotlib Figure + Agg, no pyplot)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..lineage import GenerationRecord, GenomeRecord, Step

__all__ = [
    "adaptive_plot",
    "budget_plot",
    "exit_plot",
    "fitness_plot",
    "lineage_plot",
    "pareto_front",
    "pareto_plot",
    "size_plot",
    "species_plot",
]

_SIZE = (7.5, 3.6)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _log_axis(ax: Any, which: str) -> None:
    """Put one axis on a log scale labelled with plain numbers at 1-2-5 steps."""
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _finite(xs: Sequence[float | None]) -> np.ndarray:
    # the search reports failed generations with a -1e9 sentinel: not a point to plot
    return np.array([np.nan if x is None or x <= -1e8 else x for x in xs], dtype=float)


def fitness_plot(gens: Sequence[GenerationRecord], metric: str, sign: float = 1.0) -> bytes:
    """Plot best and mean validation metric per generation, and the champion so far.

    ``sign`` is -1 for a lower-is-better metric: stats hold the fitness, the plot the real value.
    """
    fig = Figure(figsize=_SIZE)
    ax = fig.add_subplot()
    g = [r.generation for r in gens]
    ax.plot(g, sign * _finite([r.best_metric for r in gens]), "o-", ms=3, label="best of generation")
    ax.plot(g, sign * _finite([r.mean_metric for r in gens]), "s-", ms=3, alpha=0.8, label="mean of generation")
    champ = sign * _finite([r.stats.get("champion_metric") for r in gens])
    ax.step(g, champ, where="post", color="black", lw=1, ls="--", label="champion so far")
    ax.set_xlabel("generation")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("fitness per generation")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def size_plot(gens: Sequence[GenerationRecord], records: Sequence[GenomeRecord]) -> bytes:
    """Plot active parameters per generation: best genome's, mean, and the min-max range."""
    fig = Figure(figsize=_SIZE)
    ax = fig.add_subplot()
    g = [r.generation for r in gens]
    by_gen: dict[int, list[int]] = {}
    for r in records:
        if r.status != "failed" and r.active_params is not None:
            by_gen.setdefault(r.generation, []).append(r.active_params)
    lo = [min(by_gen.get(x, [np.nan])) for x in g]
    hi = [max(by_gen.get(x, [np.nan])) for x in g]
    ax.fill_between(g, lo, hi, alpha=0.15, color="tab:gray", label="range in generation")
    ax.plot(g, [r.stats.get("best_active_params", np.nan) for r in gens], "o-", ms=3, label="best genome of generation")
    ax.plot(g, [r.stats.get("mean_active_params", np.nan) for r in gens], "s-", ms=3, label="mean")
    ax.step(g, [r.stats.get("champion_active_params", np.nan) for r in gens], where="post", color="black",
            lw=1, ls="--", label="champion so far")
    finite = [v for v in lo + hi if v == v and v > 0]
    if finite and max(finite) / min(finite) > 30:
        _log_axis(ax, "y")
    ax.set_xlabel("generation")
    ax.set_ylabel("active parameters")
    ax.set_title("network size per generation")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def species_plot(gens: Sequence[GenerationRecord]) -> bytes:
    """Stack plot of species sizes over generations (each species one band)."""
    fig = Figure(figsize=_SIZE)
    ax = fig.add_subplot()
    g = [r.generation for r in gens]
    ids = sorted({int(s) for r in gens for s in r.stats.get("species_sizes", {})})
    bands = [[r.stats.get("species_sizes", {}).get(str(s), 0) for r in gens] for s in ids]
    cmap = colormaps["tab20"]
    # tab20 pairs a dark and a light shade: take every dark one first so neighbours differ
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    colours = [cmap(order[i % 20]) for i in range(len(ids))]
    if bands:
        ax.stackplot(g, bands, labels=[f"species {s}" for s in ids], colors=colours, edgecolor="white", lw=0.3)
    ax.set_xlabel("generation")
    ax.set_ylabel("members")
    ax.set_title(f"species over time ({len(ids)} species in all)")
    ax.set_xlim(min(g), max(g) if len(g) > 1 else min(g) + 1)
    if 0 < len(ids) <= 12:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
    return _png(fig)


def pareto_front(records: Sequence[GenomeRecord]) -> list[GenomeRecord]:
    """Return the genomes no other beats on both metric (higher) and size (lower), smallest first."""
    ok = [r for r in records if r.val_metric is not None and r.active_params is not None and r.status != "failed"]
    front: list[GenomeRecord] = []
    best = -np.inf
    for r in sorted(ok, key=lambda r: (r.active_params, -r.val_metric)):
        if r.val_metric > best:
            front.append(r)
            best = r.val_metric
    return front


def pareto_plot(
    records: Sequence[GenomeRecord],
    champion: GenomeRecord | None,
    metric: str,
    sign: float = 1.0,
    shortlist: Sequence[int] = (),
) -> bytes:
    """Scatter every genome's metric against its size, coloured by generation, with the Pareto front.

    ``shortlist`` (genome ids) are ringed: the entries the champion (a star) was chosen from.
    """
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    ok = [r for r in records if r.val_metric is not None and r.active_params is not None and r.status != "failed"]
    if ok:
        sc = ax.scatter([r.active_params for r in ok], [sign * r.val_metric for r in ok], c=[r.generation for r in ok],
                        cmap="viridis", s=12, alpha=0.6, linewidths=0)
        fig.colorbar(sc, ax=ax, label="generation", pad=0.01)
        front = pareto_front(ok)
        ax.step([r.active_params for r in front], [sign * r.val_metric for r in front], where="post", color="tab:red",
                lw=1.5, marker="o", ms=4, label=f"Pareto front ({len(front)} genomes)")
        sizes = [r.active_params for r in ok]
        if min(sizes) > 0 and max(sizes) / min(sizes) > 30:
            _log_axis(ax, "x")
    listed = [r for r in ok if r.id in set(shortlist)]
    if listed:
        ax.scatter([r.active_params for r in listed], [sign * r.val_metric for r in listed], s=70,
                   facecolors="none", edgecolors="black", lw=1, zorder=4, label=f"short list ({len(listed)})")
    if champion is not None and champion.val_metric is not None:
        ax.scatter([champion.active_params], [sign * champion.val_metric], marker="*", s=220, c="gold",
                   edgecolors="black", zorder=5, label=f"champion {champion.id}")
    ax.set_xlabel("active parameters")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"{metric} vs size, all {len(ok)} evaluated genomes")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def lineage_plot(steps: Sequence[Step], metric: str, sign: float = 1.0) -> bytes:
    """Plot metric and size along the champion's first-parent path, marking structural changes."""
    fig = Figure(figsize=_SIZE)
    ax = fig.add_subplot()
    g = [s.record.generation for s in steps]
    ax.plot(g, sign * _finite([s.record.val_metric for s in steps]), "o-", color="tab:blue", ms=4)
    ax.set_xlabel("generation")
    ax.set_ylabel(f"validation {metric}", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(g, [s.record.active_params for s in steps], "s--", color="tab:orange", ms=3)
    ax2.set_ylabel("active parameters", color="tab:orange")
    for s in steps:
        if s.diff is not None and not s.diff.empty:
            ax.axvline(s.record.generation, color="gray", alpha=0.25, lw=4)
    ax.set_title("champion's ancestry (grey bars: generations where the structure changed)")
    ax.grid(alpha=0.3)
    return _png(fig)


def budget_plot(curve: dict[str, Any], metric: str) -> bytes:
    """Plot the champion's metric against its share of the full network's FLOPs, one point per budget.

    ``curve`` is ``best/metrics.json``'s ``budget_curve`` (``share``, ``scores``,
    ``budgets``, ``auc``, ``split``); each point is labelled with its budget.
    """
    fig = Figure(figsize=_SIZE)
    ax = fig.add_subplot()
    share = np.array(curve.get("share", []), dtype=float)
    scores = np.array([np.nan if v is None else v for v in curve.get("scores", [])], dtype=float)
    budgets = list(curve.get("budgets", []))
    auc = curve.get("auc")
    ax.plot(share, scores, "o-", color="tab:blue", ms=5, label=f"champion (AUC {float('nan') if auc is None else auc:.4f})")
    ax.plot([0, 1], [0, 1], alpha=0)  # keep the whole (0, 1] share axis in view
    for x, y, b in zip(share, scores, budgets, strict=False):
        if np.isfinite(y):
            ax.annotate(f"{b:g}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7, color="#555")
    ax.set_xlim(0, 1.05)
    finite = scores[np.isfinite(scores)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        pad = max(0.02, 0.1 * (hi - lo))
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("share of the full network's FLOPs")
    ax.set_ylabel(f"{curve.get('split', 'validation')} {metric}")
    ax.set_title(f"{metric} vs share of FLOPs (budget labels: the budget asked for)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def adaptive_plot(
    points: Sequence[tuple[int, int, float, float]], champion: int | None, metric: str, sign: float = 1.0
) -> bytes:
    """Scatter every genome's validation metric against its average FLOPs per input, with the front.

    ``points`` are ``(genome id, generation, average FLOPs, val_metric)`` (issue 16:
    FLOPs averaged over the validation split under the exit rule); the champion is a star.
    """
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    if points:
        ids, gens, flops, vals = zip(*points, strict=True)
        sc = ax.scatter(flops, [sign * v for v in vals], c=gens, cmap="viridis", s=12, alpha=0.6, linewidths=0)
        fig.colorbar(sc, ax=ax, label="generation", pad=0.01)
        front, best = [], -np.inf
        for p in sorted(points, key=lambda p: (p[2], -p[3])):
            if p[3] > best:
                front.append(p)
                best = p[3]
        ax.step([p[2] for p in front], [sign * p[3] for p in front], where="post", color="tab:red", lw=1.5,
                marker="o", ms=4, label=f"front ({len(front)} genomes)")
        mine = [p for p in points if p[0] == champion]
        if mine:
            ax.scatter([mine[-1][2]], [sign * mine[-1][3]], marker="*", s=220, c="gold", edgecolors="black", zorder=5,
                       label=f"champion {champion}")
        if min(flops) > 0 and max(flops) / min(flops) > 30:
            _log_axis(ax, "x")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("average FLOPs per input (validation, exit rule)")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"{metric} vs average FLOPs per input, {len(points)} genomes")
    ax.grid(alpha=0.3)
    return _png(fig)


def exit_plot(adaptive: dict[str, Any]) -> bytes:
    """Bar chart of the share of test inputs that leave at each exit (and at the output)."""
    fig = Figure(figsize=_SIZE)
    ax = fig.add_subplot()
    exits = [e for e in adaptive.get("exits", []) if isinstance(e, dict)]
    labels = [f"exit {e['node']}" if e.get("node") != "output" else "output" for e in exits]
    shares = [float(e.get("share", 0.0)) for e in exits]
    ax.bar(range(len(shares)), shares, color=["tab:blue"] * (len(shares) - 1) + ["tab:gray"])
    ax.set_xticks(range(len(shares)), labels, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of test inputs")
    ax.set_title(f"where inputs leave (average {adaptive.get('average_flops', float('nan')):.0f} FLOPs of "
                 f"{adaptive.get('full_path_flops', 0)} on the full path)")
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)
