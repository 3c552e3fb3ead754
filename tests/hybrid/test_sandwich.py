"""Sandwich training (issue 17): the engine's step held to a hand-written GenomeNet loop.

Each step: the full network on the labels, the level ``budget_min`` selects (0: the
smallest level of the budget chain), the levels ``budget_levels`` select and
``budget_samples`` budgets drawn uniformly in
[max(min_budget, budget_min), 1), each on the full
network's detached outputs (``distill``) or on the labels; the sum of the losses,
one AdamW step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import genomes.budgets as genome_budgets
from genomes import Genome, InnovationTracker
from genomes.budgets import budget_chain
from hybrid.batches import minibatch_indices
from hybrid.config import loads_config
from hybrid.errors import ConfigError
from hybrid.gates import draw_gate_noise
from hybrid.metrics import task_loss
from hybrid.net import GenomeNet, write_back
from hybrid.population import PopulationEngine, train_engine, train_population
from hybrid.train import LOSS_WINDOW, TrainConfig
from tests.hybrid.oracle import optimizer
from tests.strategies import genomes_strategy

F64 = torch.float64


def _ordered(genome: Genome, seed: int) -> Genome:
    """A copy with random neuron orders (drop ranks: none, so no node goes whole)."""
    rng = np.random.default_rng(seed)
    g = genome.copy()
    for n in g.hidden_nodes():
        g.graph.nodes[n]["order"] = rng.permutation(int(g.graph.nodes[n]["width"])).astype(np.int64)
    return g


def _reference(genome: Genome, X, y, config: TrainConfig, batches, budget_seed: int, noise=None):
    """The sandwich rule on one GenomeNet in float64, written out step by step."""
    chain = budget_chain(genome, config.gate)
    floor = config.budget_min
    lo = max(chain.min_budget, floor)
    u = torch.rand(
        batches.shape[0],
        config.budget_samples,
        1,
        generator=torch.Generator().manual_seed(budget_seed),
        dtype=F64,
    )
    smallest = chain.select(floor) if floor > 0 else chain.level(len(chain.removals))
    net = GenomeNet(genome, config.gate).to(F64)
    opt = optimizer(net, config)
    losses = []
    for t in range(batches.shape[0]):
        xb, yb = X[batches[t]], y[batches[t]]
        nz = None if noise is None else noise[t]
        out = net(xb, nz)
        task = task_loss(out, yb, config.loss)
        loss = task + config.penalty * net.penalty() if config.penalty else task
        target = out.detach()
        levels = [smallest] + [chain.select(b) for b in config.budget_levels]
        levels += [chain.select(float(lo + u[t, k, 0] * (1 - lo))) for k in range(config.budget_samples)]
        for level in levels:  # a level: its neuron masks and its dropped skip edges
            sub = net(xb, nz, masks=level.masks, edges_off=level.edges_off)
            if not config.distill:
                loss = loss + task_loss(sub, yb, config.loss)
            elif config.loss == "cross_entropy":
                loss = (
                    loss - (torch.softmax(target, -1) * torch.log_softmax(sub, -1)).sum(-1).mean()
                )
            else:
                loss = loss + ((sub - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(task.detach()))
    window = losses[-LOSS_WINDOW:]
    return write_back(genome, net), sum(window) / len(window)


@settings(max_examples=6)
@given(
    genomes_strategy(n_inputs=3, n_outputs=2, max_mutations=6),
    st.sampled_from(
        [
            ("cross_entropy", True, "sigmoid"),
            ("cross_entropy", False, "sigmoid"),
            ("mse", True, "sigmoid"),
            ("cross_entropy", True, "hard_concrete"),
        ]
    ),
    st.sampled_from([(0.0, ()), (0.25, ()), (0.6, ()), (0.25, (0.5, 0.75)), (0.0, (0.3,))]),
    st.integers(0, 2**16),
)
def test_a_sandwich_step_equals_the_genomenet_reference(genome, setting, floor_levels, seed):
    loss, distill, gate = setting
    floor, levels = floor_levels
    genome = _ordered(genome, seed)
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(24, 3, generator=gen, dtype=F64)
    y = (
        torch.randint(0, 2, (24,), generator=gen)
        if loss == "cross_entropy"
        else torch.randn(24, 2, generator=gen, dtype=F64)
    )
    config = TrainConfig(
        steps=6,
        batch_size=8,
        lr=0.01,
        penalty=0.01,
        loss=loss,
        budgets="sandwich",
        budget_samples=2,
        budget_min=floor,
        budget_levels=levels,
        distill=distill,
        gate=gate,
    )
    batches = minibatch_indices(24, 8, 6, torch.Generator().manual_seed(seed))
    engine = PopulationEngine([genome], gate, dtype=F64)
    noise = None
    if gate == "hard_concrete":  # every pass of a step shares its noise row
        noise = draw_gate_noise(engine.n_gates, 6, torch.Generator().manual_seed(seed + 2)).to(F64)
    result = train_engine(
        engine,
        X,
        y,
        config,
        batches,
        noise=noise,
        budget_generator=torch.Generator().manual_seed(seed + 1),
    )[0]
    ref, ref_loss = _reference(genome, X, y, config, batches, seed + 1, noise)
    assert result.status == "ok"
    assert result.train_loss == pytest.approx(ref_loss, rel=1e-9, abs=1e-12)
    for (label, a), (_, b) in zip(
        engine.write_back()[0].iter_arrays(), ref.iter_arrays(), strict=True
    ):
        assert np.allclose(a, b, rtol=1e-6, atol=1e-7), label


def _blobs(seed: int, n: int = 200):
    """Two well-separated Gaussian blobs in a random direction (linearly separable)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    angle = rng.uniform(0, 2 * np.pi)
    centres = np.array([[np.cos(angle), np.sin(angle)], [-np.cos(angle), -np.sin(angle)]]) * 2
    X = centres[y] + rng.normal(size=(n, 2)) * 0.5
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y)


