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

    from fmnist import __version__
    from fmnist.backend import cupy_distributions, get_backend, gpu_status
    from fmnist.backend.threads import blas_info

    table = Table(title="fmnist info", show_header=False)
    table.add_row("fmnist", __version__)
    table.add_row("python", platform.python_version())
    table.add_row("numpy", np.__version__)
    for pool in blas_info():
        threads, kernel = pool.get("num_threads"), pool.get("architecture")
        table.add_row("BLAS", f"{pool.get('internal_api')} {pool.get('version')}, {kernel} ({threads} threads)")
    table.add_row("cpu", f"available · {get_backend('cpu').ops.name}")
    packages = cupy_distributions()
    usable, detail = gpu_status()
    if packages or not usable:
        table.add_row("cupy", escape(", ".join(packages)) if packages else "not installed")
    if usable:  # the probe compiled fmnist's kernels and ran one (and the kinds of operation a step uses)
        gpu = get_backend("gpu")
        facts = gpu.info()
        table.add_row("gpu", f"{escape(detail)} · CuPy {facts.get('cupy')} · {gpu.ops.name} · kernels compiled and run")
    else:  # the same line `--device gpu` stops with, and `--device auto` shortens into its note
        table.add_row("gpu", f"[yellow]unavailable[/]: {escape(detail.removeprefix('GPU requested but '))}")
    Console().print(table)
