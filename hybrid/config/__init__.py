"""Search config: TOML files loaded into frozen, validated pydantic models.

``load_config(path, overrides)`` reads one (errors are one-line
:class:`~hybrid.errors.ConfigError`\\ s naming file, key, value and expectation);
``dump_config(config)`` writes it back with every key explained.
"""

from ._config import SECTIONS, Config, resolve_device
from ._io import config_from_dict, dump_config, load_config, loads_config
from ._sections import (
    CheckpointConfig,
    EvolutionConfig,
    GenomeConfig,
    ModulesConfig,
    MutationSection,
    ParallelConfig,
    RunConfig,
    SelectionConfig,
    SpeciationConfig,
    TaskConfig,
    TrainingConfig,
)

__all__ = [
    "SECTIONS",
    "CheckpointConfig",
    "Config",
    "EvolutionConfig",
    "GenomeConfig",
    "ModulesConfig",
    "MutationSection",
    "ParallelConfig",
    "RunConfig",
    "SelectionConfig",
    "SpeciationConfig",
    "TaskConfig",
    "TrainingConfig",
    "config_from_dict",
    "dump_config",
    "load_config",
    "loads_config",
    "resolve_device",
]
