"""The run directory: its layout, and the records written at the start and the end of a run.

Files: ``config.json`` (the configuration, environment, pixel normalisation, the command as typed),
``metrics.jsonl`` (one line per epoch), ``layer_stats.jsonl``, ``checkpoint.npz``, ``model.npz``,
``summary.json``, ``curves.png``, ``confusion_matrix.png``/``.csv`` and ``report.html``; every one written
atomically with the user's umask.
"""

from __future__ import annotations

import json
import platform
from datetime import datetime
from pathlib import Path
from typing import Any

from fmnist import __version__
from fmnist.training.atomic import atomic_write
from fmnist.training.checkpoint import CheckpointError
from fmnist.training.config import TrainConfig

FILES = {
    "config": "config.json",
    "metrics": "metrics.jsonl",
    "layer_stats": "layer_stats.jsonl",
    "summary": "summary.json",
    "model": "model.npz",
    "checkpoint": "checkpoint.npz",
    "curves": "curves.png",
    "confusion_png": "confusion_matrix.png",
    "confusion_csv": "confusion_matrix.csv",
    "report": "report.html",
}
RECORD_KEYS = ("environment", "normalization", "command", "started")  # in config.json beside the configuration


def default_run_dir(config: TrainConfig, root: str | Path = "runs") -> Path:
    """``runs/<timestamp>-<optimizer>-<activation>-<widths>`` (CNN: ``...-cnn<channels>-<widths>``), unique."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    widths = "x".join(map(str, config.hidden)) or "linear"
    if config.model == "cnn":
        widths = f"cnn{'x'.join(map(str, config.conv_channels))}-{widths}"
    base = Path(root) / f"{stamp}-{config.optimizer}-{config.activation}-{widths}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def environment(backend: Any) -> dict[str, Any]:
    """Versions and device facts recorded in ``config.json``."""
    return {"fmnist": __version__, "python": platform.python_version(), **backend.info()}


def write_config(
    run_dir: Path, config: TrainConfig, backend: Any, normalization: tuple[float, float], command: Any = None
) -> None:
    """``config.json``: every option, plus the environment, the pixel normalisation, the start time and (when
    given) the command as typed."""
    record = {
        **config.to_dict(),
        "environment": environment(backend),
        "normalization": list(normalization),
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if command is not None:
        record["command"] = list(command)
    atomic_write(run_dir / FILES["config"], json.dumps(record, indent=2) + "\n")


def read_config(run_dir: str | Path) -> TrainConfig:
    """The ``TrainConfig`` of an existing run directory."""
    path = Path(run_dir) / FILES["config"]
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no {FILES['config']})")
    try:
        values = json.loads(path.read_text())
        return TrainConfig.from_dict({k: v for k, v in values.items() if k not in RECORD_KEYS})
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable run configuration ({err})") from err


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write(run_dir / FILES["summary"], json.dumps(summary, indent=2) + "\n")
