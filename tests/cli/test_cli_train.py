"""`fmnist train|evaluate|predict|info` through CliRunner on tiny synthetic data, plus one real-data run."""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fmnist.cli import app
from fmnist.data import FASHION_MNIST, registry
from fmnist.files import load_archive
from fmnist.rundir import layout as rundir
from fmnist.rundir.driver import train_run
from fmnist.rundir.modelio import load_model
from fmnist.training import assemble as builder
from fmnist.training import splits as splits_module
from fmnist.training.config import TrainConfig
from fmnist.training.fit import TrainingInterrupted

from helpers import StopWhen

pytestmark = pytest.mark.usefixtures("tiny_fashion")

runner = CliRunner()
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FAST = ["-e", "2", "-b", "32", "-sz", "32", "-nhl", "1"]


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def train_ok(out: Path, *args: str):
    result = invoke("train", *FAST, "--out", str(out), *args)
    assert result.exit_code == 0, result.output
    return result


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_train_writes_a_complete_run_directory(tmp_path):
    out = tmp_path / "run"
    result = train_ok(out)
    assert "test accuracy" in result.output
    assert "epoch 2/2  train " in result.output
    for name in rundir.FILES.values():
        assert (out / name).is_file(), name
    metrics = read_metrics(out)
    assert [m["epoch"] for m in metrics] == [1, 2]
    keys = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds", "samples_per_second", "lr"}
    assert set(metrics[0]) == keys
    assert metrics[1]["train_loss"] < metrics[0]["train_loss"]
    assert metrics[1]["lr"] < metrics[0]["lr"]  # the default cosine schedule
    stats = [json.loads(line) for line in (out / "layer_stats.jsonl").read_text().splitlines()]
    assert [s["epoch"] for s in stats] == [1, 2]
    first = stats[0]["params"]["layers.0.weight"]
    assert first["shape"] == [784, 32]
    assert first["grad_rms"] > 0
    assert 0 < first["update_rms_ratio"] < 1
    assert "report" in result.output
    report = (out / "report.html").read_text()
    assert "layers.0.weight" in report
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.9  # the synthetic classes are easy
    assert {"test_loss", "best_epoch", "total_seconds", "device"} <= set(summary)
    config = json.loads((out / "config.json").read_text())
    assert config["environment"]["numpy"] == np.__version__
    assert config["seed"] == 0
    csv = (out / "confusion_matrix.csv").read_text().splitlines()
    assert len(csv) == 11
    assert csv[1].startswith('"T-shirt/top"')
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_every_da6401_flag_is_parsed_and_recorded(tmp_path, monkeypatch):
    calls = fake_wandb(monkeypatch)
    out = tmp_path / "run"
    args = ["-wp", "proj", "-we", "team", "-d", "fashion_mnist", "-e", "1", "-b", "16", "-l", "mean_squared_error"]
    args += ["-o", "nadam", "-lr", "0.002", "-m", "0.8", "-beta", "0.7", "-beta1", "0.85", "-beta2", "0.99"]
    args += ["-eps", "1e-6", "-w_d", "0.0005", "-w_i", "Xavier", "-nhl", "2", "-sz", "24", "-a", "tanh"]
    result = invoke("train", *args, "--out", str(out))
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    expected = {
        "wandb": True,
        "wandb_project": "proj",
        "wandb_entity": "team",
        "dataset": "fashion-mnist",
        "epochs": 1,
        "batch_size": 16,
        "loss": "mean_squared_error",
        "optimizer": "nadam",
        "learning_rate": 0.002,
        "momentum": 0.8,
        "beta": 0.7,
        "beta1": 0.85,
        "beta2": 0.99,
        "epsilon": 1e-6,
        "weight_decay": 0.0005,
        "weight_init": "xavier",
        "num_layers": 2,
        "hidden_size": 24,
        "activation": "tanh",
    }
    assert {k: config[k] for k in expected} == expected
    model, _ = load_model(out / "model.npz")
    assert model.sizes == [784, 24, 24, 10]
    assert model.activation.name == "tanh"
    assert calls["init"]["project"] == "proj"
    assert calls["init"]["entity"] == "team"
    assert calls["log"][0]["epoch"] == 1
    assert calls["finished"]
    assert calls["summary"]["status"] == "completed"
    assert calls["summary"]["test_accuracy"] == json.loads((out / "summary.json").read_text())["test_accuracy"]


