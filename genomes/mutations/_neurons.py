"""Neuron surgery shared by the operators: pick targets, add or drop neurons of a node.

A node's neurons index the rows of its incoming weight matrices and the columns of
its outgoing ones; every helper here keeps all of them (enabled, disabled and
recurrent edges, self-loops included) in step with the node's ``width``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from ..gates import gate_value
from ..genome import Genome, set_order

T = TypeVar("T")


def choose(rng: np.random.Generator, items: Sequence[T]) -> T:
    """Return one of ``items`` uniformly at random (``items`` must be non-empty)."""
    return items[int(rng.integers(len(items)))]


def gate_scalar(logit: float | np.ndarray, kind: str) -> float:
    """Return the deterministic value of one gate logit as a Python float."""
    return float(gate_value(logit, kind))


def lecun_normal(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Return float32 weights ~ N(0, 1/fan_in) of ``shape`` = (fan_out, fan_in)."""
    return rng.normal(0.0, 1.0 / np.sqrt(shape[1]), size=shape).astype(np.float32)


def append_neurons(
    genome: Genome, node: int, added: int, rng: np.random.Generator | None, gate_init: float
) -> None:
    """Append ``added`` neurons to ``node`` in place (``genome`` must be a private copy).

    New incoming rows are LeCun normal (zeros when ``rng`` is None), new outgoing
    columns zero (so the new neurons feed nothing yet; an exit head's columns
    included), new biases zero and new gate logits ``gate_init``. The ``skip``
    vector of every out-edge into a skip-gated node (``genomes.adaptive``) grows
    with zeros too, so the new neurons do not move any skip gate. A budget
    ``order`` gets the new neurons at its end (least important). A sparse edge's
    ``mask`` grows with True: the new neurons are connected (their zero outgoing
    weights are connections that training moves).
    """
    g = genome.graph
    a = g.nodes[node]
    if a.get("order") is not None:
        old = int(a["width"])
        a["order"] = np.concatenate([np.asarray(a["order"], np.int64), np.arange(old, old + added)])
    a["width"] = int(a["width"]) + added
    a["bias"] = np.concatenate([a["bias"], np.zeros(added, np.float32)])
    a["gate"] = np.concatenate([a["gate"], np.full(added, gate_init, np.float32)])
    for s, _ in g.in_edges(node):
        e = g.edges[s, node]
        w = e["weight"]
        shape = (added, w.shape[1])
        rows = np.zeros(shape, np.float32) if rng is None else lecun_normal(rng, shape)
        e["weight"] = np.concatenate([w, rows], axis=0)
        if e.get("mask") is not None:
            e["mask"] = np.concatenate([e["mask"], np.ones(shape, bool)], axis=0)
    for _, d in g.out_edges(node):
        e = g.edges[node, d]
        w = e["weight"]
        cols = np.zeros((w.shape[0], added), np.float32)
        e["weight"] = np.concatenate([w, cols], axis=1)
        if e.get("mask") is not None:
            e["mask"] = np.concatenate([e["mask"], np.ones(cols.shape, bool)], axis=1)
        if e.get("skip") is not None:
            e["skip"] = np.concatenate([e["skip"], np.zeros(added, np.float32)])


def keep_neurons(genome: Genome, node: int, keep: np.ndarray) -> None:
    """Keep only the neurons at sorted indices ``keep`` of ``node``, in place.

    Slices the node's bias and gate, the rows of every incoming matrix and the
    columns of every outgoing one (an exit head's included), and the entries of
    every outgoing ``skip`` vector (``genomes.adaptive``) and of sparse edges'
    masks; ``genome`` must be a private copy. A budget
    ``order`` keeps the kept neurons in their relative order, renumbered.
    """
    g = genome.graph
    a = g.nodes[node]
    order = a.get("order")
    a["width"] = len(keep)
    if order is not None:
        set_order(a, restrict_order(order, keep))
    a["bias"] = a["bias"][keep].copy()
    a["gate"] = a["gate"][keep].copy()
    for s, _ in g.in_edges(node):
        e = g.edges[s, node]
        e["weight"] = e["weight"][keep, :].copy()
        if e.get("mask") is not None:
            e["mask"] = e["mask"][keep, :].copy()
    for _, d in g.out_edges(node):
        e = g.edges[node, d]
        e["weight"] = e["weight"][:, keep].copy()
        if e.get("mask") is not None:
            e["mask"] = e["mask"][:, keep].copy()
        if e.get("skip") is not None:
            e["skip"] = e["skip"][keep].copy()


def restrict_order(order: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Return the order of the neurons at sorted indices ``keep``, renumbered ``0..len(keep)-1``.

    The kept neurons keep their relative place in ``order``.
    """
    keep = np.asarray(keep, dtype=np.int64)
    new_index = np.full(int(np.max(order, initial=-1)) + 1, -1, np.int64)
    new_index[keep] = np.arange(len(keep))
    mapped = new_index[np.asarray(order, np.int64)]
    return mapped[mapped >= 0]
