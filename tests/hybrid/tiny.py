"""A search small enough for tests: circles, 8 members, a few short generations.

``folds`` defaults to "off": the suites written before K-fold fitness (whose
120-point task ``"auto"`` would cross-validate) keep testing the single-split path
they were written for, bit for bit; tests/hybrid/test_folds.py passes a K.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATE = """
[run]
name = "tiny"
seed = {seed}
runs_dir = "{runs}"

[task]
name = "circles"
n_samples = 120
folds = {folds}

[genome]
hidden = [3]

[training]
steps = {steps}
gate = "{gate}"
penalty = 0.001
engine = "{engine}"

[evolution]
population = 8
generations = {generations}
elitism = 1

[speciation]
target_species = 2

[mutation]
add_node = 0.3
widen = 0.3
add_edge = 0.3
prune_neurons = 0.2

[parallel]
backend = "{backend}"
workers = 2
"""


def tiny_toml(
    runs: Path,
    *,
    seed: int = 0,
    generations: int = 3,
    steps: int = 20,
    gate: str = "hard_concrete",
    engine: str = "batched",
    backend: str = "none",
    folds: str | int = "off",
) -> str:
    """Return the tiny search's config (TOML) writing under ``runs``."""
    return TEMPLATE.format(
        seed=seed,
        runs=runs.as_posix(),
        generations=generations,
        steps=steps,
        gate=gate,
        engine=engine,
        backend=backend,
        folds=f'"{folds}"' if isinstance(folds, str) else folds,
    )


def resume_cut_back(ref: Path, cut: Path, keep: int = 1):  # noqa: ANN201 (a SearchResult)
    """Copy the finished run ``ref`` to ``cut``, delete its checkpoints after generation
    ``keep`` (as if killed there), resume it to the end and return the result."""
    import shutil

    from hybrid.search import Search

    shutil.copytree(ref, cut)
    for ck in sorted((cut / "checkpoints").glob("gen_*")):
        if int(ck.name.split("_")[1]) > keep:
            shutil.rmtree(ck)
    return Search.resume(cut).run()
