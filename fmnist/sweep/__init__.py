"""Hyperparameter sweeps on Optuna from W&B-style sweep files."""

from fmnist.sweep.spec import SweepError, SweepSpec, load_sweep, parse_sweep
from fmnist.sweep.study import SweepOptions, run_sweep

__all__ = ["SweepError", "SweepOptions", "SweepSpec", "load_sweep", "parse_sweep", "run_sweep"]
