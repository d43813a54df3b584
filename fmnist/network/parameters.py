"""Trainable parameters: every weight and bias is a view into one flat data buffer and one flat gradient buffer,
so an optimizer can update the whole model with a handful of whole-buffer operations."""

from __future__ import annotations

import math
from typing import Any


class Parameter:
    """A named trainable array ``data`` and its gradient ``grad`` (same shape; zeros until a backward pass).

    Write ``grad`` in place (``p.grad[...] = g``) to hand an optimizer your own gradient: rebinding the
    attribute would detach it from the flat buffer that fused optimizers read.
    """

    __slots__ = ("data", "grad", "name", "owner")

    def __init__(self, name: str, data: Any, grad: Any, owner: FlatParameters | None = None):
        self.name = name
        self.data = data
        self.grad = grad
        self.owner = owner

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.shape})"


class FlatParameters:
    """One contiguous float32 buffer for all parameter values and one for all gradients, handed out as views."""

    def __init__(self, backend: Any, shapes: list[tuple[str, tuple[int, ...]]]):
        xp = backend.xp
        self.backend = backend
        sizes = [math.prod(shape) for _, shape in shapes]
        self.data = backend.zeros(sum(sizes))
        self.grad = backend.zeros(sum(sizes))
        self.params: list[Parameter] = []
        offset = 0
        for (name, shape), size in zip(shapes, sizes, strict=True):
            window = slice(offset, offset + size)
            data = xp.reshape(self.data[window], shape)
            grad = xp.reshape(self.grad[window], shape)
            self.params.append(Parameter(name, data, grad, owner=self))
            offset += size

    @property
    def size(self) -> int:
        return int(self.data.shape[0])
