"""Weight initialisers. Draws come from the backend's seeded host RNG, so a seed gives the same weights on
every device. Weights are shaped (fan_in, fan_out); biases start at zero."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fmnist.network._names import lookup

RANDOM_STD = 0.01


def random_normal(rng: Any, fan_in: int, fan_out: int) -> Any:
    """W ~ N(0, 0.01²): the classic "small random" start (fine for shallow nets, slow for deep sigmoid ones)."""
    return rng.normal((fan_in, fan_out), std=RANDOM_STD)


def xavier(rng: Any, fan_in: int, fan_out: int) -> Any:
    """Glorot/Xavier uniform: W ~ U(-r, r), r = sqrt(6 / (fan_in + fan_out)); keeps variance for tanh/sigmoid."""
    r = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform((fan_in, fan_out), -r, r)


def he(rng: Any, fan_in: int, fan_out: int) -> Any:
    """He/Kaiming normal: W ~ N(0, 2 / fan_in); keeps variance through ReLU layers."""
    return rng.normal((fan_in, fan_out), std=math.sqrt(2.0 / fan_in))


INITIALISERS: dict[str, Callable[[Any, int, int], Any]] = {"random": random_normal, "xavier": xavier, "he": he}


def get_initializer(name: str) -> Callable[[Any, int, int], Any]:
    """Return the initialiser called ``name`` (``random Xavier|xavier he``)."""
    return lookup("weight init", name, INITIALISERS, {"xavier": "Xavier"})
