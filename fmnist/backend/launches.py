"""How many device operations one call launches, where the array library can count them.

A GPU step is bound by launches rather than arithmetic (each costs ~5-10 µs of host time), so "launches per step"
belongs beside samples/s. Neither NumPy nor a real CuPy counts launches; the simulated GPU of the tests
(tests/simgpu) does, by the rule of fmnist's decisions: every device operation that is not a view counts one
(elementwise, reduction, copy, fill, GEMM, advanced indexing), each raw kernel launch counts one; reshape,
transpose, basic slicing and ``empty`` count nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def count_launches(backend: Any, call: Callable[[], Any]) -> int | None:
    """Run ``call()`` once and return how many device operations it launched on ``backend``, or ``None`` where the
    array library has no counter (NumPy, a real CuPy). ``call`` runs either way, so a caller's state (an
    optimizer step, a noise counter) moves on every device alike; run it after a warm-up call, so that one-time
    allocations are not counted. Example, one training step::

        launches = count_launches(backend, lambda: trainer.step(x, y))
    """
    counter = getattr(backend.xp, "_count_launches", None)  # simgpu's; real CuPy and NumPy have none
    if counter is None:
        call()
        return None
    with counter() as log:
        call()
    return int(log.count)
