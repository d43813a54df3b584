"""What the simulated machine has installed: the CuPy version simgpu reports, and whether CuPy can compile CUDA code.

``pip install cupy-cuda12x`` without its ``[ctk]`` extra on a machine with only the NVIDIA driver imports, sees the
GPU (``getDeviceCount()`` works: the CUDA runtime is linked into CuPy) and fails at the first kernel CuPy compiles
at run time: a ``RawModule``'s first ``get_function``, and every CuPy elementwise or reduction kernel the first time
it runs. What is missing decides the message, which differs between CuPy versions (read from CuPy 13.6, 14.0.1 and
14.2 on a machine without NVRTC or CUDA headers):

=========  ==============================================================  ======================================
missing    CuPy 13.6                                                       CuPy 14.0.1
=========  ==============================================================  ======================================
nvrtc      RuntimeError: CuPy failed to load libnvrtc.so.12: OSError: ...  DynamicLibNotFoundError (a
           (the driver alone: no NVRTC, no headers, no cuBLAS)             RuntimeError): Failure finding
                                                                           "libnvrtc.so.13 or libnvrtc.so.12" ...
headers    RuntimeError: Failed to auto-detect CUDA root directory. ...    the same
cublas     ImportError at the first matrix product: libcublas.so.12 ...    ImportError: Failure finding
                                                                           "libcublasLt.so.13 or ..." ...
=========  ==============================================================  ======================================

The failure is not cached by CuPy: every later attempt raises again, and so does simgpu. Copies between host and
device, ``empty`` and zero fills (a memset) need no compiler and keep working.

Choose from the environment, for subprocesses (read when simgpu is imported): ``SIMGPU_CUPY_VERSION`` (``13.6.0``,
the default, or ``14.0.1``, Colab's), ``SIMGPU_DRIVER_ONLY`` (``nvrtc``, ``headers`` or ``cublas``); in a test, with
the context managers ``simgpu.driver_only(missing)`` and ``simgpu.cupy_version(version)``.
"""

from __future__ import annotations

import contextlib
import os

VERSIONS = ("13.6.0", "14.0.1")
MISSING = ("nvrtc", "headers", "cublas")


class DynamicLibNotFoundError(RuntimeError):
    """``cuda.pathfinder``'s error, which CuPy 14 lets through when a CUDA library is not found."""


DynamicLibNotFoundError.__module__ = "cuda.pathfinder._dynamic_libs.load_dl_common"


def _from_environment(name: str, valid: tuple[str, ...], default: str | None) -> str | None:
    value = os.environ.get(name) or default
    if value is not None and value not in valid:
        raise ValueError(f"simgpu: {name}={value!r}; valid: {', '.join(valid)}")
    return value


state: dict[str, str | None] = {
    "version": _from_environment("SIMGPU_CUPY_VERSION", VERSIONS, VERSIONS[0]),
    "missing": _from_environment("SIMGPU_DRIVER_ONLY", MISSING, None),
}


def _cupy14() -> bool:
    return str(state["version"]).startswith("14.")


def compile_error() -> Exception:
    """The exception CuPy raises when it needs to compile and cannot (``missing`` nvrtc or headers)."""
    if state["missing"] == "headers":
        return RuntimeError(
            "Failed to auto-detect CUDA root directory. Please specify `CUDA_PATH` environment variable if you are "
            "using CUDA versions not yet supported by CuPy."
        )
    if _cupy14():
        return DynamicLibNotFoundError(
            'Failure finding "libnvrtc.so.13 or libnvrtc.so.12": No such file: libnvrtc.so.13 or libnvrtc.so.12, '
            "No such file: libnvrtc.so.13 or libnvrtc.so.12\n"
        )
    return RuntimeError(
        "CuPy failed to load libnvrtc.so.12: OSError: libnvrtc.so.12: cannot open shared object file: No such file "
        "or directory"
    )


def check_compile() -> None:
    """Raise as CuPy does when a kernel must be compiled on a machine that cannot."""
    if state["missing"] in ("nvrtc", "headers"):
        raise compile_error()


def check_cublas() -> None:
    """Raise as CuPy does at a matrix product when cuBLAS is not installed."""
    if state["missing"] not in ("nvrtc", "cublas"):
        return
    if _cupy14():
        raise ImportError(
            'Failure finding "libcublasLt.so.13 or libcublasLt.so.12": No such file: libcublasLt.so.13 or '
            "libcublasLt.so.12"
        )
    raise ImportError("libcublas.so.12: cannot open shared object file: No such file or directory")


@contextlib.contextmanager
def driver_only(missing: str = "nvrtc"):
    """Inside the block the simulated machine lacks ``missing`` (``nvrtc``: only the driver is there)."""
    if missing not in MISSING:
        raise ValueError(f"simgpu.driver_only: {missing!r}; valid: {', '.join(MISSING)}")
    saved = state["missing"]
    state["missing"] = missing
    try:
        yield
    finally:
        state["missing"] = saved
