"""Build ``report.html``: one self-contained page (figures embedded as base64 PNG).

Everything comes from the run folder: the lineage store (opened read-only, so a
run still going can be reported on), ``best/metrics.json`` when the run finished,
and ``config.toml`` for the planned number of generations. Every value taken from
the run folder is HTML-escaped (``_e``): a handed-over ``lineage.sqlite`` cannot put
markup or script into the page.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from genomes.serialize import atomic_write

from ..errors import HybridError
from ..lineage import GenerationRecord, GenomeRecord, Lineage, LineageError, Step, ancestry
from ..lineage import open as open_lineage
from ..rundir import BestMetrics
from . import plots

__all__ = ["write_report"]

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.facts { color: #444; } .facts b { color: #000; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; } .grid figure { margin: 0; flex: 1 1 500px; }
img { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 0.85em; width: 100%; }
th, td { border-bottom: 1px solid #eee; padding: 0.3em 0.5em; text-align: left; vertical-align: top; }
th { background: #f6f6f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.up { color: #1a7f37; } .down { color: #cf222e; } .dim { color: #888; }
.note { color: #666; font-size: 0.85em; }
"""


def _e(value: Any) -> str:
    """Return ``value`` as HTML text: every value from the run folder goes through here."""
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _signed(x: float | int | None, fmt: str) -> str:
    if x is None or x == 0:
        return ""
    cls = "up" if x > 0 else "down"
    return f' <span class="{cls}">{format(x, fmt)}</span>'


def _lineage_table(steps: list[Step], metric: str, sign: float = 1.0) -> str:
    rows = []
    for s in steps:
        r = s.record
        ops = _e(s.operator_text)
        change = "" if s.diff is None or s.diff.empty else _e(s.diff)
        val = f"{sign * r.val_metric:.4f}" if r.val_metric is not None else _e(r.status)
        parents = "+".join(map(str, r.parents)) if not s.elites else str(s.parent.id if s.parent else "")
        rows.append(
            f"<tr><td class=num>{_e(s.generations)}</td><td class=num>{_e(r.id)}</td><td>{_e(parents)}</td>"
            f"<td{' class=dim' if s.elites or r.is_elite else ''}>{ops}</td><td>{change}</td>"
            f"<td class=num>{val}{_signed(None if s.metric_change is None else sign * s.metric_change, '+.4f')}</td>"
            f"<td class=num>{_e(r.active_params)}{_signed(s.size_change, '+d')}</td>"
            f"<td class=num>{'' if r.species is None else _e(r.species)}</td></tr>"
        )
    head = (
        "<tr><th>gen</th><th>genome</th><th>parents</th><th>operators</th><th>structure change</th>"
        f"<th>{_e(metric)} (change)</th><th>active params (change)</th><th>species</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _facts(
    lin: Lineage,
    gens: list[GenerationRecord],
    best: GenomeRecord,
    finished: BestMetrics | None,
    curve: dict[str, Any] | None = None,
) -> str:
    try:
        planned = lin.run.load_config().evolution.generations
    except HybridError:
        planned = None
    meta = lin.meta
    done = len(gens)
    status = (
        f"finished ({_e(finished.stop_reason)})"
        if finished
        else f"<b>not finished</b>: still running or interrupted; last recorded generation {_e(gens[-1].generation)}"
    )
    parts = [
        f"task <b>{_e(meta.get('task', '?'))}</b>, seed {_e(meta.get('seed', '?'))}, gates {_e(lin.gate)}",
        f"{done} generation{'s' if done != 1 else ''} recorded" + (f" of {_e(planned)} planned" if planned else ""),
        status,
    ]
    champ = f"champion <b>{_e(best.id)}</b> (generation {_e(best.generation)}): validation {_e(lin.metric_name)} "
    champ += f"{lin.metric_sign * best.val_metric:.4f}" if best.val_metric is not None else "n/a"
    champ += f", {_e(best.active_params)} active parameters, {_e(best.flops)} FLOPs/sample"
    if finished and finished.genome_id == best.id:
        if finished.selection_metric is not None:
            champ += f"; selection split {finished.selection_metric:.4f}"
        test = "n/a" if finished.test_metric is None else f"{finished.test_metric:.4f}"
        champ += f"; test {_e(finished.metric)} {test}"
        if finished.shortlist:
            how = "its score on the selection split" if finished.selection_metric is not None else "validation"
            if curve is not None:
                how = f"its budget AUC on {_e(curve.get('split', 'validation'))} (see below)"
            champ += (f"<br>chosen by {_e(finished.selected_by)} from a short list of {len(finished.shortlist)} "
                      f"genomes (the run's Pareto front) on {how}")
    parts.append(champ)
    return '<p class="facts">' + "<br>".join(parts) + "</p>"


