"""Test data helpers."""

from __future__ import annotations

import numpy as np


def blobs(n: int = 300, dim: int = 20, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small separable problem: Gaussian clusters around random centres, float32 inputs and int64 labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, size=(classes, dim))
    y = rng.integers(0, classes, size=n)
    x = centres[y] + rng.normal(0.0, 1.0, size=(n, dim))
    return x.astype(np.float32), y.astype(np.int64)
