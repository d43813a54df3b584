"""Losses on logits. Each returns ``(loss, dlogits)``: the 0-d mean loss over the batch (on the device) and its
gradient with respect to the logits, ready for ``MLP.backward``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from fmnist.backend.compat import arange_like, array_namespace
from fmnist.network._names import lookup

LossFn = Callable[[Any, Any], tuple[Any, Any]]


def one_hot(xp: Any, y: Any, num_classes: int, dtype: Any) -> Any:
    """Rows of the identity for integer labels ``y`` (n,), as ``dtype`` (n, num_classes), built on y's device."""
    classes = arange_like(xp, num_classes, y)
    return xp.astype(xp.expand_dims(y, axis=1) == classes, dtype)


def log_softmax(xp: Any, logits: Any) -> Any:
    """log softmax along the class axis, stable: z - max(z) - log Σ exp(z - max(z))."""
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


def softmax(xp: Any, logits: Any) -> Any:
    """softmax along the class axis, stable (max subtracted before exp)."""
    e = xp.exp(logits - xp.max(logits, axis=1, keepdims=True))
    return e / xp.sum(e, axis=1, keepdims=True)


def cross_entropy(logits: Any, y: Any, label_smoothing: float = 0.0) -> tuple[Any, Any]:
    """L = -(1/n) Σᵢ Σₖ tᵢₖ log softmax(zᵢ)ₖ;  dL/dz = (softmax(z) - t) / n,

    with targets t = (1 - ε)·onehot(y) + ε/K (ε = ``label_smoothing``; ε = 0 is the usual one-hot loss).
    """
    xp = array_namespace(logits)
    n, k = logits.shape
    logp = log_softmax(xp, logits)
    target = one_hot(xp, y, k, logits.dtype)
    if label_smoothing:
        target = (1.0 - label_smoothing) * target + label_smoothing / k
    loss = -xp.sum(logp * target) / n
    dlogits = (xp.exp(logp) - target) / n
    return loss, dlogits


def mean_squared_error(logits: Any, y: Any) -> tuple[Any, Any]:
    """L = (1/n) Σᵢ Σₖ (pᵢₖ - onehot(yᵢ)ₖ)² with p = softmax(z): the mean over the batch of the sum over classes.

    The gradient goes through the full softmax Jacobian J = diag(p) - p pᵀ (not its diagonal alone):
    dL/dz = Jᵀ g = p ⊙ (g - (g·p)) with g = dL/dp = 2 (p - onehot) / n.
    """
    xp = array_namespace(logits)
    n, k = logits.shape
    p = softmax(xp, logits)
    diff = p - one_hot(xp, y, k, logits.dtype)
    loss = xp.sum(diff * diff) / n
    g = (2.0 / n) * diff
    dlogits = p * (g - xp.sum(g * p, axis=1, keepdims=True))
    return loss, dlogits


LOSSES: dict[str, LossFn] = {"cross_entropy": cross_entropy, "mean_squared_error": mean_squared_error}


def get_loss(name: str, label_smoothing: float = 0.0) -> LossFn:
    """Return the loss called ``name`` (``cross_entropy mean_squared_error``).

    The loss is called as ``loss(logits, y) -> (loss, dlogits)``. ``label_smoothing`` (cross-entropy only)
    mixes the one-hot targets with the uniform distribution.
    """
    loss = lookup("loss", name, LOSSES)
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if label_smoothing:
        if loss is not cross_entropy:
            raise ValueError("label smoothing applies to cross_entropy only")
        return functools.partial(cross_entropy, label_smoothing=float(label_smoothing))
    return loss


def fused_cross_entropy(loss: LossFn) -> float | None:
    """The label smoothing of ``loss`` if it is (smoothed) cross-entropy, which fused kernels compute; else None."""
    if loss is cross_entropy:
        return 0.0
    if isinstance(loss, functools.partial) and loss.func is cross_entropy:
        return float(loss.keywords.get("label_smoothing", 0.0))
    return None
