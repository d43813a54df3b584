"""Activation functions: forward on pre-activations, backward from the cached output.

Each backward takes the activation's *output* ``a`` (what the forward pass caches) and the upstream gradient
``da`` and returns ``dz = da * f'(z)``, with ``f'`` written in terms of ``a``.
"""

from __future__ import annotations

from typing import Any

from fmnist.network._names import lookup


class Activation:
    """Base class: ``forward(xp, z) -> a`` and ``backward(xp, a, da) -> dz``."""

    name = "activation"

    def forward(self, xp: Any, z: Any) -> Any:
        raise NotImplementedError

    def backward(self, xp: Any, a: Any, da: Any) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class Identity(Activation):
    """f(z) = z, f'(z) = 1."""

    name = "identity"

    def forward(self, xp: Any, z: Any) -> Any:
        return z

    def backward(self, xp: Any, a: Any, da: Any) -> Any:
        return da


class Sigmoid(Activation):
    """f(z) = 1 / (1 + e^-z), computed without overflow; f'(z) = a (1 - a)."""

    name = "sigmoid"

    def forward(self, xp: Any, z: Any) -> Any:
        e = xp.exp(-xp.abs(z))  # in (0, 1]: never overflows
        return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

    def backward(self, xp: Any, a: Any, da: Any) -> Any:
        return da * a * (1.0 - a)


class Tanh(Activation):
    """f(z) = tanh z; f'(z) = 1 - a²."""

    name = "tanh"

    def forward(self, xp: Any, z: Any) -> Any:
        return xp.tanh(z)

    def backward(self, xp: Any, a: Any, da: Any) -> Any:
        return da * (1.0 - a * a)


class ReLU(Activation):
    """f(z) = max(z, 0); f'(z) = 1 where a > 0, else 0."""

    name = "relu"

    def forward(self, xp: Any, z: Any) -> Any:
        return xp.maximum(z, 0.0)

    def backward(self, xp: Any, a: Any, da: Any) -> Any:
        return da * xp.astype(a > 0, da.dtype)


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
