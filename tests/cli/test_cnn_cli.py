"""CNNs through the command line on tiny data: train, exact resume with batch norm, dropout and augmentation,
evaluate and predict from the model file's architecture, presets, bad options, and a sweep over CNN widths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fmnist.cli import app
from fmnist.rundir.driver import train_run
from fmnist.rundir.modelio import load_model
from fmnist.training.config import PRESETS, TrainConfig
from fmnist.training.fit import TrainingInterrupted

from helpers import StopWhen

pytestmark = pytest.mark.usefixtures("tiny_fashion")

runner = CliRunner()
CNN = ["--model", "cnn", "--conv-channels", "4,8", "--convs-per-block", "1,2", "-nhl", "1", "-sz", "16", "-b", "32"]


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "120"})


def test_train_evaluate_and_predict_a_cnn(tmp_path):
    out = tmp_path / "run"
    result = invoke(
        "train", *CNN, "-e", "4", "-lr", "3e-3", "--dropout", "0.2", "--conv-dropout", "0.1", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    assert "CNN 1x28x28-conv4-bn-pool2-relu-conv8-bn-relu-conv8-bn-pool2-relu-drop0.1-fc16" in result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["model"], config["conv_channels"], config["convs_per_block"]) == ("cnn", [4, 8], [1, 2])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.9  # the synthetic classes are easy
    model, meta = load_model(out / "model.npz")
    assert meta["architecture"]["model"] == "sequential"
    assert "2.running_var" in model.state_dict()  # batch norm statistics travel with the weights
    evaluation = invoke("evaluate", str(out))
    assert evaluation.exit_code == 0, evaluation.output
    assert f"accuracy {summary['test_accuracy']:.2%}" in evaluation.output
    prediction = invoke("predict", str(out), "--index", "3")
    assert prediction.exit_code == 0, prediction.output
    assert "predicted" in prediction.output
    import matplotlib.pyplot as plt

    plt.imsave(tmp_path / "mine.png", np.random.default_rng(0).integers(0, 255, (28, 28)).astype(np.uint8), cmap="gray")
    own = invoke("predict", str(out), "--image", str(tmp_path / "mine.png"))
    assert own.exit_code == 0, own.output
    assert "predicted" in own.output
    assert (out / "report.html").is_file()


def test_a_cnn_resumes_exactly_with_batch_norm_dropout_and_augmentation(tmp_path):
    config = TrainConfig(
        model="cnn", conv_channels=(4, 8), convs_per_block=(1, 2), hidden_sizes=(16,), batch_size=32, epochs=2,
        dropout=0.2, conv_dropout=0.1, augment_shift=2, augment_flip=True, patience=5,
    )  # fmt: skip
    train_run(config, tmp_path / "straight")
    calls = {"n": 0}

    def stop() -> bool:  # 540 / 32 = 17 steps per epoch: stop in the middle of epoch 2
        calls["n"] += 1
        return calls["n"] == 17 + 6

    with pytest.raises(TrainingInterrupted):
        train_run(config, tmp_path / "resumed", [StopWhen(stop)])
    train_run(config, tmp_path / "resumed", resume=True)
    with np.load(tmp_path / "straight" / "model.npz") as a, np.load(tmp_path / "resumed" / "model.npz") as b:
        assert "2.running_mean" in a.files
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_the_cnn_preset_and_its_dense_head(tmp_path):
    out = tmp_path / "run"
    result = invoke(
        "train", "--preset", "cnn-best", "-e", "1", "--conv-channels", "4,8", "-sz", "16", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    preset = PRESETS["cnn-best"]
    for key in ("model", "lr_schedule", "label_smoothing", "augment_shift", "augment_flip", "conv_dropout"):
        assert config[key] == preset[key]
    assert config["conv_channels"] == [4, 8]  # typed on the command line: wins over the preset
    assert config["hidden_sizes"] is None  # -sz replaces the preset's head widths (-nhl/-sz are the dense head)
    assert config["hidden_size"] == 16


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--convs-per-block", "1,2,3"], "--convs-per-block takes one count > 0, or one per --conv-channels block"),
        (["--kernel-size", "4"], "--kernel-size must be odd"),
        (["--conv-channels", "8,8,8,8,8"], "at most 4 blocks"),
        (["--conv-channels", "8,x"], "--conv-channels"),
        (["--conv-dropout", "1"], "--conv-dropout must be in [0, 1)"),
        (["--model", "rnn"], "unknown model 'rnn'"),
    ],
)
def test_bad_cnn_options_exit_2_before_any_work(tmp_path, args, message):
    result = invoke("train", *CNN, *args, "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "run").exists()


def test_a_sweep_over_cnn_widths(tmp_path):
    sweep = tmp_path / "cnn.yaml"
    sweep.write_text(
        "method: grid\n"
        "metric: {name: val_accuracy, goal: maximize}\n"
        "parameters:\n"
        "  model: {value: cnn}\n"
        "  epochs: {value: 1}\n"
        "  batch_size: {value: 64}\n"
        "  hidden_sizes: {value: [16]}\n"
        "  conv_channels: {values: [[4], [4, 8]]}\n"
    )
    result = invoke("sweep", str(sweep), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "out" / "leaderboard.csv").read_text().splitlines()
    assert len(rows) == 3
    assert all(",complete," in row for row in rows[1:])
