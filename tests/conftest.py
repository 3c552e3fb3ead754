"""Shared pytest setup: hypothesis profiles and a deliberate torch thread count."""

import os

from hypothesis import HealthCheck, settings

# CI: derandomised so a green run stays green; no deadline because the machines
# are shared and a slow example is not a failure.
settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

try:  # one intra-op thread: tiny tensors, and the other core may be busy
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a core dependency
    pass
