"""The sweep files of public course repositories (tests/data/course/sweeps, each with its source in a comment), as
written: each either runs with its values applied, or stops before any trial with exit 2 and one line naming the
one thing fmnist cannot know. Then what those files taught: metric spellings, names with two meanings, lists of
widths, W&B asked for by the file, and the trial line."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from fmnist import names
from fmnist.cli import app
from fmnist.data import FASHION_MNIST, MNIST, registry
from fmnist.sweep import SweepError, load_sweep, parse_sweep
from fmnist.sweep import study as study_module
from fmnist.training.config import TrainConfig, coerce, load_mapping

from course_cli import stand_in_wandb
from helpers import learnable_arrays, write_tiny_mnist

pytest.importorskip("optuna", reason="Optuna is not installed (pip install 'fmnist[sweep]')")
SWEEPS = Path(__file__).parents[1] / "data" / "course" / "sweeps"
runner = CliRunner()

# The files that stop, and the one line each stops with (start of it). Every other file runs.
REFUSED = {
    "Charukhesh__da6401_assignment_1__sweep_config.yaml": "metric: 'val_f1' is not a metric fmnist records",
    "Gowthamaan-P__cs6910_assignment1__Q4.yaml": "parameters.epochs: value: [5, 10] is one value, a list; did you "
    "mean values: [5, 10]?",
    "Kartik0806__da6401_assignment_1__sweep.yaml": "metric: 'test/f1': a sweep chooses on the validation split",
    "Macrove__cs6910_assignment1__q4_wandb_sweep.yaml": "parameters.activation_func: unknown activation 'LeakyReLU': "
    "fmnist has no LeakyReLU activation",
    "MathewThomas358__cs6910-assignment-1__sweep.yaml": "unknown parameter 'is_hidden_layer_size_variable'; valid:",
    "RamanHacks__cs6910_assignment1__cupy_sweep.yaml": "parameters.optimizer: unknown optimizer 'adamw': fmnist's "
    "AdamW is adam with --decoupled-weight-decay",
    "RohitChoudharyManth__DL-CS6910-Assignment__wandb_run_assignment_1.yaml": "unknown parameter "
    "'loss_optimizer_type'; valid:",
    "Romilchouhan__cs6910_assignment1__train.yaml": "parameters.activation: unknown activation 'LeakyReLU'",
    "Svanik277373__DA6401_PA_1__Q2.9.yaml": "parameters.weight_init: unknown weight init 'zeros': all-zero weights",
    "bmvrskkl__da6401_assignment_1__course_template_wandb_demo.yaml": "metric: 'final_test_loss': a sweep chooses on "
    "the validation split, never the test split; use val_loss",
    "harshit-8118__DA6401_Assignment_1__wandb_report.yaml": "metric: 'val/f1' is not a metric fmnist records",
    "jaygupta907__da6401_assignment1__sweep.yaml": "parameters.optimizer: unknown optimizer 'adagrad': fmnist has no",
    "nandhakishorecs__da6401_assignment1__sweep_config.yaml": "parameters.optimiser: unknown optimizer 'eve'",
    "palashbehra5__cs6910_assignment1__Q4a.yaml": "parameters.activation_function: unknown activation 'arctan'",
    "sandeepkumarsuresh__cs6910_assignment1__local_dev_main.yaml": "unknown parameter 'weight_para'; valid:",
    "sowmyamanojna__CS6910-Deep-Learning-Assignment-1__Question-4.yaml": "parameters.optimizer: unknown optimizer "
    "'AdaGrad': fmnist has no AdaGrad optimizer",
    **dict.fromkeys(
        ("vikram-kv__cs6910_assignment1__mse_vs_ce_loss.yaml", "vikram-kv__cs6910_assignment1__sweep_code.yaml"),
        "metric: goal minimize of val_accuracy would look for the least accurate model; write goal: maximize",
    ),
}
FILES = sorted(p.name for p in SWEEPS.glob("*.yaml"))


@pytest.fixture
def tiny_data(tmp_path, monkeypatch):
    """Tiny learnable Fashion-MNIST and MNIST (course files sweep both), pinned in the registry."""
    monkeypatch.setenv("FMNIST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FMNIST_MIRRORS", raising=False)
    for key, base in (("fashion-mnist", FASHION_MNIST), ("mnist", MNIST)):
        spec, _ = write_tiny_mnist(tmp_path / "data" / key, learnable_arrays(n_train=300, n_test=60), base=base)
        monkeypatch.setitem(registry.DATASETS, key, spec)
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def fake_wandb(monkeypatch) -> list[dict]:
    """W&B installed and logged in, as a stand-in module that records each ``wandb.init`` (no network)."""
    inits: list[dict] = []

    class Run:
        summary: ClassVar[dict] = {}

        def log(self, values, step=None):
            pass

        def finish(self):
            pass

    stand_in_wandb(monkeypatch, init=lambda **kwargs: inits.append(kwargs) or Run())
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    return inits


def written(body: dict) -> tuple:
    """A parameter's values as the file writes them: the list, the one value, or the two ends of a range."""
    if "values" in body:
        return tuple(body["values"])
    if "value" in body:
        return (body["value"],)
    return (body["min"], body["max"])


