"""The simulated ``cupy.ndarray`` (a wrapper around a NumPy array that NumPy refuses to touch) and the host
synchronisation counter.

The wrapped array is the "device memory": views (slicing, ``.T``, ``reshape`` of a contiguous array), ``x[...] = y``
and ``out=`` work on it in place, exactly as on a GPU. Everything that makes the host read device memory records a
synchronisation (kind and the caller's ``file:line``): ``bool/int/float/complex()``, ``item``, ``get``, ``tolist``,
``tobytes``, ``repr/str/format``, pickling, and (elsewhere) ``cupy.asnumpy`` and the ``synchronize()`` calls.
``__array__`` raises (as CuPy does); ``__array_ufunc__ = None`` and ``__array_function__`` make NumPy functions refuse
a simulated array while ``numpy_scalar * x`` still reaches ``x.__rmul__``. Operands must be simulated arrays or
Python/NumPy scalars: NumPy arrays and lists are refused (CuPy raises TypeError for ``cupy_array + numpy_array``).
The public methods are the ones CuPy 13 records in ``cupy13_api.json``; ``_namespace`` adds the generic ones.

Launches are counted too (``count_launches()``), by the rule of fmnist's DECISIONS: every device operation that is
not a view counts one (elementwise, reduction, copy, fill, GEMM, advanced indexing), each raw kernel launch counts
one; reshape, transpose, basic slicing and ``empty`` count nothing. ``_driver`` can make the operations that CuPy
compiles at run time fail as they fail on a machine with only the NVIDIA driver.
"""

from __future__ import annotations

import collections
import os
import sys
import weakref
from dataclasses import dataclass, field

import numpy as np

from . import _driver

_HERE = os.path.dirname(os.path.abspath(__file__))
SCALARS = (bool, int, float, complex, np.generic)


@dataclass
class SyncLog:
    """The host synchronisations recorded while a ``count_syncs()`` block ran."""

    events: list[tuple[str, str]] = field(default_factory=list)  # (kind, "file:line" of the caller)

    @property
    def count(self) -> int:
        return len(self.events)

    @property
    def kinds(self) -> collections.Counter:
        return collections.Counter(kind for kind, _ in self.events)

    def __str__(self) -> str:
        lines = [f"{self.count} host synchronisation(s)"] + [f"  {kind} at {where}" for kind, where in self.events]
        return "\n".join(lines)


_total = 0
_open_logs: list[SyncLog] = []


def record_sync(kind: str) -> None:
    """Count one host synchronisation of ``kind``, attributed to the first caller outside simgpu."""
    global _total
    _total += 1
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_HERE):
        frame = frame.f_back
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"
    for log in _open_logs:
        log.events.append((kind, where))


def sync_count() -> int:
    return _total


def reset_sync_count() -> None:
    global _total
    _total = 0


def _caller() -> str:
    """``file:line`` of the first caller outside simgpu."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_HERE):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"


# ---- launches ------------------------------------------------------------------------------------------------------
@dataclass
class LaunchLog:
    """The device operations launched while a ``count_launches()`` block ran: (kind, caller's ``file:line``)."""

    events: list[tuple[str, str]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.events)

    @property
    def kinds(self) -> collections.Counter:
        """Launches by kind: a function or operator name (``sum``, ``__iadd__``, ``matmul``), ``matmul(batched)``
        for a broadcast or stacked product (CuPy runs it as a batched GEMM), ``kernel:NAME`` for raw kernels."""
        return collections.Counter(kind for kind, _ in self.events)

    @property
    def callers(self) -> collections.Counter:
        return collections.Counter(where for _, where in self.events)

    def __str__(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.kinds.items(), key=lambda kv: (-kv[1], kv[0])))
        lines = [f"{self.count} launch(es): {kinds}"]
        lines += [f"  {n:3d}  {where}" for where, n in sorted(self.callers.items())]
        return "\n".join(lines)


_open_launch_logs: list[LaunchLog] = []


def record_launch(kind: str, compiles: bool = True) -> None:
    """Count one device operation of ``kind``, attributed to the first caller outside simgpu. ``compiles``: CuPy
    compiles a kernel for it at run time (everything but copies between host and device and memory fills), so it
    fails where the simulated machine cannot compile (``_driver``)."""
    if compiles:
        _driver.check_compile()
    if not _open_launch_logs:
        return
    where = _caller()
    for log in _open_launch_logs:
        log.events.append((kind, where))


