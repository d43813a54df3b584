"""Device selection: ``get_backend("cpu" | "gpu" | "auto" | "array-api-strict")``, the GPU checks, and the
``Ops`` of the backend an array belongs to.

CuPy is imported lazily, only when a GPU backend is asked for, so ``fmnist --help`` and CPU runs never pay for it.
CuPy 13 and 14 are supported (for CUDA 12 and 13): fmnist uses whichever one is installed and only names both
provide.

No false GPU: CuPy imports and sees the device on a machine that has only the NVIDIA driver (``pip install
cupy-cuda12x`` without its ``[ctk]`` extra), and fails at the first kernel it compiles. So choosing the GPU runs a
probe first, once per process (``CupyOps.probe``): fmnist's kernels compiled (which also takes their compilation out
of the first epoch) and one of them run, then each kind of operation a step uses once, one host sync. Where it
fails, the GPU is unavailable with one line naming the fix: ``auto`` runs on the CPU and says why, ``gpu`` stops.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from fmnist.backend.core import Backend, BackendUnavailableError

DEVICES = ("cpu", "gpu", "auto")
TEST_BACKENDS = ("array-api-strict",)
MIN_CUPY = 13

_GPU_INSTALL_HINT = (
    "install CuPy for your CUDA: `pip install 'fmnist[cuda12]'` (cupy-cuda12x) or `pip install 'fmnist[cuda13]'` "
    "(cupy-cuda13x); on Colab pick Runtime > Change runtime type > GPU (its CuPy is used as it is); "
    "or run with --device cpu"
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
            backend.note = f"auto: using the CPU ({err.brief.removeprefix('GPU requested but ')})"
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


def cupy_distributions() -> list[str]:
    """The installed CuPy distributions (``cupy-cuda12x 13.6.0``...): more than one makes CuPy misbehave."""
    from importlib import metadata

    names = set()
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name == "cupy" or name.startswith("cupy-cuda") or name.startswith("cupy-rocm"):
            names.add(f"{name} {dist.version}")
    return sorted(names)


# What a failed probe means and what fixes it (read from CuPy 13.6, 14.0.1 and 14.2 on machines without NVRTC,
# CUDA headers or cuBLAS; tests/simgpu/_driver.py has the messages).
_FAILURES = {
    "nvrtc": "cannot compile CUDA kernels: NVRTC is not installed",
    "headers": "cannot compile CUDA kernels: the CUDA headers are not found",
    "cublas": "cannot multiply matrices: cuBLAS is not installed",
    "compile": "did not compile fmnist's CUDA kernels",
    "driver": "cannot run on this NVIDIA driver",
    "memory": "found no free GPU memory",
    "other": "failed a first test on the GPU",
}
_PROBED: dict[int, tuple[Any, BackendUnavailableError | None]] = {}  # id(cupy) -> (cupy, the failure or None)


def _failure_kind(err: Exception) -> str:
    """Which of ``_FAILURES`` an exception raised by the probe is (by type name and message: CuPy's exception
    classes differ between versions, and CompileException is no RuntimeError)."""
    text, name = str(err).lower(), type(err).__name__
    if isinstance(err, MemoryError):  # CuPy's OutOfMemoryError
        return "memory"
    if "nvrtc" in text:
        return "nvrtc"
    if any(s in text for s in ("cuda headers", "cuda root directory", "open source file")):
        return "headers"
    if "cublas" in text:
        return "cublas"
    if name == "CompileException":
        return "compile"
    if name in ("CUDADriverError", "CUDARuntimeError"):
        return "driver"
    return "other"


def _fix(kind: str, version: str) -> str:
    """What to do about a failed probe of ``kind`` with CuPy ``version``, in a few words."""
    names = [d.split()[0] for d in cupy_distributions() if d.startswith("cupy-cuda")]
    package = names[0] if names else "cupy-cuda12x"
    if kind in ("nvrtc", "headers", "cublas"):  # a CuPy wheel without the CUDA libraries it loads at run time
        if _major(version) >= 14:
            fix = f'pip install "{package}[ctk]"'
        else:
            fix = (
                f"install the CUDA Toolkit (CuPy {version} has no [ctk] extra), or CuPy 14 with its CUDA "
                f'libraries: pip install -U "{package}[ctk]>=14"'
            )
        return fix + (", or set CUDA_PATH to a CUDA Toolkit" if kind == "headers" else "")
    return {
        "driver": "update the NVIDIA driver, or install the CuPy for the CUDA version nvidia-smi shows",
        "memory": "free GPU memory (nvidia-smi lists who holds it) or pick another GPU with CUDA_VISIBLE_DEVICES",
    }.get(kind, "please report it with the output of `fmnist info`")


def _probe_failure(backend: Backend, cupy: Any) -> BackendUnavailableError | None:
    """Why the GPU cannot run fmnist (one line naming the fix), or None when ``CupyOps.probe`` passes."""
    from fmnist.backend.cupy_ops import CupyOps

    version = cupy.__version__
    try:
        got = CupyOps(backend).probe()
    except Exception as err:  # every way CuPy fails here derives from Exception: classify it, never a traceback
        kind = _failure_kind(err)
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        detail = f"{type(err).__name__}: {first[:120]}{'...' if len(first) > 120 else ''}"
        what, fix = f"CuPy {version} {_FAILURES[kind]}", f"Fix: {_fix(kind, version)}"
        return BackendUnavailableError(
            f"GPU requested but {what} ({detail}). {fix}; or run with --device cpu", f"{what}. {fix}"
        )
    out = 2.0 * np.arange(32, dtype=np.float64) + 1.0
    want = [float(np.sum(np.arange(1, 65))), float(np.sum(out[:16].reshape(4, 4) @ out[16:].reshape(4, 4)))]
    if not np.allclose(got, want, rtol=1e-5):
        return BackendUnavailableError(f"GPU requested but it computed {got} for {want}: {_fix('other', version)}")
    return None


def _probe(backend: Backend, cupy: Any) -> None:
    """Run the GPU probe once per process (and CuPy module); raise its ``BackendUnavailableError`` where it failed."""
    entry = _PROBED.get(id(cupy))
    if entry is None or entry[0] is not cupy:
        entry = _PROBED[id(cupy)] = (cupy, _probe_failure(backend, cupy))
    if entry[1] is not None:
        raise BackendUnavailableError(str(entry[1]), entry[1].brief)


def _gpu_backend() -> Backend:
    if importlib.util.find_spec("cupy") is None:
        raise BackendUnavailableError(f"GPU requested but CuPy is not installed: {_GPU_INSTALL_HINT}")
    installed = cupy_distributions()
    if len(installed) > 1:
        raise BackendUnavailableError(
            f"two CuPy packages are installed ({', '.join(installed)}), and CuPy misbehaves then: "
            "`pip uninstall` all but the one for your CUDA (nvidia-smi shows it)"
        )
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing, broken install, no device: all mean "no usable GPU"
        raise BackendUnavailableError(
            f"GPU requested but no CUDA device is usable ({type(err).__name__}: {err}): {_GPU_INSTALL_HINT}"
        ) from err
    if count < 1:
        raise BackendUnavailableError(f"GPU requested but no CUDA device was found: {_GPU_INSTALL_HINT}")
    major = _major(cupy.__version__)
    if major < MIN_CUPY:
        raise BackendUnavailableError(
            f"CuPy {cupy.__version__} is too old: fmnist needs CuPy {MIN_CUPY} or newer ({_GPU_INSTALL_HINT})"
        )

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

    backend = Backend(
        name="gpu",
        xp=cupy,
        _sync=cupy.cuda.get_current_stream().synchronize,
        _to_host=cupy.asnumpy,
        _info=info,
    )
    _probe(backend, cupy)
    return backend


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


def _major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


_OPS_FOR: dict[tuple, Backend] = {}


def ops_for(x: Any) -> Any:
    """The ``Ops`` of the backend an array belongs to (for code that receives arrays without their backend, such
    as losses): ``NumpyOps`` for NumPy float32, ``CupyOps`` for CuPy float32, the readable ``Ops`` otherwise."""
    if isinstance(x, np.ndarray | np.generic):
        name, device = "cpu", None
    elif type(x).__module__.split(".")[0] == "cupy":
        name, device = "gpu", None
    else:
        name, device = "array-api-strict", x.device
    dtype = str(x.dtype)
    key = (type(x), dtype, str(device))  # the array type tells a real CuPy from the test suite's simulated one
    backend = _OPS_FOR.get(key)
    if backend is None:
        backend = _OPS_FOR[key] = _select(name, name) if device is None else _strict_backend()
        if device is not None:
            backend.device = device
        backend.dtype_name = dtype if dtype in ("float32", "float64") else "float32"
    return backend.ops
