"""The train.py command lines of public course repositories' READMEs (tests/data/course/commands.txt, sources in
SOURCES.md), each through the real ``fmnist train`` command line with training replaced: it gives the configuration
the command writes, or stops with exit 2 and one line naming the one option or value fmnist cannot know. Then the
options course READMEs write beside the specification, one by one."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fmnist import names
from fmnist.cli import app
from fmnist.cli import train as cli_train
from fmnist.training import splits as splits_module
from fmnist.training.config import TrainConfig

from course_cli import fmnist, stand_in_wandb

COURSE = Path(__file__).parents[1] / "data" / "course"
runner = CliRunner()

# What each refused command's one line says: (repository, its n-th command) -> the message. Every other command runs.
REFUSED = {
    ("ashishmeshram229/DA6401-Assignment-1", 1): "No such option: --model_save_path (fmnist writes the model to "
    "RUN_DIR/model.npz; --out chooses RUN_DIR)",
    ("ashishmeshram229/DA6401-Assignment-1", 2): "No such option: --model_save_path (fmnist writes the model to "
    "RUN_DIR/model.npz; --out chooses RUN_DIR)",
    **{("harshit-8118/DA6401_Assignment_1", n): "No such option: --experiment" for n in range(1, 8)},
    ("nandhakishorecs/da6401_assignment1", 1): "No such option: -nh1 (did you mean -nhl / --num_layers?)",
    ("palashbehra5/cs6910_assignment1", 2): "Invalid value for '--dataset' / '-d': unknown dataset 'cifar10': fmnist "
    "has no cifar10 dataset; valid: fashion_mnist, mnist",
    ("pritamde090920/cs6910_assignment1", 3): "No such option: -t",
    ("pritamde090920/cs6910_assignment1", 5): "No such option: -confusion",
    ("r1sha13h/DA6401_Assignment_1", 2): "No such option: --save_model (fmnist always saves the model, to "
    "RUN_DIR/model.npz)",
    ("RamanHacks/cs6910_assignment1", 2): "No such option: --use_lr_scheduler (did you mean --lr-schedule VALUE?)",
    ("RamanHacks/cs6910_assignment1", 4): "Got unexpected extra argument(s) (entity name>)",  # <wandb entity name>
    ("Romilchouhan/cs6910_assignment1", 1): "No such option: -que",
    ("starkAhmed43/DA24S023_DA6401_A1", 1): "No such option: -c",
    ("treasureNIDHI/DA6401_assignment1", 1): "--config: best_config.json does not exist",
    ("utkarsh2299/da6401_assignment1", 3): "No such option: --use_wandb_sweep",
    ("vikram-kv/cs6910_assignment1", 3): "No such option: -uw",
    ("Macrove/cs6910_assignment1", 1): "No such option: -wb",
}

# How the DA6401 specification (and the course READMEs beside it) name each option: this test's own reading.
FLAGS = {
    **dict.fromkeys(("-wp", "-w_p", "--wandb_project", "--wandb-project"), "wandb_project"),
    **dict.fromkeys(("-we", "--wandb_entity"), "wandb_entity"),
    **dict.fromkeys(("-d", "--dataset", "-dataset"), "dataset"),
    **dict.fromkeys(("-e", "--epochs", "-epochs"), "epochs"),
    **dict.fromkeys(("-b", "--batch_size", "-bs"), "batch_size"),
    **dict.fromkeys(("-l", "--loss"), "loss"),
    **dict.fromkeys(("-o", "--optimizer"), "optimizer"),
    **dict.fromkeys(("-lr", "--learning_rate"), "learning_rate"),
    **dict.fromkeys(("-m", "--momentum"), "momentum"),
    **dict.fromkeys(("-beta", "--beta"), "beta"),
    **dict.fromkeys(("-beta1", "--beta1"), "beta1"),
    **dict.fromkeys(("-beta2", "--beta2"), "beta2"),
    **dict.fromkeys(("-eps", "--epsilon"), "epsilon"),
    **dict.fromkeys(("-w_d", "-wd", "--weight_decay", "--weight_decay_rate"), "weight_decay"),
    **dict.fromkeys(("-w_i", "-wi", "--weight_init"), "weight_init"),
    **dict.fromkeys(("-nhl", "--num_layers", "--hidden_layers_count"), "num_layers"),
    **dict.fromkeys(("-sz", "--hidden_size", "--hidden_layer_size"), "hidden_size"),
    "--hidden_sizes": "hidden_sizes",
    **dict.fromkeys(("-a", "--activation"), "activation"),
}
SWITCHES = {"--wandb": True, "--use_wandb": True, "--no_wandb": False}


def course_commands() -> list[tuple[str, int, str]]:
    """(repository, its n-th command, the command) of every command in commands.txt."""
    out, source, count = [], "", {}
    for line in (COURSE / "commands.txt").read_text().splitlines():
        parts = line.split()
        if line.startswith("# ") and len(parts) == 4 and re.fullmatch(r"[0-9a-f]{40}", parts[3]):
            source = parts[1]
        elif line and not line.startswith("#"):
            count[source] = count.get(source, 0) + 1
            out.append((source, count[source], line))
    return out


def arguments(command: str) -> list[str]:
    """The arguments after ``train.py`` (or all of them, for a line of arguments only), as a shell splits them."""
    tokens = shlex.split(command.replace("\\", "/"))
    script = next((i for i, t in enumerate(tokens) if re.search(r"train\w*\.py$", t)), -1)
    return tokens[script + 1 :]


def expected_config(args: list[str]) -> TrainConfig:
    """The configuration a command writes, read by this test's own rules (``FLAGS``): the values as written."""
    values: dict = {}
    i = 0
    while i < len(args):
        flag, has_value, value = args[i].partition("=")
        i += 1
        if flag in SWITCHES:
            on = SWITCHES[flag]
            if i < len(args) and args[i].lower() in ("true", "false"):
                on, i = on == (args[i].lower() == "true"), i + 1
            values["wandb"] = on
            continue
        field = FLAGS[flag]
        if not has_value:
            value, i = args[i], i + 1
            while field == "hidden_size" and i < len(args) and args[i].isdigit():
                value, i = f"{value},{args[i]}", i + 1
        values[field] = value
    widths = [int(w) for w in re.findall(r"\d+", values.pop("hidden_size", ""))]
    if len(widths) == 1:
        values["hidden_size"] = widths[0]
    elif widths:
        values["hidden_sizes"] = tuple(widths)
    if "wandb" not in values:
        values["wandb"] = "wandb_project" in values or "wandb_entity" in values
    return TrainConfig(**values)


