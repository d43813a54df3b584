"""The fit loop and the whole run lifecycle: pure library code that never prints, writes no file and renders
nothing; what happens during a run is seen through callbacks (``fmnist.training.callbacks``).

Per step the loop keeps everything on the device: each batch's loss and number of correct predictions are
written into one small device buffer, which is read back once every ``report_every`` steps (one host sync) to feed
the progress callback, detect a diverging loss at the exact step, and build the epoch's metrics. The validation
pass accumulates on the device too and is read once.

The whole state of a run (weights, optimizer state, step, RNG state, position inside an epoch and that epoch's
shuffled order) can be captured with ``state()`` and restored with ``restore()``, so an interrupted run resumes
exactly where it stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fmnist.backend import NoiseStream
from fmnist.data import DeviceData
from fmnist.network import Optimizer
from fmnist.training.callbacks import Callback, CallbackList, Outcome
from fmnist.training.inference import evaluate


@dataclass
class EpochMetrics:
    """One line of ``metrics.jsonl`` (``val_*`` are ``None`` without a validation split; ``lr`` is the learning
    rate of the epoch's last step)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    samples_per_second: float
    lr: float | None = None

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int, value: float):
        self.epoch, self.step, self.value = epoch, step, value
        super().__init__(
            f"training diverged: loss is {value} at epoch {epoch}, step {step}. "
            "Try a lower learning rate, or ReLU with Xavier/He initialisation."
        )


class TrainingInterrupted(Exception):
    """Training stopped at a step boundary because a stop was requested (e.g. Ctrl-C)."""


@dataclass
class Progress:
    """What the progress callback sees: position in the epoch and the running mean training loss."""

    epoch: int
    epochs: int
    samples: int
    total: int
    loss: float
    seconds: float


@dataclass
class _EpochRun:
    """Book-keeping of the epoch in progress (host values only)."""

    order: Any = None  # device permutation of the training rows for this epoch
    position: int = 0  # batches done
    seen: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seconds: float = 0.0


