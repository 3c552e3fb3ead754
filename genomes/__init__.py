"""genomes: the genotype of hybrid: graph genomes and their pure operators.

numpy + networkx only; importing this package never imports torch.
"""

from ._errors import GenomeError, NotApplicable
from .activations import ACTIVATION_IDS, ACTIVATIONS, activate
from .complexity import ActiveStructure, active_structure
from .config import DistanceConfig, MutationConfig, MutationRecord
from .evaluate import evaluate
from .gates import GATE_KINDS, gate_value, open_probability
from .genome import Genome
from .innovation import InnovationTracker
from .serialize import from_dict, load, save, to_dict, to_graphml

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_IDS",
    "ActiveStructure",
    "DistanceConfig",
    "GATE_KINDS",
    "Genome",
    "GenomeError",
    "InnovationTracker",
    "MutationConfig",
    "MutationRecord",
    "NotApplicable",
    "activate",
    "active_structure",
    "evaluate",
    "from_dict",
    "gate_value",
    "load",
    "open_probability",
    "save",
    "to_dict",
    "to_graphml",
]
