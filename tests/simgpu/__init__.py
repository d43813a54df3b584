"""simgpu: a simulated GPU for CPU-only CI. It stands in for ``cupy``, runs on NumPy, and behaves like the CuPy
versions fmnist supports (13.6, and 14.0.1 as Colab has it): only the names both have, calls checked against both
signatures, deliberately stricter than the real one.

Use it in tests::

    import simgpu
    simgpu.install()            # sys.modules["cupy"] (and cupy.cuda, cupy.cuda.runtime, ...) is now the simulation
    ...
    with simgpu.count_syncs() as syncs:
        ...                     # syncs.count, syncs.kinds, str(syncs) lists each sync with its caller's file:line
    with simgpu.count_launches() as launches:
        ...                     # launches.count, launches.kinds: every device operation that is not a view
    with simgpu.driver_only("nvrtc"):
        ...                     # a machine with the NVIDIA driver only: the first kernel CuPy compiles fails
    with simgpu.cupy_version("14.0.1"):
        ...                     # cupy.__version__ and CuPy's messages as CuPy 14.0.1 has them (default 13.6.0)
    simgpu.uninstall()          # restores whatever ``cupy`` was before

or in a subprocess (a CLI run)::

    PYTHONPATH=tests/simgpu/site fmnist train --device gpu ...   # `import cupy` loads the simulation

Design (one module each):

* ``cupy13_api.json``, written by ``generate_api.py`` from the real CuPy 13, holds every public name of ``cupy`` (and
  ``linalg``, ``random``, ``fft``, ``cuda``, ``cuda.runtime``, ``cuda.memory``) with its kind and parameters, the
  members of ``ndarray`` and ``random.Generator``, and the keywords CuPy 13's ufuncs accept (probed);
  ``cupy14_changes.json``, written by the same script from CuPy 14.0.1, what CuPy 14 removes or changes.
  ``_namespace`` builds the module tree from them: only the names both have exist, calls are checked against both
  signatures.
* ``_array``: ``ndarray`` wraps a NumPy array that NumPy cannot see (``np.asarray(x)`` and ``np.sum(x)`` raise),
  and counts every host synchronisation and every launch (``count_launches``, with the rule fmnist's DECISIONS
  states).
* ``_cuda``: one device, "Simulated GPU (NumPy host)", with streams, events, runtime queries and the memory pool.
* ``_kernels`` + ``cuda_host_shim.h``: ``RawModule``/``RawKernel`` compile the CUDA C source with g++ and run the
  grid on the host, one fiber per CUDA thread when the kernel has barriers, so shared-memory reductions and warp
  shuffles compute what a GPU computes. A pointer argument must be an array (CuPy passes ``None`` as a NULL
  argument address, not as a null device pointer).
* ``_driver``: the CuPy version reported (13.6.0 or 14.0.1) and, on request, a machine that cannot compile
  (``driver_only``; ``SIMGPU_DRIVER_ONLY`` and ``SIMGPU_CUPY_VERSION`` for subprocesses).

The package imports nothing from fmnist.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from . import _array, _driver, _kernels, _namespace
from ._array import LaunchLog, SyncLog, ndarray, record_sync, reset_sync_count, sync_count
from ._cuda import DEVICE_NAME
from ._driver import driver_only
from ._namespace import count_launches

__all__ = [
    "DEVICE_NAME",
    "SIMULATED",
    "SITE_DIR",
    "LaunchLog",
    "SyncLog",
    "compilations",
    "count_launches",
    "count_syncs",
    "cupy",
    "cupy_version",
    "driver_only",
    "install",
    "ndarray",
    "record_sync",
    "reset_sync_count",
    "sync_count",
    "uninstall",
]

SIMULATED = True
SITE_DIR = Path(__file__).with_name("site")  # put on PYTHONPATH so that `import cupy` in a subprocess loads simgpu
MODULES = _namespace.build()
cupy = MODULES["cupy"]
_saved: list[dict] = []


def install() -> None:
    """Make ``import cupy`` (and its submodules) return the simulation. Nested calls are undone one by one."""
    _saved.append({name: sys.modules.get(name) for name in MODULES})
    sys.modules.update(MODULES)


def uninstall() -> None:
    """Undo the last ``install()``: restore the modules that were there before (or none)."""
    if not _saved:
        return
    for name, module in _saved.pop().items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module


@contextlib.contextmanager
def cupy_version(version: str):
    """Inside the block the simulation reports CuPy ``version`` (``13.6.0`` or ``14.0.1``) and raises that
    version's messages (``driver_only``). The names offered are the same for both: those both versions have."""
    if version not in _driver.VERSIONS:
        raise ValueError(f"simgpu.cupy_version: {version!r}; valid: {', '.join(_driver.VERSIONS)}")
    saved = _driver.state["version"]
    _driver.state["version"] = cupy.__version__ = version
    try:
        yield
    finally:
        _driver.state["version"] = cupy.__version__ = saved


def compilations() -> int:
    """How many RawModule / RawKernel sources have been compiled in this process (each module object compiles once,
    at its first ``get_function``, ``compile()`` or launch, as in CuPy)."""
    return _kernels.compilations


@contextlib.contextmanager
def count_syncs():
    """Yield a ``SyncLog`` of the host synchronisations made inside the block (``.count``, ``.kinds``, ``.events``)."""
    log = SyncLog()
    _array._open_logs.append(log)
    try:
        yield log
    finally:
        _array._open_logs.remove(log)
