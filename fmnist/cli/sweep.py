"""``fmnist sweep SWEEP.yaml``: W&B-style sweeps on Optuna, on one machine or many."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fmnist import names
from fmnist.cli.common import console, fail


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)


def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="W&B-style sweep file (YAML or JSON).")],
    trials: Annotated[
        int | None, typer.Option("--trials", help="Total trials of the study, across all workers and machines.")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes on this machine.")] = 1,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Optuna storage: sqlite:///FILE (default OUT/sweep.db), postgresql://..., or a journal FILE.log.",
        ),
    ] = None,
    study: Annotated[str | None, typer.Option("--study", help="Study name (default: the sweep file's name).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Directory for runs and results.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampler.")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu, gpu or auto for every trial.")] = "cpu",
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", envvar="FMNIST_DATA_DIR", help="Directory searched first for data.")
    ] = None,
    wandb: Annotated[bool, typer.Option("--wandb", help="Log each trial to Weights & Biases.")] = False,
) -> None:
    """Search hyperparameters with Optuna: grid, random or bayes (TPE), with optional Hyperband pruning."""
    import importlib.util

    from fmnist.cli.train import check_out
    from fmnist.training.config import ConfigError, TrainConfig

    if importlib.util.find_spec("optuna") is None:
        fail("fmnist sweep needs Optuna: pip install 'fmnist[sweep]'", 2)
    from fmnist.sweep import SweepError, SweepOptions, load_sweep

    check_out(out)
    try:
        base = TrainConfig(device=device, data_dir=str(data_dir) if data_dir else None)
        spec = load_sweep(sweep_file, base)  # every value a trial can draw is checked here, before any trial
    except (SweepError, ConfigError) as err:
        fail(str(err), 2)
    total = trials if trials is not None else spec.run_cap or 20
    if total <= 0 or workers <= 0:
        fail("--trials and --workers must be > 0", 2)
    if wandb and importlib.util.find_spec("wandb") is None:
        fail("--wandb needs the wandb package: pip install 'fmnist[wandb]'", 2)
    name = study or spec.name
    options = SweepOptions(
        out=out or Path("runs") / "sweeps" / name,
        storage=storage,
        study_name=name,
        trials=total,
        workers=workers,
        seed=seed,
        base=base,
        wandb=wandb,
        sweep_file=str(sweep_file),
    )
    run(spec, options)


def run(spec: Any, options: Any) -> None:
    """Run the sweep with live lines per trial, then print and write the results."""
    from rich.markup import escape

    from fmnist.sweep.results import write_results
    from fmnist.sweep.spec import SweepError
    from fmnist.sweep.study import open_study, run_sweep, trial_cap

    try:
        open_study(spec, options)  # create the study, or check that the sweep file still describes it
    except SweepError as err:
        fail(str(err), 2)
    storage = escape(_redact(options.storage_url))
    console.print(
        f"sweep [bold]{escape(options.study_name)}[/]: {spec.method}, {spec.goal} {spec.metric}, "
        f"{trial_cap(spec, options)} trials, {options.workers} worker(s)\nstorage {storage}",
        highlight=False,
    )
    colours = {"complete": "green", "pruned": "yellow", "failed": "red", "interrupted": "yellow"}

    def on_event(event: Any) -> None:
        if event.state == "running":  # the values once, when the trial starts; then the outcome by number
            params = " ".join(f"{names.short(k)}={_cell(v)}" for k, v in event.params.items())
            console.print(f"[dim]trial {event.number}:[/] {escape(params)}", highlight=False)
            return
        head = f"[{colours[event.state]}]trial {event.number} {event.state}[/]"
        value = f" {spec.metric} {event.value:.4f}" if event.value is not None else ""
        reason = f" ({escape(event.reason)})" if event.reason and event.state != "complete" else ""
        console.print(f"{head}{value}{reason}", highlight=False)

    try:
        study = run_sweep(spec, options, on_event)
    except KeyboardInterrupt:
        console.print("[yellow]sweep interrupted[/]: run the same command again to continue the study")
        raise typer.Exit(130) from None
    written = write_results(study, spec, options.out)
    rows = written["rows"]
    if rows:
        table, left_out = leaderboard_table(rows, spec, console)
        console.print(table)
        text = "every trial, failure reason and run directory"
        text += f", and {', '.join(left_out)} (no room here)" if left_out else ""
        console.print(f"[dim]{text}: {escape(str(written['leaderboard']))}[/]", highlight=False)
    else:
        console.print("no trials recorded")
    if "best_config" in written:
        console.print(f"wrote {escape(str(written['best_config']))}", highlight=False)
    for path in written["plots"]:
        console.print(f"wrote {escape(str(path))}", highlight=False)
    for name, why in written["plot_errors"].items():
        console.print(f"[dim]no {name}: {escape(why)}[/]")
    if "best_config" in written:
        console.print(f"reproduce the best trial: fmnist train --config {escape(str(written['best_config']))}")
    _report(options.out)


def _report(out: Path) -> None:
    """Write the sweep's report.html; a report that cannot be written is a warning, never a failed sweep."""
    from rich.markup import escape

    from fmnist.training.sweep_report import write_sweep_report

    try:
        path = write_sweep_report(out)
    except Exception as err:  # a report is a view of the sweep: its failure must not fail the sweep
        console.print(f"[yellow]no report[/]: {escape(f'{type(err).__name__}: {err}')}")
        return
    console.print(f"report {escape(str(path))}", highlight=False)


