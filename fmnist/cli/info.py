"""``fmnist info``: versions, devices and the BLAS NumPy uses."""

from __future__ import annotations

import platform

import typer


def register(app: typer.Typer) -> None:
    app.command("info")(info)


def info() -> None:
    """Show versions, available devices (GPU name and memory) and which BLAS NumPy uses."""
    import numpy as np
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from threadpoolctl import threadpool_info

    from fmnist import __version__
    from fmnist.backend import gpu_status

    table = Table(title="fmnist info", show_header=False)
    table.add_row("fmnist", __version__)
    table.add_row("python", platform.python_version())
    table.add_row("numpy", np.__version__)
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            threads = pool.get("num_threads")
            table.add_row("BLAS", f"{pool.get('internal_api')} {pool.get('version')} ({threads} threads)")
    usable, detail = gpu_status()
    table.add_row("cpu", "available")
    table.add_row("gpu", detail if usable else f"[yellow]unavailable[/]: {escape(detail)}")
    Console().print(table)
