"""The ``hybrid`` command line: run, resume, status, tasks (and the run-inspection tools).

User errors (``HybridError``) print one line on stderr and exit with their ``exit_code`` (2, or 3 when a run never had a scored champion); a
traceback means a bug. Ctrl-C stops a search after its last complete generation
(already checkpointed) and exits with status 130.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .errors import HybridError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hybrid", description="Neuroevolution plus gradient descent.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="start a search from a config file")
    run.add_argument("config", help="a TOML config (see configs/)")
    run.add_argument("--seed", type=int, help="override run.seed")
    run.add_argument("--generations", type=int, help="override evolution.generations")
    run.add_argument("--device", help="override run.device (auto, cpu, cuda, cuda:N)")
    run.add_argument("--name", help="override run.name (the run folder's name)")
    run.add_argument("--runs-dir", help="override run.runs_dir (default: runs/)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    run.add_argument("--plain", action="store_true", help="one log line per generation, no live display")
    run.add_argument(
        "--dask-address",
        metavar="ADDRESS",
        help="train on the Dask scheduler at ADDRESS (tcp://host:8786): parallel.backend = dask",
    )
    _add_tensorboard(run)

    grow = sub.add_parser(
        "grow",
        help="grow one network from a config by bottleneck growth and training (population 1)",
        parents=[],
    )
    for action in run._actions[1:]:  # the run command's arguments, the same meaning
        grow._add_action(action)

    res = sub.add_parser("resume", help="continue a run from its last complete generation")
    res.add_argument("run_dir")
    res.add_argument("--plain", action="store_true", help="one log line per generation")
    _add_tensorboard(res)

    st = sub.add_parser("status", help="summarise a run folder")
    st.add_argument("run_dir")

    sub.add_parser("tasks", help="list the built-in tasks")

    from .lineage.commands import add_lineage_arguments, add_show_arguments

    add_lineage_arguments(sub.add_parser("lineage", help="trace a genome's ancestry back to generation 0"))
    add_show_arguments(sub.add_parser("show", help="print (and draw) a genome's structure"))
    rep = sub.add_parser("report", help="write report.html: fitness, size, species, champion's lineage")
    rep.add_argument("run_dir")
    rep.add_argument("-o", "--output", help="where to write the report (default: RUN_DIR/report.html)")

    exp = sub.add_parser("export", help="export a genome as a plain PyTorch module")
    exp.add_argument("run_dir")
    exp.add_argument("genome", nargs="?", default="best", help="a genome id, or best (default)")
    exp.add_argument(
        "--format", default="python", dest="fmt", help="python (default), torchscript, pt2 or onnx"
    )
    exp.add_argument("--out", help="file or folder to write (default: RUN_DIR/best/ for the champion)")
    exp.add_argument(
        "--budgets",
        help="comma list of budgets in (0, 1], increasing (e.g. 0.25,0.5,1): python/torchscript "
        "write one module whose forward(x, budget) runs that budget's sub-network; pt2/onnx "
        "write one file per budget (model.b0.25.onnx); the sidecar scores each",
    )
    exp.add_argument(
        "--all-paths",
        action="store_true",
        help="allow pt2/onnx for a genome with exits or skip gates: every sample then computes "
        "every path (same outputs, full cost); python/torchscript stop early per sample",
    )
    exp.add_argument(
        "--threshold",
        help="one exit threshold in (0, 1] for every exit head, instead of the genome's own",
    )
    exp.add_argument(
        "--flops-share",
        help="dial an adaptive network's cost: fit the exit threshold on the validation split to "
        "the one that spends this share, in (0, 1], of the full path's FLOPs per input on average "
        "(e.g. 0.5)",
    )

    from .library.commands import add_modules_arguments

    add_modules_arguments(
        sub.add_parser(
            "modules",
            help="the module library: add (harvest from a run), list, show, remove, verify",
            description="A library of trained modules (default folder ./modules; --library PATH).",
        )
    )
    return p


def _add_tensorboard(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tensorboard",
        nargs="?",
        const="",
        metavar="DIR",
        help="log to TensorBoard event files in DIR (default RUN_DIR/tensorboard); needs the tracking extra",
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = {
        "seed": "run.seed",
        "generations": "evolution.generations",
        "device": "run.device",
        "name": "run.name",
        "runs_dir": "run.runs_dir",
    }
    out = {dotted: getattr(args, a) for a, dotted in keys.items() if getattr(args, a) is not None}
    if args.dask_address is not None:
        out.update({"parallel.backend": "dask", "parallel.address": args.dask_address})
    if getattr(args, "grow", False):
        out.update(
            {
                "evolution.mode": "grow",
                "evolution.population": 1,
                "evolution.elitism": 0,
                "evolution.crossover_rate": 0.0,
            }
        )
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .search import Search

    config = load_config(args.config, _overrides(args))
    _check_tensorboard(args.tensorboard)  # before the run folder is created
    search = Search.start(config, overwrite=args.overwrite)
    return _drive(search, args.plain, args.tensorboard)


def _cmd_grow(args: argparse.Namespace) -> int:
    """``hybrid grow``: ``hybrid run`` with one network (``evolution.mode = "grow"``)."""
    args.grow = True
    return _cmd_run(args)


def _cmd_resume(args: argparse.Namespace) -> int:
    from .search import Search

    _check_tensorboard(args.tensorboard)
    search = Search.resume(args.run_dir)
    return _drive(search, args.plain, args.tensorboard)


def _check_tensorboard(log_dir: str | None) -> None:
    """Refuse ``--tensorboard`` without the tracking extra, or with a DIR that is not a folder."""
    if log_dir is None:
        return
    from .tracking import check_log_dir, summary_writer_class

    summary_writer_class()
    if log_dir:
        check_log_dir(log_dir)


def _drive(search: Any, plain: bool, tensorboard: str | None = None) -> int:
    from .progress import Progress

    progress = Progress(search, plain=plain or not sys.stderr.isatty())
    print(f"run folder: {search.run_dir.path}", file=sys.stderr)
    reporters: list[Any] = []
    if tensorboard is not None:
        from .tracking import TensorBoardReporter

        try:
            reporters.append(TensorBoardReporter(search, tensorboard or None))
        except HybridError:
            search.run_dir.close()
            raise
        print(f"tensorboard: tensorboard --logdir {reporters[0].log_dir}", file=sys.stderr)
    try:
        with progress:
            result = search.run(progress.update, reporters=reporters)
    except KeyboardInterrupt:
        from .checkpoint import list_checkpoints

        done = list_checkpoints(search.run_dir)
        last = f"generation {done[-1]} is the last checkpointed one" if done else "no generation was complete"
        print(
            f"\ninterrupted: {last}; continue with `hybrid resume {search.run_dir.path}`",
            file=sys.stderr,
        )
        return 130
    finally:
        search.run_dir.close()  # the writer lock (process exit drops it too)
        for r in reporters:
            r.close()  # flushes an interrupted run's events (a no-op after on_finish)
    metric = search.config.task.metric
    print(
        f"done ({result.stop_reason}) after {result.generations} generations in {result.elapsed_s:.1f} s: "
        f"champion {result.champion_id} (chosen by {_rule(search.config, result.final_steps)}): "
        f"test {metric} {result.test_metric:.4f} ({_scores(result.val_metric, result.selection_metric)}), "
        f"{result.active_parameters} active parameters, {result.flops} FLOPs/sample\n"
        f"champion: {search.run_dir.best_genome_path}"
    )
    return 0


def _rule(config: Any, final_steps: int) -> str:
    """Say which champion rule chose the champion, and any fine-tune after it."""
    sel = config.selection
    rule = f"smallest_within {sel.epsilon:g}" if sel.champion == "smallest_within" else "best"
    if sel.champion_objective == "budget_auc":
        rule += f" budget AUC over {', '.join(f'{b:g}' for b in sel.auc_budgets)}"
    return rule + (f", then {final_steps} steps on train+validation" if final_steps else "")


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _cmd_status(args: argparse.Namespace) -> int:
    from .checkpoint import list_checkpoints
    from .rundir import open_run_dir

    run = open_run_dir(args.run_dir)
    config = run.load_config()
    stats = run.read_stats(check=True)
    finished = run.read_best_metrics()
    ckpts = list_checkpoints(run)
    print(f"run {run.path}  task {config.task.name or config.task.path}  seed {config.run.seed}")
    print(f"generations completed: {len(stats)} of {config.evolution.generations}; checkpoints: {ckpts}")
    print(
        f"champion rule: {_rule(config, config.evolution.final_steps)}"
        + (f"; patience {config.evolution.patience}" if config.evolution.patience is not None else "")
    )
    if stats:
        from .metrics import metric_value

        last, name = stats[-1], config.task.metric

        def real(key: str) -> str:  # stats hold fitness (higher is better): show the real value
            v = last[key]
            return _num(None if v is None else metric_value(name, v))

        print(
            f"last generation {last['generation']}: validation {name}: best {real('best_metric')}, "
            f"mean {real('mean_metric')}, species {last['n_species']}; "
            + (
                "no champion yet (no member has had a finite score)"
                if last["champion_id"] is None
                else f"champion {last['champion_id']} ({real('champion_metric')}, "
                f"{last['champion_active_params']} params)"
            )
        )
    if (config.mutation.insert_module > 0 or config.modules.start > 0) and stats:
        from .grafting import module_use
        from .lineage.reader import Lineage

        with Lineage(run) as lineage:
            use = module_use(lineage)
        made = ", ".join(f"{name} {n}" for name, n in use["modules"].items()) or "none"
        print(
            f"modules ({config.modules.library}): grafts made {use['grafts']} ({made}); generation champions "
            f"descending from a graft: {use['champions_with_module']} of {use['champions']}"
        )
    if run.tensorboard_dir.is_dir():
        print(f"tensorboard: tensorboard --logdir {run.tensorboard_dir}")
    if finished is not None:
        print(
            f"finished ({finished.stop_reason}): champion {finished.genome_id} test {finished.metric} "
            f"{_num(finished.test_metric)}, {finished.active_parameters} active parameters; "
            f"{_scores(finished.val_metric, finished.selection_metric)} "
            f"(best validation on the short list {_num(finished.best_val_metric)}; "
            f"validation - test {_gap(finished.val_metric, finished.test_metric, finished.metric)}), "
            f"chosen by {finished.selected_by}"
            + (" budget AUC" if config.selection.champion_objective == "budget_auc" else "")
            + (" on the selection split" if finished.selection_metric is not None else "")
        )
        adaptive = _adaptive_line(run)
        if adaptive:
            print(adaptive)
    else:
        print(f"not finished: `hybrid resume {run.path}` continues it")
    return 0


def _adaptive_line(run: Any) -> str | None:
    """The champion's per-input cost on the test split (exit heads, skip gates: issue 16), or None."""
    try:
        rec = json.loads(run.best_metrics_path.read_text()).get("adaptive")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("exits"), list):
        return None
    shares = ", ".join(
        f"{'output' if e.get('node') == 'output' else 'exit ' + str(e.get('node'))} {float(e.get('share', 0)):.0%}"
        for e in rec["exits"]
        if isinstance(e, dict)
    )
    return (
        f"adaptive: {float(rec.get('average_flops', 0)):.0f} FLOPs per test input on average "
        f"(full path {rec.get('full_path_flops')}); inputs leave at {shares}; "
        f"{rec.get('gate_patterns')} distinct gate patterns"
    )


