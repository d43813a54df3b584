"""One run directory: its layout and records (``layout``), the model file (``modelio``), the callbacks that write
as a run goes (``records``), W&B (``tracking``), the run's report page (``report``), and ``train_run``
(``driver``), which trains a configuration into a run directory with those callbacks.

``from fmnist.rundir import train_run`` imports the driver on first use, so the command line starts fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RunInfo", "train_run"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'fmnist.rundir' has no attribute {name!r}")
    from fmnist.rundir import driver

    return getattr(driver, name)
