"""`fmnist sweep`: W&B-style files on Optuna; methods, exact grids, pruning, shared studies across processes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fmnist.cli import app
from fmnist.data import FASHION_MNIST, registry
from fmnist.sweep import SweepError, SweepOptions, load_sweep, parse_sweep, run_sweep
from fmnist.sweep.spec import config_from_mapping, run_name
from fmnist.sweep.study import StudyChangedError, open_study
from fmnist.training.config import TrainConfig

from helpers import learnable_arrays, write_tiny_mnist

optuna = pytest.importorskip("optuna", reason="Optuna is not installed (pip install 'fmnist[sweep]')")
runner = CliRunner()
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
COURSE_SWEEP = Path(__file__).parents[1] / "data" / "course_sweep.yaml"
TINY = {"epochs": {"value": 2}, "batch_size": {"value": 64}, "hidden_size": {"value": 16}}


@pytest.fixture(autouse=True)
def tiny_fashion(tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_CACHE_DIR", str(tmp_path / "cache"))
    spec, _ = write_tiny_mnist(tmp_path / "data", learnable_arrays(), base=FASHION_MNIST)
    monkeypatch.setitem(registry.DATASETS, "fashion-mnist", spec)
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FMNIST_TEST_TINY_DATA", str(tmp_path / "data"))  # for tests/sweep_process.py


def options(tmp_path: Path, trials: int, **kwargs) -> SweepOptions:
    return SweepOptions(out=tmp_path / "sweep", trials=trials, base=TrainConfig(), **kwargs)


def complete(study) -> list:
    return [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]


def test_sweep_file_parsing_and_names():
    spec = parse_sweep(
        {
            "method": "bayes",
            "metric": {"name": "val_loss", "goal": "minimize"},
            "parameters": {
                "-lr": {"min": "1e-4", "max": 1e-2, "distribution": "log_uniform_values"},
                "nhl": {"values": [1, 2]},
                "hidden-sizes": {"value": [64, 32]},
                "w_d": {"min": 0.0, "max": 0.1},
            },
            "early_terminate": {"type": "hyperband", "min_iter": 2},
        }
    )
    names = {p.name: p for p in spec.params}
    assert set(names) == {"learning_rate", "num_layers", "hidden_sizes", "weight_decay"}
    assert names["learning_rate"].distribution == "log_uniform_values"
    assert names["weight_decay"].distribution == "uniform"
    assert spec.fixed == {"hidden_sizes": (64, 32)}
    assert spec.hyperband == {"min_iter": 2, "eta": 3}
    assert spec.goal == "minimize"
    for bad, message in [
        ({"method": "evolution", "parameters": {"e": {"value": 1}}}, "method"),
        ({"parameters": {"learning_rat": {"value": 1}}}, r"unknown parameter 'learning_rat' \(did you mean"),
        ({"method": "grid", "parameters": {"lr": {"min": 0.1, "max": 1.0}}}, "grid needs"),
        ({"parameters": {"lr": {"min": 1.0, "max": 0.1}}}, "min must be < max"),
        ({"metric": {"name": "f1"}, "parameters": {"e": {"value": 1}}}, "metric: 'f1' is not a metric fmnist"),
    ]:
        with pytest.raises(SweepError, match=message):
            parse_sweep(bad)


def test_run_names_and_configs_from_option_names():
    assert run_name(7, {"num_layers": 3, "batch_size": 16, "activation": "tanh", "optimizer": "adam"}) == (
        "t007_hl-3_bs-16_act-tanh_opt-adam"
    )
    config = config_from_mapping({"lr": 0.01, "nhl": 1, "hidden-sizes": "32,16", "a": "ReLU"})
    assert (config.learning_rate, config.num_layers, config.hidden_sizes, config.activation) == (
        0.01,
        1,
        (32, 16),
        "relu",
    )


def test_grid_covers_every_point_exactly_once(tmp_path):
    spec = parse_sweep(
        {"method": "grid", "parameters": {**TINY, "num_layers": {"values": [1, 2]}, "o": {"values": ["sgd", "adam"]}}}
    )
    study = run_sweep(spec, options(tmp_path, trials=50))  # capped at the grid's 4 points
    points = sorted((t.params["num_layers"], t.params["optimizer"]) for t in complete(study))
    assert points == [(1, "adam"), (1, "sgd"), (2, "adam"), (2, "sgd")]
    dirs = sorted(p.name for p in (tmp_path / "sweep" / "runs").iterdir())
    assert len(dirs) == 4
    assert all((tmp_path / "sweep" / "runs" / d / "model.npz").is_file() for d in dirs)


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_random_and_bayes_run_the_requested_number_of_trials(tmp_path, method):
    spec = parse_sweep(
        {
            "method": method,
            "parameters": {**TINY, "lr": {"min": 1e-4, "max": 1e-2, "distribution": "log_uniform_values"}},
        }
    )
    study = run_sweep(spec, options(tmp_path, trials=3))
    trials = complete(study)
    assert len(trials) == 3
    assert all(1e-4 <= t.params["learning_rate"] <= 1e-2 for t in trials)
    assert len({t.params["learning_rate"] for t in trials}) == 3
    again = run_sweep(spec, options(tmp_path, trials=3))  # running the same command again resumes: nothing to do
    assert len(complete(again)) == 3


def test_hyperband_prunes_a_bad_trial(tmp_path):
    spec = parse_sweep(
        {
            "method": "grid",
            "parameters": {
                **TINY,
                "epochs": {"value": 8},
                "lr": {"values": [1e-2, 5e-3, 3e-3, 8e-3, 1e-7, 1e-8, 1e-9]},
            },
            "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2},
        }
    )
    study = run_sweep(spec, options(tmp_path, trials=7))
    pruned = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.PRUNED]
    assert any(t.params["learning_rate"] < 1e-6 for t in pruned), "a hopeless learning rate should be pruned"
    assert all(len(t.intermediate_values) < 8 for t in pruned)  # stopped before the last epoch
    assert all((Path(t.user_attrs["run_dir"]) / "checkpoint.npz").is_file() for t in pruned)


def test_failed_trials_are_recorded_and_the_sweep_goes_on(tmp_path):
    spec = parse_sweep(
        {"method": "grid", "parameters": {**TINY, "o": {"values": ["sgd"]}, "lr": {"values": [1e9, 0.01]}}}
    )
    study = run_sweep(spec, options(tmp_path, trials=2))
    states = {t.params["learning_rate"]: t.state for t in study.get_trials()}
    assert states[0.01] == optuna.trial.TrialState.COMPLETE
    assert states[1e9] == optuna.trial.TrialState.FAIL
    failed = next(t for t in study.get_trials() if t.state == optuna.trial.TrialState.FAIL)
    assert "diverged" in failed.user_attrs["reason"]


def test_sweep_command_writes_results_and_best_config_replays(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        "method: random\nmetric: {name: val_accuracy, goal: maximize}\nparameters:\n"
        "  epochs: {value: 2}\n  batch_size: {value: 64}\n  hidden_size: {values: [8, 32]}\n"
        "  learning_rate: {min: 1e-3, max: 1e-2, distribution: log_uniform_values}\n"
    )
    out = tmp_path / "results"
    result = runner.invoke(app, ["sweep", str(sweep_file), "--trials", "3", "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "leaderboard (3 trials)" in result.output
    with open(out / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    assert float(rows[0]["val_accuracy"]) >= float(rows[-1]["val_accuracy"])
    for plot in ("optimization_history.png", "parallel_coordinates.png", "param_importances.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"
    best = json.loads((out / "best_config.json").read_text())
    replay = tmp_path / "replay"
    result = runner.invoke(app, ["train", "--config", str(out / "best_config.json"), "--out", str(replay)])
    assert result.exit_code == 0, result.output
    replayed = json.loads((replay / "config.json").read_text())
    assert {k: replayed[k] for k in best} == best
    original = json.loads((Path(rows[0]["run_dir"]) / "metrics.jsonl").read_text().splitlines()[-1])
    again = json.loads((replay / "metrics.jsonl").read_text().splitlines()[-1])
    assert again["val_accuracy"] == original["val_accuracy"]  # same config, same seed: the same run
    assert invoke_evaluate(rows[0]["run_dir"]).exit_code == 0


def invoke_evaluate(run_dir: str):
    return runner.invoke(app, ["evaluate", run_dir])


def test_sweep_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: grid\nparameters:\n  lr: {min: 0.1, max: 1.0}\n")
    result = runner.invoke(app, ["sweep", str(bad)])
    assert result.exit_code == 2
    assert "grid needs" in result.output
    assert runner.invoke(app, ["sweep", str(tmp_path / "missing.yaml")]).exit_code == 2


def test_train_config_file_and_flags(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 1\nbatch_size: 64\nhidden_sizes: [24, 12]\n-lr: 0.005\n")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--config", str(config), "-b", "32", "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert (saved["epochs"], saved["batch_size"], saved["hidden_sizes"], saved["learning_rate"]) == (
        1,
        32,
        [24, 12],
        0.005,
    )
    config.write_text("epochs: 1\nlearning_rat: 0.1\n")
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2
    assert "unknown parameter" in result.output


# --- sweep files as people wrote them ------------------------------------------------------------------------------

# The course's sweep configuration with its real values (the fixture file has the same names, smaller values)
COURSE_SWEEP_FULL = """
method: bayes
metric: {name: val_accuracy, goal: maximize}
parameters:
  epochs: {values: [5, 10]}
  hidden_layers: {values: [3, 4, 5]}
  hidden_size: {values: [32, 64, 128]}
  weight_decay: {values: [0, 0.0005, 0.5]}
  learning_rate: {values: [1e-3, 1e-4]}
  optimizer: {values: [sgd, momentum, nesterov, rmsprop, adam, nadam]}
  batch_size: {values: [16, 32, 64]}
  weight_init: {values: [random, Xavier]}
  activation: {values: [sigmoid, tanh, ReLU]}
