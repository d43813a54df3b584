"""Losses on logits. Each returns ``(loss, dlogits)``: the 0-d mean loss over the batch (on the device) and its
gradient with respect to the logits, ready for ``model.backward``. The formulas live in ``Ops``
(``softmax_cross_entropy``, ``softmax_mse``); a loss finds the ``Ops`` of the arrays it is given."""

from __future__ import annotations

from typing import Any

from fmnist.backend import ops_for
from fmnist.names import lookup


class Loss:
    """A loss ``loss(logits, y) -> (loss, dlogits)``. The returned ``dlogits`` may live in a buffer that this
    loss object reuses at its next call with the same batch shape (copy it to keep it)."""

    name = "loss"

    def __call__(self, logits: Any, y: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class CrossEntropy(Loss):
    """L = -(1/n) Σᵢ Σₖ tᵢₖ log softmax(zᵢ)ₖ;  dL/dz = (softmax(z) - t) / n, with targets
    t = (1 - ε)·onehot(y) + ε/K (ε = ``label_smoothing``; ε = 0 is the usual one-hot loss)."""

    name = "cross_entropy"

    def __init__(self, label_smoothing: float = 0.0):
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def __call__(self, logits: Any, y: Any) -> tuple[Any, Any]:
        return ops_for(logits).softmax_cross_entropy(logits, y, self.label_smoothing, key=id(self))

    def __repr__(self) -> str:
        return f"{self.name}(label_smoothing={self.label_smoothing})" if self.label_smoothing else self.name


class MeanSquaredError(Loss):
    """L = (1/n) Σᵢ Σₖ (pᵢₖ - onehot(yᵢ)ₖ)² with p = softmax(z): the mean over the batch of the sum over classes;
    the gradient goes through the full softmax Jacobian (not its diagonal alone)."""

    name = "mean_squared_error"

    def __call__(self, logits: Any, y: Any) -> tuple[Any, Any]:
        return ops_for(logits).softmax_mse(logits, y, key=id(self))


def cross_entropy(logits: Any, y: Any, label_smoothing: float = 0.0) -> tuple[Any, Any]:
    """Cross-entropy of ``logits`` against labels ``y`` as a function (see ``CrossEntropy``)."""
    return ops_for(logits).softmax_cross_entropy(logits, y, label_smoothing)


def mean_squared_error(logits: Any, y: Any) -> tuple[Any, Any]:
    """Mean squared error of softmax(``logits``) against one-hot ``y`` as a function (see ``MeanSquaredError``)."""
    return ops_for(logits).softmax_mse(logits, y)


def softmax(logits: Any) -> Any:
    """softmax along the class axis (``Ops.softmax`` of the array's device)."""
    return ops_for(logits).softmax(logits)


LOSSES: dict[str, type[Loss]] = {"cross_entropy": CrossEntropy, "mean_squared_error": MeanSquaredError}


def get_loss(name: str, label_smoothing: float = 0.0) -> Loss:
    """Return the loss called ``name`` (``cross_entropy mean_squared_error``).

    The loss is called as ``loss(logits, y) -> (loss, dlogits)``. ``label_smoothing`` (cross-entropy only)
    mixes the one-hot targets with the uniform distribution.
    """
    cls = lookup("loss", name, LOSSES)
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if cls is CrossEntropy:
        return CrossEntropy(label_smoothing)
    if label_smoothing:
        raise ValueError("label smoothing applies to cross_entropy only")
    return cls()
