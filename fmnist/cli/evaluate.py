"""``fmnist evaluate`` and ``fmnist predict``: look at what a trained run does."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from fmnist.cli.common import console, fail


class Split(StrEnum):
    test = "test"
    val = "val"
    train = "train"


RunDirArg = Annotated[Path, typer.Argument(help="A run directory written by fmnist train.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, gpu or auto.")]


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
    app.command("predict")(predict)


def _load_run(run_dir: Path, device: str) -> tuple[Any, Any, dict[str, Any]]:
    """(config, model, model metadata) of a run, or a clean failure."""
    from fmnist.backend import BackendUnavailableError
    from fmnist.files import ArchiveError
    from fmnist.rundir.layout import FILES, RunDirError, read_config
    from fmnist.rundir.modelio import load_model

    if device not in ("cpu", "gpu", "auto"):
        fail(f"--device must be cpu, gpu or auto, got {device!r}", 2)
    if not (run_dir / FILES["model"]).is_file():
        fail(f"{run_dir}: no {FILES['model']} (not a finished run directory)", 2)
    try:
        config = read_config(run_dir)
        model, meta = load_model(run_dir / FILES["model"], device)
    except (ArchiveError, RunDirError, BackendUnavailableError) as err:
        fail(str(err))
    return config, model, meta


def _split_data(config: Any, model: Any, split: str) -> Any:
    from fmnist.data import DataFileError
    from fmnist.training.splits import prepare_data

    try:
        splits = prepare_data(config, model.backend)
    except DataFileError as err:
        fail(str(err))
    if getattr(splits, split) is None:
        fail(f"--split {split}: this run has no validation split (it was trained with --val-fraction 0)", 2)
    return splits, getattr(splits, split)


def evaluate(
    run_dir: RunDirArg,
    split: Annotated[Split, typer.Option("--split", help="Which split to evaluate.")] = Split.test,
    device: DeviceOpt = "cpu",
) -> None:
    """Accuracy, per-class accuracy and the confusion matrix of a trained run."""
    from rich.table import Table

    from fmnist.training.inference import predict as predict_classes
    from fmnist.training.metrics import confusion_matrix, per_class_accuracy

    config, model, meta = _load_run(run_dir, device)
    _, data = _split_data(config, model, split.value)
    names = meta["class_names"]
    matrix = confusion_matrix(data.labels_host(), predict_classes(model, data), len(names))
    accuracy = float(matrix.trace() / matrix.sum())
    console.print(f"[bold]{run_dir}[/] on {config.dataset} {split.value} ({data.n} samples): accuracy {accuracy:.2%}")
    per_class = Table(title="per-class accuracy")
    per_class.add_column("class")
    per_class.add_column("accuracy", justify="right")
    for name, acc in zip(names, per_class_accuracy(matrix), strict=True):
        per_class.add_row(name, f"{acc:.2%}")
    console.print(per_class)
    confusion = Table(title="confusion matrix (rows: true, columns: predicted)")
    confusion.add_column("true \\ pred")
    for i in range(len(names)):
        confusion.add_column(str(i), justify="right")
    for i, name in enumerate(names):
        cells = [f"[bold]{v}[/]" if i == j else (str(v) if v else "[dim]0[/]") for j, v in enumerate(matrix[i])]
        confusion.add_row(f"{i} {name}", *cells)
    console.print(confusion)


def predict(
    run_dir: RunDirArg,
    index: Annotated[int | None, typer.Option("--index", help="Index of the image in the split.")] = None,
    split: Annotated[Split, typer.Option("--split", help="Which split --index refers to.")] = Split.test,
    image: Annotated[
        Path | None, typer.Option("--image", help="Your own 28x28 image (PNG); light-on-dark like the dataset.")
    ] = None,
    invert: Annotated[bool, typer.Option("--invert", help="Invert --image first (for dark-on-light).")] = False,
    device: DeviceOpt = "cpu",
) -> None:
    """Class probabilities for one image of a split, or for your own 28x28 image."""
    import numpy as np
    from rich.table import Table

    from fmnist.training.inference import host_predictions

    if (index is None) == (image is None):
        fail("give exactly one of --index N or --image FILE", 2)
    if image is not None and not image.is_file():
        fail(f"--image: {image} does not exist", 2)
    config, model, meta = _load_run(run_dir, device)
    names = meta["class_names"]
    truth = None
    if image is not None:
        pixels = _read_image(image, invert)
        source = str(image)
    else:
        splits, data = _split_data(config, model, split.value)
        if not 0 <= index < data.n:
            fail(f"--index must be in 0..{data.n - 1} for the {split.value} split, got {index}", 2)
        row = int(model.backend.to_numpy(data.rows)[index]) if data.rows is not None else index
        images, labels = splits.dataset.split("test") if split.value == "test" else splits.dataset.split("train")
        pixels, truth = images[row], int(labels[row])
        source = f"{split.value}[{index}]"
    probs = host_predictions(model, pixels[None], tuple(meta["normalization"]))[0]
    best = int(np.argmax(probs))
    table = Table(
        title=f"{source}: predicted [bold]{names[best]}[/]" + (f", true {names[truth]}" if truth is not None else "")
    )
    table.add_column("class")
    table.add_column("probability", justify="right")
    table.add_column("")
    for i in np.argsort(-probs):
        mark = " ← true" if truth == i else ""
        style = "bold green" if i == best else ""
        table.add_row(
            f"[{style}]{names[i]}[/]" if style else names[i],
            f"{probs[i]:.2%}",
            "█" * round(float(probs[i]) * 30) + mark,
        )
    console.print(table)


def _read_image(path: Path, invert: bool) -> Any:
    """A 28x28 PNG as uint8 grayscale (0 = background, 255 = ink, like the dataset)."""
    import matplotlib.image as mpimg
    import numpy as np

    try:
        pixels = mpimg.imread(path)
    except (OSError, ValueError, SyntaxError) as err:
        fail(f"--image: cannot read {path} ({err})", 2)
    if pixels.ndim == 3:
        pixels = pixels[..., :3].mean(axis=2)
    if pixels.shape != (28, 28):
        fail(f"--image: {path} is {pixels.shape[1]}x{pixels.shape[0]}, expected 28x28", 2)
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)
    return 255 - pixels if invert else pixels
