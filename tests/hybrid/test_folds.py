"""K-fold fitness (``task.folds``, issue 20): folds, masked columns, fold scores, transplant, search.

The masked-training oracle is ``GenomeNet`` with ``torch.optim.AdamW`` trained on
each step's minibatch restricted to the rows outside the column's fold
(``tests/hybrid/oracle.py``'s optimiser and loss), with sigmoid gates.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from genomes import Genome, InnovationTracker, MutationConfig, crossover, load, to_dict
from hybrid.batches import minibatch_indices
from hybrid.cli import main
from hybrid.config import loads_config
from hybrid.errors import DataError, RunDirError
from hybrid.folds import assign_folds, child_copies, resolve_folds, transplant
from hybrid.generation import initial_state
from hybrid.lineage import LineageWriter
from hybrid.metrics import task_loss
from hybrid.net import GenomeNet, write_back
from hybrid.population import PopulationEngine, evaluate_population, train_engine, train_population
from hybrid.reproduction import Member, mutate
from hybrid.rundir import open_run_dir
from hybrid.search import Search
from hybrid.state import SearchState
from hybrid.tasks import load_task
from hybrid.train import TrainConfig
from tests.hybrid.oracle import optimizer
from tests.hybrid.tiny import resume_cut_back, tiny_toml
from tests.strategies import populations_strategy

SEEDS = st.integers(0, 2**16)


# ------------------------------------------------------------------ fold assignment
@settings(max_examples=40, deadline=None)
@given(SEEDS, st.integers(2, 6), st.lists(st.integers(6, 40), min_size=2, max_size=4))
def test_folds_are_a_seeded_stratified_partition_of_the_pool(seed, k, counts):
    y = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(y)
    folds = assign_folds(y, k, seed, classification=True)
    assert folds.shape == y.shape and set(np.unique(folds)) == set(range(k))  # covering, k folds
    assert np.array_equal(folds, assign_folds(y, k, seed, classification=True))  # seeded
    for c in range(len(counts)):  # stratified: each class spread evenly over the folds
        per_fold = np.bincount(folds[y == c], minlength=k)
        assert per_fold.max() - per_fold.min() <= 1
    # disjoint by construction: one fold id per row


def test_another_seed_gives_another_partition():
    y = np.arange(200) % 3
    assert not np.array_equal(assign_folds(y, 5, 0, True), assign_folds(y, 5, 1, True))


def test_regression_folds_are_plain_kfold_of_even_sizes():
    folds = assign_folds(np.zeros(23, dtype=np.float32), 5, 0, classification=False)
    assert sorted(np.bincount(folds).tolist()) == [4, 4, 5, 5, 5]


def test_auto_resolves_to_five_folds_on_small_pools_and_off_on_large_or_unsplit_ones():
    y = np.arange(100) % 2
    assert resolve_folds("auto", y, ("a", "b"), True, "t", accelerated=True) == 5
    assert resolve_folds("auto", y, ("a", "b"), True, "t") == 0  # a CPU: K columns cost K-fold
    assert resolve_folds("auto", np.arange(2000) % 2, ("a", "b"), True, "t", accelerated=True) == 0
    assert resolve_folds("auto", y, ("a", "b"), False, "t", accelerated=True) == 0  # xor: not split
    assert resolve_folds("off", y, ("a", "b"), True, "t") == 0
    assert resolve_folds(3, y, ("a", "b"), True, "t") == 3
    rare = np.array([0] * 50 + [1] * 3)
    assert resolve_folds("auto", rare, ("a", "b"), True, "t", accelerated=True) == 3  # no more folds than the rarest class
    assert resolve_folds("auto", np.arange(35) % 2, ("a", "b"), True, "t", accelerated=True) == 3  # >= 10 rows a fold
    assert resolve_folds("auto", np.arange(12.0), None, True, "t", accelerated=True) == 0  # one fold of 12: off
    with pytest.raises(DataError, match=r"t: task.folds = 4: class 'b' has only 3 rows"):
        resolve_folds(4, rare, ("a", "b"), True, "t")


def test_the_task_pools_train_and_validation_and_records_k_and_fold_sizes(tmp_path: Path):
    config = loads_config(tiny_toml(tmp_path, folds=3), source="t.toml")
    task = load_task(config.task, 0)
    n_pool = len(task.y_train) + len(task.y_val)
    assert task.folds == 3 and task.fold_ids.shape == (n_pool,)
    info = task.info()["folds"]
    assert info["k"] == 3 and sum(info["sizes"]) == n_pool and max(info["sizes"]) - min(info["sizes"]) <= 1
    xor = loads_config('[task]\nname = "xor"\n', source="x.toml")
    assert load_task(xor.task, 0).folds == 0 and load_task(xor.task, 0).info()["folds"] is None


# ------------------------------------------------------------------ masked training
def _data(pop: list[Genome], seed: int, n: int, loss: str):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, pop[0].n_inputs, generator=g)
    if loss == "mse":
        return X, torch.randn(n, pop[0].n_outputs, generator=g)
    return X, torch.randint(0, pop[0].n_outputs, (n,), generator=g)


def _oracle(genome: Genome, X, y, config: TrainConfig, batches, rows_ok) -> Genome:
    """``GenomeNet`` + AdamW on each minibatch's allowed rows only."""
    net = GenomeNet(genome, "sigmoid")
    opt = optimizer(net, config)
    net.train()
    for t in range(batches.shape[0]):
        idx = batches[t][rows_ok[batches[t]]]
        out = net(X[idx])
        loss = task_loss(out, y[idx], config.loss)
        loss = loss + config.penalty * net.penalty() if config.penalty else loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return write_back(genome, net)


