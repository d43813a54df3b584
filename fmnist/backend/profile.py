"""Where a step's time goes: named spans of wall time, opened by the benchmark around each ``Ops`` call and by the
device ``Ops`` inside their own methods, measured only while a ``Profiler`` is active (``fmnist bench``'s
profiled pass, never its timed epochs).

A device ``Ops`` marks the parts of a method that belong to another category than the method itself::

    from fmnist.backend.profile import span

    with span("conv_gemm"):
        np.matmul(part, wmat, out=rows)

Without an active profiler ``span`` returns one shared do-nothing context (a global read and a ``with`` on an
object with empty methods, about 0.1 µs), so the spans stay in the hot path for good. The names the benchmark
knows are ``SPANS``. Time is exclusive: a span's time does not count again in the span or call around it.

Work a span cannot wrap from Python (GEMMs called from inside a compiled loop, between its data movement) can be
timed by the kernel itself and handed over with ``credit(name, seconds)``; or, while ``profiling()``, the kernel
may run its phases as separate calls that spans can wrap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

# The names a device ``Ops`` may open inside its methods (the benchmark's categories of a step's time):
# ``conv_gemm``: a convolution's matrix products (and a direct convolution's arithmetic); once a device's
# convolutions open it, the rest of their calls counts as ``conv_data``, their data movement (padding, im2col,
# col2im, weight and layout reshuffles), which may also be marked as such; ``gemm``: other matrix products;
# ``elementwise``: activations, normalisation, pooling, dropout, the loss; ``optimizer``: the update; ``data``: the
# batch's gather, scaling and augmentation.
SPANS = ("conv_gemm", "conv_data", "gemm", "elementwise", "optimizer", "data")


class _Idle:
    """The context ``span`` returns while no profiler is active: it does nothing."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


_IDLE = _Idle()
_active: Profiler | None = None


def span(name: str) -> Any:
    """A context that adds the wall time of its block to ``name`` in the active profiler; does nothing (and costs
    next to nothing) when none is active."""
    profiler = _active
    return _IDLE if profiler is None else _Span(profiler, name)


def profiling() -> bool:
    """Whether a profiler is active: a device ``Ops`` may then run a fused kernel in phases it can time apart."""
    return _active is not None


def credit(name: str, seconds: float) -> None:
    """Count ``seconds`` of the span in progress under ``name`` instead (time a device ``Ops`` measured itself, such
    as the GEMMs a compiled loop called between its data movement); the step's total is unchanged. Does nothing
    when no profiler is active."""
    profiler = _active
    if profiler is not None:
        profiler._credit(name, seconds)


class _Span:
    __slots__ = ("name", "profiler")

    def __init__(self, profiler: Profiler, name: str):
        self.profiler, self.name = profiler, name

    def __enter__(self) -> None:
        self.profiler._enter(self.name)

    def __exit__(self, *exc: object) -> bool:
        self.profiler._exit()
        return False


class Profiler:
    """Exclusive wall time and number of calls per span name. ``sync`` waits for the device before each reading
    of the clock (``backend.synchronize``), so that a span's time is that of the device work it queued.

    Args:
        sync: called before every clock reading (default: nothing, as on the CPU).
        clock: seconds as a float (default ``time.perf_counter``; tests pass a fake one).
    """

    def __init__(self, sync: Callable[[], None] | None = None, clock: Callable[[], float] = time.perf_counter):
        self.sync = sync or (lambda: None)
        self.clock = clock
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list[Any]] = []  # [name, start, seconds of the spans inside]

    def reset(self) -> None:
        """Forget every time and call recorded so far (e.g. those of a warm-up)."""
        self.seconds.clear()
        self.calls.clear()

    def span(self, name: str) -> _Span:
        """A span of this profiler, whether or not it is the active one."""
        return _Span(self, name)

    def timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` with each call inside a span ``name``."""

        def call(*args: Any, **kwargs: Any) -> Any:
            with _Span(self, name):
                return function(*args, **kwargs)

        return call

    @contextlib.contextmanager
    def active(self) -> Iterator[Profiler]:
        """Make this the profiler that ``span`` reports to, for the block."""
        global _active
        previous, _active = _active, self
        try:
            yield self
        finally:
            _active = previous

    def _credit(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1
        if self._stack:
            self._stack[-1][2] += seconds

    def _enter(self, name: str) -> None:
        self.sync()
        self._stack.append([name, self.clock(), 0.0])

    def _exit(self) -> None:
        self.sync()
        end = self.clock()
        name, start, inner = self._stack.pop()
        elapsed = end - start
        self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - inner
        self.calls[name] = self.calls.get(name, 0) + 1
        if self._stack:
            self._stack[-1][2] += elapsed


class ProfiledOps:
    """An ``Ops`` whose every public method runs inside a span named after the method (the attributes it does not
    call, such as ``xp`` or ``layout``, are the wrapped object's own)."""

    def __init__(self, ops: Any, profiler: Profiler):
        self._ops, self._profiler = ops, profiler

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._ops, name)
        if name.startswith("_") or not callable(value):
            return value
        timed = self._profiler.timed(name, value)
        setattr(self, name, timed)  # looked up once per name
        return timed

    def __repr__(self) -> str:
        return f"ProfiledOps({self._ops!r})"


def profiled(backend: Any, profiler: Profiler) -> Any:
    """A copy of ``backend`` (same device, namespace and dtype) whose ``ops`` is a fresh ``Ops`` of its class seen
    through ``ProfiledOps``: models, optimizers and data built on the copy report each ``Ops`` call to
    ``profiler``, and the original backend's workspaces are left alone."""
    copy = dataclasses.replace(backend, _ops={})
    inner = copy.ops
    copy._ops[(copy.fast, copy.dtype_name)] = ProfiledOps(inner, profiler)
    return copy