def fresh(result) -> bool:
    """Whether a NumPy result holds memory no live simulated array owns (a new array: the work of a kernel or a
    copy), rather than a view of device memory (reshape, transpose, slicing). Call before wrapping it."""
    if isinstance(result, np.generic):
        return True
    if isinstance(result, np.ndarray):
        root = result
        while isinstance(root.base, np.ndarray):
            root = root.base
        return id(root) not in _live
    if isinstance(result, (tuple, list)):
        return any(fresh(r) for r in result)
    return False


def counting_launches() -> bool:
    return bool(_open_launch_logs)


# ---- simulated device memory: bytes held by live arrays, for the memory pool and OutOfMemoryError -------------------
DEVICE_MEMORY = 16 * 2**30
POOL_LIMIT = 0  # MemoryPool.set_limit; 0: no limit below DEVICE_MEMORY
_live: dict[int, int] = {}  # id of a root NumPy array -> its bytes
_used = 0


def _free(key: int) -> None:
    global _used
    _used -= _live.pop(key, 0)


def _track(a: np.ndarray) -> None:
    global _used
    root = a
    while isinstance(root.base, np.ndarray):
        root = root.base
    if id(root) in _live:
        return
    if _used + root.nbytes > min(DEVICE_MEMORY, POOL_LIMIT or DEVICE_MEMORY):
        from ._cuda import OutOfMemoryError

        raise OutOfMemoryError(root.nbytes, _used)
    _live[id(root)] = root.nbytes
    _used += root.nbytes
    weakref.finalize(root, _free, id(root))


def used_bytes() -> int:
    return _used


# ---- wrapping ------------------------------------------------------------------------------------------------------
def wrap(result, memo: dict | None = None):
    """NumPy results to simulated ones: arrays (the very wrapper when the array was passed in, e.g. ``out=``),
    NumPy scalars as 0-d arrays (CuPy returns 0-d arrays from reductions), containers element by element."""
    if isinstance(result, np.ndarray):
        return memo[id(result)] if memo and id(result) in memo else ndarray._of(result)
    if isinstance(result, np.generic):
        return ndarray._of(np.asarray(result))
    if isinstance(result, (tuple, list)):
        items = [wrap(r, memo) for r in result]
        return type(result)(*items) if hasattr(result, "_fields") else type(result)(items)
    return result


def unwrap(obj, memo: dict, where: str, host: list | None = None):
    """Simulated arrays to their NumPy arrays (remembered in ``memo``), recursively in lists and tuples. NumPy arrays
    are refused unless ``host`` collects them (functions that copy host data to the device)."""
    if isinstance(obj, ndarray):
        memo[id(obj._a)] = obj
        return obj._a
    if isinstance(obj, np.ndarray):
        if host is None:
            raise TypeError(
                f"{where}: got a numpy.ndarray where CuPy needs a cupy.ndarray (copy it to the device with "
                f"cupy.asarray first)"
            )
        host.append(obj)
        return obj
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(unwrap(o, memo, where, host) for o in obj)
    return obj


def operand(other, op: str):
    if isinstance(other, ndarray):
        return other._a
    if isinstance(other, SCALARS):
        return other
    raise TypeError(
        f"simgpu: unsupported operand type for {op}: cupy.ndarray and {type(other).__module__}.{type(other).__name__}"
        + (" (CuPy does not mix device and host arrays: use cupy.asarray)" if isinstance(other, np.ndarray) else "")
    )


_KIND_ORDER = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}


def check_promotion(arrays, scalars, where: str) -> None:
    """Refuse a NumPy scalar that CuPy 13 and CuPy 14 promote differently with an array operand: CuPy 13 casts by
    value (``float32_array * numpy.float64(2)`` is float32), CuPy 14 and NumPy 2, which compute here, by NEP 50
    (float64). A Python scalar, or a NumPy scalar of the array's dtype, means the same to both."""
    for s in scalars:
        if not isinstance(s, np.generic):
            continue
        for a in arrays:
            promoted = np.result_type(a.dtype, s.dtype)
            if _KIND_ORDER.get(s.dtype.kind, 9) <= _KIND_ORDER.get(a.dtype.kind, -1) and promoted != a.dtype:
                raise TypeError(
                    f"simgpu: {where} mixes a {a.dtype} array and a numpy.{s.dtype} scalar: CuPy 13 (value-based "
                    f"casting) gives {a.dtype}, CuPy 14 and NumPy 2 (NEP 50) give {promoted}. Pass a Python scalar or "
                    f"numpy.{a.dtype}(...) so that both agree."
                )