@settings(max_examples=12, deadline=None)
@given(populations_strategy(size=st.integers(1, 3)), SEEDS, st.sampled_from(["cross_entropy", "mse"]))
def test_a_masked_column_trains_exactly_as_its_genome_alone_on_the_rows_outside_its_fold(pop, seed, loss):
    k, n = 2, 24
    X, y = _data(pop, seed, n, loss)
    config = TrainConfig(steps=6, batch_size=10, lr=0.02, weight_decay=0.05, penalty=0.01, loss=loss)
    batches = minibatch_indices(n, config.batch_size, config.steps, torch.Generator().manual_seed(seed))
    row_folds = torch.tensor(assign_folds(np.zeros(n), k, seed, classification=False))
    assume(all(len(set(row_folds[b].tolist())) == k for b in batches))  # no step all masked
    columns = [g for g in pop for _ in range(k)]
    member_folds = torch.tensor([f for _ in pop for f in range(k)])
    engine = PopulationEngine(columns, "sigmoid")
    results = train_engine(engine, X, y, config, batches, folds=(row_folds, member_folds))
    trained = engine.write_back()
    for c, genome in enumerate(columns):
        ref = _oracle(genome, X, y, config, batches, row_folds != member_folds[c])
        assert results[c].status == "ok"
        for (label, a), (_, b) in zip(trained[c].iter_arrays(), ref.iter_arrays(), strict=True):
            assert np.allclose(a, b, rtol=1e-4, atol=1e-5), (c, label, np.abs(a - b).max())


@settings(max_examples=10, deadline=None)
@given(populations_strategy(size=st.integers(1, 3)), SEEDS)
def test_a_column_never_learns_from_its_own_folds_targets(pop, seed):
    k, n = 3, 30
    X, y = _data(pop, seed, n, "cross_entropy")
    config = TrainConfig(steps=5, batch_size=8, lr=0.05)
    rows = assign_folds(np.zeros(n), k, seed, classification=False)
    columns = [g for g in pop for _ in range(k)]
    folds = (rows, [f for _ in pop for f in range(k)])
    first = train_population(columns, X, y, config, torch.Generator().manual_seed(seed), folds=folds)
    y2 = y.clone()
    y2[torch.tensor(rows == 0)] = (y2[torch.tensor(rows == 0)] + 1) % pop[0].n_outputs  # relabel fold 0
    second = train_population(columns, X, y2, config, torch.Generator().manual_seed(seed), folds=folds)
    for c in range(len(columns)):
        if c % k == 0:  # fold 0's columns: trained on folds 1, 2 only: bit for bit the same
            assert first.genomes[c] == second.genomes[c]
        assert first.results[c].status == "ok"


