"""Seeded shuffle splits, drawn as scikit-learn 1.9's ``train_test_split`` draws them.

Runs resume byte-identical and shipped results name their rows, so the draws are
frozen: for the same ``state`` and targets, :func:`shuffle_split` returns the rows
``train_test_split(arange(n), test_size=..., random_state=state, stratify=...)``
returns (``tests/hybrid/test_tasks.py`` compares the two, stratified or not,
for any seed). It differs in cost only: scikit-learn gathers each class's rows
into a Python list of numpy scalars, which took 0.9 s of the 3.9 s a 1,000,000-row
CSV took to load; here they stay numpy arrays. Owning the draws also keeps the
splits fixed if a later scikit-learn changes its own.

The draws, from one ``numpy.random.RandomState(state)``:

* not stratified: one permutation of the rows; its first ``n_test`` are the test rows;
* stratified: each class's share of the training and of the test rows (the largest
  remainders get the rows left over, ties broken by a draw), then one permutation of
  each class's rows (classes in sorted order), then one of the training rows.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["shuffle_split", "split_sizes"]


def split_sizes(n: int, test_size: float) -> tuple[int, int]:
    """Return ``(n_train, n_test)``: ``ceil(test_size * n)`` test rows, the rest train.

    Raises:
        ValueError: ``test_size`` outside (0, 1), or no row left for training.
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"a test share of {test_size}, expected a share in (0, 1)")
    n_test = math.ceil(test_size * n)
    if n_test >= n:
        raise ValueError(f"a test share of {test_size} leaves no training row")
    return n - n_test, n_test


#: Up to this many classes, each class's rows are found by a pass over ``y`` each.
_FEW_CLASSES = 16


def _class_rows(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Return ``(classes, counts, rows)``: the sorted classes, their sizes and positions.

    ``rows[i]`` holds the positions of class ``classes[i]`` in increasing order: what
    a stable sort by class gives. Class ids (small non-negative integers, the usual
    case) are counted without sorting, and a few classes found with one pass each.
    """
    if y.dtype.kind in "iu" and len(y) and y.min() >= 0 and y.max() < 2**16:
        every = np.bincount(y)
        classes = np.flatnonzero(every)
        counts = every[classes]
        if len(classes) <= _FEW_CLASSES:
            return classes, counts, [np.flatnonzero(y == c) for c in classes]
        codes = (np.cumsum(every > 0) - 1)[y]
    else:
        classes, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    if len(classes) <= np.iinfo(np.int16).max:  # a stable sort of 16-bit keys is a radix sort
        codes = codes.astype(np.int16)
    order = np.argsort(codes, kind="stable")
    return classes, counts, np.split(order, np.cumsum(counts)[:-1])


def _shares(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Return how many of ``draws`` rows each class gets: in proportion, summing to ``draws``.

    Each class gets the floor of its proportional share; the rows left over go one
    each to the classes with the largest fractional parts, a draw choosing among equal ones.
    """
    exact = counts / counts.sum() * draws
    out = np.floor(exact)
    left = int(draws - out.sum())
    if left > 0:
        fraction = exact - out
        for value in np.unique(fraction)[::-1]:
            tied = np.flatnonzero(fraction == value)
            take = min(len(tied), left)
            out[rng.choice(tied, size=take, replace=False)] += 1
            left -= take
            if left == 0:
                break
    return out.astype(int)


def _stratified(
    y: np.ndarray, n_train: int, n_test: int, rng: np.random.RandomState, ordered: bool
) -> tuple[np.ndarray, np.ndarray]:
    classes, counts, rows = _class_rows(y)
    if counts.min() < 2:
        rare = classes[counts < 2].tolist()
        raise ValueError(f"class(es) {rare} have a single sample, expected at least 2 per class")
    for what, size in (("training", n_train), ("test", n_test)):
        if size < len(classes):
            raise ValueError(
                f"{size} {what} sample(s) for {len(classes)} classes, expected one per class at least"
            )
    train_share = _shares(counts, n_train, rng)
    test_share = _shares(counts - train_share, n_test, rng)
    train, test = [], []
    for k, members in enumerate(rows):
        drawn = members[rng.permutation(counts[k])]
        a, b = train_share[k], train_share[k] + test_share[k]
        train.append(drawn[:a])
        test.append(drawn[a:b])
    train_rows = np.concatenate(train)
    return rng.permutation(train_rows) if ordered else train_rows, np.concatenate(test)


def shuffle_split(
    n: int, test_size: float, state: int, stratify: np.ndarray | None = None, ordered: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(train, test)`` positions in ``range(n)``, drawn from ``RandomState(state)``.

    Args:
        n: the number of rows.
        test_size: share of the rows in ``test`` (rounded up).
        state: the seed of the draws.
        stratify: ``[n]`` class of each row, or None; each class keeps its share in
            both parts.
        ordered: return ``train`` in the order of its draw (what a further split of
            it depends on); False spares the last draw, a permutation of ``train``
            (the same rows: it is the last draw), when the caller sorts the rows.

    Returns:
        ``train`` in the order of its draw (or, with ``ordered`` False, of no
        particular order), ``test`` in no particular order.

    Raises:
        ValueError: one line: a share outside (0, 1), no row left to train on, a
            class with a single row, or fewer training (test) rows than classes.
    """
    n_train, n_test = split_sizes(n, test_size)
    rng = np.random.RandomState(state)
    if stratify is None:
        order = rng.permutation(n)
        return order[n_test:], order[:n_test]
    return _stratified(np.asarray(stratify), n_train, n_test, rng, ordered)
