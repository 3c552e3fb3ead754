"""The recurrent population engine and its sequence training, held to numpy and GenomeNet."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import (
    GATE_KINDS,
    MUTATIONS,
    Genome,
    InnovationTracker,
    NotApplicable,
    evaluate_sequence,
    open_probability,
    state_layout,
    state_size,
)
from genomes.genome import edge_attrs
from hybrid.errors import DataError
from hybrid.gates import draw_gate_noise
from hybrid.net import GenomeNet
from hybrid.population import RecurrentEngine
from hybrid.population.sequence import (
    check_sequence_data,
    evaluate_sequence_engine,
    sequence_metrics,
    train_sequence_engine,
    train_sequence_population,
)
from hybrid.train import TrainConfig
from tests.hybrid.oracle import grads_as_genomes
from tests.strategies import grown_genomes

SEEDS = st.integers(0, 2**16)
T_STEPS = 5


@st.composite
def recurrent_genomes(
    draw: Any, n_inputs: int, n_outputs: int, gate: str = "sigmoid", max_recurrent: int = 3
) -> Genome:
    """A grown genome with up to ``max_recurrent`` recurrent edges of random values."""
    grown = draw(grown_genomes(n_inputs, n_outputs, max_mutations=6, gate=gate))
    genome, rng = grown.genome, np.random.default_rng(draw(SEEDS))
    for _ in range(draw(st.integers(0, max_recurrent))):
        try:
            genome, _ = MUTATIONS["add_recurrent_edge"](genome, rng, grown.tracker, grown.config)
        except NotApplicable:
            break
    genome = genome.copy()
    for _, _, a in genome.graph.edges(data=True):
        if a["recurrent"]:  # the mutation adds zeros: give them values that matter
            a["weight"] = rng.normal(0.0, 0.6, a["weight"].shape).astype(np.float32)
            a["gate"] = np.float32(rng.uniform(-2.0, 4.0))
    return genome.validate()


@st.composite
def recurrent_populations(draw: Any, gate: str = "sigmoid", size: Any = None) -> list[Genome]:
    n_in, n_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    count = draw(size if size is not None else st.integers(1, 4))
    return [draw(recurrent_genomes(n_in, n_out, gate)) for _ in range(count)]


def _sequences(genome: Genome, seed: int, batch: int = 3, steps: int = T_STEPS) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.5, (batch, steps, genome.n_inputs))


def _close(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, tol: float = 1e-5) -> None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = 1.0 + (np.abs(b).max() if b.size else 0.0)
    assert (np.abs(a - b).max() if a.size else 0.0) <= tol * scale


# ------------------------------------------------------------------ function
@settings(max_examples=40)
@given(recurrent_populations(), st.sampled_from(GATE_KINDS), SEEDS, st.booleans())
def test_forward_equals_evaluate_sequence_outputs_and_final_state(pop, gate, seed, given_state):
    x = _sequences(pop[0], seed)
    engine = RecurrentEngine(pop, gate)
    state = None
    if given_state:
        state = torch.randn(
            len(pop), x.shape[0], engine.state_size, generator=torch.Generator().manual_seed(seed)
        )
    out, final = engine(torch.tensor(x, dtype=torch.float32), state=state)
    assert out.shape == (len(pop), x.shape[0], T_STEPS, pop[0].n_outputs)
    assert final.shape == (len(pop), x.shape[0], engine.state_size)
    for m, genome in enumerate(pop):
        size = state_size(genome)
        init = None if state is None else state[m, :, :size].double().numpy()
        ref_out, ref_state = evaluate_sequence(genome, x, gate, np.float64, init)
        _close(out[m].detach(), ref_out)
        _close(final[m, :, :size].detach(), ref_state)
        assert not final[m, :, size:].any()  # past the member's own state: zero


def test_state_layout_and_sizes_are_the_genomes():
    rng, tracker = np.random.default_rng(0), InnovationTracker()
    g = Genome.minimal(3, 2, rng, tracker, hidden=[4, 2], activation="tanh").copy()
    a, b = g.hidden_nodes()
    g.graph.add_edge(
        b, a, **edge_attrs(tracker.edge(b, a), rng.normal(size=(4, 2)), recurrent=True)
    )
    g.graph.add_edge(
        1, 1, **edge_attrs(tracker.edge(1, 1), rng.normal(size=(2, 2)), recurrent=True)
    )
    plain = Genome.minimal(3, 2, rng, tracker, hidden=[3])
    engine = RecurrentEngine([g.validate(), plain])
    assert engine.state_layouts() == [state_layout(g), state_layout(plain)]
    assert engine.state_sizes() == [4, 0] and engine.state_size == 4
    out, final = engine(torch.randn(2, 6, 3))
    assert out.shape == (2, 2, 6, 2) and final.shape == (2, 2, 4)
    assert not final[1].any()


def test_bad_shapes_are_one_line_value_errors():
    rng = np.random.default_rng(0)
    engine = RecurrentEngine([Genome.minimal(3, 2, rng, InnovationTracker())])
    with pytest.raises(ValueError, match=r"inputs should have shape \(B, T, 3\)"):
        engine(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="at least one time step"):
        engine(torch.zeros(4, 0, 3))
    with pytest.raises(ValueError, match=r"state should have shape \(1, 4, 0\)"):
        engine(torch.zeros(4, 2, 3), state=torch.zeros(1, 4, 2))


@settings(max_examples=25)
@given(recurrent_populations(gate="hard_concrete"), SEEDS)
def test_training_gates_equal_genomenet_given_the_same_noise(pop, seed):
    engine = RecurrentEngine(pop, "hard_concrete")
    x = torch.tensor(_sequences(pop[0], seed), dtype=torch.float32)
    noise = draw_gate_noise(engine.n_gates, 1, torch.Generator().manual_seed(seed))[0]
    out, _ = engine(x, noise, training=True)
    for m, genome in enumerate(pop):
        start, end = engine.gate_range(m)
        net = GenomeNet(genome, "hard_concrete").train()
        _close(out[m].detach(), _net_outputs(net, x, noise[start:end]).detach())


def _net_outputs(
    net: GenomeNet, x: torch.Tensor, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """GenomeNet's (B, T, n_out) outputs of a 3-D input (a state, if returned, dropped)."""
    out = net(x, noise)
    return out[0] if isinstance(out, tuple) else out


