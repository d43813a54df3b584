"""A whole training run into a run directory that can be read, evaluated, reported and resumed.

``train_run`` prepares the data and the trainer (or restores its checkpoint), writes ``config.json``, and picks the
run directory's callbacks (as Lightning's callback connector does) to put in front of the caller's: the last
records at the end (``Finisher``), metrics, checkpoints, early stopping, layer statistics, the report and W&B.
The trainer then owns the lifecycle (``Trainer.fit``): every callback sees the run begin and end, whether it
completed, was interrupted or diverged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmnist.backend import get_backend
from fmnist.files import ArchiveError, load_archive
from fmnist.rundir.layout import FILES, write_config
from fmnist.rundir.records import Checkpointer, Finisher, LayerStats, MetricsWriter, ReportWriter
from fmnist.training.assemble import build_trainer
from fmnist.training.callbacks import Callback, EarlyStopping
from fmnist.training.config import TrainConfig
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
    links: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (or continue it with ``resume``) and return the summary.

    ``callbacks`` observe the run after the run directory's own (see ``run_callbacks``); ``command`` (the argv as
    typed) is recorded in ``config.json``; ``links`` are pages the run's report points to (``{"sweep": URL}``).

    Raises:
        DivergenceError: NaN/inf loss; ``checkpoint.npz`` keeps the last good epoch and ``summary.json`` says so.
        TrainingInterrupted: a callback asked to stop; ``checkpoint.npz`` is then exact.
        DataFileError, BackendUnavailableError, ArchiveError: as named.
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
            raise ArchiveError(f"{run_dir / FILES['checkpoint']}: does not match this run's model ({err})") from err
        info.resumed_at, info.previous_seconds = trainer.epoch, float(meta.get("total_seconds", 0.0))
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, config, backend, (splits.mean, splits.std), command)
    trainer.run = info
    outcome = trainer.fit(config.epochs, [*run_callbacks(info, links), *callbacks])
    return outcome.summary


def run_callbacks(info: RunInfo, links: dict[str, str] | None = None) -> list[Callback]:
    """The run directory's callbacks, in the order they are called: the last records first at the end (the
    summary the others read), then metrics, checkpoints, early stopping, layer statistics, the report, W&B."""
    config, run_dir = info.config, info.run_dir
    chosen: list[Callback | None] = [
        Finisher(run_dir),
        MetricsWriter(run_dir / FILES["metrics"]),
        Checkpointer(run_dir / FILES["checkpoint"], info.elapsed),
        EarlyStopping(config.patience) if config.patience is not None else None,
        LayerStats(run_dir / FILES["layer_stats"]),
        ReportWriter(run_dir, info.splits.dataset, links),
        _wandb(config, run_dir) if config.wandb else None,
    ]
    return [c for c in chosen if c is not None]


def _wandb(config: TrainConfig, run_dir: Path) -> Callback:
    from fmnist.rundir.tracking import WandbLogger

    return WandbLogger(config, run_dir)
