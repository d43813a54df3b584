"""Hyperparameter sweeps on Optuna from W&B-style sweep files."""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "SweepError": "fmnist.sweep.spec",
    "SweepSpec": "fmnist.sweep.spec",
    "load_sweep": "fmnist.sweep.spec",
    "parse_sweep": "fmnist.sweep.spec",
    "SweepOptions": "fmnist.sweep.study",
    "run_sweep": "fmnist.sweep.study",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:  # imported on first use: the command line starts without NumPy
    import importlib

    if name not in _EXPORTS:
        raise AttributeError(f"module 'fmnist.sweep' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
