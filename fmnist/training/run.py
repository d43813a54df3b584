"""A whole training run: data, model, fit, and a run directory that can be read, evaluated and resumed.

Run directory files: ``config.json``, ``metrics.jsonl``, ``summary.json``, ``model.npz``, ``checkpoint.npz``,
``curves.png``, ``confusion_matrix.png`` and ``confusion_matrix.csv``; every one is written atomically.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from fmnist import __version__
from fmnist.backend import Backend, NoiseStream, get_backend
from fmnist.data import Dataset, DeviceData, load_dataset, pixel_stats, stratified_split
from fmnist.data.augment import augment_batch
from fmnist.network import MLP, get_loss, get_optimizer
from fmnist.training.atomic import atomic_write
from fmnist.training.checkpoint import CheckpointError, load_archive, save_archive
from fmnist.training.config import TrainConfig
from fmnist.training.fit import DivergenceError, EpochMetrics, Progress, Trainer, TrainingInterrupted, predict
from fmnist.training.metrics import confusion_csv, confusion_matrix, per_class_accuracy
from fmnist.training.schedules import lr_factor

FILES = {
    "config": "config.json",
    "metrics": "metrics.jsonl",
    "summary": "summary.json",
    "model": "model.npz",
    "checkpoint": "checkpoint.npz",
    "curves": "curves.png",
    "confusion_png": "confusion_matrix.png",
    "confusion_csv": "confusion_matrix.csv",
}


@dataclass
class RunCallbacks:
    """Hooks the CLI (or a sweep) uses to watch a run; all optional."""

    on_start: Callable[[dict[str, Any]], None] | None = None
    on_progress: Callable[[Progress], None] | None = None
    on_epoch: Callable[[EpochMetrics], None] | None = None
    should_stop: Callable[[], bool] | None = None


@dataclass
class Splits:
    """Device data for one run: training, validation and test sets, normalised alike."""

    train: DeviceData
    val: DeviceData
    test: DeviceData
    mean: float
    std: float
    dataset: Dataset = field(repr=False)


def default_run_dir(config: TrainConfig, root: str | Path = "runs") -> Path:
    """``runs/<timestamp>-<optimizer>-<activation>-<widths>``, unique."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    widths = "x".join(map(str, config.hidden)) or "linear"
    base = Path(root) / f"{stamp}-{config.optimizer}-{config.activation}-{widths}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def prepare_data(config: TrainConfig, backend: Backend, progress: Any = None) -> Splits:
    """Load the dataset, split train/validation (seeded, stratified) and move everything to the device once."""
    dataset = load_dataset(config.dataset, data_dir=config.data_dir, progress=progress)
    train_idx, val_idx = stratified_split(dataset.train_labels, config.val_fraction, config.seed)
    mean, std = pixel_stats(dataset.train_images, train_idx) if config.standardize else (0.0, 1.0)
    full = DeviceData(backend, dataset.train_images, dataset.train_labels)
    test = DeviceData(backend, dataset.test_images, dataset.test_labels).normalized(mean, std)
    return Splits(
        train=full.subset(train_idx).normalized(mean, std),
        val=full.subset(val_idx).normalized(mean, std),
        test=test,
        mean=mean,
        std=std,
        dataset=dataset,
    )


def build(config: TrainConfig, backend: Backend, splits: Splits) -> Trainer:
    """The model, optimizer, loss and trainer a configuration describes."""
    model = MLP(
        config.sizes(splits.train.num_features, len(splits.dataset.class_names)),
        activation=config.activation,
        weight_init=config.weight_init,
        backend=backend,
        seed=config.seed,
        dropout=config.dropout,
    )
    optimizer = get_optimizer(config.optimizer, model.parameters(), **config.optimizer_kwargs())
    steps_per_epoch = math.ceil(splits.train.n / config.batch_size)
    schedule = lr_factor(
        config.lr_schedule,
        config.epochs * steps_per_epoch,
        round(config.warmup_epochs * steps_per_epoch),
        step_every=config.lr_step_epochs * steps_per_epoch,
        gamma=config.lr_gamma,
    )
    augment = None
    if config.augment_shift or config.augment_flip:

        def augment(x: Any, noise: Any) -> Any:
            return augment_batch(backend, x, noise, max_shift=config.augment_shift, flip=config.augment_flip)

    return Trainer(
        model=model,
        optimizer=optimizer,
        loss_fn=get_loss(config.loss, label_smoothing=config.label_smoothing),
        train=splits.train,
        val=splits.val,
        batch_size=config.batch_size,
        rng=backend.rng((config.seed, 1)),  # its own stream: shuffles do not depend on the weight draws
        patience=config.patience,
        lr_factor=None if config.lr_schedule == "constant" and not config.warmup_epochs else schedule,
        noise=NoiseStream(config.seed),  # dropout masks and augmentation: counter-based, the same on every device
        augment=augment,
    )


def environment(backend: Backend) -> dict[str, Any]:
    """Versions and device facts recorded in ``config.json``."""
    return {"fmnist": __version__, "python": platform.python_version(), **backend.info()}


