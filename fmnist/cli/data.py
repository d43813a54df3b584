"""``fmnist data``: download, inspect and look at the datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fmnist.cli.common import DatasetChoice, console, fail

data_app = typer.Typer(help="Download, inspect and look at the datasets.", no_args_is_help=True)

DatasetOpt = Annotated[DatasetChoice, typer.Option("--dataset", "-d", help="Which dataset.")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="FMNIST_DATA_DIR", help="A directory searched first for the IDX .gz files."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("download")
def download(dataset: DatasetOpt = DatasetChoice.fashion_mnist) -> None:
    """Fetch the dataset into the cache from its mirrors, verified, whatever else is on disk."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from fmnist.data import DataFileError, cache_dir, download_file, get_dataset_spec

    spec = get_dataset_spec(dataset.value)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
    ) as progress:
        tasks: dict[str, int] = {}

        def report(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done, total=total)

        for file in spec.files:
            try:
                path = download_file(spec, file, progress=report)
            except DataFileError as err:
                fail(str(err))
            console.print(f"[green]✓[/] {path} (SHA-256 verified)")
    console.print(f"{spec.name} is in {cache_dir() / spec.name}")


@data_app.command("info")
def info(dataset: DatasetOpt = DatasetChoice.fashion_mnist, data_dir: DataDirOpt = None) -> None:
    """Where each file was found, its size, whether it verified, and the class counts."""
    import numpy as np
    from rich.markup import escape
    from rich.table import Table

    from fmnist.data import get_dataset_spec, load_dataset
    from fmnist.data.fetch import inspect_files

    spec = get_dataset_spec(dataset.value)
    table = Table(title=f"{spec.name} files")
    for column in ("file", "found in", "source", "size", "verified"):
        table.add_column(column, overflow="fold")
    statuses = inspect_files(spec, data_dir)
    for status in statuses:
        verified = "[green]yes[/]" if status.verified else f"[red]no[/]: {escape(status.error or '')}"
        table.add_row(
            status.spec.filename,
            escape(str(status.path.parent)) if status.path else "[yellow]missing[/]",
            status.source or "-",
            _size(status.size),
            verified,
        )
    console.print(table)
    if not all(s.verified for s in statuses):
        fail(f"{spec.name} is not complete and verified; run `fmnist data download --dataset {spec.name}`")
    ds = load_dataset(spec, data_dir=data_dir, download=False)
    counts = Table(title=f"{spec.name} class counts")
    for column in ("class", "name", "train", "test"):
        counts.add_column(column, justify="right" if column in ("class", "train", "test") else "left")
    train, test = np.bincount(ds.train_labels, minlength=10), np.bincount(ds.test_labels, minlength=10)
    for c, name in enumerate(ds.class_names):
        counts.add_row(str(c), name, str(train[c]), str(test[c]))
    counts.add_row("", "total", str(train.sum()), str(test.sum()))
    console.print(counts)


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"


@data_app.command("show")
def show(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the PNG.")] = Path("samples.png"),
    dataset: DatasetOpt = DatasetChoice.fashion_mnist,
    split: Annotated[str, typer.Option(help="train or test.")] = "train",
    data_dir: DataDirOpt = None,
) -> None:
    """Write a 2x5 grid with one image of each class, titled with the class names."""
    if split not in ("train", "test"):
        fail(f"--split must be train or test, got {split!r}", code=2)
    if out.suffix.lower() != ".png":
        fail(f"--out must be a .png file, got {out}", code=2)
    from fmnist.data import DataFileError, load_dataset
    from fmnist.render.charts import samples_figure, save_png

    try:
        ds = load_dataset(dataset.value, data_dir=data_dir)
    except DataFileError as err:
        fail(str(err))
    images, labels = ds.split(split)
    save_png(samples_figure(images, labels, ds.class_names, title=f"{ds.name} ({split})"), out)
    console.print(f"wrote {out}")