@settings(max_examples=10, deadline=None)
@given(
    populations_strategy(n_outputs=st.integers(2, 3), size=st.integers(1, 3)),
    SEEDS,
    st.sampled_from(
        [("cross_entropy", None), ("cross_entropy", "balanced_accuracy"), ("cross_entropy", "log_loss"),
         ("cross_entropy", "accuracy"), ("mse", None), ("mse", "r2"), ("mse", "mse")]
    ),
    st.sampled_from([4096, 7]),
)
def test_fold_scores_are_each_columns_score_on_its_own_fold(pop, seed, loss_metric, chunk):
    loss, metric = loss_metric
    k, n = 3, 36
    X, y = _data(pop, seed, n, loss)
    config = TrainConfig(steps=4, batch_size=12, loss=loss, metric=metric)
    rows = assign_folds(np.zeros(n), k, seed, classification=False)
    columns = [g for g in pop for _ in range(k)]
    folds = (rows, [f for _ in pop for f in range(k)])
    with pytest.MonkeyPatch.context() as mp:  # chunked evaluation sums the same figures
        mp.setattr("hybrid.population.train.EVAL_CHUNK", chunk)
        out = train_population(columns, X, y, config, torch.Generator().manual_seed(seed), folds=folds)
    assert out.validation is not None
    for c, (g, v, r) in enumerate(zip(out.genomes, out.validation, out.results, strict=True)):
        own = torch.tensor(rows == c % k)
        (ref,) = evaluate_population([g], X[own], y[own], config)
        assert np.isclose(v.loss, ref.loss, rtol=1e-5, atol=1e-6)
        assert v.accuracy == pytest.approx(ref.accuracy, abs=1e-6)
        assert v.score == pytest.approx(ref.score, rel=1e-5, abs=1e-6)
        (train_ref,) = evaluate_population([g], X[~own], y[~own], TrainConfig(loss=loss))
        assert np.isclose(r.metrics.loss, train_ref.loss, rtol=1e-5, atol=1e-6)  # training: outside the fold
        assert r.metrics.accuracy == pytest.approx(train_ref.accuracy, abs=1e-6)


# ------------------------------------------------------------------ per-fold weights
def _perturbed(g: Genome, rng: np.random.Generator) -> Genome:
    """``g`` with every array moved: a stand-in for another fold's training."""
    out = g.copy()
    for _, a in out.graph.nodes(data=True):
        if a["role"] == "hidden":
            a["bias"] = (a["bias"] + rng.normal(size=a["bias"].shape)).astype(np.float32)
    for _, _, a in out.graph.edges(data=True):
        a["weight"] = (a["weight"] + rng.normal(size=a["weight"].shape)).astype(np.float32)
        a["gate"] = np.float32(a["gate"] + 0.5)
    return out


RATES = {"add_node": 0.6, "widen": 0.6, "add_edge": 0.6, "perturb_weights": 0.3, "prune_neurons": 0.2}


@settings(max_examples=30, deadline=None)
@given(SEEDS, st.booleans())
def test_transplant_keeps_the_fold_copys_values_for_unchanged_genes_and_the_childs_for_new_ones(seed, cross):
    rng = np.random.default_rng(seed)
    tracker = InnovationTracker()
    mc = MutationConfig(gate="sigmoid")
    a = Genome.minimal(2, 3, rng, tracker, hidden=(3,))
    b, _ = mutate(a, RATES, rng, tracker, mc)
    fa, fb = _perturbed(a, rng), _perturbed(b, rng)  # the parents' fold copies
    tracker.next_generation()
    child = crossover(a, b, rng, mc)[0] if cross else a
    child, _ = mutate(child, RATES, rng, tracker, mc)
    sources = [fa, fb] if cross else [fa]
    out = transplant(child, sources)
    assert out.structure_key() == child.structure_key()
    out.validate()
    for n, attrs in out.graph.nodes(data=True):
        src = next((s for s in sources if s.graph.has_node(n) and s.node(n)["bias"].shape == attrs["bias"].shape), None)
        want = child.node(n) if src is None else src.node(n)
        assert np.array_equal(attrs["bias"], want["bias"]) and np.array_equal(attrs["gate"], want["gate"])
    for s, d, attrs in out.graph.edges(data=True):
        src = next((x for x in sources if x.graph.has_edge(s, d) and x.edge(s, d)["weight"].shape == attrs["weight"].shape), None)
        want = child.edge(s, d) if src is None else src.edge(s, d)
        assert np.array_equal(attrs["weight"], want["weight"]) and attrs["gate"] == want["gate"]


