"""Classification metrics on host arrays (computed once per evaluation, outside the training step)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``C[true, predicted]`` as int64 (num_classes, num_classes)."""
    flat = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(predictions, dtype=np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Recall of each class: the diagonal over the row sums (NaN for a class with no samples)."""
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / np.maximum(totals, 1), np.nan)


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows of zeros stay zero)."""
    totals = matrix.sum(axis=1, keepdims=True)
    return matrix / np.maximum(totals, 1)


def confusion_csv(matrix: np.ndarray, class_names: Sequence[str]) -> str:
    """The matrix as CSV: a header of predicted classes, one row per true class."""
    quote = [f'"{name}"' for name in class_names]
    lines = ["true\\predicted," + ",".join(quote)]
    lines += [f"{quote[i]}," + ",".join(str(int(v)) for v in row) for i, row in enumerate(matrix)]
    return "\n".join(lines) + "\n"
