"""Experiment tracking: Weights & Biases when installed (``WANDB_MODE=offline`` works without a network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmnist.training.config import TrainConfig


class WandbTracker:
    """Logs a run's configuration and per-epoch metrics to W&B; imported and started only when asked for."""

    def __init__(self, config: TrainConfig, run_dir: str | Path):
        import wandb

        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=config.wandb_project,
            entity=config.wandb_entity,
            name=Path(run_dir).name,
            dir=str(run_dir),
            config=config.to_dict(),
            reinit=True,
        )

    def log(self, metrics: dict[str, Any]) -> None:
        self._run.log(metrics, step=int(metrics["epoch"]))

    def finish(self) -> None:
        self._run.finish()
