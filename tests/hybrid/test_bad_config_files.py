"""Malformed config files: each is one ``ConfigError`` line naming the file and key.

Every case is a TOML document that ``hybrid run`` must refuse before anything is
created: wrong syntax, wrong types, values out of range (with the bounds' reasons in
``hybrid/config/_sections.py``), NaN/inf, absurd sizes and unknown keys.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid.config import load_config
from hybrid.errors import ConfigError, HybridError

XOR = '[task]\nname = "xor"\n'


def _with(section: str, body: str) -> str:
    return f"{XOR}[{section}]\n{body}\n"


#: case id -> (TOML text, a fragment the one-line message must hold: usually the key)
CASES: dict[str, tuple[str | bytes, str]] = {
    # TOML syntax and encoding
    "unclosed table header": ('[task\nname = "xor"\n', "not valid TOML (line 1"),
    "key without value": ("[task]\nname =\n", "not valid TOML"),
    "bare word value": ("[task]\nname = xor\n", "not valid TOML"),
    "unterminated string": ('[task]\nname = "xor\n', "not valid TOML"),
    "key given twice": ('[task]\nname = "xor"\nname = "xor"\n', "not valid TOML"),
    "table given twice": (XOR + "[task]\n", "not valid TOML"),
    "control character in string": ('[task]\nname = "x\x01"\n', "not valid TOML"),
    "latin-1 bytes": (b'[task]\nname = "caf\xe9"\n', "not a UTF-8 text file"),
    "integer of 5000 digits": (_with("run", "seed = " + "7" * 5000), "not valid TOML"),
    "arrays nested 50000 deep": (_with("genome", "hidden = " + "[" * 50000 + "]" * 50000), "nested too deeply"),
    # missing or contradictory task
    "no task section": ("[run]\nseed = 1\n", "missing section [task]"),
    "empty task section": ("[task]\n", "task.name"),
    "task as a number": ("task = 3\n", "task: got 3, expected a table"),
    "unknown built-in task": ('[task]\nname = "mnist8"\n', "task.name"),
    "task name and path": ('[task]\nname = "xor"\npath = "d.csv"\nkind = "regression"\n', "task.name"),
    "path with no suffix": ('[task]\npath = "data"\nkind = "regression"\n', "task.path"),
    "path to a text file": ('[task]\npath = "d.txt"\nkind = "regression"\n', "task.path"),
    "csv without target": ('[task]\npath = "d.csv"\nkind = "classification"\n', "task.target"),
    "npz with a target": ('[task]\npath = "d.npz"\nkind = "regression"\ntarget = "y"\n', "task.target"),
    "user data without kind": ('[task]\npath = "d.csv"\ntarget = "y"\n', "task.kind"),
    "unknown kind": ('[task]\npath = "d.csv"\ntarget = "y"\nkind = "ranking"\n', "task.kind"),
    "kind against the built-in": ('[task]\nname = "xor"\nkind = "regression"\n', "task.kind"),
    "noise on a fixed data set": ('[task]\nname = "wine"\nnoise = 0.1\n', "task.noise"),
    "noise for user data": ('[task]\npath = "d.npz"\nkind = "regression"\nnoise = 0.1\n', "task.noise"),
    "val_fraction of one": ('[task]\nname = "wine"\nval_fraction = 1.0\n', "task.val_fraction"),
    "fractions summing to one": ('[task]\nname = "wine"\nval_fraction = 0.5\ntest_fraction = 0.5\n', "task.test_fraction"),
    "negative test_fraction": ('[task]\nname = "wine"\ntest_fraction = -0.2\n', "task.test_fraction"),
    "three samples": ('[task]\nname = "spirals"\nn_samples = 3\n', "task.n_samples"),
    "a billion samples": ('[task]\nname = "spirals"\nn_samples = 1_000_000_000\n', "task.n_samples"),
    "negative noise": ('[task]\nname = "circles"\nnoise = -0.5\n', "task.noise"),
    "noise a thousand": ('[task]\nname = "circles"\nnoise = 1e3\n', "task.noise"),
    "noise nan": ('[task]\nname = "circles"\nnoise = nan\n', "task.noise"),
    # types
    "population as text": (_with("evolution", 'population = "64"'), "evolution.population"),
    "population as float": (_with("evolution", "population = 64.0"), "evolution.population"),
    "population as bool": (_with("evolution", "population = true"), "evolution.population"),
    "lr as text": (_with("training", 'lr = "0.01"'), "training.lr"),
    "hidden as text": (_with("genome", 'hidden = "8,8"'), "genome.hidden"),
    "hidden of strings": (_with("genome", 'hidden = ["8"]'), "genome.hidden[0]"),
    "hidden nested": (_with("genome", "hidden = [[8]]"), "genome.hidden[0]"),
    "hidden of floats": (_with("genome", "hidden = [8.5]"), "genome.hidden[0]"),
    "section as a value": ("training = 5\n" + XOR, "training: got 5, expected a table"),
    "seed as float": (_with("run", "seed = 1.5"), "run.seed"),
    "activations as text": (_with("mutation", 'activations = "relu"'), "mutation.activations"),
    "device as integer": (_with("run", "device = 0"), "run.device"),
    "name as integer": ("[task]\nname = 123\n", "task.name"),
    "threads as date": (_with("run", "threads = 2024-01-01"), "run.threads"),
    # values out of range
    "population of one": (_with("evolution", "population = 1"), "evolution.population"),
    "population of a billion": (_with("evolution", "population = 1_000_000_000"), "evolution.population"),
    "zero generations": (_with("evolution", "generations = 0"), "evolution.generations"),
    "zero lr": (_with("training", "lr = 0.0"), "training.lr"),
    "negative lr": (_with("training", "lr = -0.01"), "training.lr"),
    "lr of three": (_with("training", "lr = 3.0"), "training.lr"),
    "lr of 5e10": (_with("training", "lr = 5e10"), "training.lr"),
    "weight decay of four": (_with("training", "weight_decay = 4.0"), "training.weight_decay"),
    "penalty of a billion": (_with("training", "penalty = 1e9"), "training.penalty"),
    "zero steps": (_with("training", "steps = 0"), "training.steps"),
    "ten billion steps": (_with("training", "steps = 10_000_000_000"), "training.steps"),
    "zero batch": (_with("training", "batch_size = 0"), "training.batch_size"),
    "gate_init of 25": (_with("genome", "gate_init = 25.0"), "genome.gate_init"),
    "gate_init of -1e200": (_with("genome", "gate_init = -1e200"), "genome.gate_init"),
    "closed hard-concrete gate_init": (XOR + "[genome]\ngate_init = -3.0\n[training]\ngate = \"hard_concrete\"\n", "genome.gate_init"),
    "hidden width zero": (_with("genome", "hidden = [4, 0]"), "genome.hidden[1]"),
    "hidden width 5000": (_with("genome", "hidden = [5000]"), "genome.hidden[0]"),
    "hidden wider than max_node_width": (_with("genome", "hidden = [300]"), "genome.hidden[0]"),
    "hidden 65 layers": (_with("genome", "hidden = [" + ", ".join(["2"] * 65) + "]"), "genome.hidden"),
    "max_node_width 100000": (_with("mutation", "max_node_width = 100_000"), "mutation.max_node_width"),
    "widen_max zero": (_with("mutation", "widen_max = 0"), "mutation.widen_max"),
    "widen_max ten million": (_with("mutation", "widen_max = 10_000_000"), "mutation.widen_max"),
    "max_new_node_width huge": (_with("mutation", "max_new_node_width = 123_456_789"), "mutation.max_new_node_width"),
    "prune_weakest huge": (_with("mutation", "prune_weakest = 99_999"), "mutation.prune_weakest"),
    "perturb_std fifty": (_with("mutation", "perturb_std = 50.0"), "mutation.perturb_std"),
    "rate above one": (_with("mutation", "add_node = 1.5"), "mutation.add_node"),
    "negative rate": (_with("mutation", "widen = -0.1"), "mutation.widen"),
    "negative significance": (_with("mutation", "bottleneck_significance = -1.0"), "mutation.bottleneck_significance"),
    "significance as text": (_with("mutation", 'bottleneck_significance = "high"'), "mutation.bottleneck_significance"),
    "unknown amplitude split": (_with("mutation", 'bottleneck_split = "wide"'), "mutation.bottleneck_split"),
    "unknown amplitude rule": (_with("mutation", 'bottleneck_amplitude = "median"'), "mutation.bottleneck_amplitude"),
    "unknown statistics inputs": (_with("mutation", 'bottleneck_stats = "augmented"'), "mutation.bottleneck_stats"),
    "noisy statistics without input noise": (_with("mutation", 'bottleneck_stats = "noisy"'), "mutation.bottleneck_stats"),
    "no activations": (_with("mutation", "activations = []"), "mutation.activations"),
    "negative seed": (_with("run", "seed = -1"), "run.seed"),
    "seed of 2**64": (_with("run", "seed = 18446744073709551616"), "run.seed"),
    "zero threads": (_with("run", "threads = 0"), "run.threads"),
    "a hundred thousand threads": (_with("run", "threads = 100_000"), "run.threads"),
    "five thousand workers": (_with("parallel", "workers = 5000"), "parallel.workers"),
    "tournament of one": (_with("selection", "tournament_size = 1"), "selection.tournament_size"),
    "tournament bigger than population": (XOR + "[evolution]\npopulation = 8\n[selection]\ntournament_size = 9\n", "selection.tournament_size"),
    "elitism equal to population": (_with("evolution", "population = 8\nelitism = 8"), "evolution.elitism"),
    "crossover rate two": (_with("evolution", "crossover_rate = 2.0"), "evolution.crossover_rate"),
    "survival fraction zero": (_with("evolution", "survival_fraction = 0.0"), "evolution.survival_fraction"),
    "target accuracy 1.5": (_with("evolution", "target_metric = 1.5"), "evolution.target_metric"),
    "time budget zero": (_with("evolution", "time_budget_s = 0.0"), "evolution.time_budget_s"),
    "threshold zero": (_with("speciation", "threshold = 0.0"), "speciation.threshold"),
    "stagnation zero": (_with("speciation", "stagnation = 0"), "speciation.stagnation"),
    "excess coefficient 1e300": (_with("speciation", "excess = 1e300"), "speciation.excess"),
    "negative width coefficient": (_with("speciation", "width = -1.0"), "speciation.width"),
    "keep zero checkpoints": (_with("checkpoint", "keep = 0"), "checkpoint.keep"),
    "checkpoint every zero": (_with("checkpoint", "every = 0"), "checkpoint.every"),
    # NaN and infinities
    "lr nan": (_with("training", "lr = nan"), "training.lr"),
    "lr inf": (_with("training", "lr = inf"), "training.lr"),
    "gate_init -inf": (_with("genome", "gate_init = -inf"), "genome.gate_init"),
    "target metric nan": (_with("evolution", "target_metric = nan"), "evolution.target_metric"),
    "perturb_std inf": (_with("mutation", "perturb_std = inf"), "mutation.perturb_std"),
    "time budget inf": (_with("evolution", "time_budget_s = inf"), "evolution.time_budget_s"),
    "penalty nan": (_with("training", "penalty = nan"), "training.penalty"),
    # unknown keys, names and choices
    "unknown section": (XOR + "[trainer]\nlr = 0.1\n", "unknown key 'trainer'"),
    "misspelt key": (_with("training", "learning_rate = 0.1"), "unknown key 'training.learning_rate'"),
    "misspelt run key": (_with("run", "sed = 3"), "unknown key 'run.sed'"),
    "unknown activation": (_with("genome", 'activation = "swish"'), "genome.activation"),
    "unknown activation in a list": (_with("genome", 'activation = ["tanh", "swish"]'), "genome.activation"),
    "empty activation list": (_with("genome", "activation = []"), "genome.activation"),
    "activation as a number": (_with("genome", "activation = 3"), "genome.activation"),
    "more activations than members": (
        _with("genome", 'activation = ["tanh", "sin", "gauss"]') + "[evolution]\npopulation = 2\nelitism = 0\n",
        "genome.activation",
    ),
    "unknown mutation activation": (_with("mutation", 'activations = ["relu", "softmax"]'), "mutation.activations[1]"),
    "unknown gate": (_with("training", 'gate = "step"'), "training.gate"),
    "loss against the kind": (_with("training", 'loss = "mse"'), "training.loss"),
    "unknown engine": (_with("training", 'engine = "gpu"'), "training.engine"),
    "unknown inheritance": (_with("training", 'inheritance = "darwinian"'), "training.inheritance"),
    "unknown selection": (_with("selection", 'method = "roulette"'), "selection.method"),
    "unknown backend": (_with("parallel", 'backend = "ray"'), "parallel.backend"),
    "address without dask": (_with("parallel", 'address = "tcp://h:8786"'), "parallel.address"),
    "device gpu": (_with("run", 'device = "gpu"'), "run.device"),
    "run name climbing out": (_with("run", 'name = "../elsewhere"'), "run.name"),
    "run name of 300 characters": (_with("run", 'name = "' + "n" * 300 + '"'), "run.name"),
    "empty run name": (_with("run", 'name = ""'), "run.name"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_malformed_config_is_one_line_naming_the_file_and_key(case: str, tmp_path: Path) -> None:
    text, fragment = CASES[case]
    path = tmp_path / "bad.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(HybridError) as err:
        load_config(path)
    message = str(err.value)
    assert isinstance(err.value, ConfigError) and err.value.exit_code == 2
    assert message.startswith(f"{path}: ") and fragment in message, message
    assert "\n" not in message and len(message) < 600
    assert list(tmp_path.iterdir()) == [path]  # nothing else written


def test_there_are_at_least_ninety_malformed_configs() -> None:
    assert len(CASES) >= 90