@pytest.fixture
def captured(monkeypatch):
    """``fmnist train`` with training replaced by a record of its configuration; W&B installed and logged in (a
    stand-in module), and loading data is a failure."""
    runs: list = []
    monkeypatch.setattr(cli_train, "run_training", lambda config, run_dir, resume: runs.append(config))
    monkeypatch.setattr(splits_module, "load_dataset", lambda *a, **k: pytest.fail("data was loaded"))
    stand_in_wandb(monkeypatch, init=lambda **k: pytest.fail("wandb.init was reached"))
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    return runs


@pytest.mark.parametrize(("source", "n", "command"), course_commands(), ids=lambda v: str(v)[:60])
def test_each_course_command_runs_as_written_or_names_the_one_thing(captured, monkeypatch, capsys, source, n, command):
    args = arguments(command)
    code, out, err = fmnist(monkeypatch, capsys, "train", *args)
    if (source, n) in REFUSED:
        assert code == 2, out + err
        assert err.strip() == f"error: {REFUSED[(source, n)]}"  # one line
        assert not captured
        return
    assert code == 0, out + err
    if "-h" in args or "--help" in args:
        assert "Usage" in out
        assert not captured
        return
    (config,) = captured
    expected = expected_config(args)
    assert config == expected, {k: (v, getattr(expected, k)) for k, v in config.to_dict().items()}


def test_the_collection_as_counted():
    commands = course_commands()
    refused = [c for c in commands if (c[0], c[1]) in REFUSED]
    assert (len(commands), len(refused)) == (75, 22)
    assert len({c[0] for c in commands}) == 33


# --- the spellings course READMEs write beside the specification --------------------------------------------------


