"""Budgeted export (issue 17): one exported network, the cost dialled at call time.

The oracle is the genome with the budget's masks applied: a copy whose removed
neurons, and dropped skip edges, have a gate logit of -inf (deterministic gate
exactly 0 under both gate kinds, so ``h_j = 0``), evaluated in float64 by
``genomes.evaluate``. About half the drawn genomes get a direct input -> output edge
(the chain's step 0 drops it). One test
checks that this masked genome IS the level's sub-network (same live structure,
same function as the level's own plain export).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import GATE_KINDS, Genome, InnovationTracker, active_structure, evaluate, load, save
from genomes.budgets import budget_chain
from genomes.genome import edge_attrs
from hybrid.cli import main
from hybrid.config import dump_config, loads_config
from hybrid.errors import HybridError
from hybrid.export import ExportError, export_genome, export_run, to_module
from hybrid.export.budgets import budget_file_tag, level_plan, plan_budgets
from hybrid.export.module import exported_net
from hybrid.metrics import metric_score
from hybrid.tasks import load_task
from tests.hybrid.test_export_formats import METRICS, _available_formats, _site_dirs
from tests.hybrid.test_export_module import MEAN, STD, gated_genome, import_file
from tests.strategies import genomes_strategy

TOL = 1e-5
#: Random feed-forward genomes with at least one hidden node (else the chain is one level).
HIDDEN = genomes_strategy(gate=st.sampled_from(GATE_KINDS)).filter(
    lambda g: len(g.hidden_nodes()) > 0
)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def with_orders(genome: Genome, seed: int, direct: bool | None = None) -> Genome:
    """Return a copy with a random neuron order and drop rank (or none) on every hidden node.

    ``direct``: add an open input -> output edge where there is none (None: half the seeds).
    """
    rng = np.random.default_rng(seed)
    g = genome.copy()
    i, o = g.input_id, g.output_id
    if (rng.random() < 0.5 if direct is None else direct) and not g.graph.has_edge(i, o):
        w = rng.normal(size=(g.graph.nodes[o]["width"], g.graph.nodes[i]["width"]))
        top = max((a["innovation"] for _, _, a in g.graph.edges(data=True)), default=0)
        g.graph.add_edge(i, o, **edge_attrs(top + 1, w, 2.0))
    for n in g.hidden_nodes():
        a = g.graph.nodes[n]
        a["order"] = rng.permutation(int(a["width"]))
        a["drop"] = None if rng.random() < 0.3 else int(rng.integers(0, 4))
    return g


def masked(genome: Genome, budget: float, gate: str) -> Genome:
    """Return ``genome`` with every neuron and edge the budget removes closed exactly (logit -inf)."""
    level = budget_chain(genome, gate).select(budget)
    g = genome.copy()
    for n in g.hidden_nodes():
        a = g.graph.nodes[n]
        a["gate"] = np.where(level.masks[n], a["gate"], -np.inf).astype(np.float32)
    for e in level.edges_off:
        g.graph.edges[e]["gate"] = np.float32(-np.inf)
    return g


def reference(genome: Genome, budget: float, gate: str, x: np.ndarray) -> np.ndarray:
    """The budgeted function in float64: the masked genome on standardised features."""
    return evaluate(masked(genome, budget, gate), x.astype(np.float64), gate)


def draw_budgets(data: st.DataObject, genome: Genome, gate: str) -> list[float]:
    """Random budgets plus every level's exact FLOPs share (the rule's edges) and 1."""
    chain = budget_chain(genome, gate)
    full = chain.full.flops
    shares = [lv.flops / full for lv in chain.levels() if full and lv.flops] if full else []
    drawn = data.draw(st.lists(st.floats(1e-6, 1.0), min_size=2, max_size=4))
    return sorted({*drawn, *shares[:6], 1.0})


def inputs(genome: Genome, n: int = 11, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, genome.n_inputs)).astype(np.float32)


# --------------------------------------------------------------- the oracle itself
@settings(max_examples=15)
@given(HIDDEN, st.sampled_from(GATE_KINDS), st.data())
def test_the_masked_genome_is_the_level_sub_network(genome, gate, data):
    genome = with_orders(genome, data.draw(st.integers(0, 2**16)))
    b = data.draw(st.floats(1e-3, 1.0))
    level = budget_chain(genome, gate).select(b)
    m = masked(genome, b, gate)
    live = active_structure(m, gate)
    assert set(live.neurons) == set(level.structure.neurons)
    for n, mask in live.neurons.items():
        np.testing.assert_array_equal(mask, level.structure.neurons[n])
    assert live.edges == level.structure.edges and live.flops == level.flops
    x = inputs(genome)
    net = exported_net(level_plan(genome, level, gate))
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, evaluate(m, x.astype(np.float64), gate), rtol=TOL, atol=TOL)


# ------------------------------------------------- python / TorchScript / in memory
@settings(max_examples=8)
@given(HIDDEN, st.sampled_from(GATE_KINDS), st.data())
def test_budgeted_python_and_torchscript_compute_the_masked_genome(genome, gate, data):
    genome = with_orders(genome, data.draw(st.integers(0, 2**16)))
    budgets = draw_budgets(data, genome, gate)
    x = inputs(genome)
    full = to_module(genome, gate)
    with tempfile.TemporaryDirectory() as tmp:
        py = export_genome(genome, Path(tmp) / "m.py", "python", gate, budgets=budgets)
        ts = export_genome(genome, Path(tmp) / "m.pt", "torchscript", gate, budgets=budgets)
        models = {
            "memory": to_module(genome, gate, budgets=budgets),
            "python": import_file(py.path, "budgeted_export").load(),
            "torchscript": torch.jit.load(ts.path),
        }
    xt = torch.from_numpy(x)
    with torch.no_grad():
        for name, model in models.items():
            # no budget: the full network, today's export
            np.testing.assert_allclose(model(xt).numpy(), full(xt).numpy(), rtol=TOL, atol=TOL)
            for b in budgets:
                np.testing.assert_allclose(
                    model(xt, b).numpy(),
                    reference(genome, b, gate, x),
                    rtol=TOL,
                    atol=TOL,
                    err_msg=f"{name} at budget {b}",
                )
    entries = py.sidecar["budgets"]
    assert [e["budget"] for e in entries] == budgets
    flops = [e["flops"] for e in entries]
    assert flops == sorted(flops), "a larger budget should never cost less"


@settings(max_examples=15)
@given(HIDDEN, st.sampled_from(GATE_KINDS), st.data())
def test_level_selection_is_the_chains_and_monotone(genome, gate, data):
    genome = with_orders(genome, data.draw(st.integers(0, 2**16)))
    chain = budget_chain(genome, gate)
    bp = plan_budgets(genome, gate)
    net = to_module(genome, gate, budgets=True)
    grid = sorted({*data.draw(st.lists(st.floats(1e-9, 1.0), max_size=20)), 1.0})
    grid += [lv.flops / chain.full.flops for lv in chain.levels() if chain.full.flops]
    previous = -1
    for b in sorted(grid):
        level = bp.levels[net.level(b)]
        assert level.removed == chain.select(b).removed
        assert level.flops >= previous
        previous = level.flops
    assert bp.plan.n_parameters == chain.full.n_parameters  # no weight is duplicated
    assert sum(p.numel() for p in net.parameters()) == chain.full.n_parameters


def test_below_min_budget_the_chains_last_level_is_chosen_even_when_it_saves_no_flops():
    # Dropping node 5 (rank 0) leaves node 2 feeding nothing; the chain then still
    # drops node 2 (rank 1), a removal that saves no FLOPs: select() gives that last level.
    # The output stays reached through node 7 (a parallel branch: no edge is a shortcut,
    # so step 0, skip edges, removes nothing).
    from genomes.genome import node_attrs

    gate = "sigmoid"
    rng = np.random.default_rng(0)
    t = InnovationTracker()
    g = Genome.minimal(1, 1, rng, t).copy()
    for n, width, rank in ((2, 3, 1), (5, 2, 0), (7, 1, None)):
        g.graph.add_node(n, **node_attrs("hidden", width, "tanh", bias=rng.normal(0, 0.5, width)))
        g.graph.nodes[n]["drop"] = rank
    for s, d in ((0, 2), (2, 5), (5, 1), (0, 7), (7, 1)):
        shape = (g.graph.nodes[d]["width"], g.graph.nodes[s]["width"])
        g.graph.add_edge(s, d, **edge_attrs(t.edge(s, d), rng.normal(0, 1, shape)))
    g.graph.remove_edge(0, 1)
    g = g.validate()
    chain = budget_chain(g, gate)
    assert all(r[0] == "neuron" for r in chain.removals)
    assert chain.level(len(chain.removals)).flops == chain.level(len(chain.removals) - 1).flops
    net = to_module(g, gate, budgets=True)
    bp = plan_budgets(g, gate)
    for b in (1e-6, chain.min_budget, 0.5, 0.9, 1.0):
        assert bp.levels[net.level(b)].removed == chain.select(b).removed
        x = inputs(g)
        with torch.no_grad():
            out = net(torch.from_numpy(x), b).numpy()
        np.testing.assert_allclose(out, reference(g, b, gate, x), rtol=TOL, atol=TOL)


@settings(max_examples=6)
@given(HIDDEN, st.sampled_from(GATE_KINDS), st.data())
def test_budgeted_modules_have_the_levels_gradients_and_see_weight_changes(genome, gate, data):
    # with gradients on, forward runs on views of the parameters (trainable); without,
    # on cached copies that must follow every in-place change and dtype move
    genome = with_orders(genome, data.draw(st.integers(0, 2**16)))
    b = data.draw(st.floats(1e-3, 1.0))
    plain = exported_net(level_plan(genome, budget_chain(genome, gate).select(b), gate))
    with tempfile.TemporaryDirectory() as tmp:
        py = export_genome(genome, Path(tmp) / "m.py", "python", gate, budgets=[b])
        models = {"memory": to_module(genome, gate, budgets=True), "python": import_file(py.path, "grads").load()}
    x = torch.from_numpy(inputs(genome))
    xr = x.clone().requires_grad_()
    want = plain(xr)
    (want_dx,) = torch.autograd.grad(want.square().sum(), xr, allow_unused=True)
    want_dx = torch.zeros_like(x) if want_dx is None else want_dx  # an output that ignores x
    for name, model in models.items():
        xg = x.clone().requires_grad_()
        out = model(xg, b)
        out.square().sum().backward()
        np.testing.assert_allclose(out.detach(), want.detach(), rtol=TOL, atol=TOL, err_msg=name)
        got_dx = torch.zeros_like(x) if xg.grad is None else xg.grad
        np.testing.assert_allclose(got_dx, want_dx, rtol=1e-4, atol=1e-4, err_msg=name)
        widths = models["memory"].level_widths[models["memory"].level(b)]
        for (_, attr, sources, _), k in zip(models["memory"]._steps, widths, strict=True):
            grad = getattr(model, attr).weight.grad if sources else getattr(model, attr).grad
            # rows the level does not compute get no gradient (None: the node is skipped)
            assert grad is None or not grad[k:].any(), f"{name}: {attr} rows {k}: got gradient"
        with torch.no_grad():
            before = model(x, b).clone()  # an output can be a view of a bias
            for p in model.parameters():
                p.mul_(0.5)
            after = model(x, b)
            model.double()
            doubled = model(x.double(), b)
        fresh = model(x.double(), b).detach()  # gradients on: no cache
        assert doubled.dtype == torch.float64
        np.testing.assert_allclose(after, fresh.float(), rtol=TOL, atol=TOL, err_msg=name)
        np.testing.assert_allclose(doubled, fresh, rtol=1e-9, atol=1e-9, err_msg=name)
        assert not torch.equal(before, after) or not before.any(), f"{name}: the cache missed a change"


def test_a_small_budget_really_shrinks_the_work():
    genome = Genome.minimal(16, 4, np.random.default_rng(0), InnovationTracker(), hidden=[32])
    net = to_module(genome, "sigmoid", budgets=True)
    source = None
    with tempfile.TemporaryDirectory() as tmp:
        source = export_genome(
            genome, Path(tmp) / "m.py", "python", budgets=[0.25, 1]
        ).path.read_text()
    # a quarter of the FLOPs keeps 8 of the 32 hidden neurons: the level's widths say so
    assert net.level_widths[net.level(0.25)] == (8, 4) and net.level_widths[net.level(1.0)] == (
        32,
        4,
    )
    assert "LEVEL_WIDTHS = [[32, 4], [31, 4]," in source and "self.node2.weight[:k2]" in source


def test_a_direct_edge_is_dropped_so_a_quarter_budget_fits(tmp_path):
    # digits-like, small: input (24) -> h (6) -> output (5) plus a direct 24 -> 5 edge
    rng = np.random.default_rng(0)
    genome = Genome.minimal(24, 5, rng, InnovationTracker(), hidden=[6], activation="tanh")
    genome = with_orders(genome, 1, direct=True).validate()
    chain = budget_chain(genome, "sigmoid")
    assert chain.removals[0] == ("edge", genome.input_id, genome.output_id)
    assert chain.select(0.25).flops <= 0.25 * chain.full.flops
    bp = plan_budgets(genome, "sigmoid")
    assert bp.edges_off[0] == frozenset() and all(bp.edges_off[1:])
    py = export_genome(genome, tmp_path / "m.py", "python", budgets=[0.25, 1])
    ts = export_genome(genome, tmp_path / "m.pt", "torchscript", budgets=[0.25, 1])
    source = py.path.read_text()
    assert "EDGES = [(0, 1)]" in source and "if edges[0]:" in source
    assert [e["flops"] for e in py.sidecar["budgets"]][0] <= 0.25 * chain.full.flops
    models = [
        to_module(genome, budgets=True),
        import_file(py.path, "direct_edge").load(),
        torch.jit.load(ts.path),
    ]
    x = inputs(genome)
    with torch.no_grad():
        for model in models:
            for b in (0.1, 0.25, 0.6, 0.95, 1.0):
                got = model(torch.from_numpy(x), b).numpy()
                want = reference(genome, b, "sigmoid", x)
                np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL, err_msg=f"{b}")
    # without a droppable edge the file carries no edge flags (the lean path)
    plain = Genome.minimal(24, 5, rng, InnovationTracker(), hidden=[6])
    text = export_genome(plain, tmp_path / "p.py", "python", budgets=[1]).path.read_text()
    assert "EDGES =" not in text and "edges[" not in text and "level_edges" not in text


# ------------------------------------------------------------------- pt2 and onnx
def _per_budget(fmt: str, tmp_path: Path, budgets: list[float]) -> None:
    genome = with_orders(gated_genome(seed=3), 5)
    stats = {"feature_mean": MEAN, "feature_std": STD}
    suffix = {"pt2": ".pt2", "onnx": ".onnx"}[fmt]
    result = export_genome(
        genome, tmp_path / f"model{suffix}", fmt, "hard_concrete", stats, budgets
    )
    names = [f"model.{budget_file_tag(b)}{suffix}" for b in budgets]
    assert [f.name for f in result.files] == [*names, f"model{suffix}.json"]
    assert result.path.name == names[-1]
    assert [e["file"] for e in result.sidecar["budgets"]] == names
    x = (MEAN + STD * np.random.default_rng(2).normal(size=(9, 4))).astype(np.float32)
    for b, name in zip(budgets, names, strict=True):
        path = str(tmp_path / name)
        if fmt == "pt2":
            out = torch.export.load(path).module()(torch.from_numpy(x)).detach().numpy()
        else:
            import onnxruntime

            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            out = session.run(["y"], {"x": x})[0]
        expected = reference(genome, b, "hard_concrete", (x - MEAN) / STD)
        np.testing.assert_allclose(out, expected, rtol=TOL, atol=TOL, err_msg=name)


def test_pt2_writes_one_file_per_budget_each_the_sub_network(tmp_path):
    _per_budget("pt2", tmp_path, [0.3])  # one file: torch.export takes a second or two


@pytest.mark.slow
@pytest.mark.skipif("onnx" not in _available_formats(), reason="needs the onnx extra")
def test_onnx_writes_one_file_per_budget_each_the_sub_network(tmp_path):
    _per_budget("onnx", tmp_path, [0.3, 1.0])


LOADER = r"""
import importlib.util, sys
x_file, *args = sys.argv[1:]
paths = args[: args.index("--")]
sys.path.extend(args[args.index("--") + 1 :])
for name in ("hybrid", "genomes"):
    if importlib.util.find_spec(name) is not None:
        sys.exit(f"{name} is importable in the isolated process")