def _scores(val: float | None, selection: float | None) -> str:
    """``validation V`` and, with a selection split, ``selection S``: the scores the champion was chosen on."""
    return f"validation {_num(val)}" + ("" if selection is None else f", selection {_num(selection)}")


def _gap(val: float | None, test: float | None, metric: str) -> str:
    """The validation-to-test gap, in points for a 0..1 metric (how much the validation score flattered)."""
    if val is None or test is None:
        return "n/a"
    if metric in ("log_loss", "mae", "mse", "neg_mse", "excess_nats"):
        return f"{val - test:+.4g}"
    return f"{100 * (val - test):+.1f} pt"


def _cmd_tasks(args: argparse.Namespace) -> int:
    from .tasks import TASKS

    width = max(len(n) for n in TASKS)
    for name, spec in TASKS.items():
        print(f"{name:<{width}}  {spec.kind:<14}  {spec.description}")
    print("\nyour own data: [task] path = \"data.csv\" (.tsv, .parquet; with target = \"column\") or \"data.npz\" (X, y); kind = ...")
    return 0


def _cmd_lineage(args: argparse.Namespace) -> int:
    from .lineage.commands import run_lineage

    return run_lineage(args)


def _cmd_show(args: argparse.Namespace) -> int:
    from .lineage.commands import run_show

    return run_show(args)


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report
    from .rundir import output_path

    out = output_path(args.output, "-o") if args.output is not None else None
    path = write_report(args.run_dir, out)
    print(f"wrote {path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_run

    genome: str | int = args.genome
    if genome != "best":
        try:
            genome = int(genome)
        except ValueError:
            raise HybridError(f"genome: got {args.genome!r}, expected an integer id or 'best'") from None
    budgets = None if args.budgets is None else _export_budgets(args.budgets)
    threshold = None if args.threshold is None else _export_threshold(args.threshold)
    share = None if args.flops_share is None else _export_share(args.flops_share)
    result = export_run(
        args.run_dir, genome, args.fmt, _export_out(args.out), budgets, args.all_paths, threshold, share
    )
    for path in result.files:
        print(path)
    print(f"{result.format}: {result.n_parameters} parameters")
    for entry in result.sidecar.get("budgets", []):
        scores = "".join(
            f", {key} {entry[key]:.4g}" for key in ("val_metric", "test_metric") if key in entry
        )
        print(
            f"budget {entry['budget']:g}: {entry['flops']} FLOPs ({entry['flops_share']:.1%}), "
            f"{entry['n_parameters']} parameters{scores}"
        )
    adaptive = result.sidecar.get("adaptive")
    if adaptive:
        print(
            f"adaptive ({adaptive['control_flow']}): exits {adaptive['exits']} at thresholds "
            f"{adaptive['thresholds']}, skip gates {adaptive['skip_gates']}; full path "
            f"{adaptive['full_flops']} FLOPs"
        )
    dial = result.sidecar.get("dial")
    if dial:
        print(
            f"dialled to {dial['flops_share']:g} of the full path: threshold {dial['threshold']:.6g}, "
            f"{dial['val_average_flops']:.0f} FLOPs per validation input ({dial['val_flops_share']:.1%}), "
            f"validation accuracy {dial['val_accuracy']:.4f}"
        )
    return 0


def _export_share(text: str) -> float:
    """Parse ``export --flops-share``: a number in (0, 1] (a budget: ``genomes.budgets.check_budget``)."""
    from genomes.budgets import check_budget

    return _unit_interval(text, "--flops-share", check_budget)


def _export_threshold(text: str) -> float:
    """Parse ``export --threshold``: a number in (0, 1]."""
    from genomes.adaptive import check_threshold

    return _unit_interval(text, "--threshold", check_threshold)


def _unit_interval(text: str, flag: str, check: Callable[[object, str], float]) -> float:
    """Parse a command-line number in (0, 1] with ``check``; one-line ``HybridError`` otherwise."""
    from genomes import GenomeError

    try:
        return check(float(text), flag)
    except GenomeError as exc:
        raise HybridError(str(exc)) from None
    except ValueError:  # float("x")
        raise HybridError(f"{flag} should be a number in (0, 1], got {text!r}") from None


def _export_budgets(text: str) -> list[float]:
    """Parse ``export --budgets``: a comma list of numbers in (0, 1], strictly increasing."""
    from genomes import GenomeError
    from genomes.budgets import check_budgets

    try:
        values = [float(part) for part in text.split(",")]
        return list(check_budgets(values, "--budgets"))
    except ValueError as exc:  # float("x") or a GenomeError (a ValueError)
        detail = str(exc) if isinstance(exc, GenomeError) else "not a number"
        raise HybridError(
            f"--budgets should be a comma list of numbers in (0, 1], strictly increasing "
            f"(e.g. 0.25,0.5,1), got {text!r}: {detail}"
        ) from None


def _cmd_modules(args: argparse.Namespace) -> int:
    from .library.commands import run_modules

    return run_modules(args)


def _export_out(out: str | None) -> str | None:
    """Check ``export --out``: an existing folder, or a file (or new folder) in an existing folder."""
    from pathlib import Path

    from .rundir import output_path

    if out is None or Path(out).is_dir():
        return out
    return str(output_path(out, "--out"))


COMMANDS = {
    "export": _cmd_export,
    "run": _cmd_run,
    "grow": _cmd_grow,
    "resume": _cmd_resume,
    "status": _cmd_status,
    "tasks": _cmd_tasks,
    "lineage": _cmd_lineage,
    "show": _cmd_show,
    "report": _cmd_report,
    "modules": _cmd_modules,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hybrid`` command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except HybridError as exc:
        print(f"hybrid {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
