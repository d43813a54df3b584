"""PNG plots (matplotlib, imported lazily with the non-interactive Agg backend), written atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        fig.clf()
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
