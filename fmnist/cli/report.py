"""``fmnist report RUN_DIR|SWEEP_DIR``: (re)build a run's or a sweep's ``report.html``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fmnist.cli.common import console, fail


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    directory: Annotated[Path, typer.Argument(help="A run directory (fmnist train) or a sweep directory.")],
) -> None:
    """Build the HTML report of a run or a sweep: one offline file with every chart embedded."""
    from fmnist.sweep.report import write_report
    from fmnist.training.report import ReportError, report_kind

    if report_kind(directory) is None:
        fail(f"{directory}: not a run or sweep directory (no config.json, sweep.json or leaderboard.csv)", 2)
    try:
        path = write_report(directory)
    except (ReportError, OSError) as err:
        fail(str(err))
    console.print(str(path), highlight=False, soft_wrap=True)
