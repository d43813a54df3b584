"""Inference with a trained model: mean loss and accuracy of a data set, class predictions, class probabilities.

Evaluation runs in chunks sized by the model's memory per sample (``eval_batch_size``), accumulates on the device
and reads the result once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from fmnist.data import DeviceData

EVAL_MEMORY = 64 * 2**20  # bytes of activations one evaluation chunk may take


def eval_batch_size(model: Any, memory: int = EVAL_MEMORY) -> int:
    """Samples per evaluation chunk: ``memory`` over the model's activation bytes per sample, in [64, 8192]."""
    per_sample = 4 * max(1, int(model.activation_floats_per_sample))
    return int(min(8192, max(64, memory // per_sample)))


@contextlib.contextmanager
def evaluation_mode(model: Any) -> Iterator[None]:
    """The model in evaluation mode (running statistics, no dropout) for the block, then back as it was."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def evaluate(model: Any, data: DeviceData, loss_fn: Any, batch_size: int | None = None) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``data``, accumulated on the device and read once (one host sync)."""
    be = model.backend
    ops = be.ops
    totals = be.zeros(2)  # loss sum, number correct
    with evaluation_mode(model):
        for x, y in data.batches(batch_size or eval_batch_size(model)):
            logits = model.forward(x)
            loss, _ = loss_fn(logits, y)
            totals[0] += loss * y.shape[0]
            totals[1] += ops.count_correct(logits, y)
    loss_sum, correct = be.to_numpy(totals).tolist()
    return loss_sum / data.n, correct / data.n


def predict(model: Any, data: DeviceData, batch_size: int | None = None) -> np.ndarray:
    """Predicted classes of every sample of ``data``, in order, as a host array."""
    be = model.backend
    with evaluation_mode(model):
        batches = data.batches(batch_size or eval_batch_size(model))
        preds = [be.xp.argmax(model.forward(x), axis=1) for x, _ in batches]
    return be.to_numpy(be.concat(preds))


def host_predictions(model: Any, images: np.ndarray, norm: tuple[float, float]) -> np.ndarray:
    """Class probabilities (n, classes) for uint8 images (n, 28, 28) or (n, 784), as a host array."""
    be = model.backend
    data = DeviceData(be, images, np.zeros(images.shape[0], dtype=np.int64), mean=norm[0], std=norm[1])
    with evaluation_mode(model):
        chunks = [be.ops.softmax(model.forward(x)) for x, _ in data.batches(eval_batch_size(model))]
    return be.to_numpy(be.concat(chunks))
