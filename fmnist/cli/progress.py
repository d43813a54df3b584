"""The terminal side of a run: the rich progress display and Ctrl-C, each a callback of the run lifecycle, and
the note for a run that is not learning."""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fmnist.training.callbacks import Callback, Outcome


class RichProgress(Callback):
    """What ``fmnist train`` shows: a few start lines, a progress bar per epoch (terminals only: piped output gets
    no bar debris), one line per epoch within the terminal's width, and where the report is."""

    def __init__(self, console: Console):
        self.console = console
        self.bar = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[speed]:,.0f}/s"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            expand=True,
            disable=not console.is_terminal,
        )
        self._task: Any = None
        self._epoch = 0
        self._warned = False  # the not-learning note is said once

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def on_train_begin(self, trainer: Any) -> None:
        run = trainer.run
        config, backend, splits = run.config, run.backend, run.splits
        if backend.note:
            self.console.print(f"[dim]{backend.note}[/]")
        where = sorted({f"{f.source}: {f.path.parent}" for f in splits.dataset.files})
        val = f"val {splits.val.n:,}" if splits.val is not None else "no validation"
        model = trainer.model
        lines = [
            f"data   [bold]{config.dataset}[/] ({', '.join(where)})",
            f"       train {splits.train.n:,} · {val} · test {splits.test.n:,}",
            f"model  {model.describe()} · {model.flat.size:,} parameters",
            f"train  {config.optimizer} lr {config.learning_rate:g} ({config.lr_schedule}) · batch "
            f"{config.batch_size} · {config.epochs} epochs · {backend.name} ({backend.ops.name})",
            f"run    {run.run_dir}",
        ]
        for line in lines:
            self.console.print(line, highlight=False, overflow="ellipsis", no_wrap=True)
        if run.resumed_at is not None:
            self.console.print(f"resuming after epoch {run.resumed_at}")

    def on_progress(self, trainer: Any, p: Any) -> None:
        if p.epoch != self._epoch:
            if self._task is not None:
                self.bar.remove_task(self._task)
            label = f"{p.epoch}/{p.epochs}"
            self._task = self.bar.add_task("", total=p.total, epoch=label, loss=p.loss, speed=0.0)
            self._epoch = p.epoch
        speed = p.samples / p.seconds if p.seconds > 0 else 0.0
        self.bar.update(self._task, completed=p.samples, loss=p.loss, speed=speed)

    def on_epoch_end(self, trainer: Any, metrics: Any) -> None:
        line = epoch_line(metrics, trainer.run.config.epochs if trainer.run else metrics.epoch, self.console.width)
        self.bar.console.print(line, highlight=False, soft_wrap=True)
        if not self._warned and trainer.run is not None:
            classes = len(trainer.run.splits.dataset.class_names)
            note = not_learning([m.to_dict() for m in trainer.history], trainer.run.config.to_dict(), classes)
            if note is not None:
                self._warned = True
                self.bar.console.print(f"[yellow]note[/]: {note}", highlight=False)  # wrapped to the width

    def on_train_end(self, trainer: Any, outcome: Outcome) -> None:
        self.bar.stop()
        run_dir = trainer.run.run_dir
        if outcome.status == "completed":
            s = outcome.summary
            self.console.print(
                f"[bold green]test accuracy {s['test_accuracy']:.2%}[/] (loss {s['test_loss']:.4f}) · best epoch "
                f"{s['best_epoch']} · {s['epochs_run']} epochs in {s['total_seconds']:.1f} s",
                highlight=False,
            )
            if s.get("stop_reason"):
                self.console.print(f"[dim]{s['stop_reason']}[/]", highlight=False)
        elif outcome.status == "interrupted":
            self.console.print(f"[yellow]interrupted[/]: checkpoint saved; resume with fmnist train --resume {run_dir}")
        if outcome.report is not None:
            self.console.print(f"report {outcome.report}", highlight=False)
        elif outcome.report_error is not None:
            self.console.print(f"[yellow]no report[/]: {outcome.report_error}", highlight=False)
        if outcome.status == "completed":
            self.console.print(f"run directory {run_dir}", highlight=False)


