"""The run directory's callbacks: what a run writes as it goes (``metrics.jsonl``, ``checkpoint.npz``,
``layer_stats.jsonl``) and when it ends (``model.npz``, the test evaluation, plots, ``summary.json``,
``report.html``). ``fmnist.rundir.driver`` puts them in front of the caller's callbacks."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.files import atomic_write, save_archive
from fmnist.render.charts import confusion_figure, curves_figure, save_png
from fmnist.rundir.layout import FILES, write_summary
from fmnist.rundir.modelio import save_model
from fmnist.training.callbacks import Callback, Outcome
from fmnist.training.inference import evaluate, predict
from fmnist.training.metrics import confusion_csv, confusion_matrix, per_class_accuracy


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
    written never loses a run: the outcome carries the report's path or the reason (``report_error``).
    ``links`` are pages the report points to (a sweep passes its own report's address)."""

    def __init__(self, run_dir: str | Path, dataset: Any = None, links: dict[str, str] | None = None):
        self.run_dir = Path(run_dir)
        self.dataset = dataset
        self.links = links or {}

    def on_train_end(self, trainer: Any, outcome: Outcome) -> None:
        from fmnist.rundir.report import write_run_report

        try:
            outcome.report = write_run_report(self.run_dir, dataset=self.dataset, links=self.links)
        except Exception as err:  # a report is a view of the run: its failure must not fail the run
            outcome.report_error = f"{type(err).__name__}: {err}"


class Finisher(Callback):
    """A run's last records, first of the run directory's callbacks at the end. Completed: the best weights
    (early stopping), ``model.npz``, the test evaluation, the confusion matrix and the plots, and
    ``summary.json``; diverged: ``summary.json`` with the error and the last good epoch. The summary goes into the
    outcome, for the callbacks after this one."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)

    def on_train_end(self, trainer: Any, outcome: Outcome) -> None:
        if outcome.status == "diverged":
            err = outcome.error
            outcome.summary = {"status": "diverged", "error": str(err), "epoch": getattr(err, "epoch", None)}
            outcome.summary.update(step=getattr(err, "step", None), last_good_epoch=trainer.epoch)
            write_summary(self.run_dir, outcome.summary)
        elif outcome.status == "completed":
            outcome.summary = self.finish(trainer, trainer.run)
            write_summary(self.run_dir, outcome.summary)

    def finish(self, trainer: Any, info: Any) -> dict[str, Any]:
        """The completed run's model, test evaluation and plots; returns its summary."""
        config, run_dir, splits = info.config, self.run_dir, info.splits
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
        save_png(curves_figure(history, title=f"{config.dataset}: {run_dir.name}"), run_dir / FILES["curves"])
        figure = confusion_figure(matrix, names, title=f"test accuracy {test_accuracy:.2%}")
        save_png(figure, run_dir / FILES["confusion_png"])
        best_val = trainer.best_val_loss
        return {
            "status": "completed",
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "per_class_accuracy": dict(zip(names, per_class_accuracy(matrix).tolist(), strict=True)),
            "best_epoch": trainer.best_epoch,
            "model_epoch": model_epoch,
            "best_val_loss": best_val if math.isfinite(best_val) else None,
            "best_val_accuracy": next((m.val_accuracy for m in trainer.history if m.epoch == trainer.best_epoch), None),
            "epochs_run": trainer.epoch,
            "stopped_early": trainer.stop_training,
            "stop_reason": trainer.stop_reason,
            "total_seconds": info.elapsed(),
            "train_seconds": sum(m.seconds for m in trainer.history),
            "device": info.backend.name,
        }


def _finite(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None (a diverging layer shows as missing, not as invalid JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