import numpy as np
import torch

x = torch.from_numpy(np.load(x_file))
for path in paths:
    if path.endswith(".py"):
        spec = importlib.util.spec_from_file_location("exported_model", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = module.load()
    else:
        model = torch.jit.load(path)
    with torch.no_grad():
        out = [model(x, b).numpy() for b in (0.2, 0.6, 1.0)]
    np.save(path + ".out.npy", np.stack(out))
"""


def test_budgeted_files_run_in_a_process_without_hybrid(tmp_path):
    genome = with_orders(gated_genome(seed=1), 7)
    stats = {"feature_mean": MEAN, "feature_std": STD, "class_labels": ["a", "b", "c"]}
    paths = [
        export_genome(genome, tmp_path / f"m{s}", fmt, "hard_concrete", stats, [0.2, 0.6, 1]).path
        for fmt, s in (("python", ".py"), ("torchscript", ".pt"))
    ]
    x = (MEAN + STD * np.random.default_rng(4).normal(size=(13, 4))).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-S", "-E", "-c", LOADER, "x.npy", *[p.name for p in paths], "--"]
    done = subprocess.run(
        [*cmd, *_site_dirs()], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for path in paths:
        out = np.load(f"{path}.out.npy")
        for i, b in enumerate((0.2, 0.6, 1.0)):
            expected = reference(genome, b, "hard_concrete", (x - MEAN) / STD)
            np.testing.assert_allclose(out[i], expected, rtol=TOL, atol=TOL, err_msg=path.name)


# ------------------------------------------------------------------- bad input
def _one_line(exc_info, *parts):
    message = str(exc_info.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message


@pytest.mark.parametrize(
    ("budgets", "part"),
    [
        ([0.5, 0.25], "strictly increasing"),
        ([0.0, 1.0], "(0, 1]"),
        ([1.5], "(0, 1]"),
        ([float("nan")], "(0, 1]"),
        ([], "at least one"),
        ("0.5", "list of numbers"),
        (["x"], "number"),
    ],
)
def test_bad_budgets_are_one_line_export_errors(tmp_path, budgets, part):
    with pytest.raises(ExportError) as exc:
        export_genome(gated_genome(), tmp_path / "m.py", "python", "hard_concrete", budgets=budgets)
    _one_line(exc, "m.py", part)
    assert not (tmp_path / "m.py").exists()


def test_budgets_for_a_recurrent_genome_are_refused(tmp_path):
    with pytest.raises(ExportError) as exc:
        export_genome(gated_genome(recurrent=True), tmp_path / "m.pt2", "pt2", budgets=[1.0])
    _one_line(exc, "feed-forward", "recurrent")
    with pytest.raises(ValueError, match="feed-forward"):
        to_module(gated_genome(recurrent=True), budgets=True)


def test_a_budget_outside_0_1_is_a_value_error_in_every_module(tmp_path):
    genome = gated_genome()
    net = to_module(genome, "hard_concrete", budgets=True)
    py = import_file(
        export_genome(genome, tmp_path / "m.py", "python", budgets=[1]).path, "bad_b"
    ).load()
    ts = torch.jit.load(export_genome(genome, tmp_path / "m.pt", "torchscript", budgets=[1]).path)
    x = torch.zeros(2, 4)
    for bad in (0.0, -0.5, 1.01, float("nan")):
        for model in (net, py):
            with pytest.raises(ValueError) as exc:
                model(x, bad)
            _one_line(exc, "budget should be in (0, 1]")
            with torch.no_grad(), pytest.raises(ValueError) as exc:  # inference's path remembers budgets
                model(x, 1.0)
                model(x, bad)
            _one_line(exc, "budget should be in (0, 1]")
    with torch.no_grad(), pytest.raises(ValueError, match="budget should be"):
        net(x, True)  # not the remembered level of 1.0: a bool is no budget
        with pytest.raises(Exception, match=r"ValueError: budget should be in \(0, 1\]"):
            ts(x, bad)  # TorchScript raises torch.jit.Error naming the ValueError


# ------------------------------------------------------------------ run folders
def make_run(tmp_path: Path, recurrent: bool = False) -> Path:
    """A finished run of the built-in wine task (13 features, 3 classes): files export_run reads."""
    config = loads_config('[run]\nseed = 3\n[task]\nname = "wine"\n[training]\ngate = "sigmoid"\n')
    task = load_task(config.task, 3)
    rng = np.random.default_rng(0)
    t = InnovationTracker()
    g = Genome.minimal(13, 3, rng, t, hidden=[12, 6], activation="tanh")
    if recurrent:
        g.graph.add_edge(
            2, 2, **edge_attrs(t.edge(2, 2), rng.normal(0, 0.3, (12, 12)), recurrent=True)
        )
    g.meta["id"] = 5
    run = tmp_path / "wine-run"
    save(g.validate(), run / "best" / "genome.json")
    metrics = {**METRICS, "genome_id": 5}
    (run / "best" / "metrics.json").write_text(json.dumps(metrics))
    (run / "config.toml").write_text(dump_config(config))
    info = {
        "name": "wine",
        "kind": "classification",
        "n_inputs": 13,
        "n_outputs": 3,
        "feature_mean": task.feature_mean.tolist(),
        "feature_std": task.feature_std.tolist(),
        "class_labels": list(task.class_labels),
    }
    (run / "task.json").write_text(json.dumps(info))
    return run


def test_run_export_scores_every_budget_on_the_runs_splits(tmp_path, capsys):
    run = make_run(tmp_path)
    assert main(["export", str(run), "--budgets", "0.3,1", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "budget 0.3:" in printed and "val_metric" in printed
    info = json.loads((tmp_path / "out" / "model.py.json").read_text())
    entries = info["budgets"]
    assert [e["budget"] for e in entries] == [0.3, 1.0]
    assert entries[0]["flops_share"] <= 0.3 < entries[-1]["flops_share"] == 1.0
    genome = load(run / "best" / "genome.json")
    task = load_task(loads_config((run / "config.toml").read_text()).task, 3)
    for e in entries:
        assert e["metric"] == "accuracy"
        for key, X, y in (
            ("val_metric", task.X_val, task.y_val),
            ("test_metric", task.X_test, task.y_test),
        ):
            expected = metric_score("accuracy", y, reference(genome, e["budget"], "sigmoid", X))
            assert e[key] == pytest.approx(expected)
    # the exported file at each budget is what was scored
    model = import_file(tmp_path / "out" / "model.py", "run_budgets").load()
    raw = task.X_val * task.feature_std + task.feature_mean
    with torch.no_grad():
        pred = model(torch.from_numpy(raw.astype(np.float32)), 0.3).numpy()
    assert metric_score("accuracy", task.y_val, pred) == pytest.approx(entries[0]["val_metric"])


@pytest.mark.parametrize(
    ("argv", "part"),
    [
        (["--budgets", "0.5,0.25"], "strictly increasing"),
        (["--budgets", "0.5,x"], "not a number"),
        (["--budgets", "0,1"], "(0, 1]"),
        (["--budgets", "1.5"], "(0, 1]"),
        (["--budgets", ""], "not a number"),
    ],
)
def test_bad_budgets_on_the_command_line_exit_2_with_one_line(tmp_path, capsys, argv, part):
    run = make_run(tmp_path)
    assert main(["export", str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and err.startswith("hybrid export: error: --budgets") and part in err
    )
    assert not (run / "best" / "model.py").exists()


def test_a_recurrent_champion_with_budgets_exits_2(tmp_path, capsys):
    run = make_run(tmp_path, recurrent=True)
    assert main(["export", str(run), "--budgets", "0.5,1", "--format", "pt2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "feed-forward" in err and "recurrent" in err


def test_without_budgets_nothing_changes(tmp_path):
    run = make_run(tmp_path)
    result = export_run(run)
    assert "budgets" not in result.sidecar and "budget_levels" not in result.sidecar
    assert "budget" not in result.path.read_text()
    with pytest.raises(HybridError):
        export_run(run, budgets=[2.0])