def test_long_flags_and_extras(tmp_path):
    out = tmp_path / "run"
    args = ["--epochs", "1", "--batch_size", "50", "--optimizer", "momentum", "--learning_rate", "0.05"]
    args += ["--momentum", "0.5", "--weight_init", "he", "--activation", "relu", "--hidden-sizes", "48,16"]
    args += ["--val-fraction", "0.2", "--seed", "3", "--device", "cpu", "--no-standardize", "--loss", "cross_entropy"]
    result = invoke("train", *args, "--out", str(out))
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_sizes"] == [48, 16]
    assert config["val_fraction"] == 0.2
    assert config["standardize"] is False
    assert config["normalization"] == [0.0, 1.0]
    assert load_model(out / "model.npz")[0].sizes == [784, 48, 16, 10]
    assert "val 120" in result.output  # 20% of 600


def test_each_flag_changes_the_result(tmp_path):
    """A flag that is parsed and ignored is a bug: each of these changes the trained weights."""
    base = ["-e", "1", "-b", "32", "-sz", "16", "-nhl", "1", "-o", "nag", "-w_i", "random"]
    train_ok(tmp_path / "base", *base)
    reference = np.load(tmp_path / "base" / "model.npz")["layers.0.weight"]
    variations = {
        "m": ["-m", "0.5"],
        "lr": ["-lr", "0.01"],
        "w_d": ["-w_d", "0.1"],
        "seed": ["--seed", "1"],
        "b": ["-b", "64"],
        "l": ["-l", "mean_squared_error"],
        "a": ["-a", "sigmoid"],
    }
    for name, extra in variations.items():
        out = tmp_path / name
        result = invoke("train", *base, *extra, "--out", str(out))
        assert result.exit_code == 0, result.output
        assert not np.array_equal(np.load(out / "model.npz")["layers.0.weight"], reference), name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "adamw"], "unknown optimizer 'adamw': fmnist's AdamW is adam with --decoupled-weight-decay"),
        (["-o", "nesterof"], "did you mean nesterov?"),
        (["-a", "softplus"], "valid: identity, sigmoid, tanh, ReLU"),
        (["-w_i", "xavir"], "did you mean Xavier?"),
        (["-l", "hinge"], "valid: cross_entropy, mean_squared_error"),
        (["-d", "cifar10"], "cifar10"),
        (["--device", "tpu"], "valid: cpu, gpu, auto"),
        (["--lr-schedule", "linear"], "valid: constant, cosine, step"),
        (["-b", "0"], "--batch_size must be > 0"),
        (["-e", "-1"], "--epochs must be > 0"),
        (["-sz", "-3"], "--hidden_size must be > 0"),
        (["-lr", "0"], "--learning_rate must be > 0"),
        (["-lr", "-0.1"], "--learning_rate must be > 0"),
        (["--val-fraction", "1.5"], "--val-fraction must be in [0, 1)"),
        (["--val-fraction", "-0.1"], "--val-fraction must be in [0, 1)"),
        (["--val-fraction", "0", "--patience", "3"], "--patience watches the validation loss"),
        (["--hidden-sizes", "256,x"], "--hidden-sizes must be comma-separated integers"),
        (["--hidden-sizes", "256,0"], "--hidden-sizes must all be > 0"),
        (["-beta2", "1.0"], "--beta2 must be in [0, 1)"),
        (["--patience", "0"], "--patience must be > 0"),
        (["--resume", "/nonexistent/run"], "is not a resumable run"),
    ],
)
def test_bad_input_exits_2_before_loading_data(tmp_path, monkeypatch, args, message):
    monkeypatch.setattr(splits_module, "load_dataset", lambda *a, **k: pytest.fail("data was loaded"))
    result = invoke("train", *args, "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "run").exists()


def test_bad_input_is_one_line_on_stderr_from_the_console_script(tmp_path):
    (tmp_path / "a_file").write_text("")
    for args in (["-lr", "0"], ["-o", "adamw"], ["-o", "nesterof"], ["--out", str(tmp_path / "a_file")]):
        proc = subprocess.run(
            [sys.executable, "-m", "fmnist", "train", *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 2
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("error:")


def test_wandb_requested_but_missing_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails, find_spec raises: treat as absent
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    result = invoke("train", "--wandb", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert "pip install 'fmnist[wandb]'" in result.output


def test_out_dir_with_a_run_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    train_ok(out, "-e", "1")
    result = invoke("train", "-e", "1", "--out", str(out))
    assert result.exit_code == 2
    assert "--resume" in result.output


def test_interrupted_then_resumed_run_equals_an_uninterrupted_one(tmp_path):
    config = TrainConfig(epochs=3, batch_size=32, hidden_size=32, num_layers=1, data_dir=None)
    train_run(config, tmp_path / "straight")

    calls = {"n": 0}

    def stop_mid_epoch_two() -> bool:
        calls["n"] += 1
        return calls["n"] == 17 + 6  # asked before each step; 540 / 32 = 17 steps per epoch: stop after 5 of epoch 2

    with pytest.raises(TrainingInterrupted):
        train_run(config, tmp_path / "resumed", [StopWhen(stop_mid_epoch_two)])
    meta, arrays = load_archive(tmp_path / "resumed" / "checkpoint.npz", "checkpoint")
    assert meta["epoch"] == 1
    assert meta["in_epoch"]["position"] == 5
    assert "epoch_order" in arrays
    assert len(read_metrics(tmp_path / "resumed")) == 1

    result = invoke("train", "--resume", str(tmp_path / "resumed"))
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output

    def comparable(run: str) -> list[dict]:
        return [
            {k: v for k, v in m.items() if k not in ("seconds", "samples_per_second")}
            for m in read_metrics(tmp_path / run)
        ]

    assert comparable("resumed") == comparable("straight")
    straight = json.loads((tmp_path / "straight" / "summary.json").read_text())
    resumed = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    assert resumed["test_loss"] == straight["test_loss"]
    a, b = np.load(tmp_path / "straight" / "model.npz"), np.load(tmp_path / "resumed" / "model.npz")
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name])


def test_nan_loss_stops_with_epoch_step_and_hint_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = builder.get_loss
    calls = {"n": 0}

    def poisoned(name, **kwargs):
        loss_fn = real(name, **kwargs)

        def wrapped(logits, y):
            loss, dlogits = loss_fn(logits, y)
            calls["n"] += 1
            poisoned_from = 17 + 1 + 4  # epoch 1 = 17 training steps + 1 validation batch; then step 4 of epoch 2
            return (loss * float("nan"), dlogits) if calls["n"] >= poisoned_from else (loss, dlogits)

        return wrapped

    monkeypatch.setattr(builder, "get_loss", poisoned)
    out = tmp_path / "run"
    result = invoke("train", *FAST, "-e", "3", "--out", str(out))
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "diverged" in text
    assert "epoch 2, step 4" in text
    assert "lower learning rate" in text
    assert "checkpoint.npz" in text
    meta, _ = load_archive(out / "checkpoint.npz", "checkpoint")
    assert meta["epoch"] == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert summary["last_good_epoch"] == 1


def test_patience_stops_early(tmp_path, monkeypatch):
    from fmnist.training import fit

    losses = iter([0.5, 0.4, 0.45, 0.46, 0.47, 0.3, 0.2])
    real = fit.evaluate
    monkeypatch.setattr(fit, "evaluate", lambda *a, **k: (next(losses), real(*a, **k)[1]))
    out = tmp_path / "run"
    train_ok(out, "-e", "7", "--patience", "2")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == 4
    assert summary["best_epoch"] == 2
    assert summary["model_epoch"] == 2  # early stopping restores the best validation-loss weights
    assert summary["stopped_early"] is True


def test_evaluate_and_predict(tmp_path, tiny_fashion):
    out = tmp_path / "run"
    train_ok(out)
    result = invoke("evaluate", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert f"accuracy {summary['test_accuracy']:.2%}" in result.output
    assert "per-class accuracy" in result.output
    assert "Ankle boot" in result.output
    result = invoke("evaluate", str(out), "--split", "val")
    assert result.exit_code == 0
    assert "(60 samples)" in result.output

    result = invoke("predict", str(out), "--index", "3")
    assert result.exit_code == 0, result.output
    true_name = FASHION_MNIST.class_names[int(tiny_fashion["test_labels"][3])]
    assert f"true {true_name}" in result.output
    assert "%" in result.output

    import matplotlib.pyplot as plt

    png = tmp_path / "mine.png"
    plt.imsave(png, tiny_fashion["test_images"][3], cmap="gray", vmin=0, vmax=255)
    result = invoke("predict", str(out), "--image", str(png))
    assert result.exit_code == 0, result.output
    assert f"predicted {true_name}" in result.output

    assert invoke("predict", str(out), "--index", "100000").exit_code == 2
    assert invoke("predict", str(out)).exit_code == 2
    assert invoke("evaluate", str(tmp_path / "nowhere")).exit_code == 2


@pytest.mark.parametrize("damage", ["truncate", "foreign", "pickle", "checkpoint-as-model"])
def test_damaged_or_foreign_model_files_fail_clearly(tmp_path, damage):
    out = tmp_path / "run"
    train_ok(out, "-e", "1")
    model = out / "model.npz"
    if damage == "truncate":
        model.write_bytes(model.read_bytes()[:100])
    elif damage == "foreign":
        np.savez(model, weights=np.ones(3))
    elif damage == "pickle":
        np.savez(model, evil=np.array([{"code": "print('pwned')"}], dtype=object))
    else:
        model.write_bytes((out / "checkpoint.npz").read_bytes())
    result = invoke("evaluate", str(out))
    assert result.exit_code == 1
    assert "model.npz" in result.output
    assert {
        "truncate": "damaged",
        "foreign": "not an fmnist model",
        "pickle": "damaged",
        "checkpoint-as-model": "checkpoint",
    }[damage] in result.output


def test_damaged_checkpoint_on_resume_fails_clearly(tmp_path):
    config = TrainConfig(epochs=2, batch_size=32, hidden_size=16, num_layers=1)
    with pytest.raises(TrainingInterrupted):
        train_run(config, tmp_path / "run", [StopWhen(lambda: True)])
    (tmp_path / "run" / "checkpoint.npz").write_bytes(b"PK\x03\x04 not really a zip")
    result = invoke("train", "--resume", str(tmp_path / "run"))
    assert result.exit_code == 1
    assert "checkpoint.npz: damaged" in " ".join(result.output.split())


def test_info_lists_devices_and_blas():
    result = invoke("info")
    assert result.exit_code == 0
    assert "BLAS" in result.output
    assert "gpu" in result.output


def fake_wandb(monkeypatch) -> dict:
    """A stand-in wandb module recording what fmnist sends it (no network, no service process)."""
    calls: dict = {"log": [], "finished": False, "summary": {}}
    module = types.ModuleType("wandb")
    module.__spec__ = importlib.machinery.ModuleSpec("wandb", None)

    class Run:
        summary = calls["summary"]  # wandb's run.summary is a dict-like

        def log(self, metrics, step=None):
            calls["log"].append(metrics)

        def finish(self):
            calls["finished"] = True

    def init(**kwargs):
        calls["init"] = kwargs
        return Run()

    module.init = init
    module.run = None  # no run open
    monkeypatch.setitem(sys.modules, "wandb", module)
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)  # logged in: fmnist checks that before any training
    return calls


@pytest.mark.slow
@pytest.mark.skipif(not (SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file(), reason="no Fashion-MNIST here")
def test_one_epoch_on_the_real_data_beats_80_percent(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.DATASETS, "fashion-mnist", FASHION_MNIST)
    monkeypatch.delenv("FMNIST_DATA_DIR")
    out = tmp_path / "real"
    result = invoke("train", "-e", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.80
    assert "system: /usr/share/datasets/fashion-mnist" in result.output


def test_preset_best_applies_its_values_and_command_line_flags_win(tmp_path):
    out = tmp_path / "run"
    result = invoke("train", "--preset", "best", "-e", "1", "-b", "64", "--out", str(out))
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["epochs"] == 1  # given on the command line
    assert config["batch_size"] == 64
    assert config["dropout"] == 0.2  # from the preset
    assert config["hidden_sizes"] == [1024, 512]
    assert config["augment_shift"] == 1
    assert config["decoupled_weight_decay"] is True
    result = invoke("train", "--preset", "best", "-e", "1", "-nhl", "1", "-sz", "32", "--out", str(tmp_path / "r2"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r2" / "config.json").read_text())["hidden_sizes"] is None


def test_resume_is_exact_with_dropout_and_augmentation(tmp_path):
    config = TrainConfig(
        epochs=2, batch_size=32, hidden_size=32, num_layers=1, dropout=0.3, augment_shift=2, augment_flip=True
    )
    train_run(config, tmp_path / "straight")
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] == 17 + 3

    with pytest.raises(TrainingInterrupted):
        train_run(config, tmp_path / "resumed", [StopWhen(stop)])
    assert invoke("train", "--resume", str(tmp_path / "resumed")).exit_code == 0
    a, b = np.load(tmp_path / "straight" / "model.npz"), np.load(tmp_path / "resumed" / "model.npz")
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dropout", "1.0"], "--dropout must be in [0, 1)"),
        (["--label-smoothing", "0.1", "-l", "mean_squared_error"], "cross_entropy only"),
        (["--clip-grad-norm", "0"], "--clip-grad-norm must be > 0"),
        (["--augment-shift", "20"], "--augment-shift must be in 0..8"),
        (["--lr-schedule", "step", "--lr-gamma", "0"], "--lr-gamma must be in (0, 1]"),
        (["--preset", "fastest"], "unknown preset 'fastest'; valid: best, cnn-best, cnn-long"),
    ],
)
def test_bad_regularisation_options_exit_2(tmp_path, args, message):
    result = invoke("train", *args, "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_every_spelling_of_a_value_is_accepted_and_stored_canonical(tmp_path):
    out = tmp_path / "run"
    args = ["-o", "nesterov", "-a", "relu", "-w_i", "glorot", "-d", "Fashion-MNIST", "-l", "MSE"]
    train_ok(out, *args, "--lr-schedule", "Cosine", "--device", "CPU")
    config = json.loads((out / "config.json").read_text())
    expected = {"optimizer": "nag", "activation": "relu", "weight_init": "xavier", "dataset": "fashion-mnist"}
    expected |= {"loss": "mean_squared_error", "lr_schedule": "cosine", "device": "cpu"}
    assert {k: config[k] for k in expected} == expected


def test_help_lists_the_choices():
    result = invoke("train", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for listing in (
        "sgd, momentum, nag, rmsprop, adam, nadam",
        "identity, sigmoid, tanh, ReLU",
        "random, Xavier, he",
        "cross_entropy, mean_squared_error",
        "fashion_mnist, mnist",
        "constant, cosine, step",
    ):
        assert listing in text, listing


@pytest.mark.parametrize("where", ["file", "below a file"])
def test_out_naming_a_file_is_one_line_exit_2(tmp_path, monkeypatch, where):
    monkeypatch.setattr(splits_module, "load_dataset", lambda *a, **k: pytest.fail("data was loaded"))
    (tmp_path / "results").write_text("not a directory")
    out = tmp_path / "results" if where == "file" else tmp_path / "results" / "run"
    result = invoke("train", "--out", str(out))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert f"--out: {tmp_path / 'results'} is a file, not a directory" in lines[0]
    assert (tmp_path / "results").read_text() == "not a directory"


def test_epoch_line_fits_the_width():
    from fmnist.cli.progress import epoch_line

    m = types.SimpleNamespace(
        epoch=2, train_loss=0.45671, train_accuracy=0.8412, val_loss=0.40123, val_accuracy=0.8567, seconds=3.42
    )
    m.samples_per_second = 54881.2
    line = epoch_line(m, 20)
    assert line == "epoch  2/20  train 0.4567 84.12%  val 0.4012 85.67%  3.4s  54,881 samples/s"
    worst = types.SimpleNamespace(
        epoch=1000,
        train_loss=12.3456,
        train_accuracy=1.0,
        val_loss=12.3456,
        val_accuracy=1.0,
        seconds=12345.6,
        samples_per_second=12_345_678.0,
    )
    for width in (80, 72, 60):
        line = epoch_line(worst, 1000, width)
        assert len(line) <= width
        assert line.startswith("epoch 1000/1000  train 12.3456 100.00%")
    no_val = types.SimpleNamespace(**{**vars(m), "val_loss": None})
    assert "val" not in epoch_line(no_val, 20)


def test_piped_output_is_plain_lines_within_80_columns(tmp_path):
    """Through a pipe: no progress-bar redraws or escape codes, one line per epoch, nothing wider than 80."""
    script = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parents[1])!r})
from helpers import StopWhen, learnable_arrays, write_tiny_mnist
from fmnist.data import FASHION_MNIST, registry
spec, _ = write_tiny_mnist(Path({str(tmp_path / "data")!r}), learnable_arrays(), base=FASHION_MNIST)
registry.DATASETS["fashion-mnist"] = spec
sys.argv = ["fmnist", "train", *{FAST!r}, "-e", "3", "--out", {str(tmp_path / "run")!r}]
from fmnist.cli import main
main()
"""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TERM")}
    env |= {"FMNIST_DATA_DIR": str(tmp_path / "data"), "FMNIST_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for debris in ("\r", "\x1b", "━", "╸"):
        assert debris not in out, repr(debris)
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert all(line.strip() for line in lines), "blank lines"
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"]
    assert all("train " in line and "val " in line and "samples/s" in line for line in epochs)


def test_model_and_checkpoint_files_of_format_version_1_still_load(tmp_path):
    """Files written before models recorded their architecture (format 1: sizes and activation, no buffers)."""
    import json as json_module

    out = tmp_path / "run"
    train_ok(out, "-e", "1")
    with np.load(out / "model.npz") as archive:
        arrays = {name: archive[name] for name in archive.files if name != "__meta__"}
        meta = json_module.loads(str(archive["__meta__"]))
    old = {k: meta[k] for k in ("format", "kind", "dataset", "class_names", "normalization", "sizes", "activation")}
    np.savez(out / "model.npz", __meta__=np.array(json_module.dumps({**old, "version": 1})), **arrays)
    model, loaded = load_model(out / "model.npz")
    assert loaded["version"] == 1
    assert model.sizes == [784, 32, 10]
    result = invoke("evaluate", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert f"accuracy {summary['test_accuracy']:.2%}" in result.output
