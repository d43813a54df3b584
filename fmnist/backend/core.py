"""The `Backend`: one object that knows an array namespace, its device, dtype, RNG and synchronisation.

Everything that differs between NumPy, CuPy and the test namespaces is decided here; the rest of fmnist writes
array code against ``backend.xp`` only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class BackendUnavailableError(RuntimeError):
    """A requested backend cannot run here; the message says what to install or enable."""


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
        fast: use the fused kernels where this backend has them (``False``: the reference path everywhere).
    """

    name: str
    xp: Any
    device: Any = None
    note: str = ""
    dtype_name: str = "float32"
    _sync: Any = field(default=None, repr=False)
    _to_host: Any = field(default=None, repr=False)
    _info: Any = field(default=None, repr=False)
    _kernels: Any = field(default=None, repr=False)
    fast: bool = True

    @property
    def dtype(self) -> Any:
        """The floating dtype of this namespace (float32 by default)."""
        return getattr(self.xp, self.dtype_name)

    @property
    def kernels(self) -> Any:
        """Fused kernels for the training hot path (``fmnist.backend.kernels``), or ``None`` where only the
        reference path runs (test backends, float64, or ``fast=False``)."""
        if not self.fast:
            return None
        if self._kernels is None:
            from fmnist.backend.kernels import get_kernels

            self._kernels = get_kernels(self) or False
        return self._kernels or None

    @property
    def is_numpy(self) -> bool:
        """True when ``xp`` is NumPy itself (host memory, ``out=`` ufuncs available)."""
        return self.xp is np

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """Move ``x`` (host or device array, or nested sequence) to this device, keeping its dtype unless given."""
        if dtype is None:
            return self.xp.asarray(x, device=self.device) if self.device is not None else self.xp.asarray(x)
        if self.device is not None:
            return self.xp.asarray(x, dtype=dtype, device=self.device)
        return self.xp.asarray(x, dtype=dtype)

    to_device = asarray

    def zeros(self, shape: int | tuple[int, ...], dtype: Any = None) -> Any:
        """A zero-filled array on this device (float32 unless ``dtype`` is given)."""
        dtype = self.dtype if dtype is None else dtype
        if self.device is not None:
            return self.xp.zeros(shape, dtype=dtype, device=self.device)
        return self.xp.zeros(shape, dtype=dtype)

    def copy(self, x: Any) -> Any:
        """A copy of the device array ``x`` on the same device."""
        if self.is_numpy or self.name == "gpu":
            return x.copy()
        return self.xp.asarray(x, copy=True)

    def threads_for(self, flops_per_step: float) -> Any:
        """A context manager that sets the BLAS threads for a training loop of this size (CPU only).

        Steps with little GEMM work (below ~0.15 GFLOP, e.g. batch 64 on 128-wide layers) run faster and far
        steadier on one BLAS thread: on two shared cores a second thread costs more in hand-offs than it brings
        (measured 60-67k samples/s on one thread against 27-75k on two). Large steps keep every core.
        """
        if self.name != "cpu" or flops_per_step >= 1.5e8:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=1, user_api="blas")

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
        base = {"backend": self.name, "namespace": self.xp.__name__, "dtype": self.dtype_name}
        if self._info is not None:
            base.update(self._info())
        return base


class HostRNG:
    """A NumPy ``Generator`` (PCG64) drawing on the host and returning arrays on the backend's device.

    Its ``state`` is a JSON-safe dict, so a checkpoint can restore it exactly.
    """

    def __init__(self, backend: Backend, seed: int | tuple[int, ...] | None):
        self.backend = backend
        self._gen = np.random.Generator(np.random.PCG64(seed))
        self._device_gen: Any = None

    def normal(self, shape: tuple[int, ...], std: float = 1.0) -> Any:
        """Normal(0, std²) samples as float32 on the device."""
        host = self._gen.standard_normal(shape, dtype=np.float32)
        host *= np.float32(std)
        return self.backend.asarray(host)

    def uniform(self, shape: tuple[int, ...], low: float, high: float) -> Any:
        """Uniform[low, high) samples as float32 on the device."""
        host = self._gen.random(shape, dtype=np.float32)
        host *= np.float32(high - low)
        host += np.float32(low)
        return self.backend.asarray(host)

    def random(self, shape: tuple[int, ...]) -> Any:
        """Uniform[0, 1) float32 samples drawn on the device itself (per-batch noise such as dropout masks).

        On the CPU they come from this generator (so its ``state`` covers them); on the GPU from a CuPy generator
        seeded once from this one, so no host-to-device copy happens per batch.
        """
        if self.backend.name == "gpu":
            if self._device_gen is None:
                import cupy

                self._device_gen = cupy.random.default_rng(int(self._gen.integers(2**63)))
            return self._device_gen.random(shape, dtype=np.float32)
        return self.backend.asarray(self._gen.random(shape, dtype=np.float32))

    def permutation(self, n: int) -> Any:
        """A random permutation of ``range(n)`` as an int64 index array on the device."""
        return self.backend.asarray(self._gen.permutation(n).astype(np.int64))

    def integers(self, low: int, high: int, size: int | tuple[int, ...]) -> Any:
        """Random integers in [low, high) as an int64 array on the device."""
        return self.backend.asarray(self._gen.integers(low, high, size=size, dtype=np.int64))

    def host_permutation(self, n: int) -> np.ndarray:
        """A random permutation of ``range(n)`` kept on the host (for splits done before data reaches the device)."""
        return self._gen.permutation(n)

    @property
    def state(self) -> dict[str, Any]:
        """The generator state as a JSON-safe dict."""
        return self._gen.bit_generator.state

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        self._gen.bit_generator.state = value
