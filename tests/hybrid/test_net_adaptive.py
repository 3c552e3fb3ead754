"""GenomeNet on adaptive genomes (exit heads, per-input skip gates): held to genomes.adaptive."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genomes import (
    Genome,
    GenomeError,
    InnovationTracker,
    active_structure,
    evaluate,
    open_probability,
)
from genomes.activations import activate
from genomes.adaptive import evaluate_adaptive, exit_nodes, skip_logit, skip_nodes, with_thresholds
from genomes.gates import GATE_KINDS, gate_value
from hybrid.net import GenomeNet, draw_skip_noise, members_from_flat, write_back
from tests.adaptive_cases import adaptive_genome

# Seeds whose genomes have exits that stop some samples and not others, and skip
# gates that open for some samples and close for others (tests/adaptive_cases.py).
SEEDS = (0, 2, 3, 6, 7)


def inputs(genome: Genome, seed: int, batch: int = 48) -> np.ndarray:
    return np.random.default_rng(seed + 100).normal(0.0, 2.0, (batch, genome.n_inputs))


def reference(
    genome: Genome, x: np.ndarray, kind: str, noise: np.ndarray | None = None
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Float64 numpy: every node's ``h``, each skip node's ``s`` and ``z = 1[s + L >= 0]``.

    ``noise`` (B, n_skip): the logistic noise ``L`` in ``skip_nodes`` order (None: 0).
    """
    g = genome.graph
    active = genome.active_graph()
    columns = {n: k for k, n in enumerate(skip_nodes(genome))}
    values: dict[int, np.ndarray] = {}
    logits: dict[int, np.ndarray] = {}
    zs: dict[int, np.ndarray] = {}
    for n in genome.topological_order():
        a = g.nodes[n]
        if a["role"] == "input":
            values[n] = x * gate_value(a["gate"], kind)
            continue
        pre = np.broadcast_to(a["bias"].astype(np.float64), (x.shape[0], a["width"])).copy()
        for s in active.predecessors(n):
            e = g.edges[s, n]
            pre += gate_value(e["gate"], kind) * (values[s] @ e["weight"].astype(np.float64).T)
        out = activate(a["activation"], pre)
        if a["role"] == "hidden":
            out = out * gate_value(a["gate"], kind)
        if a.get("skip") is not None:
            logits[n] = skip_logit(genome, n, values, kind, np.float64)
            shift = 0.0 if noise is None else noise[:, columns[n]]
            zs[n] = (logits[n] + shift >= 0).astype(np.float64)
            out = out * zs[n][:, None]
        values[n] = out
    return values, logits, zs


def test_the_cases_are_adaptive_with_mixed_decisions():
    for seed in SEEDS:
        g = adaptive_genome(seed)
        r = evaluate_adaptive(g, inputs(g, seed))
        assert r.plan.exits and r.runs
        assert any(0 < v.mean() < 1 for v in r.runs.values())
        assert 0 < (r.exit < len(r.plan.exits)).mean() < 1


