"""The run lifecycle: callbacks called in order with what they need, every outcome reported, the run directory's
own callbacks (metrics, checkpoint, layer statistics, report), and training on the whole split (--val-fraction 0)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from fmnist.cli import app
from fmnist.rundir.driver import train_run
from fmnist.sweep.spec import SweepError, parse_sweep
from fmnist.training import assemble as builder
from fmnist.training.callbacks import Callback
from fmnist.training.config import TrainConfig
from fmnist.training.fit import DivergenceError, TrainingInterrupted

from helpers import StopWhen

pytestmark = pytest.mark.usefixtures("tiny_fashion")

STEPS = 17  # 540 training images / batch 32


class Recorder(Callback):
    """Records every hook call, and what the run directory holds when it is called."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.calls: list[tuple] = []

    def on_train_begin(self, trainer):
        self.calls.append(("begin", trainer.run.resumed_at, trainer.run.splits.train.n))

    def on_step_end(self, trainer, step):
        self.calls.append(("step", step))

    def on_progress(self, trainer, progress):
        self.calls.append(("progress", progress.epoch, progress.samples))

    def on_epoch_end(self, trainer, metrics):
        lines = (self.run_dir / "metrics.jsonl").read_text().splitlines()
        saved = (self.run_dir / "checkpoint.npz").is_file()
        self.calls.append(("epoch", metrics.epoch, len(lines), saved))

    def on_train_end(self, trainer, outcome):
        report = (self.run_dir / "report.html").is_file()
        self.calls.append(("end", outcome.status, outcome.summary.get("status"), report))


def config(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 32, "hidden_size": 32, "num_layers": 1, **overrides})


def test_callbacks_are_called_in_order_after_the_run_directory_s_own(tmp_path):
    run_dir = tmp_path / "run"
    recorder = Recorder(run_dir)
    train_run(config(), run_dir, [recorder])
    kinds = [c[0] for c in recorder.calls]
    assert kinds[0] == "begin"
    assert kinds[-1] == "end"
    assert recorder.calls[0] == ("begin", None, 540)
    assert [c[1] for c in recorder.calls if c[0] == "step"] == list(range(1, 2 * STEPS + 1))
    epochs = [c for c in recorder.calls if c[0] == "epoch"]
    assert epochs == [("epoch", 1, 1, True), ("epoch", 2, 2, True)]  # metrics line and checkpoint already written
    first_epoch = kinds[: kinds.index("epoch")]
    assert first_epoch.count("step") == STEPS
    assert first_epoch[-1] == "progress"  # the last report of the epoch, then the epoch's end
    assert recorder.calls[-1] == ("end", "completed", "completed", True)  # summary written, report too


def test_an_interrupted_run_ends_with_its_outcome_checkpoint_and_report(tmp_path):
    run_dir = tmp_path / "run"
    recorder = Recorder(run_dir)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] == STEPS + 5

    with pytest.raises(TrainingInterrupted):
        train_run(config(), run_dir, [StopWhen(stop), recorder])
    assert recorder.calls[-1] == ("end", "interrupted", None, True)
    assert "resume" in (run_dir / "report.html").read_text()
    resumed = Recorder(run_dir)
    train_run(config(), run_dir, [resumed], resume=True)
    assert resumed.calls[0] == ("begin", 1, 540)
    assert [c[1] for c in resumed.calls if c[0] == "step"] == list(range(STEPS + 5, 2 * STEPS + 1))


def test_a_diverged_run_ends_with_its_outcome_and_a_report(tmp_path, monkeypatch):
    real = builder.get_loss

    def poisoned(name, **kwargs):
        loss_fn = real(name, **kwargs)

        def wrapped(logits, y):
            loss, dlogits = loss_fn(logits, y)
            return loss * math.nan, dlogits

        return wrapped

    monkeypatch.setattr(builder, "get_loss", poisoned)
    run_dir = tmp_path / "run"
    recorder = Recorder(run_dir)
    with pytest.raises(DivergenceError):
        train_run(config(), run_dir, [recorder])
    assert recorder.calls[-1] == ("end", "diverged", "diverged", True)


def test_early_stopping_is_a_callback_that_keeps_the_best_epoch(tmp_path, monkeypatch):
    from fmnist.training import fit

    losses = iter([0.5, 0.4, 0.45, 0.46, 0.3])
    real = fit.evaluate
    monkeypatch.setattr(fit, "evaluate", lambda *a, **k: (next(losses), real(*a, **k)[1]))

    class Snapshot(Callback):
        def on_epoch_end(self, trainer, metrics):
            if metrics.epoch == 2:
                self.weights = trainer.model.backend.to_numpy(trainer.model.flat.data).copy()

    snapshot = Snapshot()
    summary = train_run(config(epochs=5, patience=2), tmp_path / "run", [snapshot])
    assert summary["stopped_early"]
    assert summary["stop_reason"] == "early stopping: no lower validation loss for 2 epochs"
    assert (summary["epochs_run"], summary["best_epoch"], summary["model_epoch"]) == (4, 2, 2)
    with np.load(tmp_path / "run" / "model.npz") as saved:
        weights = np.concatenate([saved[f"layers.{i}.{k}"].ravel() for i in (0, 1) for k in ("weight", "bias")])
    np.testing.assert_array_equal(weights, snapshot.weights)


def test_val_fraction_zero_trains_on_the_whole_training_split(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "-e", "2", "-b", "32", "-sz", "16", "--val-fraction", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "train 600 · no validation" in result.output
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["val_loss"] for m in lines] == [None, None]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_epoch"] == summary["model_epoch"] == 2
    assert summary["best_val_loss"] is None
    evaluation = runner.invoke(app, ["evaluate", str(out), "--split", "val"])
    assert evaluation.exit_code == 2
    assert "no validation split" in evaluation.output
    assert runner.invoke(app, ["evaluate", str(out)]).exit_code == 0


def test_val_fraction_zero_refuses_a_validation_metric_in_sweeps():
    raw = {"method": "grid", "metric": {"name": "val_accuracy"}, "parameters": {"val_fraction": {"values": [0.1, 0]}}}
    with pytest.raises(SweepError, match="val_fraction = 0: --val-fraction 0 leaves no validation split"):
        parse_sweep(raw)
    raw["metric"] = {"name": "train_loss"}
    assert parse_sweep(raw).metric == "train_loss"


def test_layer_stats_follow_the_epochs_and_survive_a_resume(tmp_path):
    run_dir = tmp_path / "run"
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] == STEPS + 3

    with pytest.raises(TrainingInterrupted):
        train_run(config(), run_dir, [StopWhen(stop)])
    train_run(config(), run_dir, resume=True)
    lines = [json.loads(line) for line in (run_dir / "layer_stats.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    stats = lines[1]["params"]
    assert set(stats) == {"layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"}
    w = stats["layers.1.weight"]
    assert w["shape"] == [32, 10]
    assert w["weight_abs_max"] >= abs(w["weight_mean"])
    assert w["grad_abs_max"] >= w["grad_rms"] > 0
    assert np.isfinite(w["update_rms_ratio"])
