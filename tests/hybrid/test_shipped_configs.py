"""The shipped configs solve their tasks (XOR in the default suite; the rest are slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid.config import load_config
from hybrid.search import Search

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _search(name: str, tmp_path: Path, seed: int = 0, **overrides):
    config = load_config(
        CONFIGS / f"{name}.toml",
        {"run.runs_dir": str(tmp_path), "run.seed": seed, "run.name": f"{name}{seed}", **overrides},
    )
    return Search.start(config).run()


@pytest.mark.parametrize("seed", range(10))
def test_xor_is_solved_in_every_seed(seed: int, tmp_path: Path) -> None:
    result = _search("xor", tmp_path, seed)
    assert result.test_metric == 1.0
    assert result.stop_reason == "target_metric"


@pytest.mark.slow
def test_spirals_reaches_98_percent_test_accuracy(tmp_path: Path) -> None:
    assert _search("spirals", tmp_path).test_metric >= 0.98


@pytest.mark.slow
def test_spirals_finds_small_exact_nets_on_the_median_of_three_seeds(tmp_path: Path) -> None:
    # issue 19's smallest_within target (>= 99.5% at <= 150 active parameters), here
    # with the shipped champion rule; the activation mix makes the search find sin nets
    results = [_search("spirals", tmp_path, seed) for seed in range(3)]
    assert sorted(r.test_metric for r in results)[1] >= 0.995
    assert sorted(r.active_parameters for r in results)[1] <= 150


@pytest.mark.slow
def test_digits_reaches_96_percent_test_accuracy(tmp_path: Path) -> None:
    assert _search("digits", tmp_path).test_metric >= 0.96


@pytest.mark.slow
def test_digits_smallest_within_finds_small_accurate_nets_on_the_median_of_three_seeds(tmp_path: Path) -> None:
    # issue 19's digits target (>= 97.5% at <= 1,000 active parameters): the champion
    # rule and final fit of benchmarks/input_noise.py, the shipped input noise; 2 minutes
    over = {"selection.champion": "smallest_within", "evolution.final_steps": 1000}
    results = [_search("digits", tmp_path, seed, **over) for seed in range(3)]
    assert sorted(r.test_metric for r in results)[1] >= 0.975
    assert sorted(r.active_parameters for r in results)[1] <= 1_000


@pytest.mark.slow
def test_digits_sparse_finds_as_accurate_nets_at_half_the_parameters_on_the_median_of_three_seeds(
    tmp_path: Path,
) -> None:
    # session 29 (seeds 0-2, one thread): 98.6 / 98.6 / 96.7% at 337 / 754 / 439 active
    # parameters, where digits.toml's champions have 985 / 1,484 / 797; 2 minutes
    results = [_search("digits_sparse", tmp_path, seed) for seed in range(3)]
    assert sorted(r.test_metric for r in results)[1] >= 0.975
    assert sorted(r.active_parameters for r in results)[1] <= 700


@pytest.mark.slow
@pytest.mark.parametrize("name", ["circles", "breast_cancer", "wine"])
def test_other_configs_beat_a_coin(name: str, tmp_path: Path) -> None:
    assert _search(name, tmp_path).test_metric >= 0.9


@pytest.mark.slow
def test_brackets_hard_reaches_the_issue_target_from_one_neuron(tmp_path: Path) -> None:
    result = _search("brackets_hard", tmp_path)  # about 6 minutes on 2 cores
    assert result.test_metric <= 0.010 and result.active_parameters <= 1_800


@pytest.mark.slow
def test_parity_is_solved(tmp_path: Path) -> None:
    assert _search("parity", tmp_path).test_metric >= 0.98
