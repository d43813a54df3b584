"""``fmnist sweep SWEEP.yaml``: W&B-style sweeps on Optuna, on one machine or many."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fmnist import names
from fmnist.cli.common import console, fail
from fmnist.sweep.storage import DEFAULT_GRACE


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
    wandb: Annotated[
        bool | None,
        typer.Option(
            "--wandb/--no-wandb",
            help="Log each trial to Weights & Biases (on where the sweep file names a W&B project or entity).",
            show_default=False,
        ),
    ] = None,
    grace_period: Annotated[
        int,
        typer.Option(
            "--grace-period",
            help="Seconds without a heartbeat before a trial of another machine is taken as dead and retried.",
        ),
    ] = DEFAULT_GRACE,
    status: Annotated[
        bool, typer.Option("--status", help="Show the study's progress (read-only): trials, who runs what, the best.")
    ] = False,
) -> None:
    """Search hyperparameters with Optuna: grid, random or bayes (TPE), with optional Hyperband pruning.

    A trial whose worker died (killed, out of memory, a machine gone) is retried from its last checkpoint: at once
    on the same machine, after --grace-period on another; run the same command again to continue a sweep."""
    import importlib.util

    from fmnist.cli.common import quiet_warnings
    from fmnist.cli.train import check_out, check_wandb
    from fmnist.training.config import ConfigError, TrainConfig

    quiet_warnings()

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
    if grace_period <= 0:
        fail(f"--grace-period must be > 0 seconds, got {grace_period}", 2)
    use_wandb = wandb if wandb is not None else spec.wandb is not None
    if use_wandb and not status:  # once, before the first trial
        check_wandb("--wandb" if wandb else f"the sweep file's {spec.wandb}")
    name = study or spec.name
    options = SweepOptions(
        out=out or Path("runs") / "sweeps" / name,
        storage=storage,
        study_name=name,
        trials=total,
        workers=workers,
        seed=seed,
        base=base,
        wandb=use_wandb,
        sweep_file=str(sweep_file),
        grace=grace_period,
        setup=quiet_warnings,
    )
    if status:
        show_status(spec, options)
        return
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
        f"sweep [bold]{escape(options.study_name)}[/]: {spec.method}, {spec.goal} {_metric_words(spec)}, "
        f"{trial_cap(spec, options)} trials, {options.workers} worker(s)\nstorage {storage}",
        highlight=False,
    )
    for note in spec.notes:
        console.print(f"[yellow]note[/]: {escape(note)}", highlight=False)
    on_event = _trial_lines(spec)
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
    for name, why in written.get("plot_notes", {}).items():
        console.print(f"[dim]{name}: {escape(why)}[/]")
    if "best_config" in written:
        console.print(f"reproduce the best trial: fmnist train --config {escape(str(written['best_config']))}")
    _report(options.out)
    _elsewhere(rows, options.grace)
    _verdict(rows)


def _trial_lines(spec: Any) -> Any:
    """What the terminal shows of each trial: its values once, when it starts (only those that take effect), then
    how it ended, by number."""
    from rich.markup import escape

    colours = {"complete": "green", "pruned": "yellow", "failed": "red", "interrupted": "yellow"}
    colours.update({"retried": "yellow", "given up": "red", "taken over": "yellow"})

    def on_event(event: Any) -> None:
        if event.state == "running":  # the values once, when the trial starts; then the outcome by number
            params = " ".join(f"{names.short(k)}={_cell(v)}" for k, v in event.params.items())
            note = f" [yellow]({escape(event.note)})[/]" if event.note else ""
            console.print(f"[dim]trial {event.number}:[/] {escape(params)}{note}", highlight=False)
            return
        head = f"[{colours[event.state]}]trial {event.number} {event.state}[/]"
        head += f" {escape(event.note)}" if event.note else ""
        value = f" {spec.metric} {event.value:.4f}" if event.value is not None else ""
        reason = f" ({escape(event.reason)})" if event.reason and event.state != "complete" else ""
        console.print(f"{head}{value}{reason}", highlight=False)
        stuck = _not_learning(event) if event.state in ("complete", "pruned") else None
        if stuck is not None:
            console.print(f"  [yellow]note[/]: {escape(stuck)}", highlight=False)

    return on_event


def _metric_words(spec: Any) -> str:
    return f"the best epoch's {spec.metric}" if spec.best else spec.metric


def _not_learning(event: Any) -> str | None:
    """The not-learning note of a trial's run (``fmnist.cli.progress.not_learning``), from its run directory."""
    import json

    from fmnist.cli.progress import not_learning
    from fmnist.files import read_jsonl
    from fmnist.rundir.layout import FILES

    try:
        history = read_jsonl(Path(event.run_dir) / FILES["metrics"])
        config = json.loads((Path(event.run_dir) / FILES["config"]).read_text())
    except (OSError, ValueError, TypeError):  # another machine's run directory, or none
        return None
    return not_learning(history, config)