# ------------------------------------------------------------------ gradients

def _check_gradients(pop: list[Genome], gate: str, seed: int) -> None:
    x = torch.tensor(_sequences(pop[0], seed), dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed + 1)
    proj = torch.randn(len(pop), x.shape[0], T_STEPS, pop[0].n_outputs, generator=gen)
    engine = RecurrentEngine(pop, gate)
    noise = None
    if gate == "hard_concrete":
        noise = draw_gate_noise(engine.n_gates, 1, torch.Generator().manual_seed(seed))[0]
    for p in engine.params:
        p.requires_grad_(True)
    out, _ = engine(x, noise, training=noise is not None)
    loss = (out * proj).sum() + engine.penalty().sum()
    grads = grads_as_genomes(engine, torch.autograd.grad(loss, engine.params))
    for m, genome in enumerate(pop):
        net = GenomeNet(genome, gate).train(noise is not None)
        start, end = engine.gate_range(m)
        ref = (_net_outputs(net, x, None if noise is None else noise[start:end]) * proj[m]).sum()
        (ref + net.penalty()).backward()
        for name, p in list(net.nodes.items()) + list(net.edges.items()):
            kind, what = name[0], name.rsplit("_", 1)[1]
            if kind == "n":
                got = grads[m].graph.nodes[int(name[1:].rsplit("_", 1)[0])][what]
            else:
                s, d = (int(i) for i in name[1:].rsplit("_", 1)[0].split("_"))
                got = grads[m].graph.edges[s, d][what]
            _close(got, p.grad.numpy(), 1e-4)


@settings(max_examples=25)
@given(recurrent_populations(), SEEDS)
def test_gradients_equal_genomenet_sigmoid(pop, seed):
    _check_gradients(pop, "sigmoid", seed)


