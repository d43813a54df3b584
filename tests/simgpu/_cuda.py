"""``cupy.cuda`` on the host: one simulated device, its runtime queries, streams, events and memory pool.

The device is "Simulated GPU (NumPy host)" with ``DEVICE_MEMORY`` bytes (``_array.DEVICE_MEMORY``, 16 GiB); the
memory pool reports the bytes held by live simulated arrays and allocations beyond the limit raise
``OutOfMemoryError``. Every ``synchronize()`` (stream, device, event, ``runtime.deviceSynchronize``) records one host
synchronisation. Work is done eagerly, so streams and events never have anything pending.
"""

from __future__ import annotations

import time

from . import _array
from ._array import record_sync

DEVICE_NAME = "Simulated GPU (NumPy host)"
COMPUTE_CAPABILITY = (8, 0)
CUDA_VERSION = 12080


class CUDARuntimeError(RuntimeError):
    pass


class OutOfMemoryError(MemoryError):
    def __init__(self, size: int, total: int, limit: int = 0):
        super().__init__(f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes).")


# ---- cupy.cuda.runtime ---------------------------------------------------------------------------------------------
def getDeviceCount() -> int:
    return 1


def getDevice() -> int:
    return 0


def setDevice(device: int) -> None:
    _check_device(device)


def getDeviceProperties(device: int) -> dict:
    _check_device(device)
    major, minor = COMPUTE_CAPABILITY
    return {
        "name": DEVICE_NAME.encode(),
        "totalGlobalMem": _array.DEVICE_MEMORY,
        "sharedMemPerBlock": 48 * 1024,
        "regsPerBlock": 65536,
        "warpSize": 32,
        "maxThreadsPerBlock": 1024,
        "maxThreadsDim": (1024, 1024, 64),
        "maxGridSize": (2**31 - 1, 65535, 65535),
        "clockRate": 1_000_000,
        "multiProcessorCount": 4,
        "major": major,
        "minor": minor,
        "l2CacheSize": 4 * 2**20,
        "integrated": 0,
        "computeMode": 0,
    }


def memGetInfo() -> tuple[int, int]:
    return _array.DEVICE_MEMORY - _array.used_bytes(), _array.DEVICE_MEMORY


def runtimeGetVersion() -> int:
    return CUDA_VERSION


def driverGetVersion() -> int:
    return CUDA_VERSION


def deviceSynchronize() -> None:
    record_sync("runtime.deviceSynchronize")


def _check_device(device) -> None:
    if int(device) != 0:
        raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal (simgpu has one device, 0)")


RUNTIME = {
    f.__name__: f
    for f in (
        getDeviceCount,
        getDevice,
        setDevice,
        getDeviceProperties,
        memGetInfo,
        runtimeGetVersion,
        driverGetVersion,
        deviceSynchronize,
    )
}
RUNTIME["CUDARuntimeError"] = CUDARuntimeError


# ---- cupy.cuda -----------------------------------------------------------------------------------------------------
class Device:
    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)
        _check_device(self.id)

    compute_capability = property(lambda self: "{}{}".format(*COMPUTE_CAPABILITY))
    mem_info = property(lambda self: memGetInfo())

    def synchronize(self) -> None:
        record_sync("Device.synchronize")

    def use(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def __eq__(self, other) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"


class Event:
    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self._time = None

    def record(self, stream=None) -> None:
        self._time = time.perf_counter()

    def synchronize(self) -> None:
        record_sync("Event.synchronize")

    done = property(lambda self: True)


def get_elapsed_time(start_event: Event, end_event: Event) -> float:
    return (end_event._time - start_event._time) * 1e3


class Stream:
    null: Stream

    def __init__(self, null=False, non_blocking=False, ptds=False):
        self.ptr = 0 if null else id(self)
        self._previous: list[Stream] = []

    def synchronize(self) -> None:
        record_sync("Stream.synchronize")

    done = property(lambda self: True)

    def record(self, event: Event | None = None) -> Event:
        event = event or Event()
        event.record(self)
        return event

    def wait_event(self, event: Event) -> None:
        pass

    def use(self) -> Stream:
        _current[0] = self
        return self

    def __enter__(self) -> Stream:
        self._previous.append(_current[0])
        return self.use()

    def __exit__(self, *exc) -> None:
        _current[0] = self._previous.pop()


Stream.null = Stream(null=True)
_current = [Stream.null]


def get_current_stream(device_id: int = -1) -> Stream:
    return _current[0]


def get_device_id() -> int:
    return 0


def is_available() -> bool:
    return True


class MemoryPool:
    """The bytes of live simulated arrays; nothing is cached, so freeing blocks has nothing to do."""

    def __init__(self, allocator=None):
        pass

    def used_bytes(self) -> int:
        return _array.used_bytes()

    def total_bytes(self) -> int:
        return _array.used_bytes()

    def free_bytes(self) -> int:
        return 0

    def n_free_blocks(self) -> int:
        return 0

    def free_all_blocks(self, stream=None) -> None:
        pass

    def free_all_free(self) -> None:
        pass

    def set_limit(self, size=None, fraction=None) -> None:
        _array.POOL_LIMIT = int(size if size is not None else (fraction or 0) * _array.DEVICE_MEMORY)

    def get_limit(self) -> int:
        return _array.POOL_LIMIT


class PinnedMemoryPool:
    def n_free_blocks(self) -> int:
        return 0

    def free_all_blocks(self) -> None:
        pass


DEFAULT_POOL, DEFAULT_PINNED_POOL = MemoryPool(), PinnedMemoryPool()
CUDA = {c.__name__: c for c in (Device, Event, Stream, MemoryPool, PinnedMemoryPool)}
CUDA.update(
    get_current_stream=get_current_stream,
    get_device_id=get_device_id,
    get_elapsed_time=get_elapsed_time,
    is_available=is_available,
)
MEMORY = {"OutOfMemoryError": OutOfMemoryError, "MemoryPool": MemoryPool, "CUDARuntimeError": CUDARuntimeError}
