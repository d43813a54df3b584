"""``cupy.RawModule`` / ``cupy.RawKernel`` on the host: the CUDA C source is compiled by g++ against
``cuda_host_shim.h`` into a cached shared library and launched through ctypes.

Compilation is lazy, as in CuPy (first launch, ``get_function`` or ``compile()``). The compiler is ``$CXX`` (default
g++). The library is cached under ``$SIMGPU_CACHE_DIR`` (default: ``<tmp>/simgpu-cache-<uid>``) by the SHA-256 of
source, shim, compiler and options; a build writes to a private name and renames, so concurrent processes are safe.
Each kernel found by the regex for ``extern "C" __global__ void NAME(`` gets an exported launcher and a signature
(parameter type codes), so a launch checks every argument against the kernel's real parameter types: arrays
(C-contiguous, matching element type) for pointers, typed NumPy scalars of exactly the parameter's type for values.
Python ``int``/``float`` are refused (CuPy would pass them as int64/float64 whatever the kernel declares), and so is
``None`` for a pointer (CuPy turns it into a NULL *argument address*, not a null device pointer: undefined on a GPU).
A kernel that uses ``__syncthreads`` or a warp primitive, in its own body or in a ``__device__`` function or macro it
calls, runs one fiber per CUDA thread; the others run their threads in a plain loop (decided per kernel, so that the
elementwise kernels of a module with a few reductions stay fast).

As in CuPy, a ``RawModule`` compiles its whole source once, at its first ``get_function``, ``compile()`` or launch
(``compilations`` counts them); where the simulated machine cannot compile (``_driver``), that raises CuPy's error.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from . import _driver
from ._array import ndarray, record_launch

SHIM = Path(__file__).with_name("cuda_host_shim.h")
BOUNDS = r"(?:__launch_bounds__\s*\([^)]*\)\s*)?"  # before or after the return type
KERNEL_NAME = re.compile(rf'extern\s+"C"\s+__global__\s+{BOUNDS}void\s+{BOUNDS}(\w+)\s*\(')
DYNAMIC_SHARED = re.compile(r"extern\s+__shared__\s+([^;\[]*?)\s*(\w+)\s*\[\s*\]\s*;")
COOPERATIVE = re.compile(r"__syncthreads|__syncwarp|__shfl_\w*sync|__ballot_sync|__any_sync|__all_sync")
COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
MAX_THREADS, MAX_SHARED = 1024, 48 * 1024
QUALIFIED = re.compile(r"\b(__global__|__device__)\b")
CALL = re.compile(r"\b(\w+)\s*\(")
MACRO = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)((?:[^\n\\]|\\.)*(?:\\\n(?:[^\n\\]|\\.)*)*)", re.M)
NOT_NAMES = {"__launch_bounds__", "__align__", "if", "for", "while", "switch", "return", "sizeof"}
_loaded: dict[str, ctypes.CDLL] = {}
compilations = 0  # RawModule / RawKernel sources compiled in this process (see RawModule.compile)


def _matching(code: str, start: int, open_: str, close: str) -> int:
    """The index just past the bracket that closes the one at ``start``."""
    depth = 0
    for i in range(start, len(code)):
        depth += (code[i] == open_) - (code[i] == close)
        if depth == 0:
            return i + 1
    return len(code)


def _functions(code: str) -> dict[str, str]:
    """The body of every ``__global__`` / ``__device__`` function defined in ``code`` (comments removed), by name."""
    bodies = {}
    for qualifier in QUALIFIED.finditer(code):
        at = qualifier.end()
        while (call := CALL.search(code, at)) is not None and call.group(1) in NOT_NAMES:
            at = _matching(code, call.end() - 1, "(", ")")  # skip __launch_bounds__(...)
        if call is None or ";" in code[qualifier.end() : call.start()]:
            continue  # a __device__ variable, or a declaration
        after = _matching(code, call.end() - 1, "(", ")")
        brace = code.find("{", after)
        if brace < 0 or ";" in code[after:brace]:
            continue
        bodies[call.group(1)] = code[brace : _matching(code, brace, "{", "}")]
    return bodies


@functools.lru_cache(maxsize=64)
def cooperative_kernels(code: str) -> frozenset[str]:
    """The kernels of ``code`` that reach a barrier or warp primitive: in their body, or through the ``__device__``
    functions and macros they use (transitively)."""
    code = COMMENTS.sub("", code)
    bodies = {m.group(1): m.group(2) for m in MACRO.finditer(code)} | _functions(code)
    uses = {name: bool(COOPERATIVE.search(body)) for name, body in bodies.items()}
    changed = True
    while changed:
        changed = False
        for name, body in bodies.items():
            if not uses[name] and any(uses[o] and re.search(rf"\b{o}\b", body) for o in bodies if o != name):
                uses[name] = changed = True
    return frozenset(name for name in KERNEL_NAME.findall(code) if uses.get(name))


class CompileException(Exception):
    """The CUDA source did not compile (the message holds the compiler's output)."""


def _cache_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"simgpu-cache-{os.getuid()}"
    path = Path(os.environ.get("SIMGPU_CACHE_DIR", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _host_source(code: str, names: list[str]) -> str:
    def dynamic(m: re.Match) -> str:
        ctype = re.sub(r"__align__\s*\(\s*\d+\s*\)", "", m.group(1)).strip()
        return f"{ctype}* {m.group(2)} = reinterpret_cast<{ctype}*>(simgpu::g_dynamic_smem);"

    body = DYNAMIC_SHARED.sub(dynamic, code)
    exports = "".join(f"SIMGPU_EXPORT({name})\n" for name in names)
    return f'#include "cuda_host_shim.h"\n#line 1 "kernel.cu"\n{body}\n#line 1 "simgpu-exports"\n{exports}'


def _compile_options(options: tuple) -> list[str]:
    """Keep the options that mean the same to g++ (-D, -U, -I); NVRTC-only ones (-arch, --use_fast_math...) go."""
    return [opt for opt in options if str(opt)[:2] in ("-D", "-U", "-I")]


def compiler() -> str:
    """The host C++ compiler: ``$CXX``, else g++."""
    return os.environ.get("CXX", "g++")


@functools.cache
def _compiler_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise CompileException(f"simgpu compiles kernels with a host C++17 compiler; {cxx!r} failed: {err}") from err


def build(code: str, options: tuple = ()) -> tuple[ctypes.CDLL, list[str]]:
    names = KERNEL_NAME.findall(COMMENTS.sub("", code))
    source = _host_source(code, names)
    # -U_FORTIFY_SOURCE: the fibers switch stacks with _longjmp, which the fortified longjmp check would refuse
    flags = [
        "-O2",
        "-shared",
        "-fPIC",
        "-std=c++17",
        "-U_FORTIFY_SOURCE",
        f"-I{SHIM.parent}",
        *_compile_options(options),
    ]
    cxx = compiler()
    key = hashlib.sha256("\0".join([source, SHIM.read_text(), _compiler_version(cxx), cxx, *flags]).encode())
    key = key.hexdigest()
    if key in _loaded:
        return _loaded[key], names
    target = _cache_dir() / f"{key}.so"
    if not target.exists():
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            src, out = Path(tmp) / "kernel.cpp", Path(tmp) / "kernel.so"
            src.write_text(source)
            proc = subprocess.run([cxx, *flags, "-o", str(out), str(src)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise CompileException(f"simgpu: the CUDA source did not compile on the host:\n{proc.stderr}")
            os.replace(out, target)  # atomic: a concurrent build of the same key writes the same bytes
    _loaded[key] = ctypes.CDLL(str(target))
    return _loaded[key], names


def _dims(value, what: str) -> tuple[int, int, int]:
    if not isinstance(value, tuple) or not 1 <= len(value) <= 3:
        raise TypeError(f"{what} must be a tuple of 1 to 3 ints (CuPy 13's Function.__call__ takes `tuple {what}`)")
    dims = tuple(int(v) for v in value) + (1,) * (3 - len(value))
    if min(dims) < 1:
        raise ValueError(f"{what} dimensions must be positive, got {value}")
    return dims


_CODES = {np.dtype(t): f"{np.dtype(t).kind}{np.dtype(t).itemsize}" for t in "bhilqBHILQfd"}
_CODES[np.dtype(bool)] = "b1"


def _marshal(i: int, arg, code: str, kernel: str) -> tuple[int, object]:
    """(address of the argument's value, what keeps it alive) for argument ``i`` of parameter type ``code``."""
    where = f"argument {i} of kernel {kernel!r}"
    if code.startswith("*"):
        if arg is None:
            raise TypeError(
                f"{where}: None for a pointer ({code}). CuPy passes None as a NULL *argument address*, not as a null "
                "device pointer, so the kernel reads garbage on a GPU: pass an array (any valid one) and a flag"
            )
        if not isinstance(arg, ndarray):
            raise TypeError(f"{where}: the kernel takes a pointer ({code}); pass a cupy.ndarray, got {type(arg)}")
        if not arg.flags.c_contiguous:
            raise ValueError(f"{where}: the array is not C-contiguous (a raw kernel sees only the base pointer)")
        want = code[1:]
        if want[0] not in "v?*" and _CODES.get(arg.dtype) != want:
            raise TypeError(f"{where}: the kernel takes {code}, the array has dtype {arg.dtype}")
        pointer = ctypes.c_void_p(arg._a.ctypes.data)
        return ctypes.addressof(pointer), (pointer, arg)
    if isinstance(arg, (bool, int, float, complex)) and not isinstance(arg, np.generic):  # np.float64 is a float
        raise TypeError(
            f"{where}: a Python {type(arg).__name__} was passed for a {code} parameter; pass a typed NumPy scalar "
            f"(e.g. numpy.int32(...), numpy.float32(...)). CuPy sends Python ints as int64 and floats as float64 "
            f"whatever the kernel declares, so simgpu refuses them."
        )
    if not isinstance(arg, np.generic) or _CODES.get(arg.dtype) != code:
        got = arg.dtype if isinstance(arg, np.generic) else type(arg)
        raise TypeError(f"{where}: the kernel takes a {code} scalar, got {got}")
    holder = np.array(arg)
    return holder.ctypes.data, holder


class RawKernel:
    """``cupy.RawKernel(code, name, options=(), backend='nvrtc', *, ...)``, run on the host."""

    def __init__(
        self,
        code: str,
        name: str,
        options: tuple = (),
        backend: str = "nvrtc",
        *,
        translate_cucomplex: bool = False,
        enable_cooperative_groups: bool = False,
        jitify: bool = False,
    ):
        if not isinstance(code, str) or not isinstance(name, str) or not isinstance(options, tuple):
            raise TypeError("RawKernel(code: str, name: str, options: tuple = ())")
        self.code, self.name, self.options, self.backend = code, name, options, backend
        self.__name__ = name
        self._launch = self._signature = None
        self._module: RawModule | None = None  # set by RawModule.get_function: the module compiled the source

    def compile(self, log_stream=None) -> None:
        global compilations
        if self._launch is not None:
            return
        if self._module is None:  # a RawKernel of its own compiles its source once
            _driver.check_compile()
            compilations += 1
        lib, names = build(self.code, self.options)
        if self.name not in names:
            raise RuntimeError(
                f"simgpu: no kernel named {self.name!r} (found {names}); kernels must be declared "
                f'`extern "C" __global__ void {self.name}(...)`'
            )
        self._launch = getattr(lib, f"simgpu_launch_{self.name}")
        self._launch.restype = ctypes.c_int
        signature = getattr(lib, f"simgpu_signature_{self.name}")
        signature.restype = ctypes.c_char_p
        self._signature = [c for c in signature().decode().split(",") if c]
        self._error = lib.simgpu_last_error
        self._error.restype = ctypes.c_char_p
        self._cooperative = self.name in cooperative_kernels(self.code)

    @property
    def kernel(self):
        self.compile()
        return self

    def __call__(self, grid, block, args, *, shared_mem: int = 0, stream=None) -> None:
        self.compile()
        grid, block = _dims(grid, "grid"), _dims(block, "block")
        if block[0] * block[1] * block[2] > MAX_THREADS:
            raise ValueError(f"simgpu: {block} is more than {MAX_THREADS} threads per block (a CUDA launch fails)")
        if not 0 <= int(shared_mem) <= MAX_SHARED:
            raise ValueError(f"simgpu: shared_mem={shared_mem} is outside [0, {MAX_SHARED}] bytes")
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"args must be a tuple, got {type(args)}")
        if len(args) != len(self._signature):
            raise TypeError(
                f"kernel {self.name!r} takes {len(self._signature)} arguments ({', '.join(self._signature)}), "
                f"{len(args)} given"
            )
        marshalled = [_marshal(i, a, c, self.name) for i, (a, c) in enumerate(zip(args, self._signature, strict=True))]
        record_launch(f"kernel:{self.name}", compiles=False)
        pointers = (ctypes.c_void_p * max(1, len(args)))(*[address for address, _ in marshalled])
        status = self._launch(
            len(args),
            (ctypes.c_uint * 3)(*grid),
            (ctypes.c_uint * 3)(*block),
            ctypes.c_size_t(int(shared_mem)),
            pointers,
            int(self._cooperative),
        )
        if status != 0:
            raise RuntimeError(f"simgpu: kernel {self.name!r} failed: {self._error().decode()}")


class RawModule:
    """``cupy.RawModule(*, code=None, path=None, options=(), ..., name_expressions=None)``, run on the host."""

    def __init__(
        self,
        *,
        code: str | None = None,
        path: str | None = None,
        options: tuple = (),
        backend: str = "nvrtc",
        translate_cucomplex: bool = False,
        enable_cooperative_groups: bool = False,
        name_expressions=None,
        jitify: bool = False,
    ):
        if (code is None) == (path is None):
            raise TypeError("Exactly one of `code` and `path` keyword arguments must be given.")
        if code is None:
            raise NotImplementedError("simgpu: RawModule(path=...) (a cubin/ptx file) cannot run on the host")
        if name_expressions is not None:
            raise NotImplementedError("simgpu: name_expressions (C++ template kernels) are not simulated")
        self.code, self.options, self.backend = code, options, backend
        self._compiled = False

    def compile(self, log_stream=None) -> None:
        """Compile the whole source (once per module object, as CuPy does; CuPy's failure is not cached)."""
        global compilations
        if self._compiled:
            return
        _driver.check_compile()
        build(self.code, self.options)
        compilations += 1
        self._compiled = True

    def get_function(self, name: str) -> RawKernel:
        self.compile()
        kernel = RawKernel(self.code, name, self.options)
        kernel._module = self
        kernel.compile()
        return kernel
