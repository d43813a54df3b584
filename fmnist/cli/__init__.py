"""The ``fmnist`` command line (Typer). Each command lives in its own module and calls the library.

Heavy imports (CuPy, matplotlib, Optuna) happen inside commands, never at start-up, so ``fmnist --help`` is fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fmnist import __version__

app = typer.Typer(
    name="fmnist",
    help="Train hand-written MLPs and CNNs on Fashion-MNIST and MNIST, on NumPy (CPU) or CuPy (GPU).",
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # course READMEs write train.py -h
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
    from fmnist.cli import bench, data, evaluate, info, report, sweep, train

    train.register(app)
    evaluate.register(app)
    sweep.register(app)
    report.register(app)
    bench.register(app)
    data.register(app)
    info.register(app)


_register()


def main() -> None:
    """Console-script entry point: usage errors become one line on stderr and exit code 2."""
    from fmnist.cli.common import print_error

    try:
        code = app(standalone_mode=False)
    except Exception as err:
        # Typer's usage errors (Click's, vendored or not): bad option, unknown choice, missing value
        if type(err).__name__ == "Abort":
            raise SystemExit(130) from None
        if hasattr(err, "format_message") and isinstance(getattr(err, "exit_code", None), int):
            print_error(err.format_message())
            raise SystemExit(err.exit_code) from None
        raise
    raise SystemExit(code if isinstance(code, int) else 0)
