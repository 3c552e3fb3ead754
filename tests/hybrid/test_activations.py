"""The torch activation registry matches the numpy one, name for name."""

import numpy as np
import pytest
import torch

from genomes import ACTIVATIONS, activate
from hybrid.activations import TORCH_ACTIVATIONS, torch_activate


def test_registry_has_the_same_names_as_genomes():
    assert list(TORCH_ACTIVATIONS) == list(ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(TORCH_ACTIVATIONS))
def test_activation_matches_numpy_reference(name):
    x = np.concatenate([np.linspace(-60.0, 60.0, 241), np.random.default_rng(0).normal(0, 3, 200)])
    got = torch_activate(name, torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, activate(name, x), rtol=1e-12, atol=1e-12)
