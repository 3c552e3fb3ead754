"""Tasks: built-in problems and user data, split and standardised from a seed.

``TASKS`` names the built-ins (one line each, for ``hybrid tasks``);
``load_task(config.task, seed)`` gives a :class:`Task`.
"""

from ._builtin import TASKS, TaskSpec
from ._load import load_task, split_indices, standardise
from ._task import KINDS, Task

__all__ = [
    "KINDS",
    "TASKS",
    "Task",
    "TaskSpec",
    "load_task",
    "split_indices",
    "standardise",
]
