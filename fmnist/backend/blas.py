"""``cblas_sgemm`` of the BLAS that NumPy itself loaded, through ctypes, for compiled loops that call it from their
own threads (``NumpyOps``' convolutions); ``None`` where there is none usable, and then NumPy's ``matmul`` path runs.

NumPy's wheels (2.x) bundle scipy-openblas built with 64-bit integers and every symbol renamed
(``scipy_cblas_sgemm64_``); a distribution's OpenBLAS exports ``cblas_sgemm`` (its integer width is in
``openblas_get_config()``). Other builds (Accelerate on macOS, MKL) are not looked for: no symbol is found and the
caller falls back. What is found is self-tested at first use against ``np.matmul`` on small products with every
transpose, a leading dimension wider than the matrix and ``beta`` = 0 and 1; any error or disagreement means ``None``.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

# (symbol, integer type or None: read from the configuration string, configuration symbol)
_CANDIDATES = (
    ("scipy_cblas_sgemm64_", ctypes.c_int64, "scipy_openblas_get_config64_"),
    ("cblas_sgemm64_", ctypes.c_int64, "openblas_get_config64_"),
    ("scipy_cblas_sgemm", ctypes.c_int32, "scipy_openblas_get_config"),
    ("cblas_sgemm", None, "openblas_get_config"),
)

_state: dict[str, Any] = {}  # "sgemm": the function or None, "note": what was found or why not


def sgemm() -> Any:
    """NumPy's ``cblas_sgemm`` as a ctypes function (row-major C API; callable from Python and from Numba
    nopython code, where it is passed as an argument), or ``None``. Looked up and self-tested once."""
    if "sgemm" not in _state:
        _state["sgemm"], _state["note"] = _find()
    return _state["sgemm"]


def describe() -> str:
    """One line: the function in use and its library, or why NumPy's ``matmul`` runs instead."""
    sgemm()
    return _state["note"]


def gemm(a: Any, b: Any, c: Any, alpha: float = 1.0, beta: float = 0.0, trans_a: bool = False,
         trans_b: bool = False, function: Any = None) -> None:  # fmt: skip
    """c ← alpha·op(a)·op(b) + beta·c on 2-D float32 views with unit column stride (op(a) = aᵀ with ``trans_a``:
    then a is stored (k, m))."""
    function = function or sgemm()
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    if c.shape != (m, n) or (b.shape[1] if trans_b else b.shape[0]) != k:
        raise ValueError(f"gemm shapes do not fit: {a.shape}, {b.shape} -> {c.shape}")
    function(ROW_MAJOR, TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS, m, n, k, alpha,
             a.ctypes.data, _ld(a), b.ctypes.data, _ld(b), beta, c.ctypes.data, _ld(c))  # fmt: skip


def _ld(a: Any) -> int:
    if a.dtype != np.float32 or a.ndim != 2 or (a.strides[1] != 4 and a.shape[1] > 1) or a.strides[0] % 4:
        raise ValueError("gemm takes 2-D float32 views with contiguous rows")
    return max(a.strides[0] // 4, a.shape[1], 1)


def _find() -> tuple[Any, str]:
    try:
        paths = _numpy_blas_paths()
    except Exception as err:  # no threadpoolctl answer: nothing to look in
        return None, f"no BLAS library found ({err}): NumPy's matmul path"
    for path in paths:
        found = _lookup(path)
        if found is None:
            continue
        function, name = found
        problem = _self_test(function)
        if problem:
            return None, f"{name} in {os.path.basename(path)} failed its self-test ({problem}): NumPy's matmul path"
        return function, f"{name} in {os.path.basename(path)}"
    return None, "no cblas_sgemm in NumPy's BLAS (" + ", ".join(map(os.path.basename, paths)) + "): NumPy's matmul path"


def _numpy_blas_paths() -> list[str]:
    """The BLAS libraries loaded in this process (threadpoolctl), NumPy's own first."""
    from threadpoolctl import threadpool_info

    libraries = [pool["filepath"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
    numpy_home = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    own = [p for p in libraries if os.path.abspath(p).startswith(numpy_home + os.sep + "numpy")]
    return own + [p for p in libraries if p not in own]


def _lookup(path: str) -> tuple[Any, str] | None:
    try:
        library = ctypes.CDLL(path)
    except OSError:
        return None
    for name, integer, config in _CANDIDATES:
        function = getattr(library, name, None)
        if function is None:
            continue
        if integer is None:  # the plain name: its integer width is in the build configuration
            get_config = getattr(library, config, None)
            if get_config is None:
                continue
            get_config.restype = ctypes.c_char_p
            integer = ctypes.c_int64 if b"USE64BITINT" in (get_config() or b"") else ctypes.c_int32
        function.restype = None
        function.argtypes = [
            ctypes.c_int, ctypes.c_int, ctypes.c_int,  # order, op(a), op(b): C enums
            integer, integer, integer,  # m, n, k
            ctypes.c_float, ctypes.c_void_p, integer,  # alpha, a, lda
            ctypes.c_void_p, integer,  # b, ldb
            ctypes.c_float, ctypes.c_void_p, integer,  # beta, c, ldc
        ]  # fmt: skip
        return function, name
    return None


def _self_test(function: Any) -> str:
    """'' when ``function`` computes what ``np.matmul`` does, else what went wrong."""
    rng = np.random.default_rng(0)
    try:
        for trans_a in (False, True):
            for trans_b in (False, True):
                for beta in (0.0, 1.0):
                    wide = rng.standard_normal((3, 40, 48), dtype=np.float32)  # views with lda > width
                    a = wide[0, :37, :29] if not trans_a else wide[0, :29, :37]
                    b = wide[1, :29, :11] if not trans_b else wide[1, :11, :29]
                    c = wide[2, :37, :11]
                    expected = (a.T if trans_a else a) @ (b.T if trans_b else b) + beta * c
                    gemm(a, b, c, 1.0, beta, trans_a, trans_b, function)
                    if not np.allclose(c, expected, rtol=1e-4, atol=1e-4):
                        return f"wrong product with trans_a={trans_a}, trans_b={trans_b}, beta={beta}"
    except Exception as err:  # a wrong signature may raise; anything else: do not use it
        return f"{type(err).__name__}: {err}"
    return ""
