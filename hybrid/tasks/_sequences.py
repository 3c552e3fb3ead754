"""Built-in sequence tasks: two bracket languages (next-character prediction) and parity.

The bracket tasks share the alphabet ``a b ( )`` (class ids 0 1 2 3), one-hot inputs
(F = 4, not standardised) and next-character targets. Each generator also returns, at
every position, the true conditional distribution of the next character given the
whole past, so a split's *entropy floor* (the best cross-entropy any predictor can
reach, in nats per scored character) is exact, not estimated:

``brackets_easy``
    ``"(ab"``, then more ``"ab"`` with probability ``p_continue`` (0.75 here), then
    ``")"``; repeat. Only the character after each ``b`` is uncertain (``a`` with
    ``p_continue``, ``)`` otherwise). A group holds ``k ~ Geometric(1 - p)`` pairs,
    so the floor is ``E[k] H(p) / E[2k + 2] = H(p) / (2 (2 - p))``: with p = 0.75,
    ``0.5623 / 2.5 = 0.2249`` nats per character.
``brackets_hard``
    groups ``"(xxxxxx)"`` of 6 letters from {a, b}; the first group uniform, each
    next group the previous one reversed with exactly one uniformly chosen letter
    flipped. At letter j (0-based) of a group, if no flip has happened yet, the flip
    is there with probability ``1 / (6 - j)``; after it, letters are determined, as
    are brackets. A group's entropy is that of the flip's position, ``ln 6``, so
    past the first group the floor is ``ln(6) / 8 = 0.2240`` nats per character.

Training data are ``STREAMS`` parallel streams (meant to be trained in windows with
the state carried across); validation and test are ``EVAL_PIECES`` fresh streams of
``EVAL_LENGTH`` characters each whose first ``BURN_IN`` characters are not scored.

``parity``: random bits of length 2..10 (right-padded to 10, the mask marks the real
steps), target = the parity of the bits, read at each sequence's last real step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import entr

from ..errors import DataError

__all__ = [
    "ALPHABET",
    "BURN_IN",
    "EVAL_LENGTH",
    "EVAL_PIECES",
    "P_CONTINUE",
    "STREAMS",
    "SequenceData",
    "brackets_easy",
    "brackets_hard",
    "entropy_floor",
    "sample_floor",
    "make_brackets_easy",
    "make_brackets_hard",
    "make_parity",
]

#: The bracket tasks' characters by class id.
ALPHABET = ("a", "b", "(", ")")
A, B, OPEN, CLOSE = range(4)
#: brackets_easy's probability of one more "ab" pair (the paper's value; the anchor code used 0.6).
P_CONTINUE = 0.75
#: Parallel training streams; validation/test pieces, their length and unscored prefix.
STREAMS = 32
EVAL_PIECES = 32
EVAL_LENGTH = 256
BURN_IN = 16
#: brackets_hard's letters per group.
GROUP = 6
#: parity's longest and shortest sequence.
PARITY_T = 10
PARITY_MIN = 2


@dataclass(frozen=True)
class SequenceData:
    """A built-in sequence task's three splits, before freezing into a :class:`Task`.

    Arrays: ``X_*`` float (N, T, F); ``y_*`` int64 (N, T) per step or (N,) per
    sequence; ``mask_*`` bool (N, T) or None (all steps scored). ``floor_*`` is the
    split's entropy floor (nats per scored character) or None. ``standardise`` False
    keeps the inputs as they are (one-hot characters).
    """

    X_train: np.ndarray
    y_train: np.ndarray
    mask_train: np.ndarray | None
    X_val: np.ndarray
    y_val: np.ndarray
    mask_val: np.ndarray | None
    X_test: np.ndarray
    y_test: np.ndarray
    mask_test: np.ndarray | None
    labels: tuple[str, ...]
    source: str
    per_step: bool
    stream: bool
    standardise: bool
    floor_val: float | None = None
    floor_test: float | None = None


#: A bracket generator: (n streams, length, rng) -> chars (n, length + 1), probs (n, length, 4).
Generator = Callable[[int, int, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def brackets_easy(
    n: int, length: int, rng: np.random.Generator, p_continue: float = P_CONTINUE
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``n`` independent brackets_easy streams and their true next-character laws.

    Args:
        n: number of streams.
        length: characters to predict per stream.
        rng: the random source.
        p_continue: probability of one more ``"ab"`` after a ``b``.

    Returns:
        ``(chars, probs)``: int64 (n, length + 1) class ids, each stream starting
        with ``"("``; float64 (n, length, 4), ``probs[i, t]`` the law of
        ``chars[i, t + 1]`` given ``chars[i, :t + 1]``.
    """
    chars = np.empty((n, length + 1), dtype=np.int64)
    probs = np.zeros((n, length, 4))
    chars[:, 0] = OPEN
    for t in range(length):
        c = chars[:, t]
        nxt = np.select([c == OPEN, c == A, c == CLOSE], [A, B, OPEN], default=-1)
        after_b = c == B
        more = rng.random(n) < p_continue
        nxt = np.where(after_b, np.where(more, A, CLOSE), nxt)
        chars[:, t + 1] = nxt
        determined = ~after_b
        probs[determined, t, nxt[determined]] = 1.0
        probs[after_b, t, A] = p_continue
        probs[after_b, t, CLOSE] = 1.0 - p_continue
    return chars, probs


