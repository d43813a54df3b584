"""The ``fmnist`` command line (Typer). Each command lives in its own module and calls the library.

Heavy imports (CuPy, matplotlib, Optuna) happen inside commands, never at start-up, so ``fmnist --help`` is fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fmnist import __version__

app = typer.Typer(
    name="fmnist",
    help="Train hand-written MLPs on Fashion-MNIST and MNIST, on NumPy (CPU) or CuPy (GPU).",
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fmnist {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """fmnist: from-scratch neural networks with every gradient written by hand."""


def _register() -> None:
    from fmnist.cli import data, info

    data.register(app)
    info.register(app)


_register()


def main() -> None:
    """Console-script entry point."""
    app()
