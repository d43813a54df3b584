"""The CPU's thread budget, set in one place: the BLAS and OpenMP pools of this process (threadpoolctl) and the
environment variables that processes started meanwhile read when their libraries load (a sweep's workers, the
benchmark's measuring processes)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def per_worker(workers: int) -> int:
    """Threads for each of ``workers`` processes on this machine, so that they share the cores."""
    return max(1, cores() // max(1, workers))


@contextlib.contextmanager
def thread_budget(threads: int | None) -> Iterator[None]:
    """For the block: this process's BLAS/OpenMP pools limited to ``threads``, and ``THREAD_VARIABLES`` set to it
    for the processes started in the block. ``None`` changes nothing."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def blas_info() -> list[dict[str, Any]]:
    """The BLAS libraries NumPy loaded: API, version, kernel (architecture) and threads, as threadpoolctl sees
    them."""
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "architecture", "num_threads")
    return [{k: pool.get(k) for k in keys} for pool in threadpool_info() if pool.get("user_api") == "blas"]
