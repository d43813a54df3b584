"""Batching on the device: uint8 images move to the device once; batches are gathered and scaled there."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np

from fmnist.backend import Backend


class DeviceData:
    """Images and labels resident on a backend's device, optionally restricted to a subset of rows.

    The images are stored once as uint8 (n, 784); each batch is gathered by index and converted to float32 on the
    device as ``(x / 255 - mean) / std``. Subsets (``subset``) share the same device arrays and differ only by a
    row-index array, so a train/validation split costs no copy. No per-batch host-to-device copy happens: each
    shuffled epoch moves one index permutation.

    Args:
        backend: where the data lives.
        images: uint8 (n, 28, 28) or (n, 784) images, on the host (moved once) or already on the device.
        labels: int (n,) labels, on the host or the device.
        mean, std: the normalisation of pixel values in [0, 1] (e.g. from ``pixel_stats`` of the training split).
    """

    def __init__(self, backend: Backend, images: Any, labels: Any, mean: float = 0.0, std: float = 1.0):
        self.backend = backend
        n = int(images.shape[0])
        if isinstance(images, np.ndarray):
            images = np.ascontiguousarray(images).reshape(n, -1)
            labels = np.asarray(labels, dtype=np.int64)
        self.images = backend.asarray(images)
        self.labels = backend.asarray(labels)
        self.rows: Any = None  # None: every row, in order
        self.n = n
        self.mean, self.std = float(mean), float(std)

    def subset(self, indices: np.ndarray) -> DeviceData:
        """The same device arrays restricted to host row ``indices`` (no copy of the images)."""
        view = copy.copy(self)
        view.rows = self.backend.asarray(np.asarray(indices, dtype=np.int64))
        view.n = len(indices)
        return view

    def normalized(self, mean: float, std: float) -> DeviceData:
        """The same data with another pixel normalisation (no copy of the images)."""
        view = copy.copy(self)
        view.mean, view.std = float(mean), float(std)
        return view

    @property
    def num_features(self) -> int:
        return int(self.images.shape[1])

    def features(self, rows: Any) -> Any:
        """float32 features of the rows gathered by the device index array ``rows``, standardised on the device.

        The result may live in a buffer the backend's ``Ops`` reuses at this data set's next call (copy to keep).
        """
        scale, shift = 1.0 / (255.0 * self.std), -self.mean / self.std
        return self.backend.ops.gather_scale(self.images, rows, scale, shift, key=id(self))

    def order(self, rng: Any | None = None) -> Any:
        """Device row indices of this set for one epoch: shuffled with ``rng`` (a backend ``HostRNG``) or in order."""
        if rng is None:
            return self.rows if self.rows is not None else self.backend.arange(self.n)
        perm = rng.permutation(self.n)
        return perm if self.rows is None else self.backend.xp.take(self.rows, perm, axis=0)

    def batches(self, batch_size: int, rng: Any | None = None) -> Iterator[tuple[Any, Any]]:
        """Yield (x, y) device batches, shuffled when ``rng`` is given; the last batch may be smaller."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        xp = self.backend.xp
        order = self.order(rng)
        for start in range(0, self.n, batch_size):
            rows = order[start : min(start + batch_size, self.n)]
            yield self.features(rows), xp.take(self.labels, rows, axis=0)

    def labels_host(self) -> np.ndarray:
        """This set's labels as a host array (for metrics such as a confusion matrix)."""
        xp = self.backend.xp
        labels = self.labels if self.rows is None else xp.take(self.labels, self.rows, axis=0)
        return self.backend.to_numpy(labels)

    def __len__(self) -> int:
        return self.n


def pixel_stats(images: np.ndarray, indices: np.ndarray | None = None, chunk: int = 8192) -> tuple[float, float]:
    """Mean and std of pixel values scaled to [0, 1], computed in chunks (no float copy of the whole set)."""
    rows = np.arange(images.shape[0]) if indices is None else indices
    total = total_sq = 0.0
    count = 0
    for start in range(0, rows.size, chunk):
        block = images[rows[start : start + chunk]].astype(np.float64) / 255.0
        total += block.sum()
        total_sq += np.square(block).sum()
        count += block.size
    mean = total / count
    return float(mean), float(np.sqrt(max(total_sq / count - mean * mean, 1e-12)))
