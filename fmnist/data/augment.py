"""On-device data augmentation for 28x28 images, with array operations on the whole batch (no per-image loop):
random shifts by up to a few pixels (zero padding) and random horizontal flips. The random numbers come from the
backend RNG, so a run is reproducible for its seed."""

from __future__ import annotations

from typing import Any

import numpy as np


def augment_batch(backend: Any, x: Any, rng: Any, max_shift: int = 0, flip: bool = False, side: int = 28) -> Any:
    """A new (n, side*side) batch: each image shifted by (dy, dx) ∈ [-max_shift, max_shift]² and, with ``flip``,
    mirrored left-right with probability ½. ``x`` is (n, side*side) float on the backend's device."""
    xp = backend.xp
    n = int(x.shape[0])
    images = xp.reshape(x, (n, side, side))
    if flip:
        mirror = rng.random((n, 1, 1)) < 0.5
        images = xp.where(mirror, xp.flip(images, axis=2), images)
    if max_shift > 0:
        k = int(max_shift)
        padded = backend.zeros((n, side + 2 * k, side + 2 * k), dtype=x.dtype)
        padded[:, k : k + side, k : k + side] = images
        offsets = xp.astype(xp.floor(rng.random((n, 2)) * (2 * k + 1)), xp.int64)  # in [0, 2k]
        base = backend.asarray(np.arange(side, dtype=np.int64))
        rows = xp.expand_dims(offsets[:, 0:1] + base, axis=2)  # (n, side, 1)
        cols = xp.expand_dims(offsets[:, 1:2] + base, axis=1)  # (n, 1, side)
        width = side + 2 * k
        picked_rows = xp.take_along_axis(padded, xp.broadcast_to(rows, (n, side, width)), axis=1)
        images = xp.take_along_axis(picked_rows, xp.broadcast_to(cols, (n, side, side)), axis=2)
    return xp.reshape(images, (n, side * side))
