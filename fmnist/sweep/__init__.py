"""Hyperparameter sweeps on Optuna from W&B-style sweep files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

_EXPORTS = {
    "SweepError": "fmnist.sweep.spec",
    "SweepSpec": "fmnist.sweep.spec",
    "load_sweep": "fmnist.sweep.spec",
    "parse_sweep": "fmnist.sweep.spec",
    "SweepOptions": "fmnist.sweep.study",
    "run_sweep": "fmnist.sweep.study",
}
__all__ = [*_EXPORTS, "SWEEP_FILES", "sweep_link"]

# The files of a sweep directory (``--out``), beside its trials' run directories under ``runs/``.
SWEEP_FILES = {
    "info": "sweep.json",  # where the study is and what it searches
    "database": "sweep.db",  # the default SQLite study
    "leaderboard": "leaderboard.csv",
    "best_config": "best_config.json",
    "report": "report.html",
}


def sweep_link(sweep_dir: str | os.PathLike, run_dir: str | os.PathLike) -> str:
    """The address of a sweep's report from one of its trials' reports (what the trial's report links to)."""
    relative = Path(os.path.relpath(Path(sweep_dir).resolve() / SWEEP_FILES["report"], Path(run_dir).resolve()))
    return quote(relative.as_posix(), safe="/")


def __getattr__(name: str) -> Any:  # imported on first use: the command line starts without NumPy
    import importlib

    if name not in _EXPORTS:
        raise AttributeError(f"module 'fmnist.sweep' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
