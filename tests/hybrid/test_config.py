"""Config: shipped configs load, bad input gives one-line errors, dump/load round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from genomes import DistanceConfig, MutationConfig
from genomes.mutations import MUTATIONS
from hybrid.config import Config, dump_config, load_config, loads_config
from hybrid.errors import ConfigError, HybridError

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.toml"))
XOR = '[task]\nname = "xor"\n'


def _error(text: str, tmp_path: Path, overrides: dict | None = None) -> str:
    path = tmp_path / "x.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


def test_every_builtin_task_has_a_config() -> None:
    from hybrid.tasks import TASKS

    assert {p.stem for p in CONFIGS} >= set(TASKS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_loads_and_names_its_run(path: Path) -> None:
    config = load_config(path)
    assert config.run.name == path.stem
    if config.task.schedule:  # a changing task: named after the experiment, starting with task.name
        assert config.task.schedule[0][0] == config.task.name
    else:  # the task's name, or a variant of it: digits_grow, spirals_bottleneck
        assert path.stem == config.task.name or path.stem.startswith(f"{config.task.name}_")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_dump_then_load_gives_the_same_config(path: Path) -> None:
    config = load_config(path, {"run.seed": 7})
    assert loads_config(dump_config(config)) == config


def test_dump_writes_every_key(tmp_path: Path) -> None:
    text = dump_config(loads_config(XOR))
    for key in (
        "seed =",
        "population =",
        "tournament_size =",
        "keep =",
        "# time_budget_s = <unset>",
    ):
        assert key in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            XOR + "[evolution]\npopulation = -3\n",
            "evolution.population: got -3, expected an integer >= 1",
        ),
        (
            XOR + "[training]\nstpes = 3\n",
            "unknown key 'training.stpes' (did you mean 'training.steps'?)",
        ),
        (XOR + "[trainig]\nsteps = 3\n", "unknown key 'trainig'"),
        (XOR + "[training\nsteps = 3\n", "not valid TOML (line 3"),
        (XOR + '[training]\nlr = "fast"\n', "training.lr: got 'fast', expected a number"),
        (XOR + "[training]\nsteps = 2.5\n", "training.steps: got 2.5, expected an integer"),
        (XOR + '[run]\nseed = "3"\n', "run.seed: got '3', expected an integer"),
        (
            XOR + '[training]\ngate = "hard"\n',
            "training.gate: got 'hard', expected 'sigmoid' or 'hard_concrete'",
        ),
        (XOR + "[training]\nlr = nan\n", "training.lr: got nan, expected a finite number"),
        (XOR + "[mutation]\nwiden = 1.5\n", "mutation.widen: got 1.5, expected a number <= 1.0"),
        (XOR + "[genome]\nhidden = [4, 0]\n", "genome.hidden[1]: got 0, expected an integer >= 1"),
        (
            XOR + "[genome]\nhidden = [4]\nbranches = [2, 8]\n",
            "genome.branches: got [2, 8], expected [] with genome.hidden = [4] (a chain or branches",
        ),
        (
            XOR + "[genome]\nbranches = [2, 99]\n[mutation]\nmax_node_width = 32\n",
            "genome.branches[1]: got 99, expected at most mutation.max_node_width = 32",
        ),
        (
            XOR + "[genome]\nbranches = [2, 8]\nbranch_exit = true\n",
            "genome.branch_exit: got true, expected false unless genome.branches is set and mutation.add_exit > 0",
        ),
        (
            XOR + "[genome]\nbranch_exit = true\n[mutation]\nadd_exit = 0.1\n",
            "genome.branch_exit: got true, expected false unless genome.branches is set",
        ),
        (
            XOR + '[genome]\nbranches = [2, 8]\nbranch_exit = true\n[mutation]\nadd_exit = 0.1\n'
            '[modules]\nlibrary = "lib"\nstart = 0.5\n',
            "genome.branch_exit: got true, expected false with modules.start = 0.5 (grafted modules",
        ),
        (
            XOR + '[genome]\nactivation = "swish"\n',
            "genome.activation: got 'swish', expected one of",
        ),
        (
            XOR + '[run]\ndevice = "gpu"\n',
            "run.device: got 'gpu', expected 'auto', 'cpu', 'cuda' or 'cuda:N'",
        ),
        (XOR + '[training]\nloss = "mse"\n', "training.loss: got 'mse', expected 'cross_entropy'"),
        (
            XOR + "[evolution]\ntarget_metric = 98\n",
            "evolution.target_metric: got 98.0, expected an accuracy",
        ),
        (
            XOR + "[evolution]\npopulation = 1\nelitism = 0\n",
            "evolution.population: got 1, expected an integer >= 2 for a search",
        ),
        (
            XOR + "[evolution]\nmode = \"grow\"\npopulation = 1\nelitism = 0\ncrossover_rate = 0\n",
            "mutation.grow_bottleneck: got 0.0, expected a rate > 0",
        ),
        (
            XOR + "[evolution]\nmode = \"grow\"\npopulation = 2\n",
            "evolution.population: got 2, expected 1 with evolution.mode = 'grow'",
        ),
        (
            XOR + "[evolution]\npopulation = 4\nelitism = 4\n",
            "evolution.elitism: got 4, expected fewer",
        ),
        (
            XOR + "val_fraction = 0.6\ntest_fraction = 0.5\n",
            "task.test_fraction: got 0.5, expected val_fraction",
        ),
        ('[task]\nname = "xr"\n', "task.name: got 'xr', expected a built-in task: 'xor'"),
        ('[task]\nname = "digits"\nn_samples = 10\n', "task.n_samples: got 10, expected it unset"),
        (
            '[task]\npath = "d.csv"\ntarget = "y"\n',
            "task.kind: not set, expected 'classification' or",
        ),
        (
            '[task]\npath = "d.csv"\nkind = "regression"\n',
            "task.target: not set, expected the name",
        ),
        ('[task]\npath = "d.txt"\nkind = "regression"\n', "expected a .csv, .tsv, .parquet, .pq or .npz file"),
        ("[run]\nseed = 1\n", "missing section [task]"),
        ("run = 3\n" + XOR, "run: got 3, expected a table [run]"),
    ],
)
def test_bad_config_gives_one_line_naming_key_value_and_expectation(
    text: str, expected: str, tmp_path: Path
) -> None:
    assert expected in _error(text, tmp_path)


def test_several_problems_are_reported_on_one_line(tmp_path: Path) -> None:
    message = _error(XOR + "[run]\nseed = -1\nthreads = 0\n", tmp_path)
    assert "run.seed: got -1" in message and "run.threads: got 0" in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.toml: config file not found"):
        load_config(tmp_path / "nope.toml")


def test_a_bad_config_raises_a_hybrid_error_the_cli_exits_2_on(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text('[task]\nname = "xor"\n[training]\nsteps = "many"\n')
    with pytest.raises(HybridError) as info:
        load_config(path)
    assert isinstance(info.value, ConfigError) and info.value.exit_code == 2
    message = str(info.value)
    assert "x.toml" in message and "training.steps" in message and "\n" not in message


def test_overrides_are_read_as_toml_values(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(XOR)
    config = load_config(
        path,
        {"run.seed": "5", "evolution.generations": 9, "run.name": "123", "run.device": "cpu",
         "run.runs_dir": "elsewhere", "genome.hidden": "[8, 8]", "evolution.time_budget_s": "60"},
    )  # fmt: skip
    assert config.run.seed == 5 and config.evolution.generations == 9
    assert (
        config.run.name == "123"
        and config.run.device == "cpu"
        and config.run.runs_dir == "elsewhere"
    )
    assert config.genome.hidden == (8, 8) and config.evolution.time_budget_s == 60.0


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"run.seed": "abc"}, "run.seed: got 'abc', expected an integer (from an override)"),
        ({"run.sed": 3}, "unknown key 'run.sed' (did you mean 'run.seed'?) (from an override)"),
        ({"seed": 3}, "override 'seed': expected a dotted key"),
    ],
)
def test_bad_override_names_the_key(overrides: dict, expected: str, tmp_path: Path) -> None:
    assert expected in _error(XOR, tmp_path, overrides)


def test_run_name_defaults_to_the_file_stem_unless_set(tmp_path: Path) -> None:
    (tmp_path / "my-run.toml").write_text(XOR)
    (tmp_path / "named.toml").write_text(XOR + '[run]\nname = "other"\n')
    assert load_config(tmp_path / "my-run.toml").run.name == "my-run"
    assert load_config(tmp_path / "named.toml").run.name == "other"


def test_relative_task_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.toml"
    path.write_text('[task]\npath = "data/d.csv"\ntarget = "y"\nkind = "classification"\n')
    assert Path(load_config(path).task.path) == tmp_path / "sub" / "data" / "d.csv"


def test_builtin_task_resolves_kind_loss_and_synthetic_defaults() -> None:
    config = loads_config('[task]\nname = "spirals"\n')
    assert config.task.kind == "classification" and config.training.loss == "cross_entropy"
    assert config.task.n_samples == 194 and config.task.noise == 0.0


def test_regression_user_data_derives_mse() -> None:
    config = loads_config('[task]\npath = "/d.npz"\nkind = "regression"\n')
    assert config.training.loss == "mse"


def test_config_is_frozen() -> None:
    config = loads_config(XOR)
    with pytest.raises(ValueError):
        config.run.seed = 3  # type: ignore[misc]


def test_builds_genomes_configs_with_the_same_defaults() -> None:
    config = Config(task={"name": "xor"})
    assert config.mutation_config() == MutationConfig()
    assert config.distance_config() == DistanceConfig()


def test_builds_genomes_configs_from_its_sections() -> None:
    config = loads_config(XOR + '[training]\ngate = "hard_concrete"\n[mutation]\nwiden_max = 2\n')
    assert config.mutation_config().gate == "hard_concrete"
    assert config.mutation_config().widen_max == 2


def test_mutation_rates_name_every_operator() -> None:
    from hybrid.bottleneck import OPERATORS

    rates = set(Config(task={"name": "xor"}).mutation.rates())
    assert rates == set(MUTATIONS) | set(OPERATORS.values()) | {"insert_module"}


def test_insert_module_needs_a_library_and_the_library_path_is_relative_to_the_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"mutation.insert_module: got 0.3, expected 0 unless modules.library"):
        loads_config(XOR + "[mutation]\ninsert_module = 0.3\n")
    config = loads_config(
        XOR + '[mutation]\ninsert_module = 0.3\n[modules]\nlibrary = "lib"\nuse = ["a", "b.c"]\n',
        base_dir=tmp_path,
    )
    assert config.modules.library == str(tmp_path / "lib")
    assert config.modules.use == ("a", "b.c") and config.modules.frozen
    with pytest.raises(ConfigError, match="modules.use"):
        loads_config(XOR + '[modules]\nuse = ["a b"]\n')


def test_train_kwargs_build_a_train_config() -> None:
    from hybrid.train import TrainConfig

    config = Config(task={"name": "xor"})
    # the task's metric travels with the training settings (None in TrainConfig: the loss's default)
    assert TrainConfig(**config.train_kwargs()) == TrainConfig(metric="accuracy")
