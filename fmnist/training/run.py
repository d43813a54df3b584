"""A whole training run: data, model, fit and a run directory that can be read, evaluated, reported and resumed.

``train_run`` drives the run lifecycle: it prepares the data and the trainer (or restores a checkpoint), calls
``on_train_begin`` on every callback, lets the trainer fit, finishes a completed run (best weights, ``model.npz``,
test evaluation, plots, ``summary.json``) and calls ``on_train_end`` with the outcome, whether the run completed,
was interrupted or diverged. What is written along the way is each callback's job (``fmnist.training.callbacks``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmnist.backend import get_backend
from fmnist.training.atomic import atomic_write
from fmnist.training.builder import build_trainer
from fmnist.training.callbacks import (
    Callback,
    CallbackList,
    Checkpointer,
    EarlyStopping,
    LayerStats,
    MetricsWriter,
    Outcome,
    ReportWriter,
)
from fmnist.training.checkpoint import CheckpointError, load_archive
from fmnist.training.config import TrainConfig
from fmnist.training.fit import DivergenceError, Trainer, TrainingInterrupted
from fmnist.training.inference import evaluate, predict
from fmnist.training.metrics import confusion_csv, confusion_matrix, per_class_accuracy
from fmnist.training.modelio import save_model
from fmnist.training.rundir import FILES, write_config, write_summary
from fmnist.training.splits import Splits, prepare_data


@dataclass
class RunInfo:
    """What callbacks may want to know about the run driving a trainer (``trainer.run``)."""

    config: TrainConfig
    run_dir: Path
    backend: Any
    splits: Splits = field(repr=False)
    resumed_at: int | None = None  # completed epochs of the checkpoint a resumed run continues
    previous_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        """Seconds of this run so far, earlier sessions of a resumed run included."""
        return self.previous_seconds + time.perf_counter() - self.started


def train_run(
    config: TrainConfig,
    run_dir: str | Path,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (or continue it with ``resume``) and return the summary.

    ``callbacks`` observe the run after the run directory's own (metrics, checkpoint, early stopping, layer
    statistics, report, W&B when ``config.wandb``); ``command`` (the argv as typed) is recorded in ``config.json``.

    Raises:
        DivergenceError: NaN/inf loss; ``checkpoint.npz`` keeps the last good epoch and ``summary.json`` says so.
        TrainingInterrupted: a callback asked to stop; ``checkpoint.npz`` is then exact.
        DataFileError, BackendUnavailableError, CheckpointError: as named.
    """
    run_dir = Path(run_dir)
    started = time.perf_counter()
    backend = get_backend(config.device)
    splits = prepare_data(config, backend)
    trainer = build_trainer(config, backend, splits)
    info = RunInfo(config, run_dir, backend, splits, started=started)
    if resume:
        meta, arrays = load_archive(run_dir / FILES["checkpoint"], "checkpoint")
        try:
            trainer.restore(meta, arrays)
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{run_dir / FILES['checkpoint']}: does not match this run's model ({err})") from err
        info.resumed_at, info.previous_seconds = trainer.epoch, float(meta.get("total_seconds", 0.0))
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, config, backend, (splits.mean, splits.std), command)
    trainer.run = info
    everyone = CallbackList(
        [
            MetricsWriter(run_dir / FILES["metrics"]),
            Checkpointer(run_dir / FILES["checkpoint"], info.elapsed),
            EarlyStopping(config.patience) if config.patience is not None else None,
            LayerStats(run_dir / FILES["layer_stats"]),
            ReportWriter(run_dir, splits.dataset),
            _wandb(config, run_dir) if config.wandb else None,
            *callbacks,
        ]
    )
    everyone.on_train_begin(trainer)
    try:
        trainer.fit(config.epochs, everyone)
    except TrainingInterrupted as err:
        everyone.on_train_end(trainer, Outcome("interrupted", error=err))
        raise
    except DivergenceError as err:
        summary = {"status": "diverged", "error": str(err), "epoch": err.epoch, "step": err.step}
        summary["last_good_epoch"] = trainer.epoch
        write_summary(run_dir, summary)
        everyone.on_train_end(trainer, Outcome("diverged", summary, err))
        raise
    summary = finish(trainer, info)
    everyone.on_train_end(trainer, Outcome("completed", summary))
    return summary


def finish(trainer: Trainer, info: RunInfo) -> dict[str, Any]:
    """A completed run's last records: the best weights (early stopping), ``model.npz``, the test evaluation,
    confusion matrix, plots and ``summary.json``; returns the summary."""
    from fmnist.training.plots import plot_confusion, plot_curves

    config, run_dir, splits = info.config, info.run_dir, info.splits
    model_epoch = trainer.epoch
    if trainer.keep_best and trainer.best_params is not None:
        trainer.restore_best()
        model_epoch = trainer.best_epoch
    model, names = trainer.model, splits.dataset.class_names
    save_model(run_dir / FILES["model"], model, config, names, (splits.mean, splits.std))
    test_loss, test_accuracy = evaluate(model, splits.test, trainer.loss_fn)
    matrix = confusion_matrix(splits.test.labels_host(), predict(model, splits.test), len(names))
    atomic_write(run_dir / FILES["confusion_csv"], confusion_csv(matrix, names))
    history = [m.to_dict() for m in trainer.history]
    plot_curves(history, run_dir / FILES["curves"], title=f"{config.dataset}: {run_dir.name}")
    plot_confusion(matrix, names, run_dir / FILES["confusion_png"], title=f"test accuracy {test_accuracy:.2%}")
    summary = {
        "status": "completed",
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "per_class_accuracy": dict(zip(names, per_class_accuracy(matrix).tolist(), strict=True)),
        "best_epoch": trainer.best_epoch,
        "model_epoch": model_epoch,
        "best_val_loss": trainer.best_val_loss if math.isfinite(trainer.best_val_loss) else None,
        "best_val_accuracy": next((m.val_accuracy for m in trainer.history if m.epoch == trainer.best_epoch), None),
        "epochs_run": trainer.epoch,
        "stopped_early": trainer.stop_training,
        "stop_reason": trainer.stop_reason,
        "total_seconds": info.elapsed(),
        "train_seconds": sum(m.seconds for m in trainer.history),
        "device": info.backend.name,
    }
    write_summary(run_dir, summary)
    return summary


def _wandb(config: TrainConfig, run_dir: Path) -> Callback:
    from fmnist.training.tracking import WandbLogger

    return WandbLogger(config, run_dir)
