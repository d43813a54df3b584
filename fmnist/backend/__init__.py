"""Device selection: ``get_backend("cpu" | "gpu" | "auto" | "array-api-strict")``.

This package is the only place that imports NumPy-vs-CuPy specifics. CuPy is imported lazily, only when a GPU
backend is asked for, so ``fmnist --help`` and CPU runs never pay for it.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from fmnist.backend.core import Backend, BackendUnavailableError, HostRNG

__all__ = ["DEVICES", "Backend", "BackendUnavailableError", "HostRNG", "get_backend", "gpu_status"]

DEVICES = ("cpu", "gpu", "auto")
TEST_BACKENDS = ("array-api-strict",)

_GPU_INSTALL_HINT = (
    "install CuPy for CUDA 12 with `pip install 'fmnist[gpu]'` (on Colab: Runtime > Change runtime type > GPU, "
    "then reinstall), or run with --device cpu"
)


def get_backend(device: str | Backend = "cpu", dtype: str = "float32") -> Backend:
    """Return the backend for ``device``.

    Args:
        device: ``"cpu"`` (NumPy), ``"gpu"`` (CuPy on the current CUDA device), ``"auto"`` (GPU if usable, else
            CPU; ``Backend.note`` says which and why), or the test backend ``"array-api-strict"``. A ``Backend``
            is returned unchanged.
        dtype: ``"float32"`` (default) or ``"float64"`` (for gradient checks; half the speed).

    Raises:
        BackendUnavailableError: the GPU (or test backend) was asked for and cannot run here; the message names
            the fix.
        ValueError: an unknown device name.
    """
    if isinstance(device, Backend):
        return device
    if dtype not in ("float32", "float64"):
        raise ValueError(f"unknown dtype {dtype!r}; valid: float32, float64")
    backend = _select(str(device).lower(), device)
    backend.dtype_name = dtype
    return backend


def _select(name: str, device: Any) -> Backend:
    if name == "cpu":
        return _cpu_backend()
    if name in ("gpu", "cuda"):
        return _gpu_backend()
    if name == "auto":
        try:
            backend = _gpu_backend()
        except BackendUnavailableError as err:
            backend = _cpu_backend()
            backend.note = f"auto: using the CPU ({err})"
            return backend
        backend.note = f"auto: using the GPU ({backend.info().get('gpu_name', 'CUDA device')})"
        return backend
    if name == "array-api-strict":
        return _strict_backend()
    raise ValueError(f"unknown device {device!r}; valid: {', '.join(DEVICES + TEST_BACKENDS)}")


def gpu_status() -> tuple[bool, str]:
    """(usable, reason) for the GPU backend, without raising."""
    try:
        backend = _gpu_backend()
    except BackendUnavailableError as err:
        return False, str(err)
    return True, str(backend.info().get("gpu_name", "CUDA device"))


def _cpu_backend() -> Backend:
    def info() -> dict[str, Any]:
        return {"device": "cpu", "numpy": np.__version__}

    return Backend(name="cpu", xp=np, _info=info)


def _gpu_backend() -> Backend:
    if importlib.util.find_spec("cupy") is None:
        raise BackendUnavailableError(f"GPU requested but CuPy is not installed: {_GPU_INSTALL_HINT}")
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing, broken install, no device: all mean "no usable GPU"
        raise BackendUnavailableError(
            f"GPU requested but no CUDA device is usable ({type(err).__name__}: {err}): {_GPU_INSTALL_HINT}"
        ) from err
    if count < 1:
        raise BackendUnavailableError(f"GPU requested but no CUDA device was found: {_GPU_INSTALL_HINT}")

    def info() -> dict[str, Any]:
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"]
        free, total = cupy.cuda.runtime.memGetInfo()
        return {
            "device": "gpu",
            "cupy": cupy.__version__,
            "gpu_name": name.decode() if isinstance(name, bytes) else str(name),
            "gpu_memory_gb": round(total / 2**30, 1),
            "gpu_free_gb": round(free / 2**30, 1),
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
        }

    return Backend(
        name="gpu",
        xp=cupy,
        _sync=cupy.cuda.get_current_stream().synchronize,
        _to_host=cupy.asnumpy,
        _info=info,
    )


def _strict_backend() -> Backend:
    """array-api-strict on a simulated non-CPU device: any leak to the host or NumPy-only call fails loudly."""
    if importlib.util.find_spec("array_api_strict") is None:
        raise BackendUnavailableError(
            "the array-api-strict test backend needs `pip install array-api-strict` (part of fmnist[dev])"
        )
    import array_api_strict as xps

    device = xps.Device("device1")
    cpu = xps.Device("CPU_DEVICE")

    def to_host(x: Any) -> np.ndarray:
        return np.asarray(x.to_device(cpu))

    def info() -> dict[str, Any]:
        return {"device": str(device), "array_api_strict": xps.__version__}

    return Backend(name="array-api-strict", xp=xps, device=device, _to_host=to_host, _info=info)