def same(field: str, value, want) -> bool:
    """Whether ``value`` (as the sweep holds it) is the written ``want``: the same number, name or widths."""
    if field in ("hidden_sizes", "conv_channels", "convs_per_block"):
        return value == coerce("hidden_sizes", want)
    kind = names.kind_of(field)
    if kind is not None:
        return value == names.canonical(kind, want)
    if isinstance(want, bool) or isinstance(value, str):
        return str(value).lower() == str(want).lower()
    return math.isclose(float(value), float(want))


@pytest.mark.parametrize("filename", FILES)
def test_each_course_sweep_file_runs_with_its_values_or_names_the_one_thing(filename):
    raw = load_mapping(SWEEPS / filename)
    if filename in REFUSED:
        with pytest.raises(SweepError) as caught:
            load_sweep(SWEEPS / filename)
        assert str(caught.value).startswith(REFUSED[filename])
        assert "\n" not in str(caught.value)
        return
    spec = load_sweep(SWEEPS / filename)
    held = {p.name: p for p in spec.params}
    for key, body in raw["parameters"].items():
        if names.constant(key) is not None:
            assert key not in held  # input_size: 784 and the like are what every fmnist network is
            continue
        field = next(n for n in (_field(key, body, held),) if n)
        values = held[field].drawable()
        want = written(body)
        assert len(values) == len({json.dumps(w) for w in want}) or held[field].distribution == "categorical"
        for w in want:  # every value written is one the sweep draws (or an end of its range)
            assert any(same(field, v, w) for v in values), (key, w, values)


def _field(key: str, body: dict, held: dict) -> str:
    """The field a written parameter ended up as: its name's, or ``hidden_sizes`` for lists of widths."""
    try:
        field = names.parameter(key)
    except names.AmbiguousNameError:
        field = next(f for f in names.AMBIGUOUS[names.words(key)[0]] if f in held)
    return "hidden_sizes" if field == "hidden_size" and "hidden_sizes" in held and "hidden_size" not in held else field


def test_the_collection_as_counted():
    assert len(FILES) == 59
    assert len(REFUSED) == 18  # 41 of 59 run as written (14 did before)


