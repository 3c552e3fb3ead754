"""``training.class_weight``: a class-balanced training loss, and "auto" following the metric."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.utils.class_weight import compute_class_weight

from genomes import Genome, InnovationTracker
from hybrid.config import loads_config
from hybrid.errors import ConfigError
from hybrid.net import GenomeNet
from hybrid.population import train_population
from hybrid.population.engine import task_losses
from hybrid.population.train import class_weights
from hybrid.train import TrainConfig
from tests.hybrid.tiny import tiny_toml


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), p=st.integers(1, 4), b=st.integers(1, 40), k=st.integers(2, 5))
def test_weighted_losses_are_torchs_weighted_cross_entropy_member_by_member(seed: int, p: int, b: int, k: int) -> None:
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(p, b, k, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (b,), generator=g)
    w_class = torch.rand(k, generator=g, dtype=torch.float64) + 0.1
    got = task_losses(out, y, "cross_entropy", None, w_class[y])
    for m in range(p):
        want = F.cross_entropy(out[m], y, weight=w_class)
        torch.testing.assert_close(got[m], want)
    # with a mask: the weighted mean over each member's own samples
    mask = torch.rand(p, b, generator=g) < 0.6
    got = task_losses(out, y, "cross_entropy", mask, w_class[y])
    for m in range(p):
        own = mask[m]
        want = F.cross_entropy(out[m][own], y[own], weight=w_class) if own.any() else torch.zeros((), dtype=out.dtype)
        torch.testing.assert_close(got[m], want)


def test_class_weights_are_sklearns_balanced_weights() -> None:
    y = np.array([0] * 90 + [1] * 7 + [3] * 3)  # class 2 absent
    want = compute_class_weight("balanced", classes=np.array([0, 1, 3]), y=y)
    got = class_weights(torch.as_tensor(y)).numpy()
    np.testing.assert_allclose(got[[0, 1, 3]], want)
    assert got[2] == 0.0


def _imbalanced(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(np.int64)
    X = rng.normal(size=(n, 2)).astype(np.float32) + y[:, None] * 1.2  # overlapping classes
    return X, y


def test_a_balanced_loss_raises_minority_recall_on_an_imbalanced_task() -> None:
    X, y = _imbalanced(2000, 0)
    genome = Genome.minimal(2, 2, np.random.default_rng(0), InnovationTracker(), hidden=[4])
    recall = {}
    for weight in ("none", "balanced"):
        cfg = TrainConfig(steps=300, batch_size=256, lr=0.05, class_weight=weight)
        trained = train_population([genome], X, y, cfg, torch.Generator().manual_seed(0)).genomes[0]
        with torch.no_grad():
            pred = GenomeNet(trained).double()(torch.as_tensor(X, dtype=torch.float64)).argmax(1).numpy()
        recall[weight] = float((pred[y == 1] == 1).mean())
    assert recall["balanced"] > recall["none"] + 0.2, recall


def test_auto_follows_the_metric_and_balanced_is_refused_for_regression(tmp_path: Path) -> None:
    base = tiny_toml(tmp_path)
    for metric, want in (("accuracy", "none"), ("balanced_accuracy", "balanced"), ("f1_macro", "balanced")):
        cfg = loads_config(base, source="t.toml", overrides={"task.metric": metric})
        assert cfg.train_kwargs()["class_weight"] == want
    cfg = loads_config(base, source="t.toml", overrides={"training.class_weight": "balanced"})
    assert TrainConfig(**cfg.train_kwargs()).class_weight == "balanced"
    data = tmp_path / "r.csv"
    data.write_text("a,t\n" + "".join(f"{i},{i / 2}\n" for i in range(20)))
    text = f'[task]\npath = "{data.as_posix()}"\ntarget = "t"\nkind = "regression"\n'
    assert loads_config(text, source="r.toml").train_kwargs()["class_weight"] == "none"
    with pytest.raises(ConfigError, match=r"training.class_weight") as info:
        loads_config(text, source="r.toml", overrides={"training.class_weight": "balanced"})
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="class_weight"):
        TrainConfig(loss="mse", class_weight="balanced")