@settings(max_examples=20)
@given(recurrent_populations(gate="hard_concrete"), SEEDS)
def test_gradients_equal_genomenet_hard_concrete_with_noise(pop, seed):
    _check_gradients(pop, "hard_concrete", seed)


def _looped_genome(seed: int = 0) -> Genome:
    """Two hidden nodes, a skip edge, self-loops, and recurrent edges from the output and input."""
    rng, tracker = np.random.default_rng(seed), InnovationTracker()
    g = Genome.minimal(3, 2, rng, tracker, hidden=[3, 2], activation="tanh").copy()
    a, b = g.hidden_nodes()
    g.graph.nodes[b]["activation"] = "sigmoid"
    edges = [(a, a, (3, 3)), (b, a, (3, 2)), (1, b, (2, 2)), (0, b, (2, 3)), (1, 1, (2, 2))]
    for s, d, shape in edges:
        g.graph.add_edge(
            s, d, **edge_attrs(tracker.edge(s, d), rng.normal(0, 0.7, shape), 1.0, recurrent=True)
        )
    g.graph.add_edge(0, 1, **edge_attrs(tracker.edge(0, 1), rng.normal(0, 0.7, (2, 3)), 0.5))
    for _, attrs in g.graph.nodes(data=True):
        if attrs["role"] != "input":
            attrs["bias"] = rng.normal(0, 0.5, attrs["width"]).astype(np.float32)
    return g.validate()