TOP = 15  # rows of the terminal leaderboard (leaderboard.csv has them all)
METRIC_HEADERS = {"val_accuracy": "val acc", "val_loss": "val loss", "train_accuracy": "train acc"}


def leaderboard_table(rows: list[dict[str, Any]], spec: Any, out: Any) -> tuple[Any, list[str]]:
    """The best ``TOP`` trials as a table that fits the console ``out``: trial number, the metric, the state
    where some trial did not complete, and the parameters whose values differ between trials, under short names.
    Parameters that do not fit are left out (leaderboard.csv has them); returns the table and their names."""
    from rich.measure import Measurement

    shown = rows[:TOP]
    columns: dict[str, list[str]] = {"#": [str(r["trial"]) for r in shown]}
    columns[METRIC_HEADERS.get(spec.metric, spec.metric)] = [
        f"{r[spec.metric]:.4f}" if r[spec.metric] is not None else "-" for r in shown
    ]
    if any(r["state"] != "complete" for r in shown):
        columns["state"] = [r["state"] for r in shown]
    title = f"leaderboard ({len(rows)} trials)" if len(rows) <= TOP else f"leaderboard (best {TOP} of {len(rows)})"
    table = _table(columns, title)
    left_out = []
    for name in (p.name for p in spec.searched):
        if len({_cell(r.get(name)) for r in rows}) < 2:
            continue  # the same in every trial: nothing to compare
        header = names.short(name)
        wider = _table({**columns, header: [_cell(r.get(name)) for r in shown]}, title)
        unbounded = out.options.update_width(10_000)  # measured at most as wide as the options allow
        if header not in columns and Measurement.get(out, unbounded, wider).maximum <= out.width:
            columns[header], table = [_cell(r.get(name)) for r in shown], wider
        else:
            left_out.append(name)
    return table, left_out


def _table(columns: dict[str, list[str]], title: str) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True
    )
    for header, cells in columns.items():
        numeric = all(_is_number(c) for c in cells)
        table.add_column(header, justify="right" if numeric else "left", no_wrap=True, overflow="ellipsis")
    for row in zip(*columns.values(), strict=True):
        table.add_row(*row)
    return table


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text in ("", "-")
    return True


def _cell(value: Any) -> str:
    """A compact cell: ``3.2e-4`` rather than ``0.00031622776``, ``64x32`` for a list of widths."""
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-2:
            mantissa, exponent = f"{value:.1e}".split("e")
            return f"{mantissa.removesuffix('.0')}e{int(exponent)}"
        return f"{value:.4g}"
    if isinstance(value, tuple | list):
        return "x".join(map(str, value))
    return "" if value is None else str(value)


def _redact(url: str) -> str:
    """A storage URL fit to print: without its password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