def not_learning(history: Sequence[dict[str, Any]], config: dict[str, Any], classes: int = 10) -> str | None:
    """The note for a run that is not learning, or None: after two epochs or more, the training loss of the last two
    is still that of a network that gives every class the same probability (ln(classes) for cross-entropy), with
    accuracy at chance. Says why where the configuration shows it (``random`` init: each layer shrinks the signal)."""
    if len(history) < 2 or classes < 2:
        return None
    uniform = math.log(classes) if config.get("loss") == "cross_entropy" else 1 - 1 / classes
    recent = history[-2:]
    if any(abs(m["train_loss"] - uniform) > 0.005 or m["train_accuracy"] > 1.5 / classes for m in recent):
        return None
    what = "ln " if config.get("loss") == "cross_entropy" else "1 - 1/"
    note = (
        f"the network is not learning: the training loss has stayed at {uniform:.4f} ({what}{classes}), what "
        "predicting every class with the same probability gives"
    )
    return f"{note}. {_why_not_learning(config)}"


def _why_not_learning(config: dict[str, Any]) -> str:
    """Why a configuration may not learn, as far as it shows: the scale ``random`` init leaves the signal at."""
    widths = config.get("hidden_sizes") or [config.get("hidden_size", 0)] * int(config.get("num_layers", 0))
    fan_ins = [784, *widths]
    shrinking = config.get("activation") in ("identity", "tanh", "relu") and config.get("model", "mlp") == "mlp"
    if config.get("weight_init") == "random" and shrinking:
        scale = math.prod(0.01 * math.sqrt(n) * (0.7 if config.get("activation") == "relu" else 1) for n in fan_ins)
        decay = ", and the weight decay then pulls the weights to zero" if config.get("weight_decay") else ""
        return (
            f"With -w_i random (N(0, 0.01²)) each of the {len(fan_ins)} weight layers scales the signal by about "
            f"0.01·√(inputs), so the outputs start near {scale:.0e} times the input: the gradients vanish{decay}. "
            "Try -w_i Xavier or he."
        )
    return "Try another -w_i (Xavier or he), a larger -lr, or a smaller -w_d."


def epoch_line(m: Any, epochs: int, width: int = 80) -> str:
    """One line per epoch that fits ``width`` columns (less important parts are left out when it would not):
    ``epoch  2/20  train 0.4567 84.12%  val 0.4012 85.67%  3.4s  54,881 samples/s``."""
    parts = [f"epoch {m.epoch:>{len(str(epochs))}}/{epochs}", f"train {m.train_loss:.4f} {m.train_accuracy:.2%}"]
    val_loss = getattr(m, "val_loss", None)
    if val_loss is not None:  # None: no validation split
        parts.append(f"val {val_loss:.4f} {m.val_accuracy:.2%}")
    parts += [f"{m.seconds:.1f}s", f"{m.samples_per_second:,.0f} samples/s"]
    while len("  ".join(parts)) > width and len(parts) > 2:
        parts.pop()
    return "  ".join(parts)


class StopOnSigint(Callback):
    """The first Ctrl-C asks the run to stop at the next step boundary (an exact checkpoint); a second aborts.
    Installed for the duration of a ``with`` block, on the main thread only."""

    def __init__(self, console: Console):
        self.console = console
        self.requested = threading.Event()
        self._previous: Any = None

    def __enter__(self) -> StopOnSigint:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested.is_set():
            raise KeyboardInterrupt
        self.requested.set()
        self.console.print("[yellow]stopping after this step (Ctrl-C again to abort)…[/]")

    def should_stop(self) -> bool:
        return self.requested.is_set()
