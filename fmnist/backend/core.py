"""The `Backend`: one object that knows an array namespace, its device, dtype, RNG, synchronisation and `Ops`.

Everything that differs between NumPy, CuPy and the test namespaces is decided here and in the `Ops` classes; the
rest of fmnist writes array code against ``backend.xp`` and ``backend.ops`` only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fmnist.backend.rng import HostRNG, NoiseStream

__all__ = ["Backend", "BackendUnavailableError", "HostRNG", "NoiseStream"]


class BackendUnavailableError(RuntimeError):
    """A requested backend cannot run here; the message says what to install or enable. ``brief`` is the same
    without the underlying error's text (for ``auto``'s one-line note)."""

    def __init__(self, message: str, brief: str | None = None):
        super().__init__(message)
        self.brief = brief or message


@dataclass
class Backend:
    """An array namespace bound to one device.

    Attributes:
        name: ``"cpu"``, ``"gpu"`` or a test backend name such as ``"array-api-strict"``.
        xp: the array namespace (``numpy``, ``cupy``, ``array_api_strict``).
        device: the namespace's device object, or ``None`` for its default device.
        note: a human sentence on how this backend was chosen (``"auto"`` explains its pick here).
        dtype_name: the floating dtype of parameters and activations: ``"float32"`` unless a caller (such as a
            float64 gradient check) asks otherwise explicitly.
        fast: use the device's fast ``Ops`` (``NumpyOps``, ``CupyOps``); ``False`` gives the readable ``Ops``.
    """

    name: str
    xp: Any
    device: Any = None
    note: str = ""
    dtype_name: str = "float32"
    _sync: Any = field(default=None, repr=False)
    _to_host: Any = field(default=None, repr=False)
    _info: Any = field(default=None, repr=False)
    _ops: dict = field(default_factory=dict, repr=False)
    fast: bool = True

    @property
    def dtype(self) -> Any:
        """The floating dtype of this namespace (float32 by default)."""
        return getattr(self.xp, self.dtype_name)

    @property
    def ops(self) -> Any:
        """The primitives every layer, loss and optimizer calls: ``NumpyOps`` on the CPU and ``CupyOps`` on the
        GPU in float32; the readable ``Ops`` for test namespaces, float64 or ``fast=False``. Never ``None``."""
        choice = (self.fast, self.dtype_name)
        ops = self._ops.get(choice)
        if ops is None:
            ops = self._ops[choice] = _ops_class(self)(self)
        return ops

    @property
    def is_numpy(self) -> bool:
        """True when ``xp`` is NumPy itself (host memory, ``out=`` ufuncs available)."""
        return self.xp is np

    @property
    def _standard_names(self) -> bool:
        # NumPy and CuPy spell some operations their own way (CuPy 13 has no xp.astype or xp.concat)
        return self.xp.__name__ not in ("numpy", "cupy")

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """Move ``x`` (host or device array, or nested sequence) to this device, keeping its dtype unless given."""
        kwargs: dict[str, Any] = {} if dtype is None else {"dtype": dtype}
        if self.device is not None:
            kwargs["device"] = self.device
        return self.xp.asarray(x, **kwargs)

    to_device = asarray

    def zeros(self, shape: int | tuple[int, ...], dtype: Any = None) -> Any:
        """A zero-filled array on this device (float32 unless ``dtype`` is given)."""
        dtype = self.dtype if dtype is None else dtype
        if self.device is not None:
            return self.xp.zeros(shape, dtype=dtype, device=self.device)
        return self.xp.zeros(shape, dtype=dtype)

    def empty(self, shape: int | tuple[int, ...], dtype: Any = None) -> Any:
        """An uninitialised array on this device (float32 unless ``dtype`` is given)."""
        dtype = self.dtype if dtype is None else dtype
        if self.device is not None:
            return self.xp.empty(shape, dtype=dtype, device=self.device)
        return self.xp.empty(shape, dtype=dtype)

    def arange(self, n: int, dtype: Any = None) -> Any:
        """``0, 1, ..., n-1`` on this device (int64 unless ``dtype`` is given)."""
        dtype = self.xp.int64 if dtype is None else dtype
        if self.device is not None:
            return self.xp.arange(n, dtype=dtype, device=self.device)
        return self.xp.arange(n, dtype=dtype)

    def astype(self, x: Any, dtype: Any) -> Any:
        """``x`` converted to ``dtype`` (a new array), in a spelling every namespace has."""
        return self.xp.astype(x, dtype) if self._standard_names else x.astype(dtype)

    def concat(self, arrays: list[Any], axis: int = 0) -> Any:
        """Arrays joined along ``axis``, in a spelling every namespace has."""
        return self.xp.concat(arrays, axis=axis) if self._standard_names else self.xp.concatenate(arrays, axis=axis)

    def permute(self, x: Any, axes: tuple[int, ...]) -> Any:
        """``x`` with its axes reordered (a view where the namespace allows), in a spelling every namespace has."""
        return self.xp.permute_dims(x, axes) if self._standard_names else x.transpose(axes)

    def copy(self, x: Any) -> Any:
        """A copy of the device array ``x`` on the same device."""
        return self.xp.asarray(x, copy=True) if self._standard_names else x.copy()

    def threads_for(self, flops_per_step: float) -> Any:
        """A context manager that shares the thread budget for a training loop of this size (CPU only; see
        ``fmnist.backend.threads``).

        Steps with little GEMM work (below ~0.15 GFLOP, e.g. batch 64 on 128-wide layers) run faster and far
        steadier on one BLAS thread: on two shared cores a second thread costs more in hand-offs than it brings
        (measured 60-67k samples/s on one thread against 27-75k on two). Larger steps keep every core for BLAS
        until a kernel that splits its own work over the cores asks for them (a CNN's convolutions): from then
        on BLAS runs on one thread and the compiled loops hold the budget.
        """
        if self.name != "cpu":
            return contextlib.nullcontext()
        from fmnist.backend.threads import training_threads

        return training_threads(small=flops_per_step < 1.5e8)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Copy a device array back to a host NumPy array (a host round-trip: never inside a training step)."""
        return self._to_host(x) if self._to_host is not None else np.asarray(x)

    def to_float(self, x: Any) -> float:
        """Read a 0-d device array as a Python float (one host round-trip)."""
        return float(self.to_numpy(x))

    def synchronize(self) -> None:
        """Wait until queued device work has finished (a no-op on the CPU)."""
        if self._sync is not None:
            self._sync()

    def rng(self, seed: int | tuple[int, ...] | None) -> HostRNG:
        """A seeded random generator whose draws are made on the host, then moved here.

        Drawing on the host makes weights, splits and shuffles identical on every device for the same seed.
        """
        return HostRNG(self, seed)

    def info(self) -> dict[str, Any]:
        """Versions and device facts, for run records and ``fmnist info``."""
        base = {"backend": self.name, "namespace": self.xp.__name__, "dtype": self.dtype_name, "ops": self.ops.name}
        if self._info is not None:
            base.update(self._info())
        return base


def _ops_class(backend: Backend) -> type:
    """The ``Ops`` class for a backend (imported lazily: CuPy only where a GPU backend exists)."""
    from fmnist.backend.ops import Ops

    if not backend.fast or backend.dtype_name != "float32":
        return Ops
    if backend.name == "cpu":
        from fmnist.backend.numpy_ops import NumpyOps

        return NumpyOps
    if backend.name == "gpu":
        from fmnist.backend.cupy_ops import CupyOps

        return CupyOps
    return Ops
