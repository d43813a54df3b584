"""The only package that knows NumPy from CuPy: devices (``get_backend``), the ``Backend`` (namespace, device,
dtype, transfers, RNG, synchronisation), the ``Ops`` of each device, and the thread budget of the CPU's pools.

Nothing here imports the rest of fmnist.
"""

from fmnist.backend.core import Backend, BackendUnavailableError, HostRNG, NoiseStream
from fmnist.backend.devices import DEVICES, cupy_distributions, get_backend, gpu_status, ops_for

__all__ = [
    "DEVICES",
    "Backend",
    "BackendUnavailableError",
    "HostRNG",
    "NoiseStream",
    "cupy_distributions",
    "get_backend",
    "gpu_status",
    "ops_for",
]