@pytest.mark.parametrize("kind", GATE_KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_eval_forward_is_genomes_evaluate_with_skip_gates(seed, kind):
    g = adaptive_genome(seed)
    x = inputs(g, seed)
    want = evaluate(g, x, kind)
    got32 = GenomeNet(g, kind).eval()(torch.tensor(x, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(got32, want, rtol=1e-5, atol=1e-5)
    got64 = GenomeNet(g, kind).double().eval()(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(got64, want, rtol=1e-10, atol=1e-10)
    # The skip gates do change the function (the net is not ignoring them).
    plain = g.copy()
    for n in skip_nodes(plain):
        plain.graph.nodes[n]["skip"] = np.full(1, 50.0, np.float32)  # always open
    assert np.abs(evaluate(plain, x, kind) - want).max() > 1e-3


@pytest.mark.parametrize("kind", GATE_KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_forward_exits_gives_the_heads_output_and_decisions_of_the_reference(seed, kind):
    g = adaptive_genome(seed)
    x = inputs(g, seed)
    r = evaluate_adaptive(g, x, kind)
    net = GenomeNet(g, kind).double().eval()
    output, heads, z = net.forward_exits(torch.tensor(x))
    assert net.exits == r.plan.exits and len(heads) == len(r.plan.exits)
    np.testing.assert_allclose(output.detach().numpy(), r.output, rtol=1e-10, atol=1e-10)
    for k, head in enumerate(heads):
        assert head.shape == (x.shape[0], g.n_outputs)
        np.testing.assert_allclose(head.detach().numpy(), r.heads[k], rtol=1e-10, atol=1e-10)
    assert set(z) == set(skip_nodes(g)) == set(r.runs)
    for n, runs in r.runs.items():
        np.testing.assert_array_equal(z[n].numpy(), runs.astype(np.float64))


@pytest.mark.parametrize("kind", GATE_KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_infer_is_evaluate_adaptive(seed, kind):
    g = adaptive_genome(seed)
    x = inputs(g, seed)
    n_exits = len(GenomeNet(g, kind).exits)
    for q in (None, 0.8, 1.0):
        thresholds = None if q is None else [q] * n_exits
        r32 = evaluate_adaptive(g, x, kind, np.float32, thresholds)
        out, flops, stage = (
            GenomeNet(g, kind).eval().infer(torch.tensor(x, dtype=torch.float32), thresholds)
        )
        assert flops.dtype == torch.int64 and stage.dtype == torch.int64
        np.testing.assert_allclose(out.numpy(), r32.outputs, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(flops.numpy(), r32.flops)
        np.testing.assert_array_equal(stage.numpy(), r32.exit)
        r64 = evaluate_adaptive(g, x, kind, np.float64, thresholds)
        out, flops, stage = GenomeNet(g, kind).double().train().infer(torch.tensor(x), thresholds)
        np.testing.assert_allclose(out.numpy(), r64.outputs, rtol=1e-10, atol=1e-10)
        np.testing.assert_array_equal(flops.numpy(), r64.flops)
        np.testing.assert_array_equal(stage.numpy(), r64.exit)


@settings(max_examples=15)
@given(st.integers(0, 2**32 - 1), st.sampled_from(GATE_KINDS), st.sampled_from([0.6, 0.9]))
def test_infer_is_evaluate_adaptive_for_any_seed(seed, kind, q):
    g = adaptive_genome(seed)
    if exit_nodes(g):
        g = with_thresholds(g, q)
    x = inputs(g, seed % 1000, batch=16)
    r = evaluate_adaptive(g, x, kind)
    net = GenomeNet(g, kind).double().eval()
    out, flops, stage = net.infer(torch.tensor(x))
    np.testing.assert_allclose(out.numpy(), r.outputs, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(flops.numpy(), r.flops)
    np.testing.assert_array_equal(stage.numpy(), r.exit)
    np.testing.assert_allclose(
        net(torch.tensor(x)).detach().numpy(), r.output, rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_infer_computes_each_node_only_for_the_samples_that_run_it(seed, monkeypatch):
    # Record the rows every activation is applied to: stage k's nodes see only the
    # samples that reached stage k, a skip-gated node only those whose gate opened.
    g = adaptive_genome(seed)
    x = inputs(g, seed)
    r = evaluate_adaptive(g, x)
    seen: list[int] = []
    import hybrid.net as net_module

    def counted(f):
        def run(pre: torch.Tensor) -> torch.Tensor:
            seen.append(pre.shape[0])
            return f(pre)

        return run

    table = {k: counted(f) for k, f in net_module.TORCH_ACTIVATIONS.items()}
    monkeypatch.setattr(net_module, "TORCH_ACTIVATIONS", table)
    GenomeNet(g).eval().infer(torch.tensor(x, dtype=torch.float32))
    want: list[int] = []
    for k, stage in enumerate(r.plan.stages):
        reached = r.exit >= k
        if not reached.any():
            break
        for n in stage.nodes:
            want.append(int((reached & r.runs[n]).sum()) if n in r.runs else int(reached.sum()))
        want.append(int(reached.sum()))  # the exit's head, or the output node
    assert seen == want
    assert sum(want) < len(want) * x.shape[0]  # some work was saved


def test_infer_of_a_plain_genome_is_one_stage_at_the_flops_of_its_active_structure():
    g = Genome.minimal(3, 2, np.random.default_rng(0), InnovationTracker(), hidden=[4, 3])
    x = torch.tensor(inputs(g, 0), dtype=torch.float32)
    net = GenomeNet(g).eval()
    assert net.exits == () and net.skip_nodes == ()
    out, flops, stage = net.infer(x)
    torch.testing.assert_close(out, net(x))
    assert (flops == active_structure(g).flops).all() and (stage == 0).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_training_forward_is_the_hard_decision_with_the_given_noise(seed):
    g = adaptive_genome(seed)
    x = inputs(g, seed, batch=16)
    net = GenomeNet(g).double().train()
    noise = draw_skip_noise(
        16, len(net.skip_nodes), torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    values, logits, zs = reference(g, x, "sigmoid", noise.numpy())
    output, heads, z = net.forward_exits(torch.tensor(x), skip_noise=noise)
    for n in skip_nodes(g):
        np.testing.assert_array_equal(z[n].detach().numpy(), zs[n])  # exactly 0 or 1
    np.testing.assert_allclose(output.detach().numpy(), values[g.output_id], rtol=1e-10, atol=1e-10)
    for e, head in zip(net.exits, heads, strict=True):
        np.testing.assert_allclose(head.detach().numpy(), values[e], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(net(torch.tensor(x), skip_noise=noise), output, rtol=0, atol=0)
    # Zero noise is the deterministic decision: training forward == eval forward.
    zero = torch.zeros_like(noise)
    torch.testing.assert_close(
        net(torch.tensor(x), skip_noise=zero), net.eval()(torch.tensor(x)), rtol=0, atol=0
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_straight_through_gradient_is_the_soft_relaxations(seed):
    # d loss / d c_j = sum_b dloss/dz_j[b] * sigmoid'(s_j + L_j), and
    # d loss / d skip_e = the same times g(gate_e) * h_i (e = i -> j): the gradient
    # of sigmoid(s + L), at the hard forward values.
    g = adaptive_genome(seed)
    x = inputs(g, seed, batch=16)
    net = GenomeNet(g).double().train()
    noise = draw_skip_noise(
        16, len(net.skip_nodes), torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    values, logits, _ = reference(g, x, "sigmoid", noise.numpy())
    output, heads, z = net.forward_exits(torch.tensor(x), skip_noise=noise)
    for t in z.values():
        t.retain_grad()
    y = torch.tensor(np.random.default_rng(seed).integers(0, g.n_outputs, 16))
    loss = torch.nn.functional.cross_entropy(output, y)
    for head in heads:
        loss = loss + 0.5 * torch.nn.functional.cross_entropy(head, y)
    loss.backward()
    active = g.active_graph()
    nonzero = 0
    for k, n in enumerate(net.skip_nodes):
        t = logits[n] + noise[:, k].numpy()
        slope = z[n].grad.numpy() * np.exp(-t) / (1.0 + np.exp(-t)) ** 2
        got = net.nodes[f"n{n}_skip"].grad.numpy()
        np.testing.assert_allclose(got, [slope.sum()], rtol=1e-9, atol=1e-12)
        nonzero += abs(got[0]) > 1e-8
        for s in active.predecessors(n):
            want = gate_value(g.graph.edges[s, n]["gate"], "sigmoid") * (slope @ values[s])
            np.testing.assert_allclose(
                net.edges[f"e{s}_{n}_skip"].grad.numpy(), want, rtol=1e-9, atol=1e-12
            )
    assert nonzero > 0


class _FullPath(torch.nn.Module):
    """The output and every exit's logits side by side (what a training loss reads)."""

    def __init__(self, net: GenomeNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, heads, _ = self.net.forward_exits(x)
        return torch.cat([output, *heads], 1)


def test_eval_gradients_match_finite_differences_on_a_tiny_genome():
    g = adaptive_genome(6, n_inputs=2, n_outputs=2, grow=1)
    assert exit_nodes(g) and skip_nodes(g)
    model = _FullPath(GenomeNet(g).double().eval())
    names = [n for n, _ in model.named_parameters()]
    assert any(n.endswith("_skip") for n in names)
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    x = torch.tensor(inputs(g, 1, batch=6), requires_grad=True)

    def full_path(x, *ps):
        return torch.func.functional_call(model, dict(zip(names, ps, strict=True)), (x,))

    assert torch.autograd.gradcheck(full_path, (x, *params))


@pytest.mark.parametrize("kind", GATE_KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_write_back_of_an_untrained_net_is_bit_exact(seed, kind):
    g = adaptive_genome(seed)
    before = g.copy()
    assert write_back(g, GenomeNet(g, kind)) == g
    assert g == before


def test_parameters_and_write_back_carry_the_skip_arrays_and_keep_thresholds():
    g = adaptive_genome(3)
    net = GenomeNet(g).double()
    active = g.active_graph()
    for n in skip_nodes(g):
        assert net.nodes[f"n{n}_skip"].shape == (1,)
        for s in active.predecessors(n):
            assert net.edges[f"e{s}_{n}_skip"].shape == (g.graph.nodes[s]["width"],)
    for e in exit_nodes(g):
        assert f"n{e}_bias" in net.nodes and f"n{e}_gate" not in net.nodes  # no neuron gate
        (src,) = active.predecessors(e)
        assert f"e{src}_{e}_weight" in net.edges and f"e{src}_{e}_gate" in net.gate_keys
    # The structure penalty: input and hidden neuron gates and every enabled edge's gate.
    graph = g.graph
    logits = [graph.nodes[g.input_id]["gate"], *(graph.nodes[n]["gate"] for n in g.hidden_nodes())]
    logits += [np.atleast_1d(graph.edges[e]["gate"]) for e in g.enabled_edges()]
    assert net.n_gates == sum(v.size for v in logits)
    assert net.penalty().item() == pytest.approx(
        open_probability(np.concatenate(logits), "sigmoid").sum(), rel=1e-12
    )
    n = skip_nodes(g)[0]
    (s, *_) = active.predecessors(n)
    with torch.no_grad():
        net.nodes[f"n{n}_skip"].fill_(-0.5)
        net.edges[f"e{s}_{n}_skip"].mul_(3.0)
    other = with_thresholds(g, 0.95)  # thresholds are the genome's, never the net's
    child = write_back(other, net).validate()
    assert child.graph.nodes[n]["skip"].dtype == np.float32
    np.testing.assert_array_equal(child.graph.nodes[n]["skip"], np.float32([-0.5]))
    np.testing.assert_array_equal(
        child.graph.edges[s, n]["skip"], 3.0 * g.graph.edges[s, n]["skip"]
    )
    assert all(child.graph.nodes[e]["threshold"] == 0.95 for e in exit_nodes(g))
    with pytest.raises(GenomeError, match="different structure"):
        write_back(adaptive_genome(2), net)


def test_members_from_flat_carries_skip_arrays():
    g = adaptive_genome(2)
    graph = g.graph
    edges = g.enabled_edges()
    w = np.concatenate([graph.edges[e]["weight"].ravel() for e in edges])
    weight = np.cumsum([0] + [graph.edges[e]["weight"].size for e in edges[:-1]])
    bias_nodes = [n for n in g.topological_order() if graph.nodes[n]["role"] != "input"]
    b = np.concatenate([graph.nodes[n]["bias"] for n in bias_nodes])
    bias = np.cumsum([0] + [graph.nodes[n]["width"] for n in bias_nodes[:-1]])
    gate_edges = np.array([graph.edges[e]["gate"] for e in edges], np.float32)
    skip_edges = [(s, d) for s, d in edges if graph.nodes[d].get("skip") is not None]
    sk = skip_nodes(g)
    flat_skip = np.concatenate(
        [graph.nodes[n]["skip"] for n in sk] + [graph.edges[e]["skip"] for e in skip_edges]
    )
    skip_edge = len(sk) + np.cumsum([0] + [graph.edges[e]["skip"].size for e in skip_edges[:-1]])
    sl = SimpleNamespace(
        edges=edges,
        weight=weight,
        edge_gate=0,
        bias_nodes=bias_nodes,
        bias=bias,
        gate_nodes=[],
        gate=[],
        skip_nodes=sk,
        skip_node=list(range(len(sk))),
        skip_edges=skip_edges,
        skip_edge=skip_edge,
    )
    key = g.structure_key()
    (same,) = members_from_flat([g], [sl], [key], w, b, gate_edges, flat_skip)
    assert same == g
    (changed,) = members_from_flat([g], [sl], [key], w, b, gate_edges, flat_skip + 1.0)
    for n in sk:
        np.testing.assert_array_equal(changed.graph.nodes[n]["skip"], graph.nodes[n]["skip"] + 1.0)
    for e in skip_edges:
        np.testing.assert_array_equal(changed.graph.edges[e]["skip"], graph.edges[e]["skip"] + 1.0)
    (unchanged,) = members_from_flat([g], [sl], [key], w, b, gate_edges)  # no skip array: kept
    assert unchanged == g


def test_training_mode_skip_noise_comes_from_the_generator():
    g = adaptive_genome(3)
    x = torch.tensor(inputs(g, 3), dtype=torch.float32)
    outs = [GenomeNet(g, generator=torch.Generator().manual_seed(4)).train()(x) for _ in range(2)]
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], GenomeNet(g).eval()(x))


def test_refusals_name_what_was_expected():
    g = adaptive_genome(2)
    net = GenomeNet(g).train()
    x = torch.zeros(5, g.n_inputs)
    with pytest.raises(ValueError, match=r"skip_noise should have shape \(5, 2\)"):
        net(x, skip_noise=torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"shape \(B, 4\)"):
        net.forward_exits(torch.zeros(5, 3))
    with pytest.raises(GenomeError, match="one per exit"):
        net.infer(x, [0.5])
    with pytest.raises(GenomeError, match=r"thresholds\[1\] should be in \(0, 1\]"):
        net.infer(x, [0.5, 1.5])


def test_repr_names_exits_and_skip_gates():
    g = adaptive_genome(3)
    text = repr(GenomeNet(g))
    for e in exit_nodes(g):
        assert f"{e}: exit[{g.n_outputs}]" in text and f"{e} (threshold 0.6)" in text
    assert "[skip gate]" in text and "skip gates: " + ", ".join(map(str, skip_nodes(g))) in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_infer_and_forward_match_cpu():
    g = adaptive_genome(3)
    x = torch.tensor(inputs(g, 3), dtype=torch.float32)
    net = GenomeNet(g).eval()
    cpu = net.infer(x)
    gpu = GenomeNet(g).eval().cuda().infer(x.cuda())
    torch.testing.assert_close(gpu[0].cpu(), cpu[0])
    assert torch.equal(gpu[1].cpu(), cpu[1]) and torch.equal(gpu[2].cpu(), cpu[2])
    torch.testing.assert_close(GenomeNet(g).eval().cuda()(x.cuda()).cpu(), net(x))
