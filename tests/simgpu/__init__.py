"""simgpu: a simulated GPU for CPU-only CI. It stands in for ``cupy``, runs on NumPy, and behaves like the oldest
CuPy fmnist supports (13.x), deliberately stricter than the real one.

Use it in tests::

    import simgpu
    simgpu.install()            # sys.modules["cupy"] (and cupy.cuda, cupy.cuda.runtime, ...) is now the simulation
    ...
    with simgpu.count_syncs() as syncs:
        ...                     # syncs.count, syncs.kinds, str(syncs) lists each sync with its caller's file:line
    simgpu.uninstall()          # restores whatever ``cupy`` was before

or in a subprocess (a CLI run)::

    PYTHONPATH=tests/simgpu/site fmnist train --device gpu ...   # `import cupy` loads the simulation

Design (one module each):

* ``cupy13_api.json``, written by ``generate_api.py`` from the real CuPy 13, holds every public name of ``cupy`` (and
  ``linalg``, ``random``, ``fft``, ``cuda``, ``cuda.runtime``, ``cuda.memory``) with its kind and parameters, the
  members of ``ndarray`` and ``random.Generator``, and the keywords CuPy 13's ufuncs accept (probed). ``_namespace``
  builds the module tree from it: only those names exist, calls are checked against those signatures.
* ``_array``: ``ndarray`` wraps a NumPy array that NumPy cannot see (``np.asarray(x)`` and ``np.sum(x)`` raise),
  and counts every host synchronisation.
* ``_cuda``: one device, "Simulated GPU (NumPy host)", with streams, events, runtime queries and the memory pool.
* ``_kernels`` + ``cuda_host_shim.h``: ``RawModule``/``RawKernel`` compile the CUDA C source with g++ and run the
  grid on the host, one fiber per CUDA thread when the kernel has barriers, so shared-memory reductions and warp
  shuffles compute what a GPU computes.

The package imports nothing from fmnist.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from . import _array, _namespace
from ._array import SyncLog, ndarray, record_sync, reset_sync_count, sync_count
from ._cuda import DEVICE_NAME

__all__ = [
    "DEVICE_NAME",
    "SIMULATED",
    "SITE_DIR",
    "SyncLog",
    "count_syncs",
    "cupy",
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
def count_syncs():
    """Yield a ``SyncLog`` of the host synchronisations made inside the block (``.count``, ``.kinds``, ``.events``)."""
    log = SyncLog()
    _array._open_logs.append(log)
    try:
        yield log
    finally:
        _array._open_logs.remove(log)
