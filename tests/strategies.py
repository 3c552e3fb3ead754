"""Hypothesis strategies that draw random valid genomes, for every package's tests.

``genomes_strategy()`` builds ``Genome.minimal`` and applies a random sequence of
growth, skip, pruning and perturbation mutations (skipping those that are not
applicable); with ``trained=True`` every array is then randomised the way training
leaves it: random weights and biases, gate logits that include exactly closed
hard-concrete gates. Structure choices are drawn by hypothesis (so failures
shrink); values come from a numpy generator seeded by a drawn integer.

Example::

    from hypothesis import given
    from tests.strategies import genomes_strategy

    @given(genomes_strategy(gate="hard_concrete"))
    def test_something(genome): ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from genomes import (
    ACTIVATIONS,
    GROWTH,
    MUTATIONS,
    OPT_IN,
    Genome,
    InnovationTracker,
    MutationConfig,
    NotApplicable,
    crossover,
)

__all__ = [
    "GrownGenome",
    "genomes_strategy",
    "grown_genomes",
    "mutation_config",
    "populations_strategy",
    "randomise",
]

#: Default widths and population sizes (small: the properties need many examples).
INPUT_WIDTHS = st.integers(1, 4)
OUTPUT_WIDTHS = st.integers(1, 3)
POPULATION_SIZES = st.integers(2, 6)
#: Closed hard-concrete logits (deterministic gate exactly 0 below about -2.4).
CLOSED_LOGITS = (-8.0, -3.0)
#: Other logits: half-open to fully open (exactly 1 above about 2.4).
OPEN_LOGITS = (-2.0, 6.0)


#: Operators the strategies draw from: growth twice as likely, so genomes do grow.
#: Feed-forward genomes unless asked (``recurrent=True`` adds the opt-in operators,
#: ``add_recurrent_edge``, three times as likely as the rest).
_OPS = tuple(op for op in sorted(MUTATIONS) + list(GROWTH) if op not in OPT_IN)
_RECURRENT_OPS = _OPS + ("add_recurrent_edge",) * 3
#: ``adaptive=True`` adds exit heads and skip gates (``genomes.adaptive``), each
#: twice as likely as the rest (on a recurrent genome they do not apply).
ADAPTIVE_OPS: tuple[str, ...] = ("add_exit", "add_skip")
#: ``sparse=True`` adds ``sparsify`` (sparse edges), twice as likely as the rest.
SPARSE_OPS: tuple[str, ...] = ("sparsify",)


@dataclass(frozen=True)
class GrownGenome:
    """A drawn genome with the tracker that numbered it and the config that grew it."""

    genome: Genome
    tracker: InnovationTracker
    config: MutationConfig


def without_masks(genome: Genome) -> Genome:
    """A validated copy of ``genome`` with every sparse edge's ``mask`` dropped: the dense
    edges holding the same weights (absent connections as zeros), so the same function."""
    child = genome.copy()
    for *_, a in child.graph.edges(data=True):
        a.pop("mask", None)
    return child.validate()


def mutation_config(gate: str = "sigmoid") -> MutationConfig:
    """Return the (small-sized) mutation config the strategies grow genomes with."""
    return MutationConfig(gate=gate, max_new_node_width=8, widen_max=3, max_node_width=12)


def randomise(genome: Genome, rng: np.random.Generator, closed_share: float = 0.2) -> Genome:
    """Return a copy of ``genome`` with every array drawn as training might leave it.

    Weights ~ N(0, s^2 / fan_in) with a per-edge scale ``s`` in [0.5, 1.5] (0 where a
    sparse edge's ``mask`` is False); hidden,
    output and exit biases ~ N(0, 0.5^2) (the input bias and the output and exit
    gates stay zero); each gate logit is closed (``CLOSED_LOGITS``) with probability
    ``closed_share``, else drawn from ``OPEN_LOGITS``. Skip gates
    (``genomes.adaptive``): biases ~ N(1, 1), edge ``skip`` vectors ~ N(0, 0.5^2), so
    they open for some inputs and close for others.
    """
    child = genome.copy()
    _randomise_in_place(child, rng, closed_share)
    return child


def _randomise_in_place(genome: Genome, rng: np.random.Generator, closed_share: float) -> None:
    def logits(size: int) -> np.ndarray:
        closed = rng.random(size) < closed_share
        x = np.where(closed, rng.uniform(*CLOSED_LOGITS, size), rng.uniform(*OPEN_LOGITS, size))
        return x.astype(np.float32)

    for _, a in genome.graph.nodes(data=True):
        if a["role"] != "input":
            a["bias"] = rng.normal(0.0, 0.5, a["width"]).astype(np.float32)
        if a["role"] in ("input", "hidden"):
            a["gate"] = logits(a["width"])
        if a.get("skip") is not None:
            a["skip"] = rng.normal(1.0, 1.0, 1).astype(np.float32)
    for _, _, a in genome.graph.edges(data=True):
        fan_in = a["weight"].shape[1]
        scale = rng.uniform(0.5, 1.5) / np.sqrt(fan_in)
        a["weight"] = rng.normal(0.0, scale, a["weight"].shape).astype(np.float32)
        if a.get("mask") is not None:
            a["weight"] = np.where(a["mask"], a["weight"], np.float32(0.0))
        a["gate"] = logits(1)[0]
        if a.get("skip") is not None:
            a["skip"] = rng.normal(0.0, 0.5, a["skip"].shape).astype(np.float32)


def _draw(value: Any, draw: Any) -> Any:
    """Draw from ``value`` if it is a strategy, else return it as is."""
    return draw(value) if isinstance(value, st.SearchStrategy) else value


def _grow(
    draw: Any,
    genome: Genome,
    rng: np.random.Generator,
    tracker: InnovationTracker,
    config: MutationConfig,
    max_mutations: int,
    trained: bool,
    recurrent: bool = False,
    adaptive: bool = False,
    sparse: bool = False,
) -> Genome:
    """Apply a drawn sequence of mutations (retraining in between when ``trained``)."""
    closed_share = draw(st.sampled_from([0.0, 0.2, 0.5]))
    ops = _RECURRENT_OPS if recurrent else _OPS
    if adaptive:
        ops = ops + ADAPTIVE_OPS * 2
    if sparse:
        ops = ops + SPARSE_OPS * 2
    count = draw(st.integers(0, max_mutations))  # spread: a bare list favours short ones
    steps = draw(
        st.lists(
            st.tuples(st.sampled_from(ops), st.booleans()),
            min_size=count,
            max_size=count,
        )
    )
    if trained:
        genome = randomise(genome, rng, closed_share)
    for name, retrain in steps:
        try:
            genome, _ = MUTATIONS[name](genome, rng, tracker, config)
        except NotApplicable:
            continue
        if trained and retrain:
            _randomise_in_place(genome, rng, closed_share)  # the child is ours alone
    if trained:
        _randomise_in_place(genome, rng, closed_share)
    return genome.validate()


@st.composite
def grown_genomes(
    draw: Any,
    n_inputs: int | st.SearchStrategy[int] = INPUT_WIDTHS,
    n_outputs: int | st.SearchStrategy[int] = OUTPUT_WIDTHS,
    max_mutations: int = 12,
    gate: str | st.SearchStrategy[str] = "sigmoid",
    trained: bool = True,
    recurrent: bool = False,
    adaptive: bool = False,
    sparse: bool = False,
) -> GrownGenome:
    """Draw a :class:`GrownGenome`: a genome plus the tracker and config that grew it.

    Use it when a test applies more operators to the drawn genome (the tracker
    keeps innovation numbers consistent). Arguments as for ``genomes_strategy``;
    ``adaptive=True`` also draws ``add_exit`` and ``add_skip`` (exit heads need
    ``n_outputs >= 2``; skip gates a hidden node); ``sparse=True`` draws ``sparsify``
    too (sparse edges; not with ``recurrent``).
    """
    n_in, n_out = _draw(n_inputs, draw), _draw(n_outputs, draw)
    kind = _draw(gate, draw)
    seed = draw(st.integers(0, 2**32 - 1))
    hidden = draw(st.lists(st.integers(1, 4), max_size=2))
    activation = draw(st.sampled_from(sorted(ACTIVATIONS)))
    rng = np.random.default_rng(seed)
    tracker = InnovationTracker()
    config = mutation_config(kind)
    genome = Genome.minimal(n_in, n_out, rng, tracker, hidden=hidden, activation=activation)
    genome = _grow(draw, genome, rng, tracker, config, max_mutations, trained, recurrent, adaptive, sparse)
    return GrownGenome(genome, tracker, config)


def genomes_strategy(
    n_inputs: int | st.SearchStrategy[int] = INPUT_WIDTHS,
    n_outputs: int | st.SearchStrategy[int] = OUTPUT_WIDTHS,
    max_mutations: int = 12,
    gate: str | st.SearchStrategy[str] = "sigmoid",
    trained: bool = True,
    recurrent: bool = False,
    sparse: bool = False,
) -> st.SearchStrategy[Genome]:
    """Return a strategy of valid genomes grown by random mutation sequences.

    Args:
        n_inputs: input width, or a strategy of it.
        n_outputs: output width, or a strategy of it.
        max_mutations: the longest mutation sequence drawn.
        gate: gate kind the mutations preserve the function under (or a strategy).
        trained: randomise all arrays (weights, biases, gates incl. closed ones).
        recurrent: draw ``add_recurrent_edge`` too (genomes with memory); off by
            default, so feed-forward engines get feed-forward genomes.
        sparse: draw ``sparsify`` too (sparse edges).
    """
    strategy = grown_genomes(n_inputs, n_outputs, max_mutations, gate, trained, recurrent, sparse=sparse)
    return strategy.map(lambda g: g.genome)


@st.composite
def populations_strategy(
    draw: Any,
    n_inputs: int | st.SearchStrategy[int] = INPUT_WIDTHS,
    n_outputs: int | st.SearchStrategy[int] = OUTPUT_WIDTHS,
    size: int | st.SearchStrategy[int] = POPULATION_SIZES,
    max_mutations: int = 8,
    gate: str | st.SearchStrategy[str] = "sigmoid",
    trained: bool = True,
    recurrent: bool = False,
    sparse: bool = False,
) -> list[Genome]:
    """Draw a population: genomes of one run sharing widths and one innovation tracker.

    Every member grows from the same minimal genome; some generations pass between
    members (so node splits differ) and some members are crossover children.

    Args:
        n_inputs: input width shared by all members, or a strategy of it.
        n_outputs: output width shared by all members, or a strategy of it.
        size: number of members, or a strategy of it.
        max_mutations: the longest mutation sequence per member.
        gate: gate kind (or a strategy of it).
        trained: randomise all arrays of every member.
        recurrent: grow recurrent edges too (see ``genomes_strategy``).
        sparse: draw ``sparsify`` too (sparse edges).
    """
    n_in, n_out = _draw(n_inputs, draw), _draw(n_outputs, draw)
    count, kind = _draw(size, draw), _draw(gate, draw)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    tracker = InnovationTracker()
    config = mutation_config(kind)
    hidden = draw(st.lists(st.integers(1, 4), max_size=1))
    base = Genome.minimal(n_in, n_out, rng, tracker, hidden=hidden)
    members: list[Genome] = []
    for _ in range(count):
        if draw(st.booleans()):
            tracker.next_generation()
        if len(members) >= 2 and draw(st.integers(0, 3)) == 0:
            i, j = draw(st.permutations(range(len(members))))[:2]
            child, _ = crossover(members[i], members[j], rng, config)
            members.append(child.validate())
        else:
            members.append(
                _grow(draw, base, rng, tracker, config, max_mutations, trained, recurrent, sparse=sparse)
            )
    return members
