"""Built-in tasks: small synthetic problems and scikit-learn's bundled data sets.

Nothing here downloads: ``digits``, ``breast_cancer`` and ``wine`` ship inside
scikit-learn. Each entry of ``TASKS`` says what the task is in one line (the CLI's
``hybrid tasks`` prints them) and how to make its raw ``(X, y)``.

The two-spirals problem is from Lang & Witbrock (1988), "Learning to tell two
spirals apart": 97 points per spiral, point ``i`` at angle ``i * pi / 16`` and
radius ``6.5 * (104 - i) / 104``, the second spiral the first rotated by pi.

The sequence tasks (``sequence`` True: ``brackets_easy``, ``brackets_hard``, ``parity``)
live in :mod:`hybrid.tasks._sequences`; their ``make`` returns a
:class:`~hybrid.tasks._sequences.SequenceData` (three splits of their own) instead of
:data:`RawData`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._sequences import (
    P_CONTINUE,
    SequenceData,
    make_brackets_easy,
    make_brackets_hard,
    make_parity,
)

__all__ = ["SEQUENCE_TASKS", "TASKS", "RawData", "TaskSpec"]

#: Raw features [N, F] (float), labels [N] (int class ids), class labels, source.
RawData = tuple[np.ndarray, np.ndarray, tuple[str, ...], str]


@dataclass(frozen=True)
class TaskSpec:
    """A built-in task: what it is and how to make its raw data.

    ``make(n_samples, noise, rng)`` returns :data:`RawData`; fixed data sets ignore
    ``n_samples`` and ``noise`` (``synthetic`` is False and the config forbids
    them). ``split`` False means the task is a fixed set of points that every split
    repeats (xor: four points cannot be split three ways). ``sequence`` True: ``make``
    returns a :class:`~hybrid.tasks._sequences.SequenceData` with its own three splits
    (``noise`` is not used). ``default_metric`` is the task's ``task.metric`` when the
    config sets none (None: the kind's default).
    """

    name: str
    description: str
    kind: str
    make: Callable[[int | None, float | None, np.random.Generator], RawData | SequenceData]
    synthetic: bool = False
    default_n_samples: int | None = None
    default_noise: float | None = None
    split: bool = True
    sequence: bool = False
    default_metric: str | None = None


def _xor(n_samples: int | None, noise: float | None, rng: np.random.Generator) -> RawData:
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0], dtype=np.int64)
    return X, y, ("0", "1"), "built-in: the 4 XOR points"


def _spirals(n_samples: int | None, noise: float | None, rng: np.random.Generator) -> RawData:
    per_spiral = (n_samples or 194) // 2
    # The classic 97 points sit at i = 0..96; more points interpolate the same curves.
    i = np.linspace(0.0, 96.0, per_spiral)
    angle = i * np.pi / 16.0
    radius = 6.5 * (104.0 - i) / 104.0
    a = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1)
    X = np.concatenate([a, -a])
    if noise:
        X = X + rng.normal(0.0, noise, size=X.shape)
    y = np.repeat(np.array([0, 1], dtype=np.int64), per_spiral)
    return (
        X,
        y,
        ("0", "1"),
        f"built-in: two spirals (Lang & Witbrock 1988), {2 * per_spiral} points",
    )


def _circles(n_samples: int | None, noise: float | None, rng: np.random.Generator) -> RawData:
    from sklearn.datasets import make_circles

    seed = int(rng.integers(2**31 - 1))
    X, y = make_circles(n_samples=n_samples, noise=noise or None, factor=0.5, random_state=seed)
    return (
        X,
        y.astype(np.int64),
        ("0", "1"),
        f"built-in: sklearn.datasets.make_circles({n_samples} points)",
    )


def _bundled(
    loader_name: str,
) -> Callable[[int | None, float | None, np.random.Generator], RawData]:
    def make(n_samples: int | None, noise: float | None, rng: np.random.Generator) -> RawData:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader_name)()
        labels = tuple(str(t) for t in bunch.target_names)
        return (
            bunch.data,
            bunch.target.astype(np.int64),
            labels,
            f"built-in: sklearn.datasets.{loader_name}",
        )

    return make


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "xor",
            "XOR of two bits: the 4 points, every split the same 4",
            "classification",
            _xor,
            split=False,
        ),
        TaskSpec(
            "spirals",
            "two interleaved spirals, 2x97 points (Lang & Witbrock 1988)",
            "classification",
            _spirals,
            synthetic=True,
            default_n_samples=194,
            default_noise=0.0,
        ),
        TaskSpec(
            "circles",
            "two noisy concentric circles (sklearn make_circles), 2 features",
            "classification",
            _circles,
            synthetic=True,
            default_n_samples=500,
            default_noise=0.05,
        ),
        TaskSpec(
            "digits",
            "8x8 handwritten digits, 1797 images, 64 features, 10 classes",
            "classification",
            _bundled("load_digits"),
        ),
        TaskSpec(
            "breast_cancer",
            "Wisconsin breast cancer, 569 tumours, 30 features, 2 classes",
            "classification",
            _bundled("load_breast_cancer"),
        ),
        TaskSpec(
            "wine",
            "wine cultivars, 178 wines, 13 chemical features, 3 classes",
            "classification",
            _bundled("load_wine"),
        ),
        TaskSpec(
            "brackets_easy",
            f"next character of '(ab' + more 'ab' with p_continue = {P_CONTINUE} + ')', "
            "4 one-hot inputs; floor H(p)/(2(2-p)) = 0.2249 nats/char (metric excess_nats)",
            "classification",
            make_brackets_easy,
            synthetic=True,
            default_n_samples=80_000,
            sequence=True,
            default_metric="excess_nats",
        ),
        TaskSpec(
            "brackets_hard",
            "next character of groups '(xxxxxx)' of a/b, each the previous reversed with one "
            "letter flipped; floor ln(6)/8 = 0.2240 nats/char (metric excess_nats)",
            "classification",
            make_brackets_hard,
            synthetic=True,
            default_n_samples=80_000,
            sequence=True,
            default_metric="excess_nats",
        ),
        TaskSpec(
            "parity",
            "parity of 2..10 random bits (padded to 10, masked), read at the last bit",
            "classification",
            make_parity,
            synthetic=True,
            default_n_samples=1_000,
            sequence=True,
        ),
    )
}

#: The built-in sequence tasks (a view of :data:`TASKS`).
SEQUENCE_TASKS: dict[str, TaskSpec] = {n: s for n, s in TASKS.items() if s.sequence}
