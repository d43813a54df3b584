"""Compile a CUDA C source with NVIDIA's runtime compiler (NVRTC) exactly as CuPy's ``RawModule`` does, with no GPU.

NVRTC is the compiler CuPy runs on the user's machine, and it is not nvcc: it has no host headers (``<cmath>``,
``<cstdint>``... do not exist for it) and writes its warnings only to the program log. This module loads libnvrtc
through ctypes, from the pip wheel ``nvidia-cuda-nvrtc-cu12`` (``nvidia/cuda_nvrtc/lib/libnvrtc.so.12``; CI installs
it, it is no dependency of fmnist) or ``nvidia-cuda-nvrtc`` for CUDA 13 (``nvidia/cu13/lib/libnvrtc.so.13``), else
``$FMNIST_NVRTC_LIB``, ``$CUDA_PATH/lib64`` or ``/usr/local/cuda/lib64``.

The options are the ones CuPy's ``RawModule(code=SOURCE)`` hands to ``nvrtcCompileProgram``, in its order (read
from CuPy 13.6, 14.0.1 and 14.2: ``cupy/_core/core.pyx assemble_cupy_compiler_options``, ``cupy/cuda/compiler.py
_compile_with_cache_cuda`` and ``compile_using_nvrtc``): ``--std=c++11`` (CuPy 13) or ``--std=c++17`` (CuPy 14),
``-ftz=true``, ``-arch=sm_XX`` (a cubin: CuPy's default) or ``-arch=compute_XX`` (PTX: ``CUPY_COMPILE_WITH_PTX`` or
a GPU newer than the NVRTC), and ``--device-as-default-execution-space`` (NVRTC 12 and later). CuPy's ``-I`` paths
only matter to a source that includes something, and fmnist's includes nothing.

By hand: ``python tests/backend/nvrtc_check.py [FILE.cu]`` (default: fmnist's kernels) prints each compile; exit 0 when
every compile is clean, 1 when one failed or logged anything, 2 when no NVRTC was found.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ARCHS = ("compute_75", "sm_75", "sm_90")  # the T4 as PTX and as cubin, Hopper as cubin
STDS = {"c++11": "CuPy 13", "c++17": "CuPy 14"}  # RawModule's default language standard per CuPy version


class NvrtcNotFound(RuntimeError):
    """No libnvrtc here; the message says how to get one."""


def find_libnvrtc() -> str:
    """The path of libnvrtc: ``$FMNIST_NVRTC_LIB``, the CUDA 12 or 13 pip wheel, ``$CUDA_PATH``, /usr/local/cuda."""
    if os.environ.get("FMNIST_NVRTC_LIB"):
        return os.environ["FMNIST_NVRTC_LIB"]
    sites = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *sys.path])
    for site in (s for s in sites if s and os.path.isdir(s)):
        for pattern in ("nvidia/cuda_nvrtc/lib/libnvrtc.so.1[0-9]", "nvidia/cu1[0-9]/lib/libnvrtc.so.1[0-9]"):
            hits = sorted(glob.glob(os.path.join(site, pattern)))
            if hits:
                return hits[-1]
    for root in (os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        hits = sorted(glob.glob(os.path.join(root, "lib64", "libnvrtc.so.1[0-9]"))) if root else []
        if hits:
            return hits[-1]
    raise NvrtcNotFound("libnvrtc not found: pip install nvidia-cuda-nvrtc-cu12 (CI does), or set FMNIST_NVRTC_LIB")


@dataclass(frozen=True)
class Compiled:
    """One compile: NVRTC's status (0: success), its log (empty when clean), the size of the PTX or cubin."""

    arch: str
    std: str
    status: int
    log: str
    size: int

    @property
    def clean(self) -> bool:
        return self.status == 0 and not self.log.strip()


class Nvrtc:
    """The handful of NVRTC entry points a compile check needs, through ctypes."""

    def __init__(self, path: str | None = None):
        self.path = path or find_libnvrtc()
        lib = self.lib = ctypes.CDLL(self.path)
        handle, size = ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        lib.nvrtcVersion.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
        lib.nvrtcCreateProgram.argtypes = [
            ctypes.POINTER(handle), ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
            ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p),
        ]  # fmt: skip
        lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(handle)]
        lib.nvrtcCompileProgram.argtypes = [handle, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        for name in ("nvrtcGetProgramLogSize", "nvrtcGetPTXSize", "nvrtcGetCUBINSize"):
            getattr(lib, name).argtypes = [handle, size]
        lib.nvrtcGetProgramLog.argtypes = [handle, ctypes.c_char_p]

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what}: {self.lib.nvrtcGetErrorString(status).decode()} ({status})")

    def version(self) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        return major.value, minor.value

    def options(self, arch: str, std: str) -> list[str]:
        """The options CuPy's RawModule passes, in CuPy's order."""
        options = [f"--std={std}", "-ftz=true", f"-arch={arch}"]
        return options + (["--device-as-default-execution-space"] if self.version()[0] >= 12 else [])

    def compile(self, source: str, arch: str, std: str) -> Compiled:
        program = ctypes.c_void_p()
        create = self.lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), b"kernels.cu", 0, None, None)
        self._check(create, "nvrtcCreateProgram")
        try:
            options = [o.encode() for o in self.options(arch, std)]
            status = self.lib.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
            size = ctypes.c_size_t()
            self._check(self.lib.nvrtcGetProgramLogSize(program, ctypes.byref(size)), "nvrtcGetProgramLogSize")
            log = ctypes.create_string_buffer(size.value)
            self._check(self.lib.nvrtcGetProgramLog(program, log), "nvrtcGetProgramLog")
            produced = ctypes.c_size_t()
            if status == 0:
                getter = self.lib.nvrtcGetCUBINSize if arch.startswith("sm_") else self.lib.nvrtcGetPTXSize
                self._check(getter(program, ctypes.byref(produced)), "the output's size")
            return Compiled(arch, std, status, log.value.decode(errors="replace"), produced.value)
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(program))

    def compile_all(self, source: str, archs=ARCHS, stds=tuple(STDS)) -> list[Compiled]:
        """Every (arch, std) compile of ``source``, two at a time (NVRTC compiles distinct programs in parallel)."""
        jobs = [(arch, std) for std in stds for arch in archs]
        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(lambda job: self.compile(source, *job), jobs))


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "fmnist" / "backend" / "kernels.cu"
    try:
        nvrtc = Nvrtc()
    except (NvrtcNotFound, OSError) as err:
        print(f"nvrtc_check: {err}", file=sys.stderr)
        return 2
    print(f"NVRTC {'.'.join(map(str, nvrtc.version()))} from {nvrtc.path}; {path}")
    results = nvrtc.compile_all(path.read_text())
    for r in results:
        state = "ok" if r.clean else "FAIL"
        print(f"[{state}] --std={r.std} ({STDS[r.std]}) -arch={r.arch}: status {r.status}, {r.size} bytes")
        for line in r.log.strip().splitlines():
            print(f"    | {line}")
    return 0 if all(r.clean for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