def test_gradients_match_finite_differences_in_float64():
    pop = [_looped_genome(0), _looped_genome(1)]
    engine = RecurrentEngine(pop, "sigmoid", dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
    state = torch.randn(2, 2, engine.state_size, generator=gen, dtype=torch.float64)
    proj = torch.randn(2, 2, 4, 2, generator=gen, dtype=torch.float64)

    def f(w: torch.Tensor, b: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        engine.weights, engine.biases, engine.gates = w, b, g
        out, final = engine(x, state=state)
        return (out * proj).sum() + final.square().sum() + engine.penalty().sum()

    params = tuple(p.detach().clone().requires_grad_(True) for p in engine.params)
    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------- sizes and write-back
@settings(max_examples=30)
@given(recurrent_populations())
def test_write_back_is_bit_exact_and_penalty_is_genomenets(pop):
    engine = RecurrentEngine(pop, "hard_concrete")
    assert engine.write_back() == pop
    for m, genome in enumerate(pop):
        net_penalty = float(GenomeNet(genome, "hard_concrete").penalty().detach())
        assert float(engine.penalty()[m]) == pytest.approx(net_penalty, rel=1e-6)
        ref = sum(
            float(open_probability(logit, "hard_concrete").sum()) for logit in _logits(genome)
        )
        assert float(engine.penalty()[m]) == pytest.approx(ref, rel=1e-5)


def _logits(genome: Genome) -> list[np.ndarray]:
    g = genome.graph
    out = [g.nodes[n]["gate"] for n in g.nodes if g.nodes[n]["role"] != "output"]
    return out + [np.atleast_1d(a["gate"]) for _, _, a in g.edges(data=True) if a["enabled"]]


@settings(max_examples=30)
@given(recurrent_populations())
def test_weight_l1_sums_the_outgoing_weights(pop):
    engine = RecurrentEngine(pop)
    l1, l1_all = engine.weight_l1(), engine.weight_l1("all")
    for m, genome in enumerate(pop):
        g = genome.graph
        live = [(s, a["weight"]) for s, _, a in g.edges(data=True) if a["enabled"]]
        assert float(l1_all[m]) == pytest.approx(
            sum(float(np.abs(w).sum()) for _, w in live), rel=1e-5
        )
        hidden = [(s, w) for s, w in live if g.nodes[s]["role"] == "hidden"]
        assert float(l1[m]) == pytest.approx(
            sum(float(np.abs(w).sum()) for _, w in hidden), rel=1e-5, abs=1e-6
        )
    with pytest.raises(ValueError, match="sources should be"):
        engine.weight_l1("output")


# ------------------------------------------------------------------ training
def _data(
    pop: list[Genome], seed: int, n: int = 12, steps: int = T_STEPS
) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, steps, pop[0].n_inputs, generator=gen)
    y = torch.randint(0, pop[0].n_outputs, (n, steps), generator=gen)
    mask = torch.rand(n, steps, generator=gen) < 0.6
    mask[:, -1] = True
    return X, y, mask


@settings(max_examples=10)
@given(recurrent_populations(size=st.integers(2, 4)), SEEDS)
def test_a_member_trained_alone_equals_itself_in_a_population(pop, seed):
    X, y, mask = _data(pop, seed)
    config = TrainConfig(steps=4, batch_size=5, lr=0.02, weight_decay=0.05, penalty=0.01)
    together = train_sequence_population(
        pop, X, y, mask, config, torch.Generator().manual_seed(seed)
    )
    for m, genome in enumerate(pop):
        alone = train_sequence_population(
            [genome], X, y, mask, config, torch.Generator().manual_seed(seed)
        )
        assert alone.results[0].status == together.results[m].status == "ok"
        assert alone.results[0].train_loss == pytest.approx(
            together.results[m].train_loss, rel=1e-5, abs=1e-6
        )
        for (label, a), (_, b) in zip(
            alone.genomes[0].iter_arrays(), together.genomes[m].iter_arrays(), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=label)


def test_a_nan_member_fails_alone_and_the_others_stay_bit_identical():
    pop = [_looped_genome(s) for s in range(3)]
    X, y, mask = _data(pop, 0)
    config = TrainConfig(steps=4, batch_size=6, lr=0.05, weight_decay=0.1, penalty=0.01)
    broken = list(pop)
    broken[1] = pop[1].copy()
    rec = next((s, d) for s, d, a in broken[1].graph.edges(data=True) if a["recurrent"])
    broken[1].graph.edges[rec]["weight"][0, 0] = np.nan
    clean = train_sequence_population(pop, X, y, mask, config, torch.Generator().manual_seed(0))
    got = train_sequence_population(
        broken,
        X,
        y,
        mask,
        config,
        torch.Generator().manual_seed(0),
        X_val=X,
        y_val=y,
        mask_val=mask,
    )
    assert got.results[1].status == "failed" and got.results[1].steps == 0
    assert got.genomes[1] is broken[1]
    assert np.isnan(got.validation[1].loss)
    for m in (0, 2):
        assert got.results[m] == clean.results[m]
        assert got.genomes[m] == clean.genomes[m]


def test_stream_mode_carries_the_state_between_windows():
    genome = _looped_genome(0)
    engine = RecurrentEngine([genome])
    gen = torch.Generator().manual_seed(0)
    streams = torch.randn(4, 12, 3, generator=gen)
    y = torch.randint(0, 2, (4, 12), generator=gen)
    config = TrainConfig(steps=2, lr=1e-30)  # the parameters stay as they are
    seen: list[float] = []
    train_sequence_engine(
        engine,
        streams,
        y,
        None,
        config,
        None,
        window=6,
        on_chunk=lambda t, loss: seen.append(float(loss[0])),
    )
    with torch.no_grad():
        _, state = engine(streams[:, :6])
        carried, _ = engine(streams[:, 6:], state=state)
        reset, _ = engine(streams[:, 6:])
    ce = torch.nn.functional.cross_entropy
    assert seen[1] == pytest.approx(
        float(ce(carried[0].reshape(-1, 2), y[:, 6:].reshape(-1))), rel=1e-5
    )
    assert seen[1] != pytest.approx(
        float(ce(reset[0].reshape(-1, 2), y[:, 6:].reshape(-1))), rel=1e-3
    )


def test_stream_mode_wraps_to_the_start_with_a_zero_state():
    genome = _looped_genome(0)
    engine = RecurrentEngine([genome])
    gen = torch.Generator().manual_seed(0)
    streams = torch.randn(3, 10, 3, generator=gen)
    y = torch.randint(0, 2, (3, 10), generator=gen)
    seen: list[float] = []
    config = TrainConfig(steps=3, lr=1e-30)
    train_sequence_engine(
        engine,
        streams,
        y,
        None,
        config,
        None,
        window=4,
        on_chunk=lambda t, loss: seen.append(float(loss[0])),
    )
    assert seen[2] == pytest.approx(seen[0], rel=1e-6)  # windows [0, 4), [4, 8), then [0, 4) again


def test_per_sequence_targets_score_the_last_masked_step():
    pop = [_looped_genome(0), _looped_genome(1)]
    engine = RecurrentEngine(pop)
    X, y_steps, mask = _data(pop, 3)
    mask[0] = False
    mask[0, 2] = True  # sequence 0 is scored at step 2 only
    y = y_steps[:, 0]
    losses, accuracy = evaluate_sequence_engine(engine, X, y, mask, "cross_entropy")
    with torch.no_grad():
        out, _ = engine(X)
    last = [int(torch.nonzero(row).max()) for row in mask]
    for m in range(2):
        picked = torch.stack([out[m, i, t] for i, t in enumerate(last)])
        ref = torch.nn.functional.cross_entropy(picked, y)
        assert losses[m] == pytest.approx(float(ref), rel=1e-5)
        assert accuracy[m] == pytest.approx(float((picked.argmax(1) == y).double().mean()))


def test_sequence_metrics_scores():
    pop = [_looped_genome(0)]
    engine = RecurrentEngine(pop)
    X, y, mask = _data(pop, 1)
    loss, acc = evaluate_sequence_engine(engine, X, y, mask, "cross_entropy")
    (plain,) = sequence_metrics(engine, pop, X, y, mask, "sigmoid", "cross_entropy")
    assert plain.loss == loss[0] and plain.accuracy == acc[0] and plain.score is None
    (excess,) = sequence_metrics(
        engine, pop, X, y, mask, "sigmoid", "cross_entropy", "excess_nats", 0.25
    )
    assert excess.score == pytest.approx(loss[0] - 0.25)
    (accuracy,) = sequence_metrics(engine, pop, X, y, mask, "sigmoid", "cross_entropy", "accuracy")
    assert accuracy.score == acc[0]
    with pytest.raises(ValueError, match="excess_nats"):
        sequence_metrics(engine, pop, X, y, mask, "sigmoid", "cross_entropy", "excess_nats")


def test_regression_per_step_mse_is_the_mean_over_scored_steps():
    pop = [_looped_genome(0)]
    engine = RecurrentEngine(pop)
    X, _, mask = _data(pop, 2)
    y = torch.randn(X.shape[0], X.shape[1], 2, generator=torch.Generator().manual_seed(5))
    (loss,), (acc,) = evaluate_sequence_engine(engine, X, y, mask, "mse")
    with torch.no_grad():
        out, _ = engine(X)
    per = (out[0] - y).square().mean(2)
    assert acc is None
    assert loss == pytest.approx(float(per[mask].mean()), rel=1e-5)


@pytest.mark.parametrize(
    ("X", "y", "mask", "match"),
    [
        (np.zeros((4, 3)), np.zeros(4, int), None, r"X should have shape \(N >= 1, T >= 1, 3\)"),
        (np.zeros((4, 5, 3)), np.zeros((4, 2), int), None, r"int ids of shape \(4,\) or \(4, 5\)"),
        (np.zeros((4, 5, 3)), np.full(4, 7), None, r"class ids should lie in \[0, 2\)"),
        (
            np.zeros((4, 5, 3)),
            np.zeros(4, int),
            np.ones((4, 4), bool),
            r"mask should be bool of shape \(4, 5\)",
        ),
        (
            np.zeros((4, 5, 3)),
            np.zeros(4, int),
            np.eye(4, 5, dtype=bool)[[0, 1, 2, 2]] & False,
            "mask row 0",
        ),
    ],
)
def test_bad_sequence_data_is_one_data_error(X, y, mask, match):
    with pytest.raises(DataError, match=match):
        check_sequence_data(X, y, mask, 3, 2, "cross_entropy")
