"""Charts: matplotlib figures built outside pyplot (no global state, nothing to close), each written either as a
PNG file (atomically) or as a PNG data URI for a page. matplotlib is imported only when a chart is drawn."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from fmnist.files import atomic_open

CHART_STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#9aa5b1",
    "axes.grid": True,
    "grid.color": "#e4e7eb",
    "grid.linewidth": 0.8,
    "xtick.color": "#52606d",
    "ytick.color": "#52606d",
    "legend.frameon": False,
    "savefig.dpi": 144,
}


def chart_style() -> Any:
    """A context manager with the reports' matplotlib style."""
    import matplotlib

    return matplotlib.rc_context(CHART_STYLE)


def new_figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` of that size in inches, outside pyplot."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def png_uri(fig: Any, dpi: int | None = None) -> str:
    """The figure as a PNG data URI (for a page)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or CHART_STYLE["savefig.dpi"], facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def save_png(fig: Any, path: str | os.PathLike, dpi: int = 120) -> None:
    """The figure as a PNG file, written atomically."""
    with atomic_open(path) as out:
        fig.savefig(out, format="png", dpi=dpi, bbox_inches="tight")


def samples_figure(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], title: str = "") -> Any:
    """A 2x5 grid with the first image of each class, titled with its class name."""
    fig = new_figure(10, 4.6)
    for c, ax in enumerate(fig.subplots(2, 5).flat):
        ax.axis("off")
        hits = np.flatnonzero(labels == c)
        if c < len(class_names) and hits.size:
            ax.imshow(images[hits[0]].reshape(28, 28), cmap="gray_r", vmin=0, vmax=255)
            ax.set_title(f"{c}: {class_names[c]}", fontsize=10)
    if title:
        fig.suptitle(title)
    return fig


def curves_figure(history: Sequence[dict], title: str = "") -> Any:
    """Loss and accuracy per epoch, train vs validation, side by side."""
    epochs = [h["epoch"] for h in history]
    fig = new_figure(11, 4.2)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", label="train", markersize=3)
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "s-", label="validation", markersize=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], title: str = "") -> Any:
    """The row-normalised confusion matrix (true class per row) with class names and cell values."""
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    k = len(class_names)
    fig = new_figure(8, 7)
    ax = fig.subplots()
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
    return fig


def throughput_figure(results: Sequence[dict], title: str = "") -> Any:
    """Samples per second against batch size, one line per (implementation, device), log-log."""
    fig = new_figure(8, 5)
    ax = fig.subplots()
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
    return fig
