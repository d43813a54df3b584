"""The run lifecycle's observers: a trainer calls a list of callbacks (after Keras's ``Callback``/``CallbackList``).

Progress display, the metrics file, checkpoints, early stopping, layer statistics, the report, W&B logging and a
sweep's pruner are each one callback; the run directory's own live in ``fmnist.rundir.records``. A callback
overrides only the hooks it needs; the trainer calls them in list order:

- ``on_train_begin(trainer)``: before the first step (``trainer.run`` describes the run when a run drives it);
- ``should_stop()``: polled before every step (a Ctrl-C asks for an exact stop at the step boundary);
- ``on_step_end(trainer, step)``: after every optimizer step, host values only (never read a device value here);
- ``on_progress(trainer, progress)``: after each report (one host sync per ``report_every`` steps);
- ``on_epoch_end(trainer, metrics)``: after the validation pass of each epoch;
- ``on_train_end(trainer, outcome)``: once, whether the run completed, was interrupted or diverged; callbacks
  earlier in the list may have filled ``outcome`` (a run directory's summary, its report) for the later ones.

Library callbacks never print; the command line adds its own (rich progress, Ctrl-C). This module imports nothing
of fmnist: anything may observe a trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Outcome:
    """How a run ended: ``status`` is ``completed``, ``interrupted`` or ``diverged``; ``error`` the exception of
    a run that did not complete. A run directory's callbacks add ``summary`` (what ``summary.json`` holds) and the
    report's path or why it could not be written."""

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
