"""minibatch_indices: epochs of permutations cut into batches, from an explicit generator."""

import pytest
import torch

from hybrid.batches import minibatch_indices


def test_batches_cover_every_sample_once_per_epoch():
    n, b, steps = 10, 3, 20
    idx = minibatch_indices(n, b, steps, torch.Generator().manual_seed(0))
    assert idx.shape == (steps, b) and idx.dtype == torch.int64
    flat = idx.reshape(-1)
    for epoch in range(len(flat) // n):
        assert sorted(flat[epoch * n : (epoch + 1) * n].tolist()) == list(range(n))


def test_batches_are_epochs_of_randperm():
    g = torch.Generator().manual_seed(3)
    idx = minibatch_indices(7, 4, 5, g)
    g.manual_seed(3)
    expected = torch.cat([torch.randperm(7, generator=g) for _ in range(3)])[:20].view(5, 4)
    assert torch.equal(idx, expected)


def test_full_batch_is_arange_and_leaves_generator_alone():
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    idx = minibatch_indices(5, 8, 3, g)
    assert torch.equal(idx, torch.arange(5).expand(3, 5))
    assert torch.equal(g.get_state(), state)


def test_same_seed_gives_same_batches():
    a = minibatch_indices(50, 8, 30, torch.Generator().manual_seed(11))
    b = minibatch_indices(50, 8, 30, torch.Generator().manual_seed(11))
    assert torch.equal(a, b)


def test_zero_steps_gives_an_empty_schedule():
    assert minibatch_indices(9, 4, 0, torch.Generator()).shape == (0, 4)


@pytest.mark.parametrize("args", [(0, 4, 3), (5, 0, 3), (5, 4, -1)])
def test_counts_out_of_range_are_rejected(args):
    with pytest.raises(ValueError, match="should be"):
        minibatch_indices(*args, torch.Generator())