"""


def test_the_course_sweep_file_reads_as_canonical_names_and_values(tmp_path):
    full = tmp_path / "course.yaml"
    full.write_text(COURSE_SWEEP_FULL)
    spec = load_sweep(full)  # validates all 11,664 combinations
    values = {p.name: p.values for p in spec.params}
    assert values == {
        "epochs": (5, 10),
        "num_layers": (3, 4, 5),
        "hidden_size": (32, 64, 128),
        "weight_decay": (0.0, 0.0005, 0.5),
        "learning_rate": (1e-3, 1e-4),
        "optimizer": ("sgd", "momentum", "nag", "rmsprop", "adam", "nadam"),
        "batch_size": (16, 32, 64),
        "weight_init": ("random", "xavier"),
        "activation": ("sigmoid", "tanh", "relu"),
    }
    assert load_sweep(COURSE_SWEEP).method == "bayes"


def test_the_course_sweep_file_starts_and_runs(tmp_path):
    out = tmp_path / "course"
    result = runner.invoke(app, ["sweep", str(COURSE_SWEEP), "--trials", "3", "--out", str(out)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "leaderboard (3 trials)" in result.output
    lines = result.output.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    study = optuna.load_study(study_name="course_sweep", storage=f"sqlite:///{out / 'sweep.db'}")
    done = complete(study)
    assert len(done) == 3
    names = {"epochs", "num_layers", "hidden_size", "weight_decay", "learning_rate", "optimizer", "batch_size"}
    assert set(done[0].params) == names | {"weight_init", "activation"}
    choices = done[0].distributions["optimizer"].choices
    assert choices == ("sgd", "momentum", "nag", "rmsprop", "adam", "nadam")  # the study stores canonical values
    assert done[0].distributions["activation"].choices == ("sigmoid", "tanh", "relu")
    for trial in done:
        config = json.loads((Path(trial.user_attrs["run_dir"]) / "config.json").read_text())
        assert config["optimizer"] == trial.params["optimizer"]
        assert config["num_layers"] == trial.params["num_layers"]


def test_spellings_of_one_value_are_one_grid_point(tmp_path):
    spec = parse_sweep(
        {"method": "grid", "parameters": {**TINY, "o": {"values": ["nag", "nesterov", "SGD", "Nesterov_Momentum"]}}}
    )
    assert spec.grid() == [{"optimizer": "nag"}, {"optimizer": "sgd"}]
    study = run_sweep(spec, options(tmp_path, trials=10))
    assert sorted(t.params["optimizer"] for t in complete(study)) == ["nag", "sgd"]


BAD_SWEEPS = [
    (
        "optimizer: {values: [adam, adamw]}",
        "parameters.optimizer: unknown optimizer 'adamw': fmnist's AdamW is adam with",
    ),
    ("activation: {values: [relu, softplus]}", "parameters.activation: unknown activation 'softplus'"),
    ("hiden_layers: {values: [1, 2]}", "unknown parameter 'hiden_layers' (did you mean hidden_layers?)"),
    ("batch_size: {values: [32, 0]}", "parameters.batch_size = 0: --batch_size must be > 0, got 0"),
    ("epochs: {values: [1, 2.5]}", "parameters.epochs: --epochs must be an integer, got 2.5"),
    ("dropout: {min: 0.0, max: 1.0}", "parameters.dropout = 1: --dropout must be in [0, 1), got 1.0"),
    ("learning_rate: {min: 0.0, max: 0.1}", "parameters.learning_rate = 0: --learning_rate must be > 0, got 0.0"),
    ("hidden_size: {min: 8.5, max: 64}", "parameters.hidden_size: --hidden_size is an integer"),
    (
        "loss: {values: [cross_entropy, mse]}\n  label_smoothing: {values: [0.0, 0.1]}",
        "parameters: loss = mean_squared_error, label_smoothing = 0.1: --label-smoothing applies to --loss "
        "cross_entropy only",
    ),
    (
        "loss: {value: mse}\n  label_smoothing: {min: 0.0, max: 0.2}",
        "parameters: loss = mean_squared_error, label_smoothing = 0.2: --label-smoothing applies",
    ),
]


@pytest.mark.parametrize(
    ("method", "lines", "message"),
    [
        (m, lines, message)
        for m in ("grid", "random", "bayes")
        for lines, message in BAD_SWEEPS
        if not (m == "grid" and "min:" in lines)
    ],
)
def test_a_bad_sweep_stops_before_the_first_trial(tmp_path, monkeypatch, method, lines, message):
    from fmnist.sweep import study as study_module

    monkeypatch.setattr(study_module, "work", lambda *a, **k: pytest.fail("a trial was started"))
    sweep_file = tmp_path / "bad.yaml"
    sweep_file.write_text(f"method: {method}\nparameters:\n  epochs: {{value: 1}}\n  {lines}\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["sweep", str(sweep_file), "--out", str(out)], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    output = [line for line in result.output.splitlines() if line.strip()]
    assert len(output) == 1, result.output
    assert message in output[0]
    assert not out.exists()  # no study, no run directory
    with pytest.raises(SweepError):
        load_sweep(sweep_file)  # the library stops there too


def test_only_combinations_a_sampler_can_draw_are_refused():
    # label smoothing with MSE is invalid, but no trial draws it here: the loss is fixed to cross-entropy
    spec = parse_sweep({"parameters": {"loss": {"value": "cross_entropy"}, "label_smoothing": {"values": [0.0, 0.1]}}})
    assert spec.fixed == {"loss": "cross_entropy"}


def test_a_changed_sweep_file_does_not_reuse_the_study(tmp_path):
    first = {"method": "grid", "parameters": {**TINY, "o": {"values": ["sgd", "nag"]}}}
    run_sweep(parse_sweep(first), options(tmp_path, trials=2))
    # the same space in other spellings and another order is the same study
    same = {"method": "grid", "parameters": {"optimizer": {"values": ["SGD", "nesterov"]}, **TINY}}
    assert len(complete(run_sweep(parse_sweep(same), options(tmp_path, trials=2)))) == 2
    changed = {"method": "grid", "parameters": {**TINY, "o": {"values": ["sgd", "adam"]}}}
    with pytest.raises(StudyChangedError, match=r"study 'sweep' .*parameters\.optimizer.*--study NEW_NAME"):
        open_study(parse_sweep(changed), options(tmp_path, trials=2))

    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("method: grid\nparameters:\n  epochs: {value: 2}\n  optimizer: {values: [sgd, adam]}\n")
    result = runner.invoke(app, ["sweep", str(sweep_file), "--out", str(tmp_path / "sweep")], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    output = [line for line in result.output.splitlines() if line.strip()]
    assert len(output) == 1, result.output
    assert "the sweep file changed since study 'sweep' was created" in output[0]
    assert "--study NEW_NAME" in output[0]
    assert "another --out" in output[0]
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{tmp_path / 'sweep' / 'sweep.db'}")
    assert len(study.trials) == 2  # nothing was added


def test_sweep_out_naming_a_file_is_one_line_exit_2(tmp_path):
    (tmp_path / "results").write_text("")
    result = runner.invoke(app, ["sweep", str(COURSE_SWEEP), "--out", str(tmp_path / "results")])
    assert result.exit_code == 2
    assert "is a file, not a directory" in result.output


def test_leaderboard_fits_80_columns_without_folding():
    from rich.console import Console

    from fmnist import names
    from fmnist.cli.sweep import _cell, leaderboard_table

    spec = parse_sweep(
        {
            "method": "random",
            "parameters": {
                "epochs": {"values": [5, 10]},
                "hidden_layers": {"values": [3, 4, 5]},
                "hidden_size": {"values": [32, 64, 128]},
                "weight_decay": {"values": [0, 0.0005, 0.5]},
                "learning_rate": {"min": 1e-4, "max": 1e-2, "distribution": "log_uniform_values"},
                "optimizer": {"values": ["sgd", "momentum", "nesterov", "rmsprop", "adam", "nadam"]},
                "batch_size": {"values": [16, 32, 64]},
                "weight_init": {"values": ["random", "Xavier"]},
                "activation": {"values": ["sigmoid", "tanh", "ReLU"]},
                "dropout": {"values": [0.0, 0.25]},
                "label_smoothing": {"values": [0.0, 0.1]},
                "lr_schedule": {"values": ["constant", "cosine"]},
                "seed": {"value": 3},
            },
        }
    )
    states = ["complete"] * 12 + ["pruned"] * 2 + ["failed"] * 6  # in leaderboard order
    rows = []
    for i, state in enumerate(states):
        row = {"trial": 100 + i, "state": state, "val_accuracy": 0.9 - i / 1000 if state != "failed" else None}
        for p in spec.searched:
            row[p.name] = p.values[i % len(p.values)] if p.values else 1e-4 * (1.3**i)
        rows.append({**row, "reason": "", "run_dir": f"/a/very/long/path/to/runs/t{i:03d}_with_a_long_name"})
    console = Console(width=80, record=True)
    table, left_out = leaderboard_table(rows, spec, console)
    console.print(table)
    text = console.export_text()
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert "/a/very/long/path" not in text  # run directories are in leaderboard.csv
    assert "…" not in text
    assert "leaderboard (best 15 of 20)" in lines[0]
    header = lines[1].split()
    assert header[:4] == ["#", "val", "acc", "state"]
    short_names = {names.short(p.name): p.name for p in spec.searched}
    assert "seed" not in header  # fixed: the same in every trial
    params = [short_names[h] for h in header[4:]]
    assert params == [p.name for p in spec.searched][: len(params)]  # in the sweep file's order, as many as fit
    assert len(params) >= 8
    assert left_out == [p.name for p in spec.searched][len(params) :]
    body = lines[3:]
    assert len(body) == 15
    for line, row in zip(body, rows, strict=False):  # every cell whole, on its row's one line
        metric = f"{row['val_accuracy']:.4f}" if row["val_accuracy"] is not None else "-"
        assert line.split() == [str(row["trial"]), metric, row["state"], *(_cell(row[p]) for p in params)]


def test_storage_passwords_are_not_printed():
    from fmnist.cli.sweep import _redact

    assert _redact("postgresql://me:s3cret@db/fmnist") == "postgresql://me:***@db/fmnist"
    assert _redact("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


# --- several processes on one study: real Fashion-MNIST (worker processes see the real registry) ----------------

needs_real_data = pytest.mark.skipif(
    not (SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file(), reason="Fashion-MNIST is not installed here"
)
SHARED_SWEEP = (
    "method: random\nparameters:\n  epochs: {value: 1}\n  batch_size: {value: 512}\n  hidden_size: {value: 16}\n"
    "  learning_rate: {min: 1e-3, max: 1e-2, distribution: log_uniform_values}\n"
)


def run_cli_sweep(tmp_path: Path, storage: str, trials: int, workers: int, study: str) -> subprocess.Popen:
    tmp_path.mkdir(parents=True, exist_ok=True)
    sweep_file = tmp_path / "shared.yaml"
    sweep_file.write_text(SHARED_SWEEP)
    env = {k: v for k, v in os.environ.items() if k != "FMNIST_DATA_DIR"}
    command = [sys.executable, "-m", "fmnist", "sweep", str(sweep_file), "--trials", str(trials)]
    command += ["--workers", str(workers), "--storage", storage, "--study", study, "--out", str(tmp_path / "out")]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def check_shared_study(storage: str, study_name: str, trials: int) -> None:
    study = optuna.load_study(study_name=study_name, storage=storage)
    done = complete(study)
    assert len(done) == trials
    assert len({t.number for t in done}) == trials
    assert len({t.params["learning_rate"] for t in done}) == trials  # no duplicates
    assert len({t.user_attrs["run_dir"] for t in done}) == trials
    assert all(Path(t.user_attrs["run_dir"], "summary.json").is_file() for t in done)  # no losses


@pytest.mark.slow
@needs_real_data
def test_two_worker_processes_share_one_sqlite_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = run_cli_sweep(tmp_path, storage, trials=5, workers=2, study="shared")
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    check_shared_study(storage, "shared", 5)


@pytest.mark.slow
@needs_real_data
def test_two_machines_on_postgresql(tmp_path):
    url = os.environ.get("FMNIST_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL server: set FMNIST_TEST_POSTGRES_URL (.ci/run starts one on 127.0.0.1)")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is not installed (pip install 'psycopg[binary]')")
    study = f"pg_{os.getpid()}_{tmp_path.name}"[:60]
    machines = [run_cli_sweep(tmp_path / f"m{i}", url, trials=4, workers=1, study=study) for i in range(2)]
    for proc in machines:
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output
    check_shared_study(url, study, 4)
