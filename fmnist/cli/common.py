"""Shared CLI helpers: the console, clean failures, and choice enums."""

from __future__ import annotations

from enum import StrEnum
from typing import NoReturn

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


class DatasetChoice(StrEnum):
    fashion_mnist = "fashion_mnist"
    fashion_mnist_dash = "fashion-mnist"
    mnist = "mnist"
