"""genomes: the genotype of hybrid: graph genomes and their pure operators.

numpy + networkx only; importing this package never imports torch.
"""

from ._errors import GenomeError, NotApplicable
from .activations import ACTIVATION_IDS, ACTIVATIONS, activate
from .budgets import (
    BudgetChain,
    BudgetLevel,
    assign_orders,
    budget_chain,
    budget_masks,
    check_budget,
    check_budgets,
    sub_genome,
)
from .complexity import ActiveStructure, active_structure
from .config import DistanceConfig, MutationConfig, MutationRecord
from .crossover import crossover
from .distance import distance
from .evaluate import evaluate, evaluate_sequence, node_activations, state_layout, state_size
from .gates import GATE_KINDS, gate_value, open_probability
from .genome import Genome
from .innovation import InnovationTracker
from .modules import (
    OPEN_LOGIT,
    ModuleEdge,
    ModuleNode,
    ModuleSpec,
    harvest,
    insert_module,
    module_forward,
)
from .mutations import (
    GROWTH,
    MUTATIONS,
    OPT_IN,
    PERTURBATION,
    PRUNING,
    MutationFn,
    add_edge,
    add_node,
    add_recurrent_edge,
    mutate_activation,
    perturb_weights,
    prune_edge,
    prune_neurons,
    remove_node,
    reset_gates,
    widen,
)
from .serialize import from_dict, load, save, to_dict, to_graphml

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_IDS",
    "ActiveStructure",
    "BudgetChain",
    "BudgetLevel",
    "DistanceConfig",
    "GATE_KINDS",
    "GROWTH",
    "Genome",
    "GenomeError",
    "InnovationTracker",
    "MUTATIONS",
    "ModuleEdge",
    "ModuleNode",
    "ModuleSpec",
    "MutationConfig",
    "MutationFn",
    "MutationRecord",
    "NotApplicable",
    "OPEN_LOGIT",
    "OPT_IN",
    "PERTURBATION",
    "PRUNING",
    "activate",
    "active_structure",
    "add_edge",
    "add_node",
    "add_recurrent_edge",
    "assign_orders",
    "budget_chain",
    "budget_masks",
    "check_budget",
    "check_budgets",
    "crossover",
    "distance",
    "evaluate",
    "evaluate_sequence",
    "from_dict",
    "gate_value",
    "harvest",
    "insert_module",
    "load",
    "module_forward",
    "mutate_activation",
    "node_activations",
    "open_probability",
    "perturb_weights",
    "prune_edge",
    "prune_neurons",
    "remove_node",
    "reset_gates",
    "save",
    "state_layout",
    "state_size",
    "sub_genome",
    "to_dict",
    "to_graphml",
    "widen",
]