def _shortlist(finished: BestMetrics | None) -> list[int]:
    """Ids of the short list the champion was chosen from (empty for older or unfinished runs)."""
    return [] if finished is None else [e.id for e in finished.shortlist]


def _budget_curve(lin: Lineage) -> dict[str, Any] | None:
    """The champion's ``budget_curve`` from ``best/metrics.json`` (champion objective "budget_auc"), or None."""
    path = lin.run.best_metrics_path
    try:
        curve = json.loads(path.read_text()).get("budget_curve") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(curve, dict):
        return None

    def numbers(key: str, none_ok: bool = False) -> bool:
        v = curve.get(key)
        return isinstance(v, list) and all(
            (x is None and none_ok) or (isinstance(x, (int, float)) and not isinstance(x, bool)) for x in v
        )

    keys = ("budgets", "flops", "share", "scores")
    ok = all(numbers(k, k == "scores") for k in keys) and len({len(curve[k]) for k in keys}) == 1
    auc = curve.get("auc")
    ok = ok and (auc is None or (isinstance(auc, (int, float)) and not isinstance(auc, bool)))
    return curve if ok else None  # a malformed (handed-over) file: no section rather than a broken page


def _budget_section(curve: dict[str, Any], metric: str, gid: int) -> list[str]:
    """The report's budget section: the champion's metric vs its share of FLOPs, and the figures."""
    rows = "".join(
        f"<tr><td class=num>{_e(b)}</td><td class=num>{_e(f)}</td><td class=num>{_e(f'{s:.1%}')}</td>"
        f"<td class=num>{'n/a' if v is None else _e(f'{v:.4f}')}</td></tr>"
        for b, f, s, v in zip(curve.get("budgets", []), curve.get("flops", []), curve.get("share", []),
                              curve.get("scores", []), strict=False)  # fmt: skip
        if isinstance(s, (int, float))
    )
    head = f"<tr><th>budget</th><th>FLOPs/sample</th><th>share of FLOPs</th><th>{_e(metric)}</th></tr>"
    return [
        "<h2>One network, many budgets</h2>",
        f"<p class=note>The champion (genome {_e(gid)}) was chosen on the mean of its {_e(curve.get('split', 'validation'))} "
        f"{_e(metric)} over these budgets (budget AUC), each budget the largest sub-network within that share "
        "of the full network's FLOPs.</p><div class=grid>",
        f"<figure>{_img(plots.budget_plot(curve, metric), f'{metric} vs share of FLOPs')}</figure>",
        f"<figure><table>{head}{rows}</table></figure></div>",
    ]


