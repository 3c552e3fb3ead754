"""Tasks: built-in problems and user data, split and standardised from a seed.

``TASKS`` names the built-ins (one line each, for ``hybrid tasks``);
``SEQUENCE_TASKS`` the sequence ones among them (:mod:`hybrid.tasks._sequences`);
``load_task(config.task, seed)`` gives a :class:`Task`.
"""

from ._builtin import SEQUENCE_TASKS, TASKS, TaskSpec
from ._load import load_task, split_indices, standardise
from ._task import KINDS, Task

__all__ = [
    "KINDS",
    "SEQUENCE_TASKS",
    "TASKS",
    "Task",
    "TaskSpec",
    "load_task",
    "split_indices",
    "standardise",
]
