"""PNG plots (matplotlib, imported lazily with the non-interactive Agg backend), written atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from fmnist.training.atomic import atomic_open
from fmnist.training.metrics import normalize_rows


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike) -> None:
    try:
        with atomic_open(path) as out:
            fig.savefig(out, format="png", dpi=120, bbox_inches="tight")
    finally:
        _pyplot().close(fig)


def plot_samples(
    images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], path: str | os.PathLike, title: str = ""
) -> None:
    """A 2x5 grid with the first image of each class, titled with its class name."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 5, figsize=(10, 4.6))
    for c, ax in enumerate(axes.flat):
        ax.axis("off")
        hits = np.flatnonzero(labels == c)
        if c < len(class_names) and hits.size:
            ax.imshow(images[hits[0]].reshape(28, 28), cmap="gray_r", vmin=0, vmax=255)
            ax.set_title(f"{c}: {class_names[c]}", fontsize=10)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_curves(history: Sequence[dict], path: str | os.PathLike, title: str = "") -> None:
    """Loss and accuracy per epoch, train vs validation, side by side."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "accuracy")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", label="train", markersize=3)
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "s-", label="validation", markersize=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike, title: str = "") -> None:
    """The row-normalised confusion matrix (true class per row) with class names and cell values."""
    plt = _pyplot()
    norm = normalize_rows(matrix)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(8, 7))
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            color = "white" if norm[i, j] > 0.5 else "black"
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color)
    ax.set_title(title or "confusion matrix (row-normalised)")
    _save(fig, path)


def plot_throughput(results: Sequence[dict], path: str | os.PathLike, title: str = "") -> None:
    """Samples per second against batch size, one line per (implementation, device), log-log."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    series: dict[str, list[tuple[int, float]]] = {}
    for r in results:
        series.setdefault(f"{r['implementation']} ({r['device']})", []).append(
            (r["batch_size"], r["samples_per_second"])
        )
    for label, points in series.items():
        points.sort()
        style = "o-" if label.startswith("fmnist") else "s--"
        ax.plot([b for b, _ in points], [s for _, s in points], style, label=label, linewidth=2 if style == "o-" else 1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("training samples / s")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    if title:
        ax.set_title(title)
    _save(fig, path)