def index(key, where: str = "cupy.ndarray index"):
    if isinstance(key, tuple):
        return tuple(index(k, where) for k in key)
    if isinstance(key, ndarray):
        if key.dtype.kind not in "biu":
            raise IndexError(f"{where}: arrays used as indices must be of integer or boolean type, got {key.dtype}")
        return key._a
    if key is None or key is Ellipsis or isinstance(key, (slice, bool, int, np.integer, np.bool_)):
        return key
    raise TypeError(
        f"{where}: unsupported index type {type(key).__name__}; use ints, slices, None, Ellipsis or cupy arrays "
        "(simgpu refuses NumPy arrays and lists, which CuPy would copy to the device implicitly)"
    )


class _Flags:
    def __init__(self, a: np.ndarray):
        self.c_contiguous, self.f_contiguous = a.flags.c_contiguous, a.flags.f_contiguous
        self.owndata = a.base is None

    def __getitem__(self, name: str) -> bool:
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous, "OWNDATA": self.owndata}[name]

    def __repr__(self) -> str:
        return f"  C_CONTIGUOUS : {self.c_contiguous}\n  F_CONTIGUOUS : {self.f_contiguous}\n  OWNDATA : {self.owndata}"


class MemoryPointer:
    def __init__(self, ptr: int):
        self.ptr, self.device_id = ptr, 0


def _rebuild(host: np.ndarray) -> ndarray:
    return ndarray._of(host.copy())


class ndarray:
    """A simulated ``cupy.ndarray``: device memory is a NumPy array only this wrapper touches."""

    __slots__ = ("__weakref__", "_a")
    __array_ufunc__ = None  # NumPy ufuncs refuse it; `numpy_scalar * x` falls back to x.__rmul__
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("simgpu: ndarray(memptr=..., strides=...) is not simulated")
        self._a = np.empty(shape, dtype=dtype, order=order)
        _track(self._a)

    @classmethod
    def _of(cls, a: np.ndarray) -> ndarray:
        self = object.__new__(cls)
        self._a = a
        _track(a)
        return self

    # NumPy must not see the data
    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy array "
            "explicitly. (simgpu, as CuPy)"
        )

    def __array_function__(self, func, types, args, kwargs):
        raise TypeError(
            f"simgpu: numpy.{func.__name__} was called on a cupy.ndarray; call cupy.{func.__name__} (or "
            "xp.<name> with xp = cupy.get_array_module(x)). Real CuPy would dispatch; the simulation refuses so that "
            "CPU-only CI catches NumPy calls on device arrays."
        )

    # attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    T = property(lambda self: ndarray._of(self._a.T))
    real = property(lambda self: ndarray._of(self._a.real))
    imag = property(lambda self: ndarray._of(self._a.imag))
    flags = property(lambda self: _Flags(self._a))
    data = property(lambda self: MemoryPointer(self._a.ctypes.data))
    base = property(lambda self: None if self._a.base is None else ndarray._of(self._a.base))

    @shape.setter
    def shape(self, value):
        self._a.shape = value

    @property
    def device(self):
        from ._cuda import Device

        return Device(0)

    @property
    def __cuda_array_interface__(self) -> dict:
        strides = None if self._a.flags.c_contiguous else self._a.strides
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "data": (self._a.ctypes.data, False),
            "strides": strides,
            "version": 3,
        }

    # container protocol
    def __len__(self) -> int:
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._a)))

    def __getitem__(self, key):
        key = index(key)
        result = self._a[key]
        if not isinstance(result, np.ndarray):  # a scalar: CuPy returns a 0-d *view*
            keys = key if isinstance(key, tuple) else (key,)
            result = np.asarray(result) if any(k is Ellipsis for k in keys) else self._a[(*keys, Ellipsis)]
        if fresh(result):  # advanced indexing gathers into a new array: a kernel
            record_launch("take (indexing)")
        return ndarray._of(result)

    def __setitem__(self, key, value):
        self._a[index(key)] = operand(value, "assignment")
        if isinstance(value, ndarray):
            record_launch("copy (setitem)")
        else:  # CuPy fills: a zero is a memset
            record_launch("fill (setitem)", compiles=not (isinstance(value, SCALARS) and value == 0))

    # reading device memory from the host: each is one synchronisation
    def _host(self, kind: str) -> np.ndarray:
        record_sync(kind)
        return self._a

    def __bool__(self) -> bool:
        return bool(self._host("bool"))

    def __int__(self) -> int:
        return int(self._host("int"))

    def __float__(self) -> float:
        return float(self._host("float"))

    def __complex__(self) -> complex:
        return complex(self._host("complex"))

    def __repr__(self) -> str:
        return repr(self._host("repr"))

    def __str__(self) -> str:
        return str(self._host("str"))

    def __format__(self, spec: str) -> str:
        return format(self._host("format"), spec)

    def __reduce__(self):
        return _rebuild, (self._host("pickle").copy(),)

    def item(self):
        return self._host("item").item()

    def tolist(self):
        return self._host("tolist").tolist()

    def tobytes(self, order="C") -> bytes:
        return self._host("tobytes").tobytes(order)

    def get(self, stream=None, order="C", out=None, blocking=True) -> np.ndarray:
        host = self._host("get")
        record_launch("copy (device to host)", compiles=False)
        if out is None:
            return np.array(host, order=order, copy=True)
        if not isinstance(out, np.ndarray) or out.shape != host.shape or out.dtype != host.dtype:
            raise ValueError("simgpu: `out` must be a numpy.ndarray of the same shape and dtype")
        out[...] = host
        return out

    # host-to-device (no synchronisation) and device-only methods
    def set(self, arr, stream=None) -> None:
        if not isinstance(arr, np.ndarray) or arr.shape != self.shape or arr.dtype != self.dtype:
            raise ValueError("simgpu: ndarray.set needs a numpy.ndarray of the same shape and dtype")
        self._a[...] = arr
        record_launch("copy (host to device)", compiles=False)

    def fill(self, value) -> None:
        self._a[...] = operand(value, "fill")
        record_launch("fill", compiles=not (isinstance(value, SCALARS) and value == 0))  # a zero fill: memset

    def view(self, dtype=None, type=None):
        return ndarray._of(self._a.view() if dtype is None else self._a.view(dtype))

    def ptp(self, axis=None, out=None, keepdims=False):
        memo = {}
        out_a = unwrap(out, memo, "cupy.ndarray.ptp")
        record_launch("ptp")
        return wrap(np.ptp(self._a, axis=axis, out=out_a, keepdims=keepdims), memo)

    def put(self, indices, values, mode="wrap") -> None:
        np.put(self._a, operand(indices, "put"), operand(values, "put"), mode=mode)
        record_launch("put")

    def reduced_view(self, dtype=None):
        return ndarray._of(self._a.reshape(-1) if self._a.flags.c_contiguous else self._a)

    def _scatter(self, op, slices, value) -> None:
        op.at(self._a, index(slices, "scatter"), operand(value, "scatter"))
        record_launch(f"scatter_{op.__name__}")

    def scatter_add(self, slices, value) -> None:
        self._scatter(np.add, slices, value)

    def scatter_max(self, slices, value) -> None:
        self._scatter(np.maximum, slices, value)

    def scatter_min(self, slices, value) -> None:
        self._scatter(np.minimum, slices, value)

    def __copy__(self):
        record_launch("copy")
        return ndarray._of(self._a.copy())

    def __deepcopy__(self, memo):
        return self.__copy__()