@pytest.mark.parametrize(
    ("args", "field", "value"),
    [
        (["-bs", "32"], "batch_size", 32),
        (["-ep", "3"], "epochs", 3),
        (["-epochs", "3"], "epochs", 3),
        (["-e5"], "epochs", 5),  # a short option with its value attached, as click and argparse read it
        (["-wd", "0.01"], "weight_decay", 0.01),
        (["-wi", "xavier"], "weight_init", "xavier"),
        (["-dataset", "mnist"], "dataset", "mnist"),
        (["--weight_decay_rate=0.001"], "weight_decay", 0.001),
        (["--hidden_layers_count", "4"], "num_layers", 4),
        (["--number_of_epochs", "4"], "epochs", 4),
        (["--activation_func", "tanh"], "activation", "tanh"),
        (["-o", "sgdm"], "optimizer", "momentum"),
        (["-l", "cross_entropy_loss"], "loss", "cross_entropy"),
        (["-w_i", "random_init"], "weight_init", "random"),
        (["-sz", "128", "128", "64"], "hidden_sizes", (128, 128, 64)),
        (["-nhl", "3", "-sz", "128", "128", "128"], "hidden_sizes", (128, 128, 128)),
        (["--hidden_size", "128,128,64"], "hidden_sizes", (128, 128, 64)),
        (["--hidden_size", "[64, 32]"], "hidden_sizes", (64, 32)),
        (["-nhl", "4", "-sz", "32"], "hidden", (32, 32, 32, 32)),
        (["-lr", "-0.1", "-e", "1"], None, None),  # a negative number is a value, not an option (refused below)
    ],
)
def test_other_spellings_of_options_are_the_options(captured, args, field, value):
    result = runner.invoke(app, ["train", *args], env={"COLUMNS": "300"})
    if field is None:
        assert result.exit_code == 2
        assert "--learning_rate must be > 0, got -0.1" in result.output
        return
    assert result.exit_code == 0, result.output
    assert getattr(captured[0], field) == value


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-nh1", "4"], "No such option: -nh1 (did you mean -nhl / --num_layers?)"),
        (["-log", "True"], "No such option: -log"),
        (["--batch_szie", "32"], "No such option: --batch_szie (did you mean -b / --batch_size?)"),
        (["--epohcs", "3"], "No such option: --epohcs (did you mean -e / --epochs?)"),
        (["-gamma", "0.9"], "No such option: -gamma ('-gamma' has two meanings: the momentum coefficient of"),
        (["-nhl", "2", "-sz", "128", "64", "32"], "-sz gives 3 widths (128 64 32) but -nhl says 2 hidden layers"),
        (["-sz", "128", "64", "--hidden-sizes", "32,16"], "-sz gives one width per layer, and so does --hidden-sizes"),
        (["-sz", "big"], "-sz takes a width, or one width per hidden layer"),
        (["-a", "LeakyReLU"], "unknown activation 'LeakyReLU': fmnist has no LeakyReLU activation"),
        (["-o", "xavier"], "unknown optimizer 'xavier': xavier is a weight init, not an optimizer"),
        (["-w_i", "xavier_normal"], "unknown weight init 'xavier_normal': fmnist's Xavier is Glorot uniform"),
    ],
)
def test_options_fmnist_does_not_have_are_named_as_typed(captured, monkeypatch, capsys, tmp_path, args, message):
    out = tmp_path / "run"
    code, _, err = fmnist(monkeypatch, capsys, "train", *args, "--out", str(out))
    assert code == 2
    assert err.startswith("error: "), err
    assert message in err
    assert err.count("\n") == 1, err
    assert not captured
    assert not out.exists()


def test_unknown_options_are_one_line_from_the_console_script(tmp_path):
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "fmnist", "train", "-bs", "32", "-nh1", "4"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: No such option: -nh1 (did you mean -nhl / --num_layers?)"


@pytest.mark.parametrize(
    ("args", "wandb"),
    [
        (["--use_wandb", "True", "-wp", "p"], True),
        (["--use_wandb", "False"], False),
        (["-wp", "p", "--no_wandb"], False),  # the project is kept for later; no W&B now
        (["-wp", "p"], True),
        (["--wandb", "-we", "team"], True),
    ],
)
def test_wandb_switches_as_written(captured, args, wandb):
    result = runner.invoke(app, ["train", *args], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert captured[0].wandb is wandb


def test_help_is_dash_h_too():
    for flag in ("-h", "--help"):
        result = runner.invoke(app, ["train", flag], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        assert "--batch_size" in result.output
    assert names.parameter("-wi") == "weight_init"  # the table the command line reads