@dataclass
class Trainer:
    """Runs epochs of minibatch training with validation and exact save/restore; callbacks observe the whole
    lifecycle (``fit``).

    Args:
        model, optimizer, loss_fn: the network, its optimizer and a loss ``(logits, y) -> (loss, dlogits)``.
        train, val: device data sets (``val`` may be ``None``: no validation split).
        batch_size: samples per step.
        rng: the backend ``HostRNG`` used to shuffle each epoch.
        keep_best: keep a copy of the weights (and buffers) of the epoch with the lowest validation loss, to
            restore at the end (early stopping sets it).
        lr_factor: multiplier of the optimizer's base learning rate for step t = 1, 2, ... (``None``: constant).
        noise: the ``NoiseStream`` of dropout masks and augmentation (counter-based: its state is two integers).
        augment: ``augment(x, noise) -> x`` applied to each training batch on the device.
        report_every: steps between host reads of the running loss (progress, divergence check).
    """

    model: Any  # a Sequential network (an MLP or a CNN)
    optimizer: Optimizer
    loss_fn: Callable[[Any, Any], tuple[Any, Any]]
    train: DeviceData
    val: DeviceData | None
    batch_size: int
    rng: Any
    keep_best: bool = False
    lr_factor: Callable[[int], float] | None = None
    noise: NoiseStream | None = None
    augment: Callable[[Any, Any], Any] | None = None
    report_every: int = 0
    history: list[EpochMetrics] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    best_params: Any = None
    stop_training: bool = False  # set by a callback (early stopping, a sweep's pruner) to end after this epoch
    stop_reason: str | None = None
    run: Any = None  # what the code driving this trainer describes (e.g. fmnist.rundir's RunInfo), for callbacks
    _run: _EpochRun = field(default_factory=_EpochRun)

    def __post_init__(self) -> None:
        if self.report_every <= 0:
            self.report_every = max(1, 8192 // self.batch_size)
        be = self.model.backend
        self.ops = be.ops
        self.base_lr = self.optimizer.lr
        if self.noise is None:
            self.noise = NoiseStream(0)
        self._stats = be.zeros((2, self.report_every))  # per step: loss, number correct (read once per report)
        self._sizes: list[int] = []

    @property
    def epoch(self) -> int:
        """Completed epochs."""
        return len(self.history)

    def fit(self, epochs: int, callbacks: list[Callback] | CallbackList | None = None) -> Outcome:
        """Train until ``epochs`` epochs are complete (or a callback sets ``stop_training``): the whole lifecycle,
        from ``on_train_begin`` to ``on_train_end`` with the outcome, which is also returned.

        Raises (after ``on_train_end`` saw the outcome):
            DivergenceError: a NaN/inf loss (the model is then left as it is; earlier checkpoints stay good).
            TrainingInterrupted: a callback's ``should_stop()`` returned True; ``state()`` then captures the exact
                position.
        """
        if not isinstance(callbacks, CallbackList):
            callbacks = CallbackList(callbacks)
        callbacks.on_train_begin(self)
        try:
            self._epochs(epochs, callbacks)
        except (TrainingInterrupted, DivergenceError) as err:
            status = "interrupted" if isinstance(err, TrainingInterrupted) else "diverged"
            callbacks.on_train_end(self, Outcome(status, error=err))
            raise
        outcome = Outcome("completed")
        callbacks.on_train_end(self, outcome)
        return outcome

    def _epochs(self, epochs: int, callbacks: CallbackList) -> None:
        flops = self.batch_size * self.model.gemm_flops_per_sample
        while self.epoch < epochs and not self.stop_training:
            with self.model.backend.threads_for(flops):
                metrics = self._run_epoch(epochs, callbacks)
            self.history.append(metrics)
            self._run = _EpochRun()
            self._track_best(metrics)
            callbacks.on_epoch_end(self, metrics)

    def _run_epoch(self, epochs: int, callbacks: CallbackList) -> EpochMetrics:
        be, xp, run = self.model.backend, self.model.backend.xp, self._run
        epoch = self.epoch + 1
        if run.order is None:
            run.order = self.train.order(self.rng)
        n, bs = self.train.n, self.batch_size
        steps = math.ceil(n / bs)
        started = time.perf_counter()
        self._sizes = []
        self.model.train()
        while run.position < steps:
            if callbacks.should_stop():
                self._flush(epoch, be)
                run.seconds += time.perf_counter() - started
                raise TrainingInterrupted
            start = run.position * bs
            rows = run.order[start : min(start + bs, n)]
            x = self.train.features(rows)
            if self.augment is not None:
                x = self.augment(x, self.noise)
            y = xp.take(self.train.labels, rows, axis=0)
            if self.lr_factor is not None:
                self.optimizer.lr = self.base_lr * self.lr_factor(self.optimizer.t + 1)
            slot = len(self._sizes)
            self._stats[0, slot], self._stats[1, slot] = self.step(x, y)
            self._sizes.append(int(rows.shape[0]))
            run.position += 1
            callbacks.on_step_end(self, self.optimizer.t)
            if len(self._sizes) == self.report_every or run.position == steps:
                self._flush(epoch, be)
                elapsed = run.seconds + time.perf_counter() - started
                callbacks.on_progress(self, Progress(epoch, epochs, run.seen, n, run.loss_sum / run.seen, elapsed))
        run.seconds += time.perf_counter() - started  # the last flush waited for the device
        val_loss, val_accuracy = evaluate(self.model, self.val, self.loss_fn) if self.val is not None else (None, None)
        return EpochMetrics(
            epoch=epoch,
            train_loss=run.loss_sum / run.seen,
            train_accuracy=run.correct / run.seen,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            seconds=run.seconds,
            samples_per_second=run.seen / run.seconds if run.seconds > 0 else math.nan,
            lr=self.optimizer.lr,
        )

    def step(self, x: Any, y: Any) -> tuple[Any, Any]:
        """One training step on a batch: forward, loss, backward, optimizer update. Returns (loss, number correct)
        as 0-d device arrays, without a host round trip."""
        logits = self.model.forward(x, self.noise)
        correct = self.ops.count_correct(logits, y)
        loss, dlogits = self.loss_fn(logits, y)
        self.model.backward(dlogits)
        self.optimizer.step()
        return loss, correct

    def _flush(self, epoch: int, be: Any) -> None:
        """Read the buffered per-batch losses and counts (one host sync) and check them for divergence."""
        k = len(self._sizes)
        if k == 0:
            return
        stats = be.to_numpy(self._stats)
        losses, correct = stats[0, :k], stats[1, :k]
        bad = np.flatnonzero(~np.isfinite(losses))
        run = self._run
        if bad.size:
            step_in_epoch = run.position - k + int(bad[0]) + 1
            raise DivergenceError(epoch, step_in_epoch, float(losses[bad[0]]))
        for loss, size in zip(losses.tolist(), self._sizes, strict=True):  # sequential: same sum however flushed
            run.loss_sum += loss * size
        run.correct += round(float(correct.sum()))
        run.seen += sum(self._sizes)
        self._sizes = []

    def _track_best(self, metrics: EpochMetrics) -> None:
        if metrics.val_loss is None:  # no validation split: the last epoch is the model
            self.best_epoch = metrics.epoch
        elif metrics.val_loss < self.best_val_loss:
            self.best_val_loss, self.best_epoch = metrics.val_loss, metrics.epoch
            if self.keep_best:
                self.best_params = self.model.snapshot()

    def restore_best(self) -> None:
        """Load the weights and buffers of the epoch with the lowest validation loss (kept with ``keep_best``)."""
        if self.best_params is not None:
            self.model.restore(self.best_params)

    # --- exact save / restore -----------------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-safe metadata, host arrays) capturing the run exactly, for a checkpoint."""
        be, run = self.model.backend, self._run
        arrays = {"params": be.to_numpy(self.model.flat.data)}
        arrays.update({f"buffer.{name}": be.to_numpy(value) for name, value in self.model.buffers.items()})
        for key, value in self.optimizer.state_dict().items():
            if key != "t":
                arrays[f"optimizer.{key}"] = be.to_numpy(value)
        if self.best_params is not None:
            best, best_buffers = self.best_params
            arrays["best_params"] = be.to_numpy(best)
            arrays.update({f"best_buffer.{name}": be.to_numpy(value) for name, value in best_buffers.items()})
        if run.order is not None:
            arrays["epoch_order"] = be.to_numpy(run.order)
        meta = {
            "epoch": self.epoch,
            "optimizer_t": self.optimizer.t,
            "rng_state": self.rng.state,
            "noise_state": self.noise.state,
            "history": [m.to_dict() for m in self.history],
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss if math.isfinite(self.best_val_loss) else None,
            "stopped_early": self.stop_training,
            "stop_reason": self.stop_reason,
            "in_epoch": {k: v for k, v in asdict(run).items() if k != "order"},
        }
        return meta, arrays

    def restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Inverse of ``state()``: continue exactly where that state was taken."""
        be = self.model.backend
        self.model.flat.data[...] = be.asarray(arrays["params"], dtype=be.dtype)
        for name, buffer in self.model.buffers.items():
            buffer[...] = be.asarray(arrays[f"buffer.{name}"], dtype=be.dtype)
        opt_state: dict[str, Any] = {"t": int(meta["optimizer_t"])}
        for key, value in arrays.items():
            if key.startswith("optimizer."):
                opt_state[key.removeprefix("optimizer.")] = be.asarray(value, dtype=be.dtype)
        self.optimizer.load_state_dict(opt_state)
        self.rng.state = meta["rng_state"]
        if "noise_state" in meta:  # checkpoints of earlier versions drew noise from a host generator
            self.noise.state = meta["noise_state"]
        self.history = [EpochMetrics(**m) for m in meta["history"]]
        self.best_epoch = int(meta["best_epoch"])
        self.best_val_loss = math.inf if meta["best_val_loss"] is None else float(meta["best_val_loss"])
        self.best_params = None
        if "best_params" in arrays:
            buffers = {n: be.asarray(arrays[f"best_buffer.{n}"], dtype=be.dtype) for n in self.model.buffers}
            self.best_params = (be.asarray(arrays["best_params"], dtype=be.dtype), buffers)
        self.stop_training = bool(meta["stopped_early"])
        self.stop_reason = meta.get("stop_reason")
        order = be.asarray(arrays["epoch_order"]) if "epoch_order" in arrays else None
        self._run = _EpochRun(order=order, **meta["in_epoch"])
