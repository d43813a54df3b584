"""Small namespace helpers for code that receives arrays without their backend (losses, metrics)."""

from __future__ import annotations

from typing import Any

import numpy as np


def array_namespace(x: Any) -> Any:
    """The array namespace of ``x``: numpy, cupy or the array's own ``__array_namespace__()``."""
    if isinstance(x, np.ndarray | np.generic):
        return np
    module = type(x).__module__
    if module.startswith("cupy"):
        import cupy  # only reached when a CuPy array already exists

        return cupy
    return x.__array_namespace__()


def arange_like(xp: Any, n: int, like: Any) -> Any:
    """``arange(n)`` with ``like``'s integer dtype, created on ``like``'s device."""
    if xp is np or xp.__name__ == "cupy":
        return xp.arange(n, dtype=like.dtype)
    return xp.arange(n, dtype=like.dtype, device=like.device)
