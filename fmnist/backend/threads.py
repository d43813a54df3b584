"""The CPU's thread budget, set in one place: the BLAS and OpenMP pools of this process (threadpoolctl), the
compiled loops' threads (Numba), and the environment variables that processes started meanwhile read when their
libraries load (a sweep's workers, the benchmark's measuring processes).

One budget, two pools that never run side by side: a training step is one Python thread, so a BLAS call and a
compiled loop never overlap; but OpenBLAS's idle worker keeps spinning on its core for a while after each call, so
loops that run threads of their own beside a multi-threaded BLAS lose that core (measured: several times slower).
So the budget goes to one pool at a time:

- BLAS holds it (the default): compiled loops run on one thread;
- the loops hold it ("owned cores"): BLAS runs on one thread, and ``NumpyOps``' kernels split their work over the
  budget themselves, each thread calling the single-threaded BLAS on its own blocks. A CNN's training loop hands
  the budget over at its first convolution (``own_cores``), for the rest of the loop (``training_threads``).

Numba's threading layer: GNU OpenMP where it loads (the fastest here beside a one-thread BLAS), else its own
workqueue, which always exists (TBB last); a layer named in ``NUMBA_THREADING_LAYER`` wins. GNU OpenMP cannot run
in a child forked after it started (Numba stops such a child): fmnist starts its processes with ``spawn``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
LAYER_PRIORITY = ["omp", "workqueue", "tbb"]


class _Cores:
    """Who holds the budget now (process-wide: one training loop per process)."""

    budget: int | None = None  # set by ``thread_budget``; None: BLAS's own thread count
    loops = 1  # threads the compiled loops take now
    lazy = False  # inside a training loop that hands the budget over at the first ``own_cores()``
    limiter: Any = None  # BLAS's limit while the loops hold the budget


_cores = _Cores()
_controller: list[Any] = []


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def machine_parts() -> int:
    """The number of parts the compiled loops split their work into: one per core of this machine, 2 to 8 (fixed
    for a machine, whatever the thread count or affinity: the results are the same bits on any number of
    threads)."""
    return min(8, max(2, os.cpu_count() or 1))


def per_worker(workers: int) -> int:
    """Threads for each of ``workers`` processes on this machine, so that they share the cores."""
    return max(1, cores() // max(1, workers))


def budget() -> int:
    """This process's thread budget: ``thread_budget``'s number, else the BLAS's thread count (all cores unless
    ``OPENBLAS_NUM_THREADS`` or the like said otherwise)."""
    if _cores.budget is not None:
        return _cores.budget
    blas = [lib.num_threads for lib in _blas().lib_controllers]
    return max(1, max(blas)) if blas else cores()


def loop_threads() -> int:
    """The threads the compiled loops may run on now: the budget while they hold it, else 1."""
    return _cores.loops


def loops_hold_cores() -> bool:
    """Whether the compiled loops hold the budget now (BLAS on one thread)."""
    return _cores.limiter is not None


def configure_numba() -> None:
    """Pick Numba's threading layer (see the module's text); call before the first parallel loop runs."""
    import numba

    if not os.environ.get("NUMBA_THREADING_LAYER") and not os.environ.get("NUMBA_THREADING_LAYER_PRIORITY"):
        numba.config.THREADING_LAYER = "default"
        numba.config.THREADING_LAYER_PRIORITY = list(LAYER_PRIORITY)


def own_cores() -> int:
    """Called before a kernel that splits its own work over threads: inside a training loop (``training_threads``)
    the loops take the budget now, for the rest of the loop (BLAS drops to one thread). Returns the threads the
    kernel may use (1 outside such a loop: the kernel then runs its parts one after another, with the same
    result)."""
    if _cores.lazy and _cores.limiter is None:
        _hand_to_loops(budget())
    return _cores.loops


@contextlib.contextmanager
def owned_cores(threads: int | None = None) -> Iterator[None]:
    """For the block: the loops hold ``threads`` (default: the budget) and BLAS runs on one thread."""
    before = (_cores.loops, _cores.lazy, _cores.limiter)
    _cores.limiter = None
    try:
        _hand_to_loops(budget() if threads is None else threads)
        yield
    finally:
        _give_back()
        _cores.loops, _cores.lazy, _cores.limiter = before


@contextlib.contextmanager
def training_threads(small: bool) -> Iterator[None]:
    """The threads of a training loop: ``small`` steps (little GEMM work) run BLAS on one thread, and the loops
    hold the budget from the start; larger steps leave the budget to BLAS until a kernel asks for it
    (``own_cores``: a CNN's convolutions)."""
    before = (_cores.loops, _cores.lazy, _cores.limiter)
    _cores.limiter = None
    try:
        if small:
            _hand_to_loops(budget())
        else:
            _cores.lazy = True
        yield
    finally:
        _give_back()
        _cores.loops, _cores.lazy, _cores.limiter = before


def _hand_to_loops(threads: int) -> None:
    _cores.limiter = _controller_once().limit(limits=1, user_api="blas")
    _cores.loops = max(1, min(int(threads), _numba_threads()))


def _give_back() -> None:
    if _cores.limiter is not None:
        _cores.limiter.restore_original_limits()
    _cores.limiter, _cores.loops, _cores.lazy = None, 1, False


def _numba_threads() -> int:
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency
        return 1
    return int(numba.config.NUMBA_NUM_THREADS)


def _controller_once() -> Any:
    """threadpoolctl's view of this process's pools, made once (a few ms; setting limits through it is cheap)."""
    if not _controller:
        from threadpoolctl import ThreadpoolController

        _controller.append(ThreadpoolController())
    return _controller[0]


def _blas() -> Any:
    return _controller_once().select(user_api="blas")


@contextlib.contextmanager
def thread_budget(threads: int | None) -> Iterator[None]:
    """For the block: this process's BLAS/OpenMP pools limited to ``threads``, the compiled loops' budget set to
    it, and ``THREAD_VARIABLES`` set to it for the processes started in the block. ``None`` changes nothing."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    previous = _cores.budget
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    _cores.budget = int(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        _cores.budget = previous
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
