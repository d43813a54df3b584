"""``fmnist sweep SWEEP.yaml``: W&B-style sweeps on Optuna, on one machine or many."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

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

    from fmnist.training.config import ConfigError, TrainConfig

    if importlib.util.find_spec("optuna") is None:
        fail("fmnist sweep needs Optuna: pip install 'fmnist[sweep]'", 2)
    from fmnist.sweep import SweepError, SweepOptions, load_sweep

    try:
        spec = load_sweep(sweep_file)
        base = TrainConfig(device=device, data_dir=str(data_dir) if data_dir else None)
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
    )
    run(spec, options)


def run(spec: Any, options: Any) -> None:
    """Run the sweep with live lines per trial, then print and write the results."""
    from rich.markup import escape
    from rich.table import Table

    from fmnist.sweep.results import write_results
    from fmnist.sweep.study import run_sweep, trial_cap

    console.print(
        f"sweep [bold]{options.study_name}[/]: {spec.method}, {spec.goal} {spec.metric}, "
        f"{trial_cap(spec, options)} trials, {options.workers} worker(s), storage {options.storage_url}"
    )
    colours = {"complete": "green", "pruned": "yellow", "failed": "red", "interrupted": "yellow", "running": "dim"}

    def on_event(event: Any) -> None:
        value = f" {spec.metric} {event.value:.4f}" if event.value is not None else ""
        reason = f" ({escape(event.reason)})" if event.reason and event.state != "complete" else ""
        params = " ".join(f"{k}={v}" for k, v in event.params.items())
        console.print(f"[{colours[event.state]}]trial {event.number} {event.state}[/]{value} {params}{reason}")

    try:
        study = run_sweep(spec, options, on_event)
    except KeyboardInterrupt:
        console.print("[yellow]sweep interrupted[/]: run the same command again to continue the study")
        raise typer.Exit(130) from None
    written = write_results(study, spec, options.out)
    rows = written["rows"]
    table = Table(title=f"leaderboard ({len(rows)} trials)")
    if rows:
        for column in rows[0]:
            if column not in ("reason",):
                table.add_column(column, overflow="fold")
        for row in rows[:15]:
            cells = {**row, "run_dir": Path(row["run_dir"]).name if row["run_dir"] else ""}
            table.add_row(*(_cell(v) for k, v in cells.items() if k != "reason"))
    console.print(table)
    for key in ("leaderboard", "best_config"):
        if key in written:
            console.print(f"wrote {written[key]}")
    for path in written["plots"]:
        console.print(f"wrote {path}")
    for name, why in written["plot_errors"].items():
        console.print(f"[dim]no {name}: {escape(why)}[/]")
    if "best_config" in written:
        console.print(f"reproduce the best trial: fmnist train --config {written['best_config']}")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