def brackets_hard(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return ``n`` independent brackets_hard streams and their true next-character laws.

    Args:
        n: number of streams.
        length: characters to predict per stream.
        rng: the random source.

    Returns:
        ``(chars, probs)`` as :func:`brackets_easy` gives them.
    """
    groups = -(-(length + 1) // (GROUP + 2))
    letters = np.empty((n, groups, GROUP), dtype=np.int64)
    flips = rng.integers(GROUP, size=(n, groups))
    letters[:, 0] = rng.integers(2, size=(n, GROUP))
    for g in range(1, groups):
        letters[:, g] = letters[:, g - 1, ::-1]
        letters[np.arange(n), g, flips[:, g]] ^= 1
    body = np.concatenate(
        [np.full((n, groups, 1), OPEN), letters, np.full((n, groups, 1), CLOSE)], axis=2
    )
    chars = body.reshape(n, -1)[:, : length + 1]
    # The law of each group's characters (index 1 + j: letter j), given the past.
    law = np.zeros((n, groups, GROUP + 2, 4))
    law[:, :, 0, OPEN] = 1.0
    law[:, :, GROUP + 1, CLOSE] = 1.0
    law[:, 0, 1 : GROUP + 1, A] = 0.5
    law[:, 0, 1 : GROUP + 1, B] = 0.5
    idx = np.arange(n)[:, None]
    for g in range(1, groups):
        expected = letters[:, g - 1, ::-1]  # letter j without a flip
        for j in range(GROUP):
            before = flips[:, g] >= j  # no flip among letters 0..j-1
            p_flip = np.where(before, 1.0 / (GROUP - j), 0.0)
            keep, flip = expected[:, j], 1 - expected[:, j]
            law[idx[:, 0], g, 1 + j, keep] = 1.0 - p_flip
            law[idx[:, 0], g, 1 + j, flip] += p_flip
    probs = law.reshape(n, -1, 4)[:, 1 : length + 1]
    return chars, probs


def entropy_floor(probs: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Return the mean entropy (nats) of the next-character laws at the scored positions.

    Args:
        probs: (N, T, C) true conditional distributions.
        mask: (N, T) bool, True where a position is scored; None = all.
    """
    h = entr(probs).sum(axis=-1)
    return float(h.mean() if mask is None else h[mask].mean())


def sample_floor(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Return the true laws' cross-entropy (nats) on the characters that did come: a split's floor.

    The best any predictor can do on this sample in expectation: its mean is the
    entropy rate (:func:`entropy_floor`), and scoring a model against it on the same
    characters cancels the sample's luck (the true laws score exactly 0), where the
    mean entropy alone leaves a per-split noise of about 0.007 nats on 8 x 240
    characters.

    Args:
        probs: (N, T, C) true conditional distributions.
        targets: (N, T) the characters that came.
        mask: (N, T) bool, True where a position is scored; None = all.
    """
    p = np.take_along_axis(probs, targets[..., None], axis=-1)[..., 0]
    nll = -np.log(p)
    return float(nll.mean() if mask is None else nll[mask].mean())


def _one_hot(chars: np.ndarray) -> np.ndarray:
    return np.eye(len(ALPHABET), dtype=np.float32)[chars]


def _seeds(rng: np.random.Generator) -> list[np.random.Generator]:
    """Three independent generators (train, val, test): n_samples changes only training data."""
    return [np.random.default_rng(int(s)) for s in rng.integers(2**63 - 1, size=3)]


def _brackets(
    name: str, generate: Generator, n_samples: int | None, rng: np.random.Generator
) -> SequenceData:
    total = n_samples or STREAMS * 2_500
    length = total // STREAMS
    if length < 2:
        raise DataError(
            f"task {name!r}: task.n_samples = {total} gives {STREAMS} training streams of "
            f"{length} characters, expected n_samples >= {2 * STREAMS}"
        )
    g_train, g_val, g_test = _seeds(rng)
    chars, _ = generate(STREAMS, length, g_train)
    mask = np.ones((EVAL_PIECES, EVAL_LENGTH), dtype=bool)
    mask[:, :BURN_IN] = False
    held: list[tuple[np.ndarray, np.ndarray, float]] = []
    for g in (g_val, g_test):
        c, p = generate(EVAL_PIECES, EVAL_LENGTH, g)
        held.append((c, p, sample_floor(p, c[:, 1:], mask)))
    (cv, _, fv), (ct, _, ft) = held
    return SequenceData(
        X_train=_one_hot(chars[:, :-1]),
        y_train=chars[:, 1:],
        mask_train=None,
        X_val=_one_hot(cv[:, :-1]),
        y_val=cv[:, 1:],
        mask_val=mask,
        X_test=_one_hot(ct[:, :-1]),
        y_test=ct[:, 1:],
        mask_test=mask.copy(),
        labels=ALPHABET,
        source=f"built-in: {name}, {STREAMS} training streams x {length} characters",
        per_step=True,
        stream=True,
        standardise=False,
        floor_val=fv,
        floor_test=ft,
    )


def make_brackets_easy(
    n_samples: int | None, noise: float | None, rng: np.random.Generator
) -> SequenceData:
    """Return the brackets_easy task (``n_samples`` training characters in all)."""
    return _brackets("brackets_easy", brackets_easy, n_samples, rng)


def make_brackets_hard(
    n_samples: int | None, noise: float | None, rng: np.random.Generator
) -> SequenceData:
    """Return the brackets_hard task (``n_samples`` training characters in all)."""
    return _brackets("brackets_hard", brackets_hard, n_samples, rng)


def _parity_split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bits = rng.integers(2, size=(n, PARITY_T))
    lengths = rng.integers(PARITY_MIN, PARITY_T + 1, size=n)
    mask = np.arange(PARITY_T)[None, :] < lengths[:, None]
    bits = np.where(mask, bits, 0)
    return bits[:, :, None].astype(np.float32), (bits.sum(axis=1) % 2).astype(np.int64), mask


def make_parity(n_samples: int | None, noise: float | None, rng: np.random.Generator) -> SequenceData:
    """Return the parity task: ``n_samples`` training sequences, a quarter as many to score."""
    n = n_samples or 1_000
    held = max(64, n // 4)
    g_train, g_val, g_test = _seeds(rng)
    Xtr, ytr, mtr = _parity_split(n, g_train)
    Xv, yv, mv = _parity_split(held, g_val)
    Xt, yt, mt = _parity_split(held, g_test)
    return SequenceData(
        X_train=Xtr,
        y_train=ytr,
        mask_train=mtr,
        X_val=Xv,
        y_val=yv,
        mask_val=mv,
        X_test=Xt,
        y_test=yt,
        mask_test=mt,
        labels=("0", "1"),
        source=f"built-in: parity of {PARITY_MIN}..{PARITY_T} random bits, {n} training sequences",
        per_step=False,
        stream=False,
        standardise=True,
    )
