"""Typical from-scratch course code, as a reference row (``fmnist bench --student``): float64, dicts of
``W1``/``b1``, fresh arrays everywhere, Adam written as separate whole-array expressions per parameter. It trains the
case's MLP widths with ReLU and plain Adam (lr 1e-3), whatever the recipe: course code has no dropout, label
smoothing or augmentation."""

from __future__ import annotations

import math
import statistics
from typing import Any

import numpy as np

from fmnist.benchmark.case import BenchCase
from fmnist.benchmark.data import BenchData
from fmnist.benchmark.measure import time_epochs

RECIPE = "ReLU MLP, plain Adam lr 1e-3, float64, pixels in [0, 1]; no regularisation or augmentation"


def student_throughput(case: BenchCase, data: BenchData, epochs: int = 1, warmup: int = 0) -> dict[str, Any]:
    """Samples per second of the student code on ``case``'s MLP widths over ``data``."""
    rng = np.random.default_rng(0)
    sizes = case.sizes
    params = {}
    for i in range(1, len(sizes)):
        params[f"W{i}"] = rng.standard_normal((sizes[i], sizes[i - 1])) * np.sqrt(2 / sizes[i - 1])
        params[f"b{i}"] = np.zeros((sizes[i], 1))
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    x_all, labels = data.images.astype(np.float64) / 255.0, data.labels
    eye = np.eye(sizes[-1])
    layers = len(sizes) - 1
    state = {"t": 0}

    def run_epoch() -> None:
        order = rng.permutation(data.samples)
        for start in range(0, data.samples, case.batch_size):
            rows = order[start : start + case.batch_size]
            a = {0: x_all[rows].T}
            for i in range(1, layers + 1):
                z = params[f"W{i}"] @ a[i - 1] + params[f"b{i}"]
                a[i] = np.maximum(0, z) if i < layers else z
            exp = np.exp(a[layers] - a[layers].max(axis=0))
            probs = exp / exp.sum(axis=0)
            grads = {}
            da = probs - eye[labels[rows]].T
            for i in range(layers, 0, -1):
                grads[f"W{i}"] = da @ a[i - 1].T / len(rows)
                grads[f"b{i}"] = da.sum(axis=1, keepdims=True) / len(rows)
                if i > 1:
                    da = (params[f"W{i}"].T @ da) * (a[i - 1] > 0)
            state["t"] += 1
            t = state["t"]
            for k in params:
                m[k] = 0.9 * m[k] + 0.1 * grads[k]
                v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
                m_hat = m[k] / (1 - 0.9**t)
                v_hat = v[k] / (1 - 0.999**t)
                params[k] = params[k] - 1e-3 * m_hat / (np.sqrt(v_hat) + 1e-8)

    times = time_epochs(run_epoch, lambda: None, epochs, warmup)
    seconds = statistics.median(times)
    steps = math.ceil(data.samples / case.batch_size)
    return {
        "samples_per_second": data.samples / seconds,
        "epoch_seconds": times,
        "step_ms": 1000.0 * seconds / steps,
        "settings": {"recipe": RECIPE},
    }
