"""One trained network, many budgets (issue 17): hybrid vs fixed and slimmable MLPs on digits.

On hybrid's own seeded train/validation/test split of digits (sklearn ``load_digits``),
for each seed, with torch threads set to 1:

1. **hybrid**: a search from ``configs/digits.toml`` with a generation cap instead of
   the time budget, ``[training] budgets = "sandwich"``, ``[selection]
   champion_objective = "budget_auc"``, ``fitness = "budget_auc"`` (the search breeds
   on the curve it is chosen on) and ``evolution.final_steps`` = the MLPs' steps
   (the chosen champion trained that many more sandwich steps on train + validation,
   as users of any tuner do after the choice; ``--set evolution.final_steps=0`` for
   none); its champion's test accuracy at every budget
   (``hybrid.budgets.budget_scores`` on the test split: one budgeted pass per budget),
   its FLOPs there, and the search's training member-steps (every trained member x
   ``training.steps``, from the lineage, plus the final fit). A tree without those
   keys runs without them (said in the output); without ``hybrid.budgets`` the budgets
   are scored by closing the removed neurons' gates (the same sub-networks,
   ``genomes.budgets``). ``--matched-steps`` shrinks the search
   (:data:`MATCHED_POPULATION` x :data:`MATCHED_GENERATIONS` x :data:`MATCHED_STEPS`) and
   gives the final fit the rest of the fixed MLPs' steps, so the whole search trains no
   more member-steps than the separate networks together.
2. **fixed MLPs**: one hidden layer, plain torch, trained *separately* for each share
   of 25/50/75/100% of the hybrid champion's full FLOPs (width ``h`` with
   ``2 (64 h + 10 h)`` closest to the target), the config's activation, AdamW with its
   lr, weight decay and batch size, :data:`MLP_STEPS` steps each
   (:func:`quality.train_mlps`), on train + validation when the search has a final fit
   (they use validation for nothing, so they get the rows the champion's final fit gets).
3. **slimmable MLP**: one hidden layer as wide as the 100% fixed MLP; prefix widths;
   each step the sandwich rule (the full width, the 25% width and 2 random widths
   between), the smaller widths distilled in place from the full width's detached
   predictions (soft cross-entropy); the same steps, lr, batch size.

Prints one table (medians over seeds): budget share, FLOPs, hybrid test %, fixed MLP
test %, gap (fixed - hybrid), slimmable test %, gap (slimmable - hybrid); the
monotonicity count over a finer grid (budget pairs whose test accuracy does not fall
as the budget grows / all pairs, budgets 0.10..1.00 by 0.05) and the hybrid
champion's exceptions per seed (how many, their sizes in test images, the largest
drop); each arm's total
training steps; and the export timing (the python export's forward at budget 0.25 vs
1.0 on a batch of 1,024, threads 1, median of repeats; every seed's champion, and
fresh 64-h-10 genomes for scale). Writes every per-seed figure (and each champion, so
``--from-json ... --retime`` can time the exports again on a quiet machine) to
``--out`` (JSON) and the plot next to it (``.png``). ``--from-json`` tabulates earlier
``--out`` files without running anything; several files (runs of different seeds, say
two processes side by side) are pooled into one table, each run's export timing and
machine lines kept (with ``--out``, the pooled JSON is written there).

    PYTHONPATH=. python benchmarks/budgets.py --quick          # a couple of minutes
    PYTHONPATH=. python benchmarks/budgets.py                  # 5 seeds
    PYTHONPATH=. python benchmarks/budgets.py --matched-steps  # 5 seeds, a search within the MLPs' steps
    PYTHONPATH=. python benchmarks/budgets.py --from-json a.json b.json --out pooled.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from quality import config_override, machine_line, median, train_mlps
from torch import nn

import hybrid.lineage
from genomes import Genome
from genomes.budgets import budget_chain
from genomes.serialize import from_dict, to_dict
from hybrid.config import Config, load_config
from hybrid.errors import ConfigError
from hybrid.search import Search
from hybrid.tasks import Task, load_task
from hybrid.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "digits.toml"
#: The budgets of the table, and the finer grid of the monotonicity count.
SHARES = (0.25, 0.5, 0.75, 1.0)
GRID = tuple(round(0.1 + 0.05 * k, 2) for k in range(19))
#: Steps of each fixed MLP and of the slimmable MLP (full mode; quick: QUICK_MLP_STEPS).
MLP_STEPS = 2000
QUICK_MLP_STEPS = 500
#: The hybrid search's generation cap (full mode; quick: QUICK_GENERATIONS, smaller population).
GENERATIONS = 30
QUICK_GENERATIONS = 4
#: ``--matched-steps``: a search no costlier than the fixed MLPs together (issue 17's steps
#: line read as every member-step of the search): MATCHED_POPULATION members x
#: MATCHED_GENERATIONS generations x MATCHED_STEPS steps, and the final fit gets the rest
#: of the fixed MLPs' 4 x ``--mlp-steps`` (4,000 of 8,000 in full mode).
MATCHED_POPULATION = 8
MATCHED_GENERATIONS = 5
MATCHED_STEPS = 100
QUICK_POPULATION = 12
#: The sandwich rule's random widths per step (besides the largest and the smallest).
SLIM_SAMPLES = 2
N_IN, N_OUT = 64, 10


def mlp_flops(h: int) -> int:
    """FLOPs per sample of a 64-h-10 MLP: 2 per multiply-add of its weights (as hybrid counts)."""
    return 2 * (N_IN * h + h * N_OUT)


def width_for(target: float) -> int:
    """The hidden width whose FLOPs are closest to ``target`` (at least 1)."""
    return max(1, int(round(target / mlp_flops(1))))


def width_within(target: float) -> int:
    """The widest hidden layer whose FLOPs are at most ``target`` (at least 1: the smallest level)."""
    return max(1, int(math.floor(target / mlp_flops(1) + 1e-9)))


def monotone_exceptions(scores: list[float]) -> list[tuple[int, int, float]]:
    """Return the pairs that break monotonicity: (i, j > i, drop = scores[i] - scores[j] > 0)."""
    n = len(scores)
    return [(i, j, scores[i] - scores[j]) for i in range(n) for j in range(i + 1, n)
            if scores[j] < scores[i] - 1e-12]  # fmt: skip


def monotone_pairs(scores: list[float]) -> tuple[int, int]:
    """Return (pairs i < j with scores[j] >= scores[i], all pairs)."""
    n = len(scores)
    return n * (n - 1) // 2 - len(monotone_exceptions(scores)), n * (n - 1) // 2


def exceptions_line(seed: dict[str, Any]) -> str:
    """One seed's monotonicity exceptions: how many, their sizes in test images, the largest."""
    scores = [seed["hybrid"]["test"][f"{b:g}"] for b in GRID]
    bad = monotone_exceptions(scores)
    if not bad:
        return f"seed {seed['seed']}: none"
    n_test = seed.get("n_test")  # absent in JSONs written before session 27: sizes in points only
    if n_test:
        sizes = [round(drop * n_test) for *_, drop in bad]
        hist = ", ".join(f"{k} image{'s' * (k > 1)} x {sizes.count(k)}" for k in sorted(set(sizes)))
    else:
        sizes = [round(100 * drop, 1) for *_, drop in bad]
        hist = ", ".join(f"{k:.1f} points x {sizes.count(k)}" for k in sorted(set(sizes)))
    i, j, _ = max(bad, key=lambda e: (e[2], -e[0]))
    return (f"seed {seed['seed']}: {len(bad)} ({hist}; largest {GRID[i]:.2f} -> {GRID[j]:.2f}, "
            f"{100 * scores[i]:.1f} -> {100 * scores[j]:.1f}%)")


