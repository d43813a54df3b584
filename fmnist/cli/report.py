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
    from fmnist.rundir.layout import RunDirError
    from fmnist.rundir.report import write_run_report
    from fmnist.sweep import sweep_link
    from fmnist.sweep.report import ReportError, write_sweep_report

    kind = report_kind(directory)
    try:
        if kind == "sweep":
            path = write_sweep_report(directory)
        elif kind == "run":
            sweep_dir = directory.resolve().parent.parent  # a sweep's trials live in SWEEP_DIR/runs/
            links = {"sweep": sweep_link(sweep_dir, directory)} if report_kind(sweep_dir) == "sweep" else None
            path = write_run_report(directory, links=links)
        else:
            fail(f"{directory}: not a run or sweep directory (no config.json, sweep.json or leaderboard.csv)", 2)
    except (ReportError, RunDirError, OSError) as err:
        fail(str(err))
    console.print(str(path), highlight=False, soft_wrap=True)


def report_kind(path: Path) -> str | None:
    """``"sweep"``, ``"run"`` or ``None`` for a directory that is neither."""
    from fmnist.rundir.layout import FILES
    from fmnist.sweep import SWEEP_FILES

    if not path.is_dir():
        return None
    if any((path / SWEEP_FILES[name]).exists() for name in ("info", "leaderboard", "database")):
        return "sweep"
    if (path / FILES["config"]).is_file() or (path / FILES["metrics"]).is_file():
        return "run"
    return None
