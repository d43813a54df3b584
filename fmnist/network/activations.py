"""Activation functions: forward on pre-activations, backward from the cached output.

Each activation is a thin name over its ``Ops`` methods (where the formulas live, once): ``forward(ops, z)``
returns ``a = f(z)`` and ``backward(ops, a, da)`` returns ``dz = da · f'(z)``, with ``f'`` written in terms of the
output ``a`` that the forward pass caches.
"""

from __future__ import annotations

from typing import Any

from fmnist.names import lookup


class Activation:
    """Base class: ``forward(ops, z, key) -> a`` and ``backward(ops, a, da, key) -> dz``."""

    name = "activation"

    def forward(self, ops: Any, z: Any, key: Any = None) -> Any:
        raise NotImplementedError

    def backward(self, ops: Any, a: Any, da: Any, key: Any = None) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class Identity(Activation):
    """f(z) = z, f'(z) = 1."""

    name = "identity"

    def forward(self, ops: Any, z: Any, key: Any = None) -> Any:
        return z

    def backward(self, ops: Any, a: Any, da: Any, key: Any = None) -> Any:
        return da


class Sigmoid(Activation):
    """f(z) = 1 / (1 + e^-z); f'(z) = a (1 - a)."""

    name = "sigmoid"

    def forward(self, ops: Any, z: Any, key: Any = None) -> Any:
        return ops.sigmoid(z, key)

    def backward(self, ops: Any, a: Any, da: Any, key: Any = None) -> Any:
        return ops.sigmoid_backward(a, da, key)


class Tanh(Activation):
    """f(z) = tanh z; f'(z) = 1 - a²."""

    name = "tanh"

    def forward(self, ops: Any, z: Any, key: Any = None) -> Any:
        return ops.tanh(z, key)

    def backward(self, ops: Any, a: Any, da: Any, key: Any = None) -> Any:
        return ops.tanh_backward(a, da, key)


class ReLU(Activation):
    """f(z) = max(z, 0); f'(z) = 1 where a > 0, else 0."""

    name = "relu"

    def forward(self, ops: Any, z: Any, key: Any = None) -> Any:
        return ops.relu(z, key)

    def backward(self, ops: Any, a: Any, da: Any, key: Any = None) -> Any:
        return ops.relu_backward(a, da, key)


ACTIVATIONS: dict[str, type[Activation]] = {
    "identity": Identity,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
}


def get_activation(name: str | Activation) -> Activation:
    """Return the activation called ``name`` (``identity sigmoid tanh ReLU|relu``)."""
    if isinstance(name, Activation):
        return name
    return lookup("activation", name, ACTIVATIONS, {"relu": "ReLU"})()