def _binary(name: str):
    method = getattr(np.ndarray, name)
    promotes = not name.startswith("__i") and name not in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__")

    def op(self, other):
        if promotes:
            check_promotion([self._a], [other], f"`{name}`")
        result = method(self._a, operand(other, name))
        if result is NotImplemented:
            return result
        if "matmul" in name:
            batched = max(self._a.ndim, getattr(operand(other, name), "ndim", 0)) > 2
            record_launch("matmul(batched)" if batched else "matmul")
            _driver.check_cublas()
        else:
            record_launch(name)
        return self if result is self._a else wrap(result)

    op.__name__ = name
    return op


def _unary(name: str):
    method = getattr(np.ndarray, name)

    def op(self):
        record_launch(name)
        return wrap(method(self._a))

    op.__name__ = name
    return op


for _op in (
    "add",
    "sub",
    "mul",
    "matmul",
    "truediv",
    "floordiv",
    "mod",
    "pow",
    "lshift",
    "rshift",
    "and",
    "or",
    "xor",
    "divmod",
):
    for _name in (f"__{_op}__", f"__r{_op}__", f"__i{_op}__"):
        if hasattr(np.ndarray, _name):
            setattr(ndarray, _name, _binary(_name))
for _name in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"):
    setattr(ndarray, _name, _binary(_name))
for _name in ("__neg__", "__pos__", "__abs__", "__invert__"):
    setattr(ndarray, _name, _unary(_name))
ndarray.__module__ = "cupy"
