"""K-fold fitness for small data: the fold assignment, the pool and the per-fold weights.

With ``task.folds = K`` the training and validation splits are pooled (the test
split stays out) and every pool row gets a fold id in ``0 .. K-1``
(:func:`assign_folds`: stratified for classification, seeded from the run's seed
on its own stream). Each member is trained as K columns of the one batched
engine: column ``k`` trains on the pool rows outside fold ``k`` and is scored on
fold ``k``; the member's fitness is the mean of the K fold scores.

A member therefore carries K weight sets of one structure: its genome (the lead
copy, fold 0) and K - 1 fold copies kept in the search state. After reproduction
each child's fold copies are rebuilt from its parents' fold copies by
:func:`transplant`, so a weight set that ever trained on fold ``k`` is never scored
on fold ``k``. The design is in docs/design.md, "K-fold fitness".
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from genomes import Genome

from .errors import DataError
from .metrics import Metrics
from .net import with_values
from .train import TrainResult

if TYPE_CHECKING:
    from .reproduction import Member
    from .tasks import Task

__all__ = [
    "AUTO_FOLDS",
    "AUTO_MAX_ROWS",
    "assign_folds",
    "child_copies",
    "fold_sizes",
    "merge_folds",
    "pool",
    "resolve_folds",
    "transplant",
]

#: Folds ``task.folds = "auto"`` uses on a small pool.
AUTO_FOLDS = 5
#: ``"auto"`` turns K-fold fitness on when the pooled train + validation rows are fewer
#: than this. Below it a single validation split holds a few hundred rows at most, so
#: one member's score moves by whole percentage points with the split's luck (one row
#: of 300 is 0.33%); above it the split is big enough and K-fold only costs time.
AUTO_MAX_ROWS = 2000
#: ... and uses no more folds than leave this many rows in each: a fold of one or two
#: rows has no R^2 and an accuracy of 0 or 1, a worse judge than the split it replaces.
AUTO_MIN_FOLD_ROWS = 10

# The split uses stream 1 of the run's seed (hybrid.tasks._load); folds get their own.
_FOLD_STREAM = 5

_POOLS: weakref.WeakKeyDictionary[Task, tuple[np.ndarray, np.ndarray]] = weakref.WeakKeyDictionary()


def resolve_folds(
    setting: str | int,
    y_pool: np.ndarray,
    labels: Sequence[str] | None,
    split: bool,
    where: str,
    *,
    accelerated: bool = False,
) -> int:
    """Return the number of folds a task uses (0: off), checking it against the pool.

    ``"auto"`` gives, on a GPU (``accelerated``), :data:`AUTO_FOLDS` when the pool has fewer than
    :data:`AUTO_MAX_ROWS` rows (fewer folds if the smallest class is smaller or a fold
    would hold fewer than :data:`AUTO_MIN_FOLD_ROWS` rows; off below 2 folds), else off; ``"off"`` gives 0; an integer is taken as it is. A task
    that is not split (``xor``) never uses folds.

    Args:
        setting: ``task.folds``: "auto", "off" or an integer >= 2.
        y_pool: the pooled train + validation targets (class ids for classification).
        labels: the class labels by class id (classification), or None (regression).
        split: whether the task has separate splits at all.
        where: the task or file to name in errors.
        accelerated: the search runs on a GPU. ``"auto"`` turns K-fold on only there:
            on a CPU the K columns cost what they compute (K = 5: 2.4-2.7x a generation
            with full batches, measured), and at equal wall time K-fold did not beat one split on
            digits, spirals or breast cancer (benchmarks/RESULTS.md); a GPU batches
            the columns of a small task nearly free (an H200's batched step: about
            1.4x for 80 columns against 16; a whole generation not yet timed there).

    Raises:
        DataError: an integer K larger than the smallest class's count in the pool
            (naming the class and its count), or than the pool.
    """
    if setting == "off" or not split:
        return 0
    counts = {} if labels is None else _class_counts(y_pool, labels)
    if setting == "auto":
        if not accelerated or len(y_pool) >= AUTO_MAX_ROWS:
            return 0
        k = min([AUTO_FOLDS, len(y_pool) // AUTO_MIN_FOLD_ROWS, *counts.values()])
        return k if k >= 2 else 0
    k = int(setting)
    for label, count in counts.items():
        if count < k:
            raise DataError(
                f"{where}: task.folds = {k}: class {label!r} has only {count} rows in the pooled "
                f"train + validation splits, expected at least {k} (one per fold)"
            )
    if k > len(y_pool):
        raise DataError(
            f"{where}: task.folds = {k}: the pooled train + validation splits hold only "
            f"{len(y_pool)} rows, expected at least {k}"
        )
    return k


def _class_counts(y: np.ndarray, labels: Sequence[str]) -> dict[str, int]:
    """Rows per class label (every class, a class with no rows at 0)."""
    counts = np.bincount(y, minlength=len(labels))
    return {str(label): int(c) for label, c in zip(labels, counts, strict=True)}


def assign_folds(y_pool: np.ndarray, k: int, seed: int, classification: bool) -> np.ndarray:
    """Return a fold id in ``0 .. k-1`` for every pool row: seeded, disjoint, covering.

    Classification folds are stratified (``sklearn.model_selection.StratifiedKFold``:
    each fold keeps the pool's class shares), regression folds plain ``KFold``; both
    shuffle with a state drawn from ``(seed, fold stream)``.

    Args:
        y_pool: the pool's targets.
        k: folds, >= 2 (as :func:`resolve_folds` returns).
        seed: the run's seed.
        classification: stratify by class id.

    Returns:
        int64 ``[len(y_pool)]``, read-only.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    state = int(np.random.default_rng([seed, _FOLD_STREAM]).integers(2**31 - 1))
    splitter = (StratifiedKFold if classification else KFold)(k, shuffle=True, random_state=state)
    out = np.empty(len(y_pool), dtype=np.int64)
    labels = y_pool if classification else np.zeros(len(y_pool))
    for fold, (_, rows) in enumerate(splitter.split(np.zeros((len(y_pool), 1)), labels)):
        out[rows] = fold
    out.setflags(write=False)
    return out


def fold_sizes(fold_ids: np.ndarray, k: int) -> list[int]:
    """Return the number of pool rows in each fold."""
    return [int(c) for c in np.bincount(fold_ids, minlength=k)]


def pool(task: Task) -> tuple[np.ndarray, np.ndarray]:
    """Return the task's pool ``(X, y)``: the training rows, then the validation rows.

    The arrays are made once per task (the same objects each generation, so a Dask
    cluster scatters them once).
    """
    cached = _POOLS.get(task)
    if cached is None:
        X = np.concatenate([task.X_train, task.X_val])
        y = np.concatenate([task.y_train, task.y_val])
        X.setflags(write=False)
        y.setflags(write=False)
        cached = _POOLS[task] = (X, y)
    return cached


def transplant(child: Genome, sources: Sequence[Genome]) -> Genome:
    """Return ``child``'s structure holding the values of ``sources`` wherever they fit.

    Each node's ``bias`` and ``gate`` and each edge's ``weight`` and ``gate`` come
    from the first source that has that node or edge with the same shape (sources
    in order: the fitter parent's fold copy, then the other's); a gene that is new
    or changed shape keeps the child's own values.

    Args:
        child: the lead copy of a child (its structure is kept).
        sources: the parents' copies of one fold, fitter parent first.

    Returns:
        A new genome; ``child`` and ``sources`` are not modified.
    """
    nodes: dict[int, dict[str, np.ndarray]] = {}
    for n, a in child.graph.nodes(data=True):
        for src in sources:
            if src.graph.has_node(n) and src.graph.nodes[n]["bias"].shape == a["bias"].shape:
                b = src.graph.nodes[n]
                nodes[n] = {"bias": b["bias"], "gate": b["gate"]}
                break
    edges: dict[tuple[int, int], dict[str, object]] = {}
    for s, d, a in child.graph.edges(data=True):
        for src in sources:
            if src.graph.has_edge(s, d) and src.graph.edges[s, d]["weight"].shape == a["weight"].shape:
                b = src.graph.edges[s, d]
                edges[(s, d)] = {"weight": b["weight"], "gate": b["gate"]}
                break
    return with_values(child, nodes, edges)


def child_copies(
    child: Member, parent_copies: dict[int, tuple[Genome, ...]], parent_genomes: dict[int, Genome]
) -> tuple[Genome, ...]:
    """Return a new member's fold copies 1 .. K-1 from its parents' (the transplant rule).

    A member whose genome is its parent's own (an elite, or a child no mutation
    changed) keeps the parent's fold copies as they are; any other child gets, for
    each fold, :func:`transplant` of its genome with that fold's copies of its
    parents (fitter parent first, as ``Member.parents`` lists them).

    Args:
        child: the new member (its genome is the lead copy, fold 0).
        parent_copies: the parents' fold copies by id (trained, for Lamarckian inheritance).
        parent_genomes: the parents' genomes by id, as reproduction bred from them.
    """
    first = child.parents[0]
    if child.genome is parent_genomes[first]:
        return parent_copies[first]
    k = len(parent_copies[first])
    return tuple(transplant(child.genome, [parent_copies[p][f] for p in child.parents]) for f in range(k))


def merge_folds(
    genomes: Sequence[Genome], results: Sequence[TrainResult], evals: Sequence[Metrics], k: int
) -> tuple[list[Genome], list[tuple[Genome, ...]], list[TrainResult], list[Metrics]]:
    """Fold the K columns of each member back into one member.

    Args:
        genomes, results, evals: what ``train_members`` returned for the columns, member
            by member, fold 0 (the lead copy) first.
        k: folds.

    Returns:
        ``(lead genomes, fold copies 1 .. K-1, results, metrics)`` per member: a member
        failed if any of its columns did; its train loss, validation loss, accuracy and
        score are the means over its folds (the cross-validated figures); its size and
        FLOPs are the lead copy's.
    """
    leads, copies, merged_results, merged = [], [], [], []
    for start in range(0, len(genomes), k):
        rs, es = results[start : start + k], evals[start : start + k]
        leads.append(genomes[start])
        copies.append(tuple(genomes[start + 1 : start + k]))
        ok = all(r.status == "ok" for r in rs)
        merged_results.append(
            TrainResult(
                status="ok" if ok else "failed",
                steps=min(r.steps for r in rs),
                train_loss=float(np.mean([r.train_loss for r in rs])),
                metrics=rs[0].metrics,
            )
        )
        lead, scores = es[0], [e.score for e in es]
        accuracy = None if lead.accuracy is None else float(np.mean([e.accuracy for e in es]))
        merged.append(
            Metrics(
                loss=float(np.mean([e.loss for e in es])),
                accuracy=accuracy,
                active_parameters=lead.active_parameters,
                flops=lead.flops,
                metric=lead.metric,
                score=None if None in scores else float(np.mean(scores)),
            )
        )
    return leads, copies, merged_results, merged