def _elsewhere(rows: list[dict[str, Any]], grace: int) -> None:
    """Say which trials still run (on other machines, or in other commands), and what to do if they died."""
    running = [r for r in rows if r["state"] == "running"]
    if running:
        numbers = ", ".join(str(r["trial"]) for r in running[:8]) + (", ..." if len(running) > 8 else "")
        console.print(
            f"[dim]{len(running)} trial(s) still running elsewhere ({numbers}); if their worker is gone, any "
            f"worker retries them {grace} s after their last heartbeat: run this command again then[/]",
            highlight=False,
        )


def _verdict(rows: list[dict[str, Any]]) -> None:
    """The exit status tells the truth: every ended trial failed -> exit 1 with the commonest reason; some
    failed -> say how many."""
    from fmnist.sweep.results import failures

    failed, common = failures(rows)
    ended = [r for r in rows if r["state"] != "running"]
    if ended and failed == len(ended):
        fail(f"all {failed} trials failed; the commonest reason: {common}", 1)
    if failed:
        console.print(f"[yellow]{failed} of {len(ended)} trials failed[/] (reasons in leaderboard.csv)")


def show_status(spec: Any, options: Any) -> None:
    """``--status``: the study's progress, read-only (nothing is created, run or changed)."""
    from rich.markup import escape

    from fmnist.sweep.results import status
    from fmnist.sweep.storage import StorageError
    from fmnist.sweep.study import load_study, space_change, trial_cap

    try:
        study = load_study(spec, options)
    except StorageError as err:
        fail(f"{err}: nothing has run (fmnist sweep {options.sweep_file} starts it)", 2)
    except Exception as err:  # an unreachable server, a file that is not a study...
        fail(f"the study could not be opened ({type(err).__name__}: {err})", 2)
    view = status(study, spec)
    storage = escape(_redact(options.storage_url))
    console.print(
        f"sweep [bold]{escape(study.study_name)}[/]: {spec.method}, {spec.goal} {_metric_words(spec)}, "
        f"{trial_cap(spec, options)} trials\nstorage {storage}",
        highlight=False,
    )
    change = space_change(study, spec)
    if change is not None:
        console.print(f"[yellow]note[/]: {escape(change)}", highlight=False)
    order = ("complete", "pruned", "failed", "running", "waiting", "retry waiting")
    states = sorted(view["states"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    console.print("trials: " + (", ".join(f"{n} {state}" for state, n in states) or "none yet"), highlight=False)
    for r in view["running"]:
        progress = f", {r['epochs_done']}/{r['epochs'] or '?'} epochs" if r["epochs_done"] is not None else ""
        since = r["since"].strftime("%H:%M:%S") if r["since"] else "?"
        beat = f", heartbeat {r['heartbeat_age']:.0f} s ago" if r["heartbeat_age"] is not None else ""
        console.print(
            f"  running {r['trial']}: {escape(r['worker'])} ({r['alive']}{beat}) since {since}{progress}",
            highlight=False,
        )
    best = view["best"]
    if best is not None:
        params = " ".join(f"{names.short(p.name)}={_cell(best.get(p.name))}" for p in spec.searched)
        console.print(f"best so far: trial {best['trial']}, {spec.metric} {best[spec.metric]:.4f}", highlight=False)
        if params:
            console.print(f"  {escape(params)}", highlight=False)
    else:
        console.print("best so far: none (no trial completed)")


def _report(out: Path) -> None:
    """Write the sweep's report.html; a report that cannot be written is a warning, never a failed sweep."""
    from rich.markup import escape

    from fmnist.sweep.report import write_sweep_report

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
    columns = _fixed_columns(shown, spec.metric)
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


def _fixed_columns(shown: list[dict[str, Any]], metric: str) -> dict[str, list[str]]:
    """The leaderboard's first columns: trial number, the metric, and the state where some trial did not
    complete."""
    columns: dict[str, list[str]] = {"#": [str(r["trial"]) for r in shown]}
    values = [f"{r[metric]:.4f}" if r[metric] is not None else "-" for r in shown]
    columns[METRIC_HEADERS.get(metric, metric)] = values
    if any(r["state"] != "complete" for r in shown):
        columns["state"] = [r["state"] for r in shown]
    return columns


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
