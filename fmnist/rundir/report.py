"""The HTML report of a run: one self-contained ``report.html`` in the run directory.

It is built from the run directory's files alone (plus its ``model.npz`` and the dataset already on this machine),
so ``fmnist report RUN_DIR`` can rebuild it at any time, for completed, diverged, interrupted and old runs alike: a
section whose files are missing says so. The page has a Content-Security-Policy that allows no script and no
request, so it works offline and stays a few hundred kB.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import math
import os
import shlex
import statistics
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from fmnist import __version__
from fmnist.files import ArchiveError, atomic_write, read_json, read_jsonl
from fmnist.render.charts import chart_style, new_figure, png_uri
from fmnist.render.html import (
    compact,
    differences,
    duration,
    file_time,
    finite,
    fixed,
    flatten,
    now_text,
    pct,
    render,
    sig,
    to_float,
)
from fmnist.rundir.layout import FILES, RunDirError
from fmnist.training.config import NOT_OPTIONS, TrainConfig

MISCLASSIFIED = 42  # the most confident mistakes shown (6 rows of 7 on a wide page)
TRAIN_COLOR, VAL_COLOR, LR_COLOR = "#2563eb", "#ea580c", "#7c3aed"
BLUE, ORANGE = (37, 99, 235), (234, 88, 12)


def write_run_report(
    run_dir: str | os.PathLike,
    dataset: Any = None,
    datasets: dict[Any, Any] | None = None,
    links: dict[str, str] | None = None,
) -> Path:
    """Build ``run_dir/report.html`` and return its path.

    Works for completed, diverged, interrupted and old run directories: a section whose files are missing says so.

    Args:
        run_dir: a directory written by ``fmnist train``.
        dataset: the run's ``Dataset`` where the caller has it loaded (the trainer does); else it is read from
            this machine's files (never downloaded).
        datasets: a cache of loaded datasets shared between calls (a sweep report builds many run reports).
        links: pages this report points to, from whoever knows them: ``{"sweep": URL}`` for a sweep's trial.

    Raises:
        RunDirError: no readable ``config.json``.
    """
    run_dir = Path(run_dir)
    config = read_json(run_dir / FILES["config"])
    if not isinstance(config, dict):
        raise RunDirError(f"{run_dir}: not a run directory (no readable {FILES['config']})")
    history = read_jsonl(run_dir / FILES["metrics"])
    summary = read_json(run_dir / FILES["summary"])
    summary = summary if isinstance(summary, dict) else None
    layer_stats = read_jsonl(run_dir / FILES["layer_stats"])
    status = _status(run_dir, config, history, summary)
    predictions = _predictions(run_dir, config, dataset, datasets if datasets is not None else {})
    best = _best_epoch(history, summary)
    context = {
        "title": run_dir.resolve().name,
        "run_dir": str(run_dir.resolve()),
        "status": status,
        "subtitle": _subtitle(config),
        "cards": _cards(config, history, summary, best),
        "what": _what_was_run(run_dir, config, status),
        "differences": differences(config, TrainConfig().to_dict(), skip=NOT_OPTIONS),
        "environment": flatten(config.get("environment") or {}),
        "curves": _curves_chart(history, config, best) if history else None,
        "epochs": _epoch_rows(history),
        "classes": _class_section(run_dir, predictions),
        "misclassified": _misclassified(predictions),
        "layers": _layer_section(layer_stats),
        "files": [
            {"name": p.name, "href": "./" + quote(p.name)}
            for p in sorted(run_dir.iterdir())
            if p.is_file() and p.name != FILES["report"]
        ],
        "sweep_report": (links or {}).get("sweep"),
        "generated": now_text(),
        "version": __version__,
    }
    out = run_dir / FILES["report"]
    atomic_write(out, render("run_report.html.j2", context))
    return out


def _status(run_dir: Path, config: dict, history: list[dict], summary: dict | None) -> dict[str, str]:
    """What state the run ended in, and a sentence about it."""
    planned = config.get("epochs", "?")
    done = history[-1].get("epoch", len(history)) if history else 0
    if summary is not None and summary.get("status", "completed") == "diverged":
        detail = summary.get("error") or "the loss became NaN or infinite"
        return {"name": "diverged", "detail": f"{detail} (last good epoch {summary.get('last_good_epoch', done)})"}
    if summary is not None:
        early = (
            f", stopped early (model from epoch {summary.get('model_epoch')})" if summary.get("stopped_early") else ""
        )
        return {"name": summary.get("status", "completed"), "detail": f"{done} of {planned} epochs{early}"}
    if not history:
        return {"name": "not started", "detail": f"no epoch finished (no {FILES['metrics']})"}
    return {
        "name": "interrupted",
        "detail": f"stopped (or still running) after epoch {done} of {planned}: no {FILES['summary']} yet",
    }


def _subtitle(config: dict) -> str:
    parts = [str(config.get("dataset", "?"))]
    built = _built_model(config)
    if built is not None:
        parts.append(built[0])
    elif sizes := _sizes(config):
        parts.append(" → ".join(map(str, sizes)))
    parts += [str(config.get("activation", "")), str(config.get("optimizer", ""))]
    return " · ".join(p for p in parts if p)


def _built_model(config: dict) -> tuple[str, int] | None:
    """(architecture line, number of parameters) of the model the configuration builds, or None for a
    configuration this version cannot read."""
    from fmnist.backend import get_backend
    from fmnist.training.assemble import build_model

    try:
        model = build_model(TrainConfig.from_record(config), get_backend("cpu"), 784, 10)
    except (ValueError, TypeError, KeyError):
        return None
    return model.describe(), model.flat.size


def _sizes(config: dict, num_features: int = 784, num_classes: int = 10) -> list[int]:
    hidden = config.get("hidden_sizes")
    if hidden is None:
        try:
            hidden = [int(config["hidden_size"])] * int(config["num_layers"])
        except (KeyError, TypeError, ValueError):
            return []
    return [num_features, *map(int, hidden), num_classes]


def _best_epoch(history: list[dict], summary: dict | None) -> dict[str, Any] | None:
    """The epoch with the lowest validation loss (as the trainer chose it when it says so)."""
    chosen = (summary or {}).get("best_epoch")
    rows = {h.get("epoch"): h for h in history}
    if chosen in rows:
        return rows[chosen]
    scored = [h for h in history if finite(h.get("val_loss"))]
    return min(scored, key=lambda h: h["val_loss"]) if scored else None


def _cards(config: dict, history: list[dict], summary: dict | None, best: dict | None) -> list[dict[str, str]]:
    summary = summary or {}
    cards = []
    accuracy = summary.get("test_accuracy")
    cards.append(
        {
            "label": "test accuracy",
            "value": pct(accuracy) if finite(accuracy) else "—",
            "note": f"test loss {summary['test_loss']:.4f}" if finite(summary.get("test_loss")) else "no test run",
        }
    )
    if best is not None:
        note = f"val accuracy {pct(best.get('val_accuracy'))}, loss {fixed(best.get('val_loss'))}"
        cards.append({"label": "best validation epoch", "value": f"{best.get('epoch')}", "note": note})
    else:
        cards.append({"label": "best validation epoch", "value": "—", "note": "no validation metrics"})
    seconds = summary.get("total_seconds")
    train_seconds = sum(h.get("seconds", 0.0) for h in history)
    total = seconds if finite(seconds) else train_seconds
    epochs_note = f"{len(history)} of {config.get('epochs', '?')} epochs"
    if history:
        epochs_note += f", {duration(train_seconds / len(history))}/epoch"
    cards.append({"label": "time", "value": duration(total) if history or seconds else "—", "note": epochs_note})
    rates = [h["samples_per_second"] for h in history if finite(h.get("samples_per_second"))]
    cards.append(
        {
            "label": "samples / s",
            "value": compact(statistics.median(rates)) if rates else "—",
            "note": "training pass, median over epochs" if rates else "no epoch finished",
        }
    )
    return cards


def _what_was_run(run_dir: Path, config: dict, status: dict) -> dict[str, Any]:
    where = str(run_dir.resolve())
    command = config.get("command")
    if isinstance(command, list | tuple):
        command = shlex.join(str(c) for c in command)
    date = config.get("started") or file_time(run_dir / FILES["config"])
    built = _built_model(config)
    if built is not None:
        model, params = f"{built[0]}, {config.get('weight_init')} init", built[1]
    else:
        sizes = _sizes(config)
        params = sum(a * b + b for a, b in itertools.pairwise(sizes)) if sizes else None
        model = f"{' → '.join(map(str, sizes))}, {config.get('activation')}, {config.get('weight_init')} init"
    rows = [
        ("run directory", where),
        ("date", str(date)),
        ("dataset", str(config.get("dataset"))),
        ("model", model + (f", {params:,} parameters" if params else "")),
        ("seed", str(config.get("seed"))),
        ("device", _device(config.get("environment") or {}, config)),
        ("status", f"{status['name']}: {status['detail']}"),
    ]
    normalization = config.get("normalization")
    if isinstance(normalization, list) and len(normalization) == 2:
        rows.append(("pixel normalisation", f"mean {normalization[0]:.4f}, std {normalization[1]:.4f}"))
    return {
        "reproduce": f"fmnist train --config {shlex.quote(str(Path(where) / 'config.json'))}",
        "typed": command,
        "resume": f"fmnist train --resume {shlex.quote(where)}" if status["name"] == "interrupted" else None,
        "rows": rows,
    }


def _device(environment: dict, config: dict) -> str:
    """``cpu (numpy, float32)`` or ``gpu NVIDIA H200, 139.8 GB (cupy 13.6.0, float32)``."""
    device = str(environment.get("device") or config.get("device", "?"))
    if environment.get("gpu_name"):
        memory = environment.get("gpu_memory_gb")
        device += f" {environment['gpu_name']}" + (f", {memory} GB" if memory else "")
    library = environment.get("namespace") or environment.get("backend")
    if environment.get("cupy"):
        library = f"cupy {environment['cupy']}"
    details = ", ".join(str(v) for v in (library, environment.get("dtype")) if v)
    return f"{device} ({details})" if details else device


def _curves_chart(history: list[dict], config: dict, best: dict | None) -> str:
    """Loss, accuracy and learning rate per epoch as one PNG data URI."""
    from matplotlib.ticker import FuncFormatter

    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    lr = _learning_rates(history, config)
    with chart_style():
        fig = new_figure(11.5, 3.3)
        axes = fig.subplots(1, 3 if lr else 2)
        for ax, key, title in ((axes[0], "loss", "Loss"), (axes[1], "accuracy", "Accuracy")):
            scale = 100.0 if key == "accuracy" else 1.0
            for split, color, marker in (("train", TRAIN_COLOR, "o"), ("val", VAL_COLOR, "s")):
                values = [to_float(h.get(f"{split}_{key}")) * scale for h in history]
                if any(math.isfinite(v) for v in values):
                    label = "train" if split == "train" else "validation"
                    ax.plot(epochs, values, marker=marker, markersize=3, color=color, label=label, linewidth=1.6)
            if best is not None:
                ax.axvline(best.get("epoch"), color="#9aa5b1", linestyle=":", linewidth=1)
            ax.set_title(title + (" (%)" if key == "accuracy" else ""))
            ax.set_xlabel("epoch")
            ax.legend(loc="best")
        if lr:
            ax = axes[2]
            ax.plot(epochs, lr["values"], color=LR_COLOR, marker="o", markersize=3, linewidth=1.6)
            ax.set_title("Learning rate" + ("" if lr["recorded"] else " (from the schedule)"))
            ax.set_xlabel("epoch")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.2g}"))
        for ax in axes:
            ax.xaxis.get_major_locator().set_params(integer=True)
        fig.tight_layout(w_pad=3)
        return png_uri(fig)


def _learning_rates(history: list[dict], config: dict) -> dict[str, Any] | None:
    """The learning rate per epoch: as recorded, else from the schedule in the config (at each epoch's end)."""
    if all(finite(h.get("lr")) for h in history):
        return {"values": [h["lr"] for h in history], "recorded": True}
    from fmnist.training.assemble import schedule

    try:
        samples = history[0]["samples_per_second"] * history[0]["seconds"]  # the training pass of one epoch
        cfg = TrainConfig.from_record(config)
        steps = max(1, math.ceil(round(samples) / cfg.batch_size))
        factor = schedule(cfg, steps) or (lambda t: 1.0)
        return {"values": [cfg.learning_rate * factor(int(h["epoch"]) * steps) for h in history], "recorded": False}
    except (KeyError, TypeError, ValueError):
        return None


def _epoch_rows(history: list[dict]) -> list[dict[str, str]]:
    rows = []
    for h in history:
        rows.append(
            {
                "epoch": str(h.get("epoch", "")),
                "train_loss": fixed(h.get("train_loss")),
                "train_accuracy": pct(h.get("train_accuracy")),
                "val_loss": fixed(h.get("val_loss")),
                "val_accuracy": pct(h.get("val_accuracy")),
                "lr": sig(h.get("lr")) if "lr" in h else "",
                "seconds": duration(h.get("seconds")),
                "rate": compact(h.get("samples_per_second")),
            }
        )
    return rows


# --------------------------------------------------------------------------------- predictions on the test set


def _predictions(run_dir: Path, config: dict, dataset: Any, datasets: dict[Any, Any]) -> dict[str, Any]:
    """Test-set labels, predicted classes and probabilities from ``model.npz``, or why there are none."""
    from fmnist.rundir.modelio import load_model
    from fmnist.training.inference import host_predictions

    if not (run_dir / FILES["model"]).is_file():
        return {"missing": f"no {FILES['model']}: the run did not finish, so there are no test predictions"}
    try:
        model, meta = load_model(run_dir / FILES["model"])
    except ArchiveError as err:
        return {"missing": f"{FILES['model']} could not be read: {err}"}
    if dataset is None:
        dataset = _dataset(str(config.get("dataset", meta.get("dataset"))), config.get("data_dir"), datasets)
    if isinstance(dataset, str):
        return {"missing": dataset}
    names = list(meta.get("class_names") or dataset.class_names)
    if len(names) != model.num_outputs:
        return {"missing": f"the model has {model.num_outputs} outputs but the dataset {len(names)} classes"}
    probs = host_predictions(model, dataset.test_images, tuple(meta["normalization"]))
    return {
        "images": dataset.test_images,
        "labels": np.asarray(dataset.test_labels, dtype=np.int64),
        "probs": probs,
        "predicted": np.argmax(probs, axis=1),
        "names": names,
    }


def _dataset(name: str, data_dir: str | None, cache: dict[Any, Any]) -> Any:
    """The dataset from local files only (never downloads); a string says why it is absent."""
    from fmnist.data import DataFileError, load_dataset

    key = (name, data_dir, os.environ.get("FMNIST_DATA_DIR"), os.environ.get("FMNIST_CACHE_DIR"))
    if key not in cache:
        try:
            cache[key] = load_dataset(name, data_dir=data_dir, download=False)
        except (DataFileError, OSError, KeyError, ValueError) as err:
            cache[key] = f"the {name} test set is not on this machine ({err}); `fmnist data download` fetches it"
    return cache[key]


def _class_section(run_dir: Path, predictions: dict) -> dict[str, Any]:
    """The confusion matrix (from the predictions, else ``confusion_matrix.csv``) and per-class accuracy."""
    from fmnist.training.metrics import confusion_matrix

    if "predicted" in predictions:
        names = predictions["names"]
        matrix = confusion_matrix(predictions["labels"], predictions["predicted"], len(names))
        source = f"test set, from {FILES['model']}"
    else:
        names, matrix = _read_confusion_csv(run_dir / FILES["confusion_csv"])
        source = f"from {FILES['confusion_csv']}"
        if matrix is None:
            return {"missing": predictions.get("missing", "no predictions")}
    totals = matrix.sum(axis=1)
    accuracy = np.diag(matrix) / np.maximum(totals, 1)
    largest_error = max(1, int((matrix - np.diag(np.diag(matrix))).max()))
    rows = []
    for i, name in enumerate(names):
        cells = []
        for j, count in enumerate(matrix[i]):
            share = count / max(1, totals[i])
            # the diagonal in blue by its share of the row; mistakes in orange, relative to the largest one
            style = _shade(BLUE, share) if i == j else _shade(ORANGE, 0.85 * count / largest_error)
            cells.append({"count": int(count), "style": style, "diagonal": i == j, "title": f"{share:.1%}"})
        rows.append({"name": name, "cells": cells})
    per_class = [
        {"name": name, "accuracy": pct(acc), "width": f"{100 * acc:.1f}%", "worst": acc == accuracy.min()}
        for name, acc in zip(names, accuracy.tolist(), strict=True)
    ]
    total = int(matrix.sum())
    return {
        "missing": None,
        "names": names,
        "rows": rows,
        "per_class": per_class,
        "source": source,
        "total": f"{total:,}",
        "errors": f"{total - int(np.trace(matrix)):,}",
        "note": predictions.get("missing"),
    }


def _read_confusion_csv(path: Path) -> tuple[list[str], np.ndarray | None]:
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        names = rows[0][1:]
        matrix = np.array([[int(v) for v in row[1:]] for row in rows[1:]], dtype=np.int64)
        return names, matrix if matrix.shape == (len(names), len(names)) else None
    except (OSError, IndexError, ValueError):
        return [], None


def _shade(rgb: tuple[int, int, int], strength: float) -> str:
    """An inline background for a heat-map cell: the colour at ``strength`` (0..1) over white."""
    strength = min(1.0, max(0.0, float(strength)))
    r, g, b = (round(255 + (c - 255) * strength) for c in rgb)
    text = "#ffffff" if strength > 0.55 else "#1f2933"
    return f"background:#{r:02x}{g:02x}{b:02x};color:{text}"


def _misclassified(predictions: dict) -> dict[str, Any]:
    """The most confident mistakes, as small embedded images with their true and predicted class."""
    if "predicted" not in predictions:
        return {"missing": predictions["missing"]}
    labels, predicted, probs = predictions["labels"], predictions["predicted"], predictions["probs"]
    wrong = np.flatnonzero(predicted != labels)
    confidence = probs[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:MISCLASSIFIED]
    names = predictions["names"]
    items = [
        {
            "index": int(i),
            "image": _image_uri(predictions["images"][i]),
            "true": names[labels[i]],
            "predicted": names[predicted[i]],
            "probability": _probability(probs[i, predicted[i]]),
            "true_probability": _probability(probs[i, labels[i]]),
        }
        for i in order
    ]
    return {
        "missing": None,
        "images": items,
        "count": f"{wrong.size:,}",
        "total": f"{labels.size:,}",
        "shown": len(items),
    }


def _probability(p: float) -> str:
    """One decimal, without rounding a near-certainty up to 100% or a small chance down to 0%."""
    if p >= 0.9995:
        return ">99.9%"
    return "<0.1%" if p < 0.0005 else f"{p:.1%}"


def _image_uri(pixels: np.ndarray) -> str:
    """A 28x28 image as a grayscale PNG data URI, dark ink on white like a printed page."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(255 - np.asarray(pixels, dtype=np.uint8).reshape(28, 28), mode="L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ----------------------------------------------------------------------------------------- layer statistics


LAYER_COLUMNS = (
    ("weight_mean", "weight mean"),
    ("weight_std", "weight std"),
    ("weight_abs_max", "|weight| max"),
    ("grad_rms", "grad RMS"),
    ("grad_abs_max", "|grad| max"),
    ("update_rms_ratio", "update / weight RMS"),
)


def _layer_section(records: list[dict]) -> dict[str, Any]:
    """The last epoch's per-parameter statistics as a table, and the weights' statistics over epochs."""
    records = [r for r in records if isinstance(r.get("params"), dict) and r["params"]]
    if not records:
        return {"missing": f"no {FILES['layer_stats']} in this run directory (it was written by an older fmnist)"}
    last = records[-1]
    rows = []
    for name, stats in last["params"].items():
        ratio = stats.get("update_rms_ratio")
        rows.append(
            {
                "name": name,
                "shape": " × ".join(map(str, stats.get("shape", []))),
                "stats": [sig(stats.get(key)) for key, _ in LAYER_COLUMNS],
                "warn": not all(finite(stats.get(key)) for key, _ in LAYER_COLUMNS if key in stats)
                or (finite(ratio) and not 1e-5 <= ratio <= 1e-1),
            }
        )
    return {
        "missing": None,
        "epoch": last.get("epoch"),
        "columns": [label for _, label in LAYER_COLUMNS],
        "rows": rows,
        "chart": _layer_chart(records),
    }


def _layer_chart(records: list[dict]) -> str:
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(records)]
    names = [n for n in records[-1]["params"] if n.endswith("weight")] or list(records[-1]["params"])
    panels = (("weight_std", "Weight std", False), ("grad_rms", "Gradient RMS", True))
    panels += (("update_rms_ratio", "Update / weight RMS", True),)
    with chart_style():
        fig = new_figure(11.5, 3.0)
        axes = fig.subplots(1, 3)
        for ax, (key, title, log) in zip(axes, panels, strict=True):
            series = {name: [to_float(r["params"].get(name, {}).get(key)) for r in records] for name in names}
            for k, (name, values) in enumerate(series.items()):
                ax.plot(epochs, values, marker="o", markersize=2.5, linewidth=1.4, label=name, color=f"C{k % 10}")
            if log and any(v > 0 for values in series.values() for v in values):
                ax.set_yscale("log")
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
        axes[0].legend(loc="best", fontsize=8)
        fig.tight_layout(w_pad=3)
        return png_uri(fig)
