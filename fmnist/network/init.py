"""Weight initialisers. Draws come from the backend's seeded host RNG, so a seed gives the same weights on
every device. A linear layer's weights are shaped (fan_in, fan_out); other layers pass their own ``shape`` (a
convolution's (out, in, kh, kw), with fan-in in·kh·kw and fan-out out·kh·kw). Biases start at zero."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fmnist.names import lookup

RANDOM_STD = 0.01


def random_normal(rng: Any, fan_in: int, fan_out: int, shape: tuple[int, ...] | None = None) -> Any:
    """W ~ N(0, 0.01²): the classic "small random" start (fine for shallow nets, slow for deep sigmoid ones)."""
    return rng.normal(shape or (fan_in, fan_out), std=RANDOM_STD)


def xavier(rng: Any, fan_in: int, fan_out: int, shape: tuple[int, ...] | None = None) -> Any:
    """Glorot/Xavier uniform: W ~ U(-r, r), r = sqrt(6 / (fan_in + fan_out)); keeps variance for tanh/sigmoid."""
    r = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(shape or (fan_in, fan_out), -r, r)


def he(rng: Any, fan_in: int, fan_out: int, shape: tuple[int, ...] | None = None) -> Any:
    """He/Kaiming normal: W ~ N(0, 2 / fan_in); keeps variance through ReLU layers."""
    return rng.normal(shape or (fan_in, fan_out), std=math.sqrt(2.0 / fan_in))


Initializer = Callable[..., Any]
INITIALISERS: dict[str, Initializer] = {"random": random_normal, "xavier": xavier, "he": he}


def get_initializer(name: str) -> Initializer:
    """Return the initialiser called ``name`` (``random Xavier|xavier he``)."""
    return lookup("weight init", name, INITIALISERS, {"xavier": "Xavier"})