def test_an_elite_keeps_its_parents_fold_copies_as_they_are():
    rng = np.random.default_rng(0)
    g = Genome.minimal(2, 2, rng, InnovationTracker(), hidden=(2,))
    copies = (_perturbed(g, rng), _perturbed(g, rng))
    elite = Member(5, g, 1, (1,), ({"op": "elite"},))
    assert child_copies(elite, {1: copies}, {1: g}) is copies


# ------------------------------------------------------------------ the search
def _state(path: Path) -> SearchState:
    data = json.loads(path.read_text())
    return SearchState.from_dict(data["state"] if "state" in data else data)


def _stats(run: Path) -> list[str]:
    return (run / "stats.jsonl").read_text().splitlines()


def test_a_k_fold_search_runs_end_to_end_and_resumes_byte_identical(tmp_path: Path):
    text = tiny_toml(tmp_path, generations=4, steps=15, folds=3)
    config = loads_config(text, source="t.toml", overrides={"run.name": "ref"})
    result = Search.start(config).run()
    ref = tmp_path / "ref"
    task = json.loads((ref / "task.json").read_text())
    assert task["folds"]["k"] == 3 and sum(task["folds"]["sizes"]) == task["sizes"]["train"] + task["sizes"]["val"]
    assert result.generations == 4 and len(_stats(ref)) == 4
    # one lineage row per member (the lead copy) and generation, holding the cross-validated metric
    rows = list(LineageWriter(ref / "lineage.sqlite").conn.execute("SELECT generation, val_metric FROM genomes"))
    assert len(rows) == 4 * 8
    # the state carries K - 1 fold copies of each member's structure
    state = _state(sorted((ref / "checkpoints").glob("gen_*/state.json"))[-1])
    assert set(state.fold_genomes) == {m.id for m in state.members}
    for m in state.members:
        assert len(state.fold_genomes[m.id]) == 2
        assert all(c.structure_key() == m.genome.structure_key() for c in state.fold_genomes[m.id])
    # a copy of the run cut back to generation 1's checkpoint replays the rest exactly
    cut = tmp_path / "cut"
    resumed = resume_cut_back(ref, cut)
    assert _stats(cut) == _stats(ref)
    assert resumed.champion_id == result.champion_id and resumed.test_metric == result.test_metric
    assert load(cut / "best" / "genome.json") == load(ref / "best" / "genome.json")  # meta names the run
    last = sorted((ref / "checkpoints").glob("gen_*"))[-1].name
    a, b = (_state(r / "checkpoints" / last / "state.json") for r in (ref, cut))
    assert replace(a, elapsed_s=0.0) == replace(b, elapsed_s=0.0)  # fold copies included; time aside


def test_the_loop_engine_and_joblib_jobs_follow_the_batched_engines_k_fold_run(tmp_path: Path):
    # Sigmoid gates: deterministic, so per-column jobs must retrace the packed columns.
    runs = {}
    for name, engine, backend in (("b", "batched", "none"), ("l", "loop", "none"), ("j", "loop", "joblib")):
        text = tiny_toml(tmp_path, steps=10, gate="sigmoid", engine=engine, backend=backend, folds=3)
        runs[name] = Search.start(loads_config(text, source="t.toml", overrides={"run.name": name})).run()
    for other in ("l", "j"):
        assert runs[other].champion_id == runs["b"].champion_id
        assert runs[other].test_metric == pytest.approx(runs["b"].test_metric, abs=1e-6)
        assert runs[other].val_metric == pytest.approx(runs["b"].val_metric, abs=1e-6)


