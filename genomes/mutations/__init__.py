"""Mutation operators and their registry.

Every operator is a pure function ``op(genome, rng, tracker, config) -> (child,
record)``: it never edits ``genome``, returns a valid child and a
:class:`~genomes.MutationRecord` with JSON-ready arguments, and raises
:class:`~genomes.NotApplicable` when the genome offers nothing to act on (callers
that draw operators at random catch it and draw again). ``MUTATIONS`` names them
all; the groups below say which are function preserving.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..config import MutationConfig, MutationRecord
from ..genome import Genome
from ..innovation import InnovationTracker
from .adaptive import add_exit, add_skip
from .growth import EXACT_SPLITS, add_edge, add_node, add_recurrent_edge, widen
from .perturb import mutate_activation, perturb_weights, reset_gates
from .pruning import prune_edge, prune_neurons, remove_node, sparsify

__all__ = [
    "EXACT_SPLITS",
    "GROWTH",
    "MUTATIONS",
    "OPT_IN",
    "MutationFn",
    "PERTURBATION",
    "PRUNING",
    "add_edge",
    "add_exit",
    "add_node",
    "add_recurrent_edge",
    "add_skip",
    "mutate_activation",
    "perturb_weights",
    "prune_edge",
    "prune_neurons",
    "remove_node",
    "reset_gates",
    "sparsify",
    "widen",
]

MutationFn = Callable[
    [Genome, np.random.Generator, InnovationTracker, MutationConfig], tuple[Genome, MutationRecord]
]

#: Every mutation operator by name (the name is also the record's ``op``).
MUTATIONS: dict[str, MutationFn] = {
    "add_node": add_node,
    "widen": widen,
    "add_edge": add_edge,
    "prune_neurons": prune_neurons,
    "prune_edge": prune_edge,
    "remove_node": remove_node,
    "perturb_weights": perturb_weights,
    "mutate_activation": mutate_activation,
    "reset_gates": reset_gates,
    "add_recurrent_edge": add_recurrent_edge,
    "add_exit": add_exit,
    "add_skip": add_skip,
    "sparsify": sparsify,
}

#: Growth and skip mutations: function preserving under the deterministic gates.
GROWTH: tuple[str, ...] = ("add_node", "widen", "add_edge", "add_recurrent_edge", "add_exit", "add_skip")
#: Operators that draw nothing from the generator while their rate is 0, so a run that
#: never asks for them is the run it was before they existed.
OPT_IN: tuple[str, ...] = ("add_recurrent_edge", "add_exit", "add_skip", "sparsify")
#: Pruning: function preserving when what they remove is closed (hard-concrete gates).
PRUNING: tuple[str, ...] = ("prune_neurons", "prune_edge", "remove_node", "sparsify")
#: Perturbation: same structure, new values.
PERTURBATION: tuple[str, ...] = ("perturb_weights", "mutate_activation", "reset_gates")