# ------------------------------------------------------------------- hybrid
@dataclass
class HybridSeed:
    """One hybrid search's champion, scored on the test split at every budget."""

    full_flops: int
    flops: dict[str, int]  # budget -> FLOPs of the selected level
    test: dict[str, float]  # budget -> test accuracy
    member_steps: int
    engine_steps: int  # steps of the batched engine (each trains every member at once): generations x steps + final fit
    passes_per_step: int  # forward-backward passes per member-step (sandwich: 2 + budget_samples)
    generations: int
    wall_s: float
    objective: str  # the champion objective the run recorded
    sandwich: bool
    scored_by: str  # "budget_scores" or "closed gates"


def _config(
    seed: int,
    runs_dir: Path,
    generations: int,
    quick: bool,
    notes: list[str],
    sandwich: bool = True,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """digits.toml with a generation cap, sandwich training and the budget-AUC fitness and champion (where
    known), then ``overrides`` (``--set``)."""
    base = {
        "run.seed": seed,
        "run.runs_dir": str(runs_dir),
        "run.name": f"budgets-s{seed}",
        "run.threads": 1,
        "run.device": "cpu",
        "evolution.generations": generations,
        "evolution.time_budget_s": 1e9,  # the cap decides, not the clock
        **({"evolution.population": QUICK_POPULATION} if quick else {}),
    }
    wanted = {
        "training.budgets": "sandwich" if sandwich else "off",
        "selection.champion_objective": "budget_auc",
        "selection.fitness": "budget_auc",
    }
    for key, value in list(wanted.items()):
        try:
            load_config(CONFIG, {**base, key: value})
        except ConfigError as exc:
            note = f"{key} = {value!r} is not known to this tree ({str(exc).split(': ', 1)[-1]}): run without it"
            if note not in notes:
                notes.append(note)
            del wanted[key]
    return load_config(CONFIG, {**base, **wanted, **(overrides or {})})


def with_validation_in_train(task: Task) -> Task:
    """``task`` with its validation rows appended to the training split (the rows a final fit uses)."""
    return replace(
        task,
        X_train=np.concatenate([task.X_train, task.X_val]),
        y_train=np.concatenate([task.y_train, task.y_val]),
    )


def _closed_copy(genome: Genome, masks: dict[int, np.ndarray]) -> Genome:
    """A copy whose removed hidden neurons have exactly closed gates (the masked network)."""
    g = genome.copy()
    for n, keep in masks.items():
        a = g.graph.nodes[n]
        if a["role"] == "hidden" and not keep.all():
            logits = np.array(a["gate"], dtype=np.float64, copy=True)
            logits[~keep] = -1e4
            a["gate"] = logits
    return g


def score_budgets(genome: Genome, X: np.ndarray, y: np.ndarray, tc: TrainConfig, budgets: tuple[float, ...]):
    """Return (scores, flops, how) of ``genome`` at each budget on (X, y)."""
    try:
        from hybrid.budgets import budget_scores
    except ImportError:
        budget_scores = None
    if budget_scores is not None:
        (s,) = budget_scores([genome], X, y, tc, budgets, device="cpu", threads=1)
        return [float(v) for v in s.scores], [int(f) for f in s.flops], "budget_scores"
    from hybrid.backends import evaluate_members

    chain = budget_chain(genome, tc.gate)
    levels = [chain.select(b) for b in budgets]
    evals = evaluate_members([_closed_copy(genome, lv.masks) for lv in levels], X, y, tc, device="cpu")
    return [float(e.score) for e in evals], [lv.flops for lv in levels], "closed gates"


def run_hybrid(config: Config, seed: int, notes: list[str]) -> tuple[HybridSeed, Genome]:
    """Run the search ``config`` describes (:func:`_config`) and score its champion on the
    test split at every budget; return it with the champion."""
    t0 = time.perf_counter()
    result = Search.start(config, overwrite=True).run()
    wall = time.perf_counter() - t0
    task = load_task(config.task, seed)
    tc = TrainConfig(**config.train_kwargs())
    from hybrid.rundir import open_run_dir

    run = open_run_dir(result.run_dir)
    genome = run.read_best_genome()
    metrics = json.loads(run.best_metrics_path.read_text())
    with hybrid.lineage.open(result.run_dir) as lin:
        trained = len(lin.records())
    budgets = tuple(sorted(set(SHARES) | set(GRID)))
    scores, flops, how = score_budgets(genome, task.X_test, task.y_test, tc, budgets)
    sandwich = getattr(config.training, "budgets", "off") == "sandwich"
    asked = getattr(config.selection, "champion_objective", "metric")
    objective = metrics.get("champion_objective", "metric")
    if asked != objective:
        note = (f"selection.champion_objective = {asked!r} is configured but this tree's search chose by "
                f"{objective!r} (hybrid/search.py does not call hybrid.champion.budget_curves)")  # fmt: skip
        if note not in notes:
            notes.append(note)
    samples = int(getattr(config.training, "budget_samples", 2))
    return HybridSeed(
        full_flops=budget_chain(genome, tc.gate).full.flops,
        flops={f"{b:g}": f for b, f in zip(budgets, flops, strict=True)},
        test={f"{b:g}": s for b, s in zip(budgets, scores, strict=True)},
        member_steps=trained * config.training.steps + metrics.get("final_steps", 0),
        engine_steps=result.generations * config.training.steps + metrics.get("final_steps", 0),
        passes_per_step=2 + samples if sandwich else 1,
        generations=result.generations,
        wall_s=wall,
        objective=objective,
        sandwich=sandwich,
        scored_by=how,
    ), genome


# --------------------------------------------------------------- slimmable
class Slimmable(nn.Module):
    """A 64-H-10 MLP whose forward runs the first ``w`` hidden neurons only (prefix widths)."""

    def __init__(self, width: int, act: str) -> None:
        from quality import Activation

        super().__init__()
        self.hidden = nn.Linear(N_IN, width)
        self.out = nn.Linear(width, N_OUT)
        self.act = Activation(act)

    def forward(self, x: torch.Tensor, w: int) -> torch.Tensor:
        h = self.act(nn.functional.linear(x, self.hidden.weight[:w], self.hidden.bias[:w]))
        return nn.functional.linear(h, self.out.weight[:, :w], self.out.bias)


def train_slimmable(task: Task, config: Config, width: int, smallest: int, steps: int, seed: int) -> Slimmable:
    """Train a slimmable MLP with the sandwich rule and in-place distillation; return it.

    Each step: the full width on the labels, then the smallest and ``SLIM_SAMPLES``
    random widths in [smallest, width] on the full width's detached softmax (soft
    cross-entropy); one AdamW step on the summed gradients. The minibatches carry the
    config's input noise, as hybrid's members' and the fixed MLPs' do.
    """
    from quality import training_minibatches

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = Slimmable(width, config.genome.activations[0])
    tr = config.training
    opt = torch.optim.AdamW(
        [
            {"params": [net.hidden.weight, net.out.weight], "weight_decay": tr.weight_decay},
            {"params": [net.hidden.bias, net.out.bias], "weight_decay": 0.0},
        ],
        lr=tr.lr,
    )
    for xb, yb in training_minibatches(task, tr, steps, gen):
        opt.zero_grad(set_to_none=True)
        full = net(xb, width)
        nn.functional.cross_entropy(full, yb).backward()
        soft = full.detach().softmax(1)
        widths = [smallest] + [int(w) for w in rng.integers(smallest, width + 1, SLIM_SAMPLES)]
        for w in widths:
            out = net(xb, w)
            (-(soft * out.log_softmax(1)).sum(1).mean()).backward()
        opt.step()
    return net


def slim_scores(net: Slimmable, task: Task, widths: list[int]) -> list[float]:
    """Test accuracy of ``net`` at each width."""
    Xt = torch.tensor(np.asarray(task.X_test, dtype=np.float32))
    with torch.no_grad():
        return [float((net(Xt, w).argmax(1).numpy() == task.y_test).mean()) for w in widths]


# ------------------------------------------------------------------- export
#: Rounds the export timing alternates the two budgets over.
ROUNDS = 5


def _time_file(genome: Genome, gate: str, repeats: int, x: torch.Tensor) -> dict[str, float]:
    """Median seconds per call of the *exported python file* at budget 0.25 and 1.0."""
    import importlib.util

    from hybrid.export import export_genome

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.py"
        export_genome(genome, path, "python", gate=gate, budgets=[0.25, 1.0])
        spec = importlib.util.spec_from_file_location(f"budget_model_{id(genome)}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        net = module.load()
    # the two budgets alternate in ROUNDS rounds (warm-up, then repeats / ROUNDS timed calls
    # each), so a change in the machine's load hits both alike; median of the rounds' medians
    rounds: dict[str, list[float]] = {"0.25": [], "1": []}
    with torch.no_grad():
        for _ in range(ROUNDS):
            for b, medians in rounds.items():
                for _ in range(10):
                    net(x, budget=float(b))
                times = []
                for _ in range(max(1, repeats // ROUNDS)):
                    t0 = time.perf_counter()
                    net(x, budget=float(b))
                    times.append(time.perf_counter() - t0)
                medians.append(statistics.median(times))
    out = {b: statistics.median(m) for b, m in rounds.items()}
    out["speedup"] = out["1"] / out["0.25"]
    return out


#: How the export is timed (stored with each timing).
TIMED = "the exported python file (export_genome(..., budgets=[0.25, 1.0])), forward(x, budget=b)"


def champion_timing(genome: Genome, gate: str, repeats: int) -> dict[str, Any]:
    """The python export of ``genome`` at budget 0.25 vs 1.0, batch 1,024, threads 1.

    The file as ``hybrid export --budgets 0.25,1`` writes it, loaded the way a user
    loads it (:func:`_time_file`).
    """
    return {"how": TIMED, **_time_file(genome, gate, repeats, torch.randn(1024, N_IN))}


def export_timing(champion: dict[str, Any], gate: str, repeats: int) -> dict[str, Any]:
    """A run's timing line: its first seed's ``champion_timing`` and, for scale, fresh genomes'.

    The fresh ``64 -> h -> 10`` genomes with h = 64 and 128 (identity orders) under
    ``"reference"``: a 2-3 kFLOP champion is bound by per-call costs that no budget
    shrinks (torch's 1,024 x 64 matmul costs about the same for 4 and 16 output columns
    on one core).
    """
    from genomes import InnovationTracker

    x = torch.randn(1024, N_IN)
    rng = np.random.default_rng(0)
    reference = {
        str(h): _time_file(Genome.minimal(N_IN, N_OUT, rng, InnovationTracker(), hidden=[h]), gate, repeats, x)
        for h in (64, 128)
    }
    return {**champion, "reference": reference}


def retime(doc: dict[str, Any], repeats: int) -> None:
    """Time every stored champion's export again on this machine, now (threads 1), in place.

    The first seed's with the fresh 64-h-10 genomes for scale (:func:`export_timing`)
    replaces the document's run-level timings. Seeds from before session 28 store
    no champion: SystemExit (one line).
    """
    torch.set_num_threads(1)
    seeds = doc["seeds"]
    missing = [d["seed"] for d in seeds if "champion" not in d]
    if missing:
        raise SystemExit(f"--retime: seeds {missing} store no champion (runs before session 28)")
    start = machine_line(1)
    for d in seeds:
        d["export"] = champion_timing(from_dict(d["champion"]), d["gate"], repeats)
    doc["export_timing"] = [export_timing(seeds[0]["export"], seeds[0]["gate"], repeats)]
    doc["timed_seeds"] = [seeds[0]["seed"]]
    doc["retimed"] = f"{start}; at the end: {machine_line(1)}"


# --------------------------------------------------------------------- main
def _over(hybrid_seed: dict[str, Any], share: float) -> bool:
    """True if the champion's level at ``share`` is above ``share`` x its full FLOPs (below its min budget)."""
    return hybrid_seed["flops"][f"{share:g}"] > share * hybrid_seed["full_flops"] * (1 + 1e-9)


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}"


def _gap(a: float, b: float) -> str:
    return "n/a" if a != a or b != b else f"{100 * (a - b):+.1f}"


def matched_overrides(mlp_steps: int) -> dict[str, Any]:
    """``--matched-steps``: the search's population and steps, and a final fit taking the rest of
    the fixed MLPs' ``4 x mlp_steps`` (so the whole search trains no more member-steps than they do)."""
    search = MATCHED_POPULATION * MATCHED_GENERATIONS * MATCHED_STEPS
    if search > len(SHARES) * mlp_steps:
        raise SystemExit(f"--matched-steps: the search's {search:,} member-steps exceed the fixed MLPs' "
                         f"{len(SHARES) * mlp_steps:,} (--mlp-steps {mlp_steps}); give --mlp-steps >= "
                         f"{math.ceil(search / len(SHARES))}")  # fmt: skip
    return {
        "evolution.population": MATCHED_POPULATION,
        "training.steps": MATCHED_STEPS,
        "evolution.final_steps": len(SHARES) * mlp_steps - search,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    quick = args.quick
    steps = args.mlp_steps or (QUICK_MLP_STEPS if quick else MLP_STEPS)
    if args.matched_steps and args.generations:
        raise SystemExit("--matched-steps sets the generations itself; leave out --generations")
    matched = matched_overrides(steps) if args.matched_steps else {}
    generations = args.generations or (
        MATCHED_GENERATIONS if args.matched_steps else QUICK_GENERATIONS if quick else GENERATIONS
    )
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="hybrid-budgets-runs-"))
    notes: list[str] = []
    timing: dict[str, Any] = {"note": "no seed ran"}
    per_seed: list[dict[str, Any]] = []
    machine = machine_line(torch.get_num_threads())
    print(machine, flush=True)
    for seed in args.seeds:
        t0 = time.perf_counter()
        over = {"evolution.final_steps": steps, **matched, **dict(args.set)}
        config = _config(seed, runs_dir, generations, quick, notes, args.sandwich, over)
        hy, champion = run_hybrid(config, seed, notes)
        task = load_task(config.task, seed)
        targets = [s * hy.full_flops for s in SHARES]
        fixed_widths = [width_for(t) for t in targets]
        # With a final fit the champion trains on train + validation at the end; the MLPs, which
        # use validation for nothing, then train on the same rows (scored on test alike).
        mlp_task = with_validation_in_train(task) if config.evolution.final_steps else task
        note = "evolution.final_steps > 0: the fixed and slimmable MLPs train on train + validation, as the champion's final fit does"
        if config.evolution.final_steps and note not in notes:
            notes.append(note)
        fixed = [test for _, test in train_mlps(mlp_task, [(h,) for h in fixed_widths], steps, config, seed)]
        top, low = fixed_widths[-1], fixed_widths[0]
        slim = train_slimmable(mlp_task, config, top, low, steps, seed)
        slim_table = slim_scores(slim, task, fixed_widths)
        slim_grid = slim_scores(slim, task, [width_within(b * mlp_flops(top)) for b in GRID])
        hy_grid = [hy.test[f"{b:g}"] for b in GRID]
        per_seed.append({
            "seed": seed,
            "hybrid": asdict(hy),
            "fixed": {"widths": fixed_widths, "flops": [mlp_flops(h) for h in fixed_widths], "test": fixed,
                      "steps": steps * len(fixed_widths)},
            "slimmable": {"width": top, "smallest": low, "widths": fixed_widths, "test": slim_table,
                          "grid_test": slim_grid, "steps": steps, "passes_per_step": 2 + SLIM_SAMPLES},
            "monotone": {"hybrid": monotone_pairs(hy_grid), "slimmable": monotone_pairs(slim_grid)},
            "n_test": len(task.y_test),
            "wall_s": time.perf_counter() - t0,
            "gate": TrainConfig(**config.train_kwargs()).gate,
            "champion": to_dict(champion),  # to time its export again later (--retime)
        })  # fmt: skip
        print(f"seed {seed}: hybrid {[_pct(hy.test[f'{s:g}']) for s in SHARES]} at {hy.full_flops} FLOPs "
              f"({hy.generations} generations, {hy.wall_s:.0f} s, objective {hy.objective}, scored by "
              f"{hy.scored_by}); fixed {[_pct(v) for v in fixed]}; slimmable {[_pct(v) for v in slim_table]}",
              flush=True)  # fmt: skip
        gate = TrainConfig(**config.train_kwargs()).gate
        per_seed[-1]["export"] = champion_timing(champion, gate, args.repeats)
        if seed == args.seeds[0]:  # with the fresh 64-h-10 genomes for scale
            timing = export_timing(per_seed[-1]["export"], gate, args.repeats)
    return {
        "command": " ".join(sys.argv),
        "machine": machine,
        "torch_threads": torch.get_num_threads(),
        "quick": quick,
        "generations": generations,
        "mlp_steps": steps,
        "notes": notes,
        "seeds": per_seed,
        "export_timing": timing,
        "machine_end": machine_line(torch.get_num_threads()),  # the load average after the run
    }


def table(doc: dict[str, Any]) -> str:
    """Return the markdown table and the lines under it (medians over seeds)."""
    seeds = doc["seeds"]
    rows = [
        "| budget share | hybrid FLOPs | hybrid test % | fixed MLP FLOPs | fixed MLP test % | gap (fixed - hybrid) "
        "| median of per-seed gaps | slimmable test % | gap (slimmable - hybrid) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    over_any = []
    for k, s in enumerate(SHARES):
        h = median([d["hybrid"]["test"][f"{s:g}"] for d in seeds])
        hf = median([d["hybrid"]["flops"][f"{s:g}"] for d in seeds])
        over = sum(_over(d["hybrid"], s) for d in seeds)
        over_any.append(over)
        f = median([d["fixed"]["test"][k] for d in seeds])
        ff = median([d["fixed"]["flops"][k] for d in seeds])
        sl = median([d["slimmable"]["test"][k] for d in seeds])
        mark = f" ({over}/{len(seeds)} over)" if over else ""
        paired = median([d["fixed"]["test"][k] - d["hybrid"]["test"][f"{s:g}"] for d in seeds])
        rows.append(f"| {s:.2f} | {hf:,.0f} | {_pct(h)}{mark} | {ff:,.0f} | {_pct(f)} | {_gap(f, h)} "
                    f"| {_gap(paired, 0.0)} | {_pct(sl)} "
                    f"| {_gap(sl, h)} |")  # fmt: skip
    lines = ["\n".join(rows), ""]
    if any(over_any):
        mins = ", ".join(f"{min(d['hybrid']['flops'].values()) / d['hybrid']['full_flops']:.2f}" for d in seeds)
        lines.append(f"- (k/n over): in k of n seeds the champion's smallest sub-network is above this budget (its "
                     f"smallest FLOPs share per seed: {mins}): the row shows that smallest level's accuracy and FLOPs, "
                     "and budget_auc counted the budget as 0")  # fmt: skip
    for arm in ("hybrid", "slimmable"):
        ok = [d["monotone"][arm][0] for d in seeds]
        total = seeds[0]["monotone"][arm][1]
        lines.append(f"- monotone budget pairs, {arm} (budgets 0.10..1.00 by 0.05): median {median(ok):.0f} / {total} "
                     f"(per seed: {', '.join(map(str, ok))})")  # fmt: skip
    lines.append("- monotone exceptions, hybrid (budget pairs whose larger budget scores lower on test; by size): "
                 + "; ".join(exceptions_line(d) for d in seeds))  # fmt: skip
    hs = median([d["hybrid"]["member_steps"] for d in seeds])
    pp = seeds[0]["hybrid"]["passes_per_step"]
    es = [d["hybrid"]["engine_steps"] for d in seeds if "engine_steps" in d["hybrid"]]  # absent before session 27
    batched = f", {median(es):,.0f} steps of the batched engine, each training every member at once" if es else ""
    fixed_steps = seeds[0]["fixed"]["steps"]
    within = "within" if hs <= fixed_steps else f"{hs / fixed_steps:.1f} times"
    lines.append(f"- training steps: hybrid search {hs:,.0f} member-steps{batched} ({pp} forward-backward passes each; "
                 f"{within} the fixed MLPs' total); fixed MLPs {fixed_steps:,} steps (4 nets); slimmable "
                 f"{seeds[0]['slimmable']['steps']:,} steps ({seeds[0]['slimmable']['passes_per_step']} passes each)")  # fmt: skip
    hy0 = seeds[0]["hybrid"]
    lines.append(f"- hybrid: {median([d['hybrid']['generations'] for d in seeds]):.0f} generations, champion objective "
                 f"{hy0['objective']!r}, sandwich training {'on' if hy0['sandwich'] else 'off'}, budgets scored by "
                 f"{hy0['scored_by']}; median search {median([d['hybrid']['wall_s'] for d in seeds]):.0f} s")  # fmt: skip
    timed = [d for d in seeds if "export" in d]  # every seed's champion since session 28
    if timed:
        per = ", ".join(f"seed {d['seed']} {d['export']['speedup']:.2f}x ({1e6 * d['export']['0.25']:.0f} / "
                        f"{1e6 * d['export']['1']:.0f} us)" for d in timed)  # fmt: skip
        lines.append(f"- export (python, batch 1,024, threads 1), each seed's champion at budget 0.25 vs 1.0: median "
                     f"{median([d['export']['speedup'] for d in timed]):.2f}x over {len(timed)} seed(s); {per}"
                     + (f" (timed again: {doc['retimed']})" if doc.get("retimed") else ""))  # fmt: skip
    # one timing per run: a pooled document (pool()) holds each run's, timed on that run's first seed
    timings = doc["export_timing"] if isinstance(doc["export_timing"], list) else [doc["export_timing"]]
    firsts = doc.get("timed_seeds", [seeds[0]["seed"]])
    for t, first in zip(timings, firsts, strict=True):
        if t is None or "speedup" not in t:
            lines.append(f"- export timing: {(t or {}).get('note', 'n/a')}")
            continue
        if not timed:  # else on the per-seed line above
            whose = f"seed {first}'s champion" if first is not None else "the first seed's champion of one pooled run"
            lines.append(f"- export (python, batch 1,024, threads 1, {whose}): budget 0.25 "
                         f"{1e6 * t['0.25']:.0f} us, budget 1.0 {1e6 * t['1']:.0f} us per batch: {t['speedup']:.2f}x "
                         f"({t['how']})")  # fmt: skip
        for h, r in t.get("reference", {}).items():
            lines.append(f"- export, a fresh 64-{h}-10 genome for scale: budget 0.25 {1e6 * r['0.25']:.0f} us, "
                         f"budget 1.0 {1e6 * r['1']:.0f} us: {r['speedup']:.2f}x")  # fmt: skip
    lines += [f"- note: {n}" for n in doc["notes"]]
    if "machines" in doc:  # pooled: each run's machine line at its start and end
        lines.append(f"- {len(seeds)} seed(s) from {len(doc['machines'])} run(s)")
        for k, (start, end) in enumerate(zip(doc["machines"], doc["machines_end"], strict=True), 1):
            lines.append(f"- run {k} at the start: {start}" + (f"; at the end: {end}" if end else ""))
    else:
        lines.append(f"- {len(seeds)} seed(s); at the start: {doc['machine']}")
        if "machine_end" in doc:
            lines.append(f"- at the end: {doc['machine_end']}")
    return "\n".join(lines)


def pool(docs: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """One document of several runs' ``--out`` files (or earlier pooled ones): their seeds in order.

    Runs must share the generation cap, MLP steps and thread count (else SystemExit, one
    line naming the file); each run's export timing (of its first seed's champion),
    command and machine lines are kept side by side.
    """
    out: dict[str, Any] = {"seeds": [], "notes": [], "commands": [], "machines": [], "machines_end": [],
                           "export_timing": [], "timed_seeds": []}  # fmt: skip
    for path, doc in docs:
        if (not isinstance(doc, dict) or "export_timing" not in doc or not doc.get("seeds")
                or not isinstance(doc["seeds"][0].get("hybrid"), dict)):  # fmt: skip
            raise SystemExit(f"--from-json: {path} is not a budgets.py output (expected 'seeds' with a 'hybrid' "
                             "entry each, and 'export_timing')")  # fmt: skip
        for key in ("generations", "mlp_steps", "torch_threads"):
            if key in out and doc[key] != out[key]:
                raise SystemExit(f"--from-json: {path} has {key} = {doc[key]!r}, the earlier files {out[key]!r}")
            out[key] = doc[key]
        pooled = isinstance(doc["export_timing"], list)
        timings = doc["export_timing"] if pooled else [doc["export_timing"]]
        out["export_timing"] += timings
        out["timed_seeds"] += doc.get("timed_seeds", [doc["seeds"][0]["seed"]] if not pooled else [None] * len(timings))
        out["seeds"] += doc["seeds"]
        out["notes"] += [n for n in doc["notes"] if n not in out["notes"]]
        out["commands"] += doc.get("commands", [doc.get("command", "")])
        if "machines" not in doc:
            out["machines"].append(doc.get("machine", ""))
            out["machines_end"].append(doc.get("machine_end"))
        elif "machines_end" in doc:
            out["machines"] += doc["machines"]
            out["machines_end"] += doc["machines_end"]
        else:  # pooled before session 28: [start, end] pairs
            out["machines"] += [m[0] if isinstance(m, list) else m for m in doc["machines"]]
            out["machines_end"] += [m[-1] if isinstance(m, list) and len(m) > 1 else None for m in doc["machines"]]
    seen = [d["seed"] for d in out["seeds"]]
    if len(set(seen)) != len(seen):
        raise SystemExit(f"--from-json: a seed appears twice in the files: {sorted(seen)}")
    return out


def plot(doc: dict[str, Any], path: Path) -> None:
    """Test accuracy vs share of the hybrid champion's FLOPs: hybrid and slimmable on the grid, fixed MLPs."""
    from matplotlib.figure import Figure

    seeds = doc["seeds"]
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    share = lambda d, key: np.array(key(d), dtype=float)  # noqa: E731
    hg = np.median([[d["hybrid"]["test"][f"{b:g}"] for b in GRID] for d in seeds], axis=0)
    hf = np.median([[d["hybrid"]["flops"][f"{b:g}"] / d["hybrid"]["full_flops"] for b in GRID] for d in seeds], axis=0)
    ax.plot(hf, 100 * hg, "o-", ms=3, label="hybrid champion (one network)")
    sg = np.median([d["slimmable"]["grid_test"] for d in seeds], axis=0)
    ax.plot(GRID, 100 * sg, "s-", ms=3, label="slimmable MLP (one network)")
    fs = np.median([share(d, lambda d: d["fixed"]["flops"]) / d["hybrid"]["full_flops"] for d in seeds], axis=0)
    ft = np.median([d["fixed"]["test"] for d in seeds], axis=0)
    ax.plot(fs, 100 * ft, "D", ms=6, color="black", label="fixed MLPs (one network each)")
    ax.set_xlabel("share of the hybrid champion's full FLOPs")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"digits: accuracy vs cost (median of {len(seeds)} seed(s))")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 seeds, 4 generations of 12, 500 MLP steps")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default 0 1 2 3 4; quick 0 1)")
    p.add_argument("--generations", type=int, default=None, help="the search's generation cap")
    p.add_argument("--mlp-steps", type=int, default=None, help="steps of each fixed MLP and of the slimmable one")
    p.add_argument("--matched-steps", action="store_true",
                   help=f"a search of {MATCHED_POPULATION} x {MATCHED_GENERATIONS} generations x {MATCHED_STEPS} steps, "
                   "the final fit taking the rest of the fixed MLPs' steps: every member-step of the search counted, "
                   "no more than the separate networks together (issue 17's steps line)")  # fmt: skip
    p.add_argument("--no-sandwich", dest="sandwich", action="store_false",
                   help="train the search's members at full budget only (training.budgets = 'off'): the ablation")  # fmt: skip
    p.add_argument("--repeats", type=int, default=200, help="timed export forwards per budget")
    p.add_argument("--set", action="append", default=[], type=config_override, metavar="KEY=VALUE",
                   help="a config override for the search (JSON value), e.g. evolution.final_steps=2000")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="JSON of every figure (default benchmarks/budgets.json; "
                   "quick: a temporary folder); the plot goes next to it (.png)")  # fmt: skip
    p.add_argument("--retime", action="store_true",
                   help="with --from-json: time each stored champion's export again here (a quiet machine)")  # fmt: skip
    p.add_argument("--runs-dir", type=Path, default=None, help="where searches write (default: a temp folder)")
    p.add_argument("--from-json", type=Path, nargs="+", default=None, metavar="JSON",
                   help="print the table and redraw the plot of earlier --out files (runs nothing); several files "
                   "pool their seeds (with --out: the pooled JSON and its plot go there)")  # fmt: skip
    args = p.parse_args(argv)
    if args.from_json is not None:
        docs = [(path, json.loads(path.read_text())) for path in args.from_json]
        doc = pool(docs) if len(docs) > 1 or "machine" not in docs[0][1] else docs[0][1]
        if args.retime:
            retime(doc, args.repeats)
        print(table(doc))
        target = args.out or args.from_json[0].with_suffix(".png")
        if (len(docs) > 1 or args.retime) and args.out:  # the pooled (or re-timed) document beside its plot
            doc["table"] = table(doc)
            args.out.write_text(json.dumps(doc, indent=1) + "\n")
        plot(doc, target.with_suffix(".png"))
        print(f"wrote {target.with_suffix('.png')}" + (f" and {args.out}" if (len(docs) > 1 or args.retime) and args.out else ""))
        return
    if args.seeds is None:
        args.seeds = [0, 1] if args.quick else [0, 1, 2, 3, 4]
    out = args.out or (
        Path(tempfile.mkdtemp(prefix="hybrid-budgets-")) / "budgets.json" if args.quick else ROOT / "benchmarks" / "budgets.json"
    )
    doc = run(args)
    text = table(doc)
    print(text)
    doc["table"] = text
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    plot(doc, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