def _population(seed: int, size: int = 8) -> list[Genome]:
    rng = np.random.default_rng(seed)
    base = Genome.minimal(2, 2, rng, InnovationTracker(), hidden=[8, 8], activation="tanh")
    pop = [base]
    for _ in range(size - 1):
        g = base.copy()
        for _, _, a in g.graph.edges(data=True):
            a["weight"] = (
                rng.normal(size=a["weight"].shape) / np.sqrt(a["weight"].shape[1])
            ).astype(np.float32)
        pop.append(g)
    return pop


def test_sandwich_training_makes_the_smallest_budget_work():
    # Checked on data/population/budget seeds 0-41 (P = 8 each): the sandwich-trained
    # smallest level (one neuron per node) scores 1.0 on every one, the same networks
    # trained without sandwich 0.50-0.93 there; full networks 1.0 either way.
    X, y = _blobs(3)
    pop = _population(3)
    accuracy = {}
    for mode in ("off", "sandwich"):
        config = TrainConfig(steps=100, batch_size=64, lr=0.02, budgets=mode, budget_min=0.0)
        engine = PopulationEngine(pop)
        batches = minibatch_indices(200, 64, 100, torch.Generator().manual_seed(3))
        train_engine(
            engine, X, y, config, batches, budget_generator=torch.Generator().manual_seed(4)
        )
        with torch.no_grad():
            small = (engine(X, scale=engine.smallest_scale()).argmax(-1) == y).float().mean(1)
            full = (engine(X).argmax(-1) == y).float().mean(1)
        accuracy[mode] = (float(small.mean()), float(full.mean()))
    assert accuracy["sandwich"][0] >= 0.97
    assert accuracy["sandwich"][1] >= 0.97
    assert accuracy["sandwich"][0] > accuracy["off"][0]


def test_sandwich_train_population_is_reproducible_and_reassigns_drop_ranks(monkeypatch):
    calls = []

    def assign_orders(genome, gate="sigmoid", neurons=True, nodes=True):
        calls.append((gate, neurons, nodes))
        g = genome.copy()
        g.meta["assigned"] = True
        return g

    monkeypatch.setattr(genome_budgets, "assign_orders", assign_orders, raising=False)
    X, y = _blobs(0, 40)
    pop = _population(0, 3)
    config = TrainConfig(steps=5, batch_size=16, budgets="sandwich", gate="hard_concrete")
    first = train_population(pop, X, y, config, torch.Generator().manual_seed(9))
    again = train_population(pop, X, y, config, torch.Generator().manual_seed(9))
    assert all(a == b for a, b in zip(first.genomes, again.genomes, strict=True))
    assert calls == [("hard_concrete", False, True)] * 6
    assert all(g.meta.get("assigned") for g in first.genomes)
    plain = train_population(
        pop,
        X,
        y,
        TrainConfig(steps=5, batch_size=16, gate="hard_concrete"),
        torch.Generator().manual_seed(9),
    )
    assert len(calls) == 6  # budgets off: no reassignment
    assert any(a != b for a, b in zip(first.genomes, plain.genomes, strict=True))


def test_budgets_off_draws_nothing_more_from_the_generator():
    X, y = _blobs(0, 40)
    pop = _population(0, 2)
    for gate in ("sigmoid", "hard_concrete"):
        gen = torch.Generator().manual_seed(5)
        train_population(pop, X, y, TrainConfig(steps=3, batch_size=16, gate=gate), gen)
        expected = torch.Generator().manual_seed(5)
        minibatch_indices(40, 16, 3, expected)
        if gate == "hard_concrete":
            torch.rand((3, PopulationEngine(pop).n_gates), generator=expected)
        assert torch.equal(gen.get_state(), expected.get_state())


