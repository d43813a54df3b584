"""Shared CLI helpers: the console, clean failures, library warnings kept off the terminal, and choice enums."""

from __future__ import annotations

import warnings
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


def print_error(message: str) -> None:
    """One clear error line (or a short block) on stderr."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print the error and exit with ``code`` (2 = bad input, before any work)."""
    print_error(message)
    raise typer.Exit(code)


# Warnings that tell the user nothing to act on: NumPy's floating-point warnings of a run that diverges (fmnist stops
# it and says where), and those of libraries about their own internals.
QUIET = (
    (RuntimeWarning, r"(overflow|invalid value|divide by zero|underflow) encountered"),
    (Warning, r"Attempting to set identical (low and high|left and right) [xy]lims"),  # one-valued plot axes
)


def quiet_warnings() -> None:
    """Keep library warnings off the terminal in this process (``QUIET``); any other warning is printed as one
    line in fmnist's form, without the library's file and source line. Sweep workers call it in their process."""
    for category, message in QUIET:
        warnings.filterwarnings("ignore", message=message, category=category)
    warnings.showwarning = _show_warning


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, *args: Any) -> None:
    package = Path(filename).parent.name if "site-packages" in filename else Path(filename).stem
    err_console.print(f"[yellow]warning[/] ({escape(package)}): {escape(str(message))}", highlight=False)


class DatasetChoice(StrEnum):
    fashion_mnist = "fashion_mnist"
    fashion_mnist_dash = "fashion-mnist"
    mnist = "mnist"
