"""The run directory's layout: its files, and the records written at the start and the end of a run.

Files: ``config.json`` (the options, plus the record keys of ``fmnist.training.config.RECORD_KEYS``: environment,
pixel normalisation, the command as typed, the start time), ``metrics.jsonl`` (one line per epoch),
``layer_stats.jsonl``, ``checkpoint.npz``, ``model.npz``, ``summary.json``, ``curves.png``,
``confusion_matrix.png``/``.csv`` and ``report.html``; every one written atomically with the user's umask.
"""

from __future__ import annotations

import json
import platform
from datetime import datetime
from pathlib import Path
from typing import Any

from fmnist import __version__
from fmnist.files import write_json
from fmnist.training.config import ConfigError, TrainConfig

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


class RunDirError(ValueError):
    """A directory that is not a run directory, or whose configuration cannot be read; one line."""


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
    """Versions and device facts recorded in ``config.json`` (and in the benchmark's record)."""
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
    write_json(run_dir / FILES["config"], record)


def read_config(run_dir: str | Path) -> TrainConfig:
    """The ``TrainConfig`` of an existing run directory.

    Raises:
        RunDirError: no ``config.json``, or one this version cannot read.
    """
    path = Path(run_dir) / FILES["config"]
    if not path.is_file():
        raise RunDirError(f"{run_dir}: not a run directory (no {FILES['config']})")
    try:
        return TrainConfig.from_record(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError, ConfigError) as err:
        raise RunDirError(f"{path}: unreadable run configuration ({err})") from err


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """``summary.json``: how the run ended and its final figures."""
    write_json(run_dir / FILES["summary"], summary)
