"""The images every implementation trains on: the real Fashion-MNIST training images where they are on this
machine (never downloaded by a benchmark), else synthetic images that can be learned (a template per class plus
noise). Random pixels with random labels would be unfair: nothing is learned, values drift into subnormal floats,
and an implementation that does not flush them (PyTorch on the CPU) slows down several times over."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fmnist.benchmark.case import CLASSES, FEATURES
from fmnist.data import FASHION_MNIST, DataFileError, load_dataset, pixel_stats

FETCH = "apt-get install dataset-fashion-mnist, or fmnist data download"


@dataclass(frozen=True)
class BenchData:
    """uint8 images (n, 784) and int64 labels (n,), their pixel normalisation, and where they come from.

    Attributes:
        source: ``"fashion-mnist"`` (the real training images) or ``"synthetic"``.
        note: one sentence saying which, for the table.
        distinct: how many different images there are (``samples`` beyond them repeat the set).
        location: the directory of the real files, or why they were not found.
    """

    images: np.ndarray
    labels: np.ndarray
    mean: float
    std: float
    source: str
    note: str
    distinct: int
    location: str = ""

    @property
    def samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def real(self) -> bool:
        return self.source == "fashion-mnist"

    def head(self, n: int) -> BenchData:
        """The first ``n`` samples (the same normalisation)."""
        return BenchData(
            self.images[:n],
            self.labels[:n],
            self.mean,
            self.std,
            self.source,
            self.note,
            min(n, self.distinct),
            self.location,
        )

    def to_dict(self) -> dict[str, Any]:
        keys = ("source", "note", "samples", "distinct", "mean", "std", "location")
        return {k: getattr(self, k) for k in keys}


def bench_data(samples: int, standardize: bool = True, data_dir: str | None = None, seed: int = 0) -> BenchData:
    """``samples`` training images: the first ones of the real Fashion-MNIST training split where its files are
    here (``data_dir``, ``FMNIST_DATA_DIR``, the cache, the system's directories), repeated past 60,000; else
    ``synthetic_data``. ``standardize``: pixels normalised by the images' own mean and std (``fmnist train``'s
    default), else scaled to [0, 1]."""
    try:
        dataset = load_dataset(FASHION_MNIST.name, data_dir=data_dir, download=False)
    except DataFileError as err:
        images, labels = synthetic_data(samples, seed=seed)
        first = str(err).split(". ")[0]
        note = f"synthetic images (class templates + noise): Fashion-MNIST is not here ({FETCH})"
        source, distinct, location = "synthetic", samples, first
    else:
        available = int(dataset.train_labels.shape[0])
        rows = np.arange(samples) % available
        images = dataset.train_images.reshape(available, -1)[rows]
        labels = dataset.train_labels[rows]
        distinct = min(samples, available)
        note = f"Fashion-MNIST: {distinct:,} real training images" + (
            f", repeated to {samples:,}" if samples > available else ""
        )
        source, location = "fashion-mnist", str(dataset.files[0].path.parent)
    mean, std = pixel_stats(images) if standardize else (0.0, 1.0)
    return BenchData(np.ascontiguousarray(images), labels.astype(np.int64), mean, std, source, note, distinct, location)


def synthetic_data(samples: int, seed: int = 0, noise: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (samples, 784) and int64 labels shaped like Fashion-MNIST that a network can learn: a fixed
    random template per class (labels cycling through the classes) plus Gaussian noise of ``noise`` grey levels,
    clipped to 0..255."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(CLASSES, FEATURES)).astype(np.float32)
    labels = np.arange(samples, dtype=np.int64) % CLASSES
    rng.shuffle(labels)
    images = np.empty((samples, FEATURES), dtype=np.uint8)
    for start in range(0, samples, 8192):  # in chunks: no float copy of the whole set
        part = labels[start : start + 8192]
        values = templates[part] + rng.normal(0.0, noise, size=(part.size, FEATURES)).astype(np.float32)
        images[start : start + part.size] = np.clip(values, 0, 255)
    return images, labels
