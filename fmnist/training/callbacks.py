"""The run lifecycle's observers: a trainer calls a list of callbacks (after Keras's ``Callback``/``CallbackList``).

Progress display, the metrics file, checkpoints, early stopping, layer statistics, the report, W&B logging and a
sweep's pruner are each one callback. A callback overrides only the hooks it needs; they are called in list order:

- ``on_train_begin(trainer)``: before the first step (``trainer.run`` describes the run when a run drives it);
- ``should_stop()``: polled before every step (a Ctrl-C asks for an exact stop at the step boundary);
- ``on_step_end(trainer, step)``: after every optimizer step, host values only (never read a device value here);
- ``on_progress(trainer, progress)``: after each report (one host sync per ``report_every`` steps);
- ``on_epoch_end(trainer, metrics)``: after the validation pass of each epoch;
- ``on_train_end(trainer, outcome)``: once, whether the run completed, was interrupted or diverged.

Library callbacks never print; the command line adds its own (rich progress, Ctrl-C).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.training.atomic import atomic_write
from fmnist.training.checkpoint import save_archive


@dataclass
class Outcome:
    """How a run ended: ``status`` is ``completed``, ``interrupted`` or ``diverged``; ``summary`` what
    ``summary.json`` holds (when it was written); ``error`` the exception of a run that did not complete."""

    status: str
    summary: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    report: Path | None = None  # report.html, once the report writer has written it
    report_error: str | None = None  # why it could not be written


class Callback:
    """Base class: every hook does nothing."""

    def on_train_begin(self, trainer: Any) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def on_step_end(self, trainer: Any, step: int) -> None:
        pass

    def on_progress(self, trainer: Any, progress: Any) -> None:
        pass

    def on_epoch_end(self, trainer: Any, metrics: Any) -> None:
        pass

    def on_train_end(self, trainer: Any, outcome: Outcome) -> None:
        pass


class CallbackList(Callback):
    """Callbacks called in order. Only those that override ``on_step_end`` are called per step."""

    def __init__(self, callbacks: list[Callback] | None = None):
        self.callbacks = [c for c in (callbacks or []) if c is not None]
        self._per_step = [c for c in self.callbacks if type(c).on_step_end is not Callback.on_step_end]
        self._stoppers = [c for c in self.callbacks if type(c).should_stop is not Callback.should_stop]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.callbacks)

    def on_train_begin(self, trainer: Any) -> None:
        for c in self.callbacks:
            c.on_train_begin(trainer)

    def should_stop(self) -> bool:
        return any(c.should_stop() for c in self._stoppers)

    def on_step_end(self, trainer: Any, step: int) -> None:
        for c in self._per_step:
            c.on_step_end(trainer, step)

    def on_progress(self, trainer: Any, progress: Any) -> None:
        for c in self.callbacks:
            c.on_progress(trainer, progress)

    def on_epoch_end(self, trainer: Any, metrics: Any) -> None:
        for c in self.callbacks:
            c.on_epoch_end(trainer, metrics)

    def on_train_end(self, trainer: Any, outcome: Outcome) -> None:
        for c in self.callbacks:
            c.on_train_end(trainer, outcome)


class MetricsWriter(Callback):
    """``metrics.jsonl``: one JSON line per epoch (rewritten atomically from the trainer's history each epoch)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_epoch_end(self, trainer: Any, metrics: Any) -> None:
        atomic_write(self.path, "".join(json.dumps(m.to_dict()) + "\n" for m in trainer.history))


class Checkpointer(Callback):
    """``checkpoint.npz`` after every epoch and at an interruption: everything needed to resume exactly
    (``Trainer.state()``) plus the run's total time so far. A diverged run keeps its last good checkpoint."""

    def __init__(self, path: str | Path, elapsed: Any = None):
        self.path = Path(path)
        self.elapsed = elapsed

    def save(self, trainer: Any) -> None:
        meta, arrays = trainer.state()
        if self.elapsed is not None:
            meta["total_seconds"] = self.elapsed()
        save_archive(self.path, "checkpoint", meta, arrays)

    def on_epoch_end(self, trainer: Any, metrics: Any) -> None:
        self.save(trainer)

    def on_train_end(self, trainer: Any, outcome: Outcome) -> None:
        if outcome.status == "interrupted":
            self.save(trainer)


class EarlyStopping(Callback):
    """Stop when the validation loss has not improved for ``patience`` epochs (the trainer keeps the best
    epoch's weights, which the run restores at the end)."""

    def __init__(self, patience: int):
        if patience <= 0:
            raise ValueError(f"patience must be > 0, got {patience}")
        self.patience = int(patience)

    def on_train_begin(self, trainer: Any) -> None:
        if trainer.val is None:
            raise ValueError("early stopping needs a validation split (--patience with --val-fraction 0)")
        trainer.keep_best = True

    def on_epoch_end(self, trainer: Any, metrics: Any) -> None:
        if metrics.epoch - trainer.best_epoch >= self.patience:
            trainer.stop_training = True
            trainer.stop_reason = f"early stopping: no lower validation loss for {self.patience} epochs"


class LayerStats(Callback):
    """``layer_stats.jsonl``: per parameter and epoch, the weights' mean, std and largest magnitude, the gradient's
    RMS and largest magnitude (averaged over about ``samples`` steps of the epoch), and the epoch's update size
    relative to the weights, RMS(θ_end - θ_start) / RMS(θ_start).

    Gradient statistics accumulate in a device buffer on sampled steps and are read once per epoch (no sync in
    the step).
    """

    def __init__(self, path: str | Path, samples: int = 32):
        self.path = Path(path)
        self.samples = samples
        self._lines: list[str] = []
        self._acc: Any = None
        self._start: Any = None
        self._count = 0
        self._every = 1

    def on_train_begin(self, trainer: Any) -> None:
        done = trainer.epoch
        if self.path.is_file():  # a resumed run keeps the lines of its finished epochs
            self._lines = [line for line in self.path.read_text().splitlines() if json.loads(line)["epoch"] <= done]
        steps = max(1, math.ceil(trainer.train.n / trainer.batch_size))
        self._every = max(1, steps // self.samples)
        self._begin_epoch(trainer)

    def _begin_epoch(self, trainer: Any) -> None:
        be = trainer.model.backend
        self._acc = be.zeros((len(trainer.model.parameters()), 2))  # Σ RMS(grad), max |grad|
        self._start = be.copy(trainer.model.flat.data)
        self._count = 0

    def on_step_end(self, trainer: Any, step: int) -> None:
        if step % self._every:
            return
        xp = trainer.model.backend.xp
        for i, p in enumerate(trainer.model.parameters()):
            g = p.grad
            self._acc[i, 0] += xp.sqrt(xp.mean(g * g))
            self._acc[i, 1] = xp.maximum(self._acc[i, 1], xp.max(xp.abs(g)))
        self._count += 1

    def on_epoch_end(self, trainer: Any, metrics: Any) -> None:
        be = trainer.model.backend
        xp = be.xp
        params = trainer.model.parameters()
        rows = []
        delta = trainer.model.flat.data - self._start
        offset = 0
        for p in params:  # one stacked read: (mean, std, max|w|, rms of the epoch's update, rms of the start)
            size = math.prod(p.shape)
            d, w0 = delta[offset : offset + size], self._start[offset : offset + size]
            w = p.data
            rows.append(
                xp.stack([xp.mean(w), xp.std(w), xp.max(xp.abs(w)), xp.sqrt(xp.mean(d * d)), xp.sqrt(xp.mean(w0 * w0))])
            )
            offset += size
        weights = be.to_numpy(xp.stack(rows))
        grads = be.to_numpy(self._acc)
        stats = {}
        for p, w, g in zip(params, weights.tolist(), grads.tolist(), strict=True):
            stats[p.name] = {
                "shape": list(p.shape),
                "weight_mean": w[0],
                "weight_std": w[1],
                "weight_abs_max": w[2],
                "grad_rms": g[0] / max(1, self._count),
                "grad_abs_max": g[1],
                "update_rms_ratio": w[3] / w[4] if w[4] > 0 else None,
            }
        self._lines.append(json.dumps({"epoch": metrics.epoch, "params": _finite(stats)}))
        atomic_write(self.path, "\n".join(self._lines) + "\n")
        self._begin_epoch(trainer)


class ReportWriter(Callback):
    """``report.html`` at the end of every run, completed, interrupted or diverged. A report that cannot be
    written never loses a run: the outcome carries the report's path or the reason (``report_error``)."""

    def __init__(self, run_dir: str | Path, dataset: Any = None):
        self.run_dir = Path(run_dir)
        self.dataset = dataset

    def on_train_end(self, trainer: Any, outcome: Outcome) -> None:
        from fmnist.training.report import write_run_report

        try:
            outcome.report = write_run_report(self.run_dir, dataset=self.dataset)
        except Exception as err:  # a report is a view of the run: its failure must not fail the run
            outcome.report_error = f"{type(err).__name__}: {err}"


def _finite(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None (a diverging layer shows as missing, not as invalid JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