def test_sandwich_needs_a_budget_generator():
    pop = _population(0, 1)
    X, y = _blobs(0, 20)
    batches = minibatch_indices(20, 8, 2, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="budget_generator"):
        train_engine(PopulationEngine(pop), X, y, TrainConfig(budgets="sandwich"), batches)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"budgets": "on"}, r"train\.budgets should be 'off' or 'sandwich', got 'on'"),
        (
            {"budget_samples": -1},
            r"train\.budget_samples should be an integer in \[0, 64\], got -1",
        ),
        ({"budget_samples": True}, r"train\.budget_samples"),
        ({"distill": "yes"}, r"train\.distill should be true or false"),
        ({"budget_min": 1.0}, r"train\.budget_min should be a number in \[0, 1\), got 1\.0"),
        ({"budget_min": -0.1}, r"train\.budget_min should be a number in \[0, 1\), got -0\.1"),
        ({"budget_levels": (0.75, 0.5)}, r"train\.budget_levels should be an increasing tuple"),
        ({"budget_levels": (0.2,)}, r"in \(budget_min, 1\) = \(0\.25, 1\), got \(0\.2,\)"),
        ({"budget_levels": (0.5, 1.0)}, r"train\.budget_levels"),
        ({"budget_levels": [0.5]}, r"train\.budget_levels"),
    ],
)
def test_bad_train_config_is_one_line(kwargs, match):
    with pytest.raises(ConfigError, match=match) as info:
        TrainConfig(**kwargs)
    assert "\n" not in str(info.value)


XOR = '[task]\nname = "xor"\n'


def test_training_section_keys_reach_train_config():
    config = loads_config(
        XOR
        + '[training]\nbudgets = "sandwich"\nbudget_samples = 3\ndistill = false\n'
        + "budget_levels = [0.5, 0.75]\n"
    )
    train = TrainConfig(**config.train_kwargs())
    assert (train.budgets, train.budget_samples, train.distill) == ("sandwich", 3, False)
    assert train.budget_levels == (0.5, 0.75)
    assert TrainConfig(**loads_config(XOR).train_kwargs()).budgets == "off"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (XOR + '[training]\nbudgets = "all"\n', r"training\.budgets"),
        (XOR + "[training]\nbudget_samples = 65\n", r"training\.budget_samples"),
        (
            XOR + '[training]\nbudgets = "sandwich"\n[genome]\nrecurrent = true\n',
            r"training\.budgets: got 'sandwich', expected 'off' with genome\.recurrent",
        ),
        (
            '[task]\nname = "parity"\n[training]\nbudgets = "sandwich"\n',
            r"training\.budgets: got 'sandwich', expected 'off' for the sequence task 'parity'",
        ),
        (
            XOR + '[training]\nbudgets = "sandwich"\n[mutation]\nadd_recurrent_edge = 0.1\n',
            r"mutation\.add_recurrent_edge: got 0\.1",
        ),
        (
            XOR + "[training]\nbudget_levels = [0.5]\n",
            r"training\.budget_levels: got \[0\.5\], expected \[\] with training\.budgets = 'off'",
        ),
        (
            XOR + '[training]\nbudgets = "sandwich"\nbudget_levels = [0.25, 0.5]\n',
            r"training\.budget_levels: got \[0\.25, 0\.5\], expected every level above training\.budget_min = 0\.25",
        ),
        (
            XOR + '[training]\nbudgets = "sandwich"\nbudget_levels = [0.75, 0.5]\n',
            r"training\.budget_levels: got \[0\.75, 0\.5\], expected strictly increasing",
        ),
        (
            XOR + '[training]\nbudgets = "sandwich"\nbudget_levels = [0.5, 1.0]\n',
            r"training\.budget_levels: got \[0\.5, 1\.0\], expected every budget to be a number in \(0, 1\)",
        ),
    ],
)
def test_bad_budget_config_is_one_line_naming_the_key(text, match):
    with pytest.raises(ConfigError, match=match) as info:
        loads_config(text)
    assert "\n" not in str(info.value)


def test_a_failing_member_leaves_the_others_bit_for_bit():
    X, y = _blobs(1, 40)
    pop = _population(1, 2)
    broken = pop[1].copy()
    broken.graph.nodes[broken.output_id]["bias"] = np.full(2, np.nan, np.float32)
    config = TrainConfig(steps=4, batch_size=16, budgets="sandwich")
    batches = minibatch_indices(40, 16, 4, torch.Generator().manual_seed(0))
    runs = []
    for second in (pop[1], broken):
        engine = PopulationEngine([pop[0], second])
        results = train_engine(
            engine, X, y, config, batches, budget_generator=torch.Generator().manual_seed(2)
        )
        runs.append((engine.write_back(), results))
    (healthy, ok), (mixed, failed) = runs
    assert [r.status for r in ok] == ["ok", "ok"]
    assert (failed[1].status, failed[1].steps) == ("failed", 0)
    assert failed[0] == ok[0]
    assert mixed[0] == healthy[0]
    assert mixed[1] == broken  # a failed member keeps the parameters of before its failing step
