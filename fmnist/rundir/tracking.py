"""Experiment tracking: Weights & Biases when installed (``WANDB_MODE=offline`` works without a network), as one
callback that ``fmnist train`` and every sweep trial use alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmnist.training.callbacks import Callback, Outcome
from fmnist.training.config import TrainConfig


class WandbLogger(Callback):
    """Logs a run's configuration, per-epoch metrics and summary to W&B; ``wandb`` is imported only here."""

    def __init__(self, config: TrainConfig, run_dir: str | Path):
        self.config = config
        self.run_dir = Path(run_dir)
        self._run: Any = None

    def on_train_begin(self, trainer: Any) -> None:
        import wandb

        self._run = wandb.init(
            project=self.config.wandb_project,
            entity=self.config.wandb_entity,
            name=self.run_dir.name,
            dir=str(self.run_dir),
            config=self.config.to_dict(),
            reinit=True,
        )

    def on_epoch_end(self, trainer: Any, metrics: Any) -> None:
        values = {k: v for k, v in metrics.to_dict().items() if v is not None}
        self._run.log(values, step=int(metrics.epoch))

    def on_train_end(self, trainer: Any, outcome: Outcome) -> None:
        if self._run is None:
            return
        for key in ("test_accuracy", "test_loss", "best_epoch"):
            if outcome.summary.get(key) is not None:
                self._run.summary[key] = outcome.summary[key]
        self._run.summary["status"] = outcome.status
        self._run.finish()
        self._run = None