def _adaptive_section(
    lin: Lineage, gens: list[Any], records: list[Any], champion: int, metric: str, sign: float
) -> list[str]:
    """Exit heads and skip gates (issue 16): metric vs average FLOPs per input, and where inputs leave.

    Empty for a run without adaptive genes (no generation recorded ``average_flops``).
    """
    average: dict[int, float] = {}
    for gen in gens:
        for k, v in dict(gen.stats.get("average_flops") or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                average[int(k)] = float(v)
    if not average:
        return []
    points = [(r.id, r.generation, average[r.id], r.val_metric) for r in records
              if r.id in average and r.val_metric is not None and r.status != "failed"]  # fmt: skip
    out = [
        "<h2>Compute that adapts to each input</h2>",
        "<p class=note>Exit heads stop an input at the first exit sure enough of its class (thresholds fitted on "
        "the validation split); skip gates skip a node per input. Cost is FLOPs per input, averaged.</p><div class=grid>",
        f"<figure>{_img(plots.adaptive_plot(points, champion, metric, sign), f'{metric} vs average FLOPs per input')}</figure>",
    ]
    try:
        adaptive = json.loads(lin.run.best_metrics_path.read_text()).get("adaptive")
    except (OSError, ValueError, AttributeError):
        adaptive = None
    if isinstance(adaptive, dict) and isinstance(adaptive.get("exits"), list):
        out.append(f"<figure>{_img(plots.exit_plot(adaptive), 'share of test inputs leaving at each exit')}</figure>")
    out.append("</div>")
    return out


def _champion_png(lin: Lineage, gid: int) -> bytes:
    from ..draw import draw_genome

    rec = lin.record(gid)
    source = lin.genome(gid) if rec.has_weights else lin.structure(gid)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "champion.png"
        draw_genome(source, path, gate=lin.gate, title=f"champion {gid}")
        return path.read_bytes()


def build_report(lin: Lineage) -> str:
    """Return the report page for an open lineage store.

    Raises:
        LineageError: the store holds no generation yet.
    """
    gens = lin.generations()
    if not gens:
        raise LineageError(f"{lin.run.path}: no generation recorded yet; nothing to report")
    finished = lin.run.read_best_metrics()
    best = lin.best()
    records = lin.records()
    metric, sign = lin.metric_name, lin.metric_sign
    folded = ancestry(lin, best.id)
    every = ancestry(lin, best.id, fold=False)
    n_folded = sum(s.elites for s in folded)
    curve = _budget_curve(lin) if finished is not None else None
    name = html.escape(lin.run.path.name)
    body = [
        f"<h1>hybrid run: {name}</h1>",
        _facts(lin, gens, best, finished, curve),
        "<h2>Fitness and size</h2><div class=grid>",
        f"<figure>{_img(plots.fitness_plot(gens, metric, sign), 'fitness per generation')}</figure>",
        f"<figure>{_img(plots.size_plot(gens, records), 'size per generation')}</figure></div>",
        "<h2>Species, and accuracy against size</h2><div class=grid>",
        f"<figure>{_img(plots.species_plot(gens), 'species over time')}</figure>",
        f"<figure>{_img(plots.pareto_plot(records, best, metric, sign, _shortlist(finished)), 'metric vs size with Pareto front')}</figure>",
        "</div>",
        f"<h2>The champion's lineage</h2><p class=note>First-parent path from generation 0 to genome {_e(best.id)}. "
        "Structure change is measured against the first (fitter) parent."
        + (f" <i>elite xN</i> rows fold N generations in which the genome was kept as an elite (same structure, "
           f"weights retrained; {n_folded} generations folded)." if n_folded else "")
        + "</p>",
        _img(plots.lineage_plot(every, metric, sign), "metric and size along the champion's ancestry"),
        _lineage_table(folded, metric, sign),
        "<h2>The champion</h2>",
        _img(_champion_png(lin, best.id), f"genome {best.id}"),  # _img escapes the alt text
    ]
    if curve is not None and finished is not None:
        body.extend(_budget_section(curve, metric, finished.genome_id))
    body.extend(_adaptive_section(lin, gens, records, best.id, metric, sign))
    return (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>hybrid run {name}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_report(run_dir: str | os.PathLike[str], output: str | os.PathLike[str] | None = None) -> Path:
    """Write the run's report (default ``RUN_DIR/report.html``) and return its path.

    Args:
        run_dir: the run folder; it may still be running or have been interrupted.
        output: where to write instead of the run folder.

    Raises:
        RunDirError: not a run folder, or no lineage store yet.
        LineageError: no generation recorded yet.
    """
    with open_lineage(run_dir) as lin:
        page = build_report(lin)
        path = Path(output) if output is not None else lin.run.child(lin.run.report_path)
    atomic_write(path, page)
    return path