@pytest.mark.parametrize("filename", sorted(REFUSED))
def test_a_refused_course_file_stops_before_any_trial_with_one_line(tmp_path, monkeypatch, filename):
    monkeypatch.setattr(study_module, "work", lambda *a, **k: pytest.fail("a trial was started"))
    out = tmp_path / "out"
    result = runner.invoke(app, ["sweep", str(SWEEPS / filename), "--out", str(out)], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert REFUSED[filename] in lines[0]
    assert not out.exists()


def sweep(tmp_path: Path, sweep_file: Path, *args: str):
    out = tmp_path / "out"
    result = runner.invoke(app, ["sweep", str(sweep_file), "--out", str(out), *args], env={"COLUMNS": "120"})
    return result, out


def grid_file(tmp_path: Path, values: str) -> Path:
    """A grid sweep file of ``name: value`` (fixed) or ``name: [a, b]`` (searched) parameters."""
    lines = []
    for item in re.split(r",\s*(?![^\[]*\])", values):
        name, value = (part.strip() for part in item.split(":", 1))
        lines.append(f"  {name}: {{{'values' if value.startswith('[') else 'value'}: {value}}}")
    path = tmp_path / "grid.yaml"
    path.write_text("method: grid\nparameters:\n" + "\n".join(lines) + "\n")
    return path


def trial_configs(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/config.json"))]


@pytest.mark.slow
@pytest.mark.usefixtures("tiny_data")
def test_course_files_run_end_to_end_as_written(tmp_path, fake_wandb):
    # decay read as weight decay, input_size/output_size/output_activation constants, neurons, hidden_layers
    result, out = sweep(tmp_path / "a", SWEEPS / "KnitRanger9__da6401_assignment1__train_wandb.yaml", "--trials", "2")
    assert result.exit_code == 0, result.output
    assert "note: decay is read as weight_decay" in result.output
    for config in trial_configs(out):
        assert config["loss"] == "mean_squared_error"
        assert config["epochs"] == 10
        assert config["weight_decay"] in (0, 0.0005, 0.005)
        assert config["hidden_size"] in (16, 32, 64, 128)
    # widths as text ("32 32"), the best epoch's accuracy (val/max_acc), MNIST, W&B named by the file
    pmk = SWEEPS / "pmk009__DA6401_assignment01_AE21B036__sweep.yaml"
    result, out = sweep(tmp_path / "b", pmk, "--trials", "1")
    assert result.exit_code == 0, result.output
    assert "maximize the best epoch's val_accuracy" in result.output
    (config,) = trial_configs(out)
    assert config["dataset"] == "mnist"
    assert config["hidden_sizes"]
    assert config["epochs"] == 30
    assert config["wandb"]
    assert fake_wandb[-1]["project"] == "assignment_01"
    run_dir = next(out.glob("runs/*"))
    accuracies = [json.loads(line)["val_accuracy"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    best = json.loads((out / "sweep.json").read_text())
    assert best["metric"] == {"name": "val_accuracy", "goal": "maximize", "summary": "best"}
    import optuna

    study = optuna.load_study(study_name=pmk.stem, storage=f"sqlite:///{out / 'sweep.db'}")
    assert study.trials[0].value == max(accuracies)
    # a list of widths under hidden_size, and a layer count that the lists make moot
    result, out = sweep(tmp_path / "c", SWEEPS / "Abdull811__DA6401_assigment_01__sweep.yaml", "--trials", "1")
    assert result.exit_code == 0, result.output
    assert "note: num_layers changes nothing in this sweep: the lists of widths give every layer" in result.output
    assert trial_configs(out)[0]["hidden_sizes"] in ([64, 64], [128, 128])


def test_a_study_holds_canonical_values_of_course_spellings():
    spec = load_sweep(SWEEPS / "utkarsh2299__da6401_assignment1__sweep_config.yaml")
    held = {p.name: p.values for p in spec.params}
    assert held["loss"] == ("cross_entropy",)  # cross_entropy_loss
    assert "num_layers" in held
    assert "hidden_size" in held
    spec = load_sweep(SWEEPS / "i-618__cs6910_assignment1__FDL_CS6910_Assigment_1.yaml")
    assert spec.metric == "val_accuracy"
    assert spec.notes[0].startswith("metric 'accuracy' is read as val_accuracy")
    assert "sgd" in {p.name: p.values for p in spec.params}["optimizer"]  # stochastic


# --- names with two meanings --------------------------------------------------------------------------------------

GAMMA = {"epochs": {"value": 1}, "hidden_size": {"value": 8}, "gamma": {"values": [0.5, 0.8]}}


@pytest.mark.parametrize(
    ("extra", "field", "note"),
    [
        ({"optimizer": {"values": ["sgd", "momentum", "nag"]}}, "momentum", "gamma is read as momentum"),
        ({"optimizer": {"value": "nag"}, "lr_schedule": {"value": "step"}}, "lr_gamma", "gamma is read as lr_gamma"),
        ({"decay": {"values": [0, 5e-4]}, "optimizer": {"value": "momentum"}}, "momentum", None),
    ],
)
def test_gamma_is_read_as_the_file_makes_plain(extra, field, note):
    spec = parse_sweep({"parameters": {**GAMMA, **extra}})
    held = {p.name: p.values for p in spec.params}
    assert held[field] == (0.5, 0.8)
    assert "lr_gamma" not in held or field == "lr_gamma"
    if note:
        assert any(n.startswith(note) for n in spec.notes), spec.notes


@pytest.mark.parametrize(
    "extra",
    [
        {"optimizer": {"values": ["adam", "rmsprop"]}},  # no momentum optimizer, no step schedule
        {"optimizer": {"value": "momentum"}, "momentum": {"value": 0.9}},  # momentum is named already
    ],
)
def test_gamma_is_refused_with_both_meanings_where_the_file_does_not_say(extra):
    with pytest.raises(SweepError) as caught:
        parse_sweep({"parameters": {**GAMMA, **extra}})
    message = str(caught.value)
    assert message.startswith("parameters.gamma: 'gamma' has two meanings:")
    assert "(write momentum)" in message
    assert "(write lr_gamma)" in message


def test_decay_is_weight_decay_only_where_nothing_else_is():
    spec = parse_sweep({"parameters": {"epochs": {"value": 1}, "decay": {"values": [0, 5e-4]}}})
    assert {p.name for p in spec.params} == {"epochs", "weight_decay"}
    assert spec.notes == (
        "decay is read as weight_decay: L2 weight decay, as course code uses it (write weight_decay to say so)",
    )
    with pytest.raises(SweepError, match="'decay' has two meanings"):
        parse_sweep({"parameters": {"weight_decay": {"value": 0.0}, "decay": {"values": [0.1, 0.5]}}})


@pytest.mark.usefixtures("tiny_data")
def test_the_trial_line_shows_only_values_that_take_effect(tmp_path):
    values = "epochs: 1, hidden_size: 8, batch_size: 128, optimizer: [momentum, adam], gamma: [0.5], beta: [0.8, 0.9]"
    result, out = sweep(tmp_path, grid_file(tmp_path, values))
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("trial ") and ":" in line[:10]]
    assert sorted(lines) == sorted(
        [f"trial {n}: opt=momentum mom=0.5" for n in (0, 1)] + [f"trial {n}: opt=adam" for n in (2, 3)]
    ), result.output
    assert "note: gamma is read as momentum" in result.output
    assert "note: beta changes nothing in this sweep: only optimizer rmsprop uses it" in result.output
    momentum = [c for c in trial_configs(out) if c["optimizer"] == "momentum"]
    assert [c["momentum"] for c in momentum] == [0.5, 0.5]  # gamma reached the optimizer


@pytest.mark.usefixtures("tiny_data")
def test_a_trial_that_is_not_learning_says_so(tmp_path):
    values = "epochs: 2, batch_size: 128, activation: identity, weight_init: random, optimizer: [nadam], "
    values += "learning_rate: 1e-4, weight_decay: 5e-4, num_layers: 5, hidden_size: 128"
    result, _ = sweep(tmp_path, grid_file(tmp_path, values))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "trial 0 complete val_accuracy" in text
    assert "note: the network is not learning: the training loss has stayed at 2.3026 (ln 10)" in text


# --- metric names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "goal", "metric", "best"),
    [
        ("val_accuracy", None, "val_accuracy", False),
        ("Validation_Accuracy", "maximize", "val_accuracy", False),
        ("val_acc", "maximize", "val_accuracy", False),
        ("val.acc", None, "val_accuracy", False),
        ("Val/Accuracy", "maximize", "val_accuracy", False),
        ("validation_accuracy", "maximize", "val_accuracy", False),
        ("evaluation_accuracy", None, "val_accuracy", False),
        ("avg_valid_acc", None, "val_accuracy", False),
        ("val_accuracy_final", None, "val_accuracy", False),
        ("best_val_accuracy", None, "val_accuracy", True),
        ("val/max_acc", "maximize", "val_accuracy", True),
        ("val_loss", "minimize", "val_loss", False),
        ("Validation-Loss", None, "val_loss", False),
        ("min_val_loss", None, "val_loss", True),
        ("train_acc", None, "train_accuracy", False),
        ("training_loss", "Minimize", "train_loss", False),
    ],
)
def test_metric_spellings(name, goal, metric, best):
    spec = parse_sweep({"metric": {"name": name, "goal": goal}, "parameters": {"epochs": {"value": 1}}})
    assert (spec.metric, spec.best, spec.notes) == (metric, best, ())
    assert spec.goal == ("minimize" if metric.endswith("loss") else "maximize")


@pytest.mark.parametrize(
    ("name", "goal", "message"),
    [
        ("accuracy", None, None),  # read as validation accuracy, and said
        ("Accuracy", "maximize", None),
        ("loss", "minimize", None),
        ("validation_acc", "minimize", "goal minimize of val_accuracy would look for the least accurate model"),
        ("val_loss", "maximize", "goal maximize of val_loss would look for the highest-loss model"),
        ("val_f1", None, "'val_f1' is not a metric fmnist records (did you mean val_accuracy?)"),
        ("test_accuracy", None, "a sweep chooses on the validation split, never the test split; use val_accuracy"),
        ("max_val_loss", None, "the max of val_loss is the worst epoch's"),
        ("val_accuracy", "sideways", "goal 'sideways' is not maximize or minimize"),
    ],
)
def test_ambiguous_and_contradictory_metrics(name, goal, message):
    raw = {"metric": {"name": name, "goal": goal}, "parameters": {"epochs": {"value": 1}}}
    if message is not None:
        with pytest.raises(SweepError, match="^metric: .*" + re.escape(message)):
            parse_sweep(raw)
        return
    spec = parse_sweep(raw)
    assert spec.metric == ("val_loss" if "loss" in name else "val_accuracy")
    assert spec.notes == (f"metric {name!r} is read as {spec.metric} (a sweep chooses on the validation split)",)


# --- lists of widths, constants, batch norm, W&B -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "widths"),
    [
        ([[64, 64], [128]], [(64, 64), (128,)]),
        (["[64,64]", "[128,64,32]"], [(64, 64), (128, 64, 32)]),
        (["32 32", "64 32"], [(32, 32), (64, 32)]),
    ],
)
def test_a_list_of_widths_under_hidden_size_is_hidden_sizes(values, widths):
    spec = parse_sweep({"parameters": {"hidden_size": {"values": values}, "num_layers": {"values": [2, 3]}}})
    held = {p.name: p.values for p in spec.params}
    assert held["hidden_sizes"] == tuple(widths)
    assert "hidden_size" not in held
    assert "num_layers changes nothing in this sweep: the lists of widths give every layer" in spec.notes[0]
    with pytest.raises(SweepError, match="mixes widths and lists of widths"):
        parse_sweep({"parameters": {"hidden_size": {"values": [64, [64, 64]]}}})


def test_architecture_constants_are_checked():
    spec = parse_sweep(
        {
            "parameters": {
                "input_size": {"value": 784},
                "num_classes": {"value": 10},
                "output_activation": {"value": "Softmax"},
            }
        }
    )
    assert [p.name for p in spec.params] == [] or all(p.name not in ("input_size",) for p in spec.params)
    with pytest.raises(SweepError, match=r"^parameters\.input_size: fmnist's networks read the 784 pixels .* got 100"):
        parse_sweep({"parameters": {"input_size": {"value": 100}}})
    with pytest.raises(SweepError, match="output_activation can only be softmax, got 'sigmoid'"):
        parse_sweep({"parameters": {"output_activation": {"value": "sigmoid"}}})


def test_batch_norm_on_an_mlp_is_refused_and_cnn_options_said_to_change_nothing():
    with pytest.raises(SweepError, match=r"^parameters\.batch_norm = True: fmnist's MLP has no batch norm"):
        parse_sweep({"parameters": {"batch_norm": {"values": [True, False]}}})
    spec = parse_sweep({"parameters": {"kernel_size": {"values": [3, 5]}}})
    assert spec.notes == ("kernel_size changes nothing in this sweep: it is a CNN option (model: cnn)",)
    spec = parse_sweep({"parameters": {"model": {"value": "cnn"}, "batch_norm": {"values": [True, False]}}})
    assert spec.notes == ()


@pytest.mark.parametrize(
    ("raw", "asked"),
    [
        ({"parameters": {"wandb_project": {"value": "p"}}}, "parameters.wandb_project"),
        ({"project": "p", "entity": "e"}, "project"),
        ({"command": ["${env}", "python3", "${program}", "--use_wandb", "${args}"]}, "command: --use_wandb"),
        ({"command": ["${env}", "python", "x.py", "--entity=e", "--project=p"]}, "command: --entity"),
        ({"command": ["${env}", "${interpreter}", "${program}", "${args}"]}, None),
        ({"parameters": {"wandb_project": {"value": "p"}, "wandb": {"value": False}}}, None),
    ],
)
def test_wandb_asked_for_by_the_file(raw, asked):
    spec = parse_sweep({**raw, "parameters": {"epochs": {"value": 1}, **raw.get("parameters", {})}})
    assert spec.wandb == asked


def test_a_command_block_with_an_option_fmnist_lacks_is_refused():
    with pytest.raises(SweepError, match=r"^command: fmnist train has no option --save_model$"):
        parse_sweep({"command": ["python", "train.py", "--save_model"], "parameters": {"epochs": {"value": 1}}})


def test_not_a_train_config_field_is_left_behind():
    assert TrainConfig().wandb is False  # W&B is on only where something asks for it


# --- the terminal: no library warning, a note for a network that is not learning --------------------------------


def fmnist_process(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``fmnist ARGS`` in its own process (warnings are process state) on tiny data, without a terminal."""
    data = tmp_path / "data"
    if not data.is_dir():
        write_tiny_mnist(data, learnable_arrays(n_train=300, n_test=60), base=FASHION_MNIST)
    env = {**os.environ, "FMNIST_TEST_TINY_DATA": str(data), "FMNIST_DATA_DIR": str(data), "COLUMNS": "100"}
    command = [sys.executable, str(Path(__file__).parent / "sweep_process.py"), *args]
    return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_no_library_warning_reaches_the_terminal(tmp_path):
    # a trial that diverges (NumPy's overflow and invalid-value warnings), a parameter with one value (matplotlib's
    # identical axis limits in Optuna's parallel coordinates), two trials (too few for importances, Optuna's [W ...])
    sweep_file = tmp_path / "diverge.yaml"
    sweep_file.write_text(
        "method: grid\nmetric: {name: Validation_Accuracy, goal: maximize}\nparameters:\n  n_epoch: {value: 2}\n"
        "  hidden_layer_size: {value: 16}\n  learning_rate: {values: [1.0e+30, 0.01]}\n  optimizer: {values: [sgd]}\n"
    )
    proc = fmnist_process(tmp_path, "sweep", str(sweep_file), "--out", "out")
    output = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 0, output
    assert "trial 0 failed (DivergenceError: training diverged: loss is nan" in output
    assert "param_importances.png: too few completed trials to rank the parameters" in output
    for noise in ("Warning", "warn(", "site-packages", "[W ", "Traceback", "ylims"):
        assert noise not in output, output
    proc = fmnist_process(tmp_path, "train", "-lr", "1e30", "-o", "sgd", "-e", "2", "--out", "run")
    assert proc.returncode == 1
    assert "training diverged" in proc.stderr
    assert "Warning" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_network_that_is_not_learning_is_said_to_be_and_why(tmp_path):
    # the stuck trial of the issue: identity, random init (N(0, 0.01²)), Nadam, lr 1e-4, L2 5e-4, 5x128
    args = ["-a", "identity", "-w_i", "random", "-o", "nadam", "-lr", "1e-4", "-w_d", "5e-4", "-nhl", "5", "-sz", "128"]
    proc = fmnist_process(tmp_path, "train", *args, "-e", "3", "--out", "stuck")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "note: the network is not learning: the training loss has stayed at 2.3026 (ln 10)" in text
    assert "With -w_i random (N(0, 0.01²)) each of the 6 weight layers scales the signal" in text
    assert "Try -w_i Xavier or he." in text
    assert all(len(line) <= 100 for line in proc.stdout.splitlines())  # wrapped to the width
    healthy = fmnist_process(tmp_path, "train", "-e", "3", "-sz", "32", "--out", "healthy")
    assert healthy.returncode == 0
    assert "not learning" not in healthy.stdout