def test_initial_state_gives_every_member_k_minus_1_copies_and_the_state_round_trips(tmp_path: Path):
    config = loads_config(tiny_toml(tmp_path, folds=4), source="t.toml")
    state = initial_state(config, load_task(config.task, 0))
    assert all(c == m.genome for m in state.members for c in state.fold_genomes[m.id])
    assert all(len(state.fold_genomes[m.id]) == 3 for m in state.members)
    again = SearchState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state and json.dumps(again.to_dict()) == json.dumps(state.to_dict())
    off_config = loads_config(tiny_toml(tmp_path, folds="off"), source="t.toml")
    off = initial_state(off_config, load_task(off_config.task, 0))
    assert off.fold_genomes == {} and "fold_genomes" not in off.to_dict()


def test_a_checkpoint_with_bad_fold_copies_is_one_line_naming_the_key(tmp_path: Path):
    config = loads_config(tiny_toml(tmp_path, folds=3), source="t.toml")
    data = initial_state(config, load_task(config.task, 0)).to_dict()
    swapped = json.loads(json.dumps(data))
    swapped["fold_genomes"][0]["id"] = 99
    with pytest.raises(RunDirError, match=r"^s.json: state.fold_genomes: expected one entry per member"):
        SearchState.from_dict(swapped, source="s.json")
    other = json.loads(json.dumps(data))
    wider = Genome.minimal(2, 2, np.random.default_rng(0), InnovationTracker(), hidden=(7,))
    other["fold_genomes"][1]["genomes"][0] = to_dict(wider)
    with pytest.raises(RunDirError, match=r"^s.json: state.fold_genomes\[1\].genomes\[0\]: expected the structure"):
        SearchState.from_dict(other, source="s.json")
    short = json.loads(json.dumps(data))
    short["fold_genomes"][2]["genomes"].pop()
    with pytest.raises(RunDirError, match=r"state.fold_genomes\[2\].genomes: expected 2 fold copies"):
        SearchState.from_dict(short, source="s.json")


# ------------------------------------------------------------------ bad input
RARE_CSV = "a,label\n" + "".join(f"{i},{'rare' if i % 12 == 0 else 'common'}\n" for i in range(60))


@pytest.mark.parametrize(
    ("folds", "fragment"),
    [
        ("1", 'task.folds: got 1, expected "auto", "off" or an integer >= 2'),
        ("0", 'task.folds: got 0, expected "auto", "off" or an integer >= 2'),
        ("-3", 'task.folds: got -3, expected "auto", "off" or an integer >= 2'),
        ('"many"', "task.folds: got 'many', expected"),
        ("5", "task.folds = 5: class 'rare' has only 4 rows in the pooled train + validation splits"),
    ],
)
def test_bad_folds_exit_2_with_one_line_and_no_run_folder(folds, fragment, tmp_path, monkeypatch, capsys):
    (tmp_path / "d.csv").write_text(RARE_CSV)
    (tmp_path / "bad.toml").write_text(
        f'[task]\npath = "d.csv"\ntarget = "label"\nkind = "classification"\nfolds = {folds}\n'
        "[evolution]\ngenerations = 1\npopulation = 4\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", "bad.toml", "--plain"]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and fragment in lines[0], err
    assert not (tmp_path / "runs").exists()


def test_a_run_folder_from_before_task_folds_reads_as_folds_off(tmp_path: Path):
    Search.start(loads_config(tiny_toml(tmp_path, folds=3), source="t.toml"))
    path = tmp_path / "tiny" / "config.toml"
    text = path.read_text()
    assert "folds = 3" in text
    assert open_run_dir(tmp_path / "tiny").load_config().task.folds == 3
    path.write_text("\n".join(line for line in text.splitlines() if not line.startswith("folds")))
    assert open_run_dir(tmp_path / "tiny").load_config().task.folds == "off"  # as it was run then
