"""Perturbation mutations: ``perturb_weights``, ``mutate_activation``, ``reset_gates``.

They keep the structure and change values: weight noise (NEAT's weight mutation),
an activation swap (CPPN-NEAT), and reopening a gate that training closed.
"""

from __future__ import annotations

import numpy as np

from .._errors import NotApplicable
from ..activations import ACTIVATIONS
from ..config import MutationConfig, MutationRecord
from ..genome import Genome, is_frozen
from ..innovation import InnovationTracker
from ._neurons import choose

__all__ = ["mutate_activation", "perturb_weights", "reset_gates"]


def perturb_weights(
    genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, config: MutationConfig
) -> tuple[Genome, MutationRecord]:
    """Add Gaussian noise, relative to each array's scale, to a random share of arrays.

    The arrays are the weights of enabled edges and the biases of hidden and output
    nodes (never the unused input bias, nor gates). Each is picked with probability
    ``config.perturb_fraction`` (at least one always is) and gets noise of std
    ``config.perturb_std * rms(array)``; an all-zero array uses the LeCun scale
    ``1 / sqrt(fan_in)`` (weights) or 1 (biases) instead. Arrays holding NaN or inf
    are left alone, and so are frozen edges and nodes (grafted modules) and the
    absent connections of a sparse edge (its ``mask``; its rms is over all entries). Skip gates
    (``genomes.adaptive``) are trained values like weights, so their arrays are
    candidates too: a node's ``skip`` bias and an enabled edge's ``skip`` vector
    (all-zero: scale ``1 / sqrt(len)``). An exit head's weights and bias are ordinary
    edge weights and node biases.

    Args:
        genome: a valid genome (not modified).
        rng: picks the arrays and draws the noise.
        tracker: unused.
        config: ``perturb_std``, ``perturb_fraction``.

    Returns:
        The child and ``perturb_weights(arrays, std)`` (arrays: labels like
        ``"edge 0->1 weight"``).

    Raises:
        NotApplicable: no finite array to perturb.
    """
    g = genome.graph
    targets: list[tuple[str, tuple, str]] = []
    for s, d, a in sorted(g.edges(data=True)):
        if a["enabled"] and not is_frozen(a) and np.isfinite(a["weight"]).all():
            targets.append((f"edge {s}->{d} weight", (s, d), "weight"))
            if a.get("skip") is not None and np.isfinite(a["skip"]).all():
                targets.append((f"edge {s}->{d} skip", (s, d), "skip"))
    for n, a in sorted(g.nodes(data=True)):
        if a["role"] != "input" and not is_frozen(a) and np.isfinite(a["bias"]).all():
            targets.append((f"node {n} bias", (n,), "bias"))
        if a.get("skip") is not None and np.isfinite(a["skip"]).all():
            targets.append((f"node {n} skip", (n,), "skip"))
    if not targets:
        raise NotApplicable("perturb_weights: no finite weight or bias array")
    picked = np.flatnonzero(rng.random(len(targets)) < config.perturb_fraction)
    if len(picked) == 0:
        picked = np.array([int(rng.integers(len(targets)))])
    child = genome.copy()
    labels = []
    for i in picked:
        label, key, attr = targets[int(i)]
        attrs = child.graph.edges[key] if len(key) == 2 else child.graph.nodes[key[0]]
        arr = attrs[attr].astype(np.float64)
        scale = float(np.sqrt(np.mean(arr**2)))
        if scale == 0.0:
            scale = 1.0 / np.sqrt(arr.shape[-1]) if attr in ("weight", "skip") else 1.0
        noise = rng.normal(0.0, config.perturb_std * scale, arr.shape)
        if attr == "weight" and attrs.get("mask") is not None:
            noise *= attrs["mask"]  # absent connections stay absent (exactly 0)
        attrs[attr] = (arr + noise).astype(np.float32)
        labels.append(label)
    return child, MutationRecord("perturb_weights", {"arrays": labels, "std": config.perturb_std})


def mutate_activation(
    genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, config: MutationConfig
) -> tuple[Genome, MutationRecord]:
    """Give a random unfrozen hidden node another activation from ``config.activations``.

    Args:
        genome: a valid genome (not modified).
        rng: picks the node and the new activation.
        tracker: unused.
        config: ``activations`` (names not in ``genomes.ACTIVATIONS`` are ignored).

    Returns:
        The child and ``mutate_activation(node, old, new)``.

    Raises:
        NotApplicable: no hidden node, or no other activation to switch to.
    """
    g = genome.graph
    allowed = [a for a in dict.fromkeys(config.activations) if a in ACTIVATIONS]
    choices = {
        n: [a for a in allowed if a != g.nodes[n]["activation"]]
        for n in genome.hidden_nodes()
        if not is_frozen(g.nodes[n])
    }
    nodes = [n for n, alts in choices.items() if alts]
    if not nodes:
        raise NotApplicable("mutate_activation: no hidden node with another allowed activation")
    node = choose(rng, nodes)
    new = choose(rng, choices[node])
    child = genome.copy()
    old = child.graph.nodes[node]["activation"]
    child.graph.nodes[node]["activation"] = new
    return child, MutationRecord("mutate_activation", {"node": int(node), "old": old, "new": new})


def reset_gates(
    genome: Genome, rng: np.random.Generator, tracker: InnovationTracker, config: MutationConfig
) -> tuple[Genome, MutationRecord]:
    """Set one node's neuron gates, or one edge's gate, back to ``config.gate_init``.

    Candidates are the input and hidden nodes and the edges whose gate logits are
    not all ``gate_init`` already (the output node and exit nodes have no gates),
    frozen ones (grafted modules) excepted; this reopens structure that training
    closed. Skip gates (``genomes.adaptive``) are not gates in this sense and are
    left alone.

    Args:
        genome: a valid genome (not modified).
        rng: picks the node or edge.
        tracker: unused.
        config: ``gate_init``.

    Returns:
        The child and ``reset_gates(node)`` or ``reset_gates(src, dst)``.

    Raises:
        NotApplicable: every gate is at ``gate_init`` already.
    """
    g = genome.graph
    init = np.float32(config.gate_init)
    targets: list[tuple[int, ...]] = [
        (n,)
        for n, a in sorted(g.nodes(data=True))
        if a["role"] in ("input", "hidden") and not is_frozen(a) and not (a["gate"] == init).all()
    ]
    targets += [
        (s, d) for s, d, a in sorted(g.edges(data=True)) if not is_frozen(a) and not a["gate"] == init
    ]
    if not targets:
        raise NotApplicable("reset_gates: every gate is at gate_init already")
    target = choose(rng, targets)
    child = genome.copy()
    if len(target) == 1:
        a = child.graph.nodes[target[0]]
        a["gate"] = np.full(a["width"], init, np.float32)
        return child, MutationRecord("reset_gates", {"node": int(target[0])})
    child.graph.edges[target]["gate"] = init
    return child, MutationRecord("reset_gates", {"src": int(target[0]), "dst": int(target[1])})