def train_run(
    config: TrainConfig,
    run_dir: str | Path,
    callbacks: RunCallbacks | None = None,
    resume: bool = False,
    tracker: Any = None,
) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (or continue it with ``resume``) and return the summary.

    Raises:
        DivergenceError: NaN/inf loss; ``checkpoint.npz`` keeps the last good epoch and ``summary.json`` says so.
        TrainingInterrupted: ``callbacks.should_stop()`` asked to stop; ``checkpoint.npz`` is then exact.
        DataFileError, BackendUnavailableError, CheckpointError: as named.
    """
    callbacks = callbacks or RunCallbacks()
    run_dir = Path(run_dir)
    started = time.perf_counter()
    backend = get_backend(config.device)
    splits = prepare_data(config, backend)
    trainer = build(config, backend, splits)
    previous_seconds = 0.0
    if resume:
        meta, arrays = load_archive(run_dir / FILES["checkpoint"], "checkpoint")
        try:
            trainer.restore(meta, arrays)
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{run_dir / FILES['checkpoint']}: does not match this run's model ({err})") from err
        previous_seconds = float(meta.get("total_seconds", 0.0))
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        record = {**config.to_dict(), "environment": environment(backend), "normalization": [splits.mean, splits.std]}
        atomic_write(run_dir / FILES["config"], json.dumps(record, indent=2) + "\n")
    if callbacks.on_start is not None:
        callbacks.on_start(
            {
                "run_dir": str(run_dir),
                "backend": backend,
                "files": splits.dataset.files,
                "sizes": trainer.model.sizes,
                "train": splits.train.n,
                "val": splits.val.n,
                "test": splits.test.n,
                "resumed_at": trainer.epoch if resume else None,
            }
        )

    def elapsed() -> float:
        return previous_seconds + time.perf_counter() - started

    def on_epoch(metrics: EpochMetrics) -> None:
        _save_checkpoint(run_dir, trainer, elapsed())
        lines = "".join(json.dumps(m.to_dict()) + "\n" for m in trainer.history)
        atomic_write(run_dir / FILES["metrics"], lines)
        if tracker is not None:
            tracker.log(metrics.to_dict())
        if callbacks.on_epoch is not None:
            callbacks.on_epoch(metrics)

    try:
        trainer.fit(config.epochs, callbacks.on_progress, on_epoch, callbacks.should_stop)
    except TrainingInterrupted:
        _save_checkpoint(run_dir, trainer, elapsed())
        raise
    except DivergenceError as err:
        summary = {"status": "diverged", "error": str(err), "epoch": err.epoch, "step": err.step}
        summary["last_good_epoch"] = trainer.epoch
        atomic_write(run_dir / FILES["summary"], json.dumps(summary, indent=2) + "\n")
        raise
    return _finish(config, run_dir, trainer, splits, backend, elapsed)


def _save_checkpoint(run_dir: Path, trainer: Trainer, total_seconds: float) -> None:
    meta, arrays = trainer.state()
    meta["total_seconds"] = total_seconds
    save_archive(run_dir / FILES["checkpoint"], "checkpoint", meta, arrays)


def _finish(
    config: TrainConfig, run_dir: Path, trainer: Trainer, splits: Splits, backend: Backend, elapsed: Any
) -> dict[str, Any]:
    from fmnist.training.fit import evaluate
    from fmnist.training.plots import plot_confusion, plot_curves

    model_epoch = trainer.epoch
    if trainer.stopped_early or config.patience is not None:  # early stopping keeps the best validation loss
        trainer.restore_best()
        model_epoch = trainer.best_epoch
    model = trainer.model
    save_model(run_dir / FILES["model"], model, config, splits.dataset.class_names, (splits.mean, splits.std))
    test_loss, test_accuracy = evaluate(model, splits.test, trainer.loss_fn)
    matrix = confusion_matrix(splits.test.labels_host(), predict(model, splits.test), len(splits.dataset.class_names))
    names = splits.dataset.class_names
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
        "stopped_early": trainer.stopped_early,
        "total_seconds": elapsed(),
        "train_seconds": sum(m.seconds for m in trainer.history),
        "device": backend.name,
    }
    atomic_write(run_dir / FILES["summary"], json.dumps(summary, indent=2) + "\n")
    return summary


def save_model(
    path: str | Path, model: MLP, config: TrainConfig, class_names: tuple[str, ...], norm: tuple[float, float]
) -> None:
    """Write ``model.npz``: every parameter by name plus what is needed to rebuild and use it."""
    meta = {
        "sizes": model.sizes,
        "activation": config.activation,
        "weight_init": config.weight_init,
        "dataset": config.dataset,
        "class_names": list(class_names),
        "normalization": list(norm),
    }
    arrays = {name: model.backend.to_numpy(value) for name, value in model.state_dict().items()}
    save_archive(path, "model", meta, arrays)


def load_model(path: str | Path, backend: Backend | str = "cpu") -> tuple[MLP, dict[str, Any]]:
    """Rebuild the MLP saved in a ``model.npz`` (never unpickles).

    Raises:
        CheckpointError: the file is missing, damaged, foreign, or its arrays do not fit its description.
    """
    meta, arrays = load_archive(path, "model")
    try:
        model = MLP(meta["sizes"], activation=meta["activation"], backend=get_backend(backend), seed=None)
        model.load_state_dict(arrays)
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: the weights do not match the described model ({err})") from err
    return model, meta


def read_config(run_dir: str | Path) -> TrainConfig:
    """The ``TrainConfig`` of an existing run directory."""
    path = Path(run_dir) / FILES["config"]
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no {FILES['config']})")
    try:
        values = json.loads(path.read_text())
        values = {k: v for k, v in values.items() if k not in ("environment", "normalization")}
        return TrainConfig.from_dict(values)
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable run configuration ({err})") from err


def host_predictions(model: MLP, images: np.ndarray, norm: tuple[float, float]) -> np.ndarray:
    """Class probabilities (n, classes) for uint8 images (n, 28, 28) or (n, 784), as a host array."""
    be = model.backend
    data = DeviceData(be, images, np.zeros(images.shape[0], dtype=np.int64), mean=norm[0], std=norm[1])
    x = data.features(be.arange(data.n))
    return be.to_numpy(be.ops.softmax(model.forward(x)))
