import importlib.util

import numpy as np
import pytest

import fmnist.backend.devices as backend_mod
from fmnist.backend import BackendUnavailableError, get_backend


def test_cpu_backend_is_numpy_float32():
    be = get_backend("cpu")
    assert be.xp is np
    assert be.dtype == np.float32
    assert be.zeros((2, 3)).dtype == np.float32
    assert be.info()["device"] == "cpu"


def test_unknown_device_lists_valid_names():
    with pytest.raises(ValueError, match="cpu, gpu, auto"):
        get_backend("tpu")


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="float32, float64"):
        get_backend("cpu", dtype="float16")


def _hide_cupy(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(backend_mod.importlib.util, "find_spec", lambda n, *a: None if n == "cupy" else real(n, *a))


def test_gpu_without_cupy_names_the_fix(monkeypatch):
    _hide_cupy(monkeypatch)
    hint = r"CuPy is not installed.*pip install 'fmnist\[cuda12\]'.*'fmnist\[cuda13\]'"
    with pytest.raises(BackendUnavailableError, match=hint):
        get_backend("gpu")


def test_auto_falls_back_to_cpu_and_says_why(monkeypatch):
    _hide_cupy(monkeypatch)
    be = get_backend("auto")
    assert be.name == "cpu"
    assert "auto: using the CPU" in be.note
    assert "CuPy is not installed" in be.note


def test_rng_is_reproducible_and_restorable():
    be = get_backend("cpu")
    a, b = be.rng(7), be.rng(7)
    np.testing.assert_array_equal(a.normal((3, 4)), b.normal((3, 4)))
    state = a.state
    first = a.permutation(10)
    a.state = state
    np.testing.assert_array_equal(a.permutation(10), first)
    assert not np.array_equal(be.rng(8).normal((3, 4)), be.rng(7).normal((3, 4)))


def test_rng_draws_are_float32_and_in_range():
    rng = get_backend("cpu").rng(0)
    u = rng.uniform((1000,), -0.5, 0.25)
    assert u.dtype == np.float32
    assert u.min() >= -0.5
    assert u.max() < 0.25
    assert sorted(rng.permutation(50).tolist()) == list(range(50))


def test_same_seed_gives_same_draws_on_every_backend(backend):
    host = get_backend("cpu").rng(3).normal((5, 6), std=0.1)
    np.testing.assert_array_equal(backend.to_numpy(backend.rng(3).normal((5, 6), std=0.1)), host)


def test_strict_backend_keeps_arrays_off_the_cpu(strict_backend):
    x = strict_backend.asarray(np.ones((2, 2), dtype=np.float32))
    assert "device1" in str(x.device)
    with pytest.raises(RuntimeError):
        np.asarray(x)  # a silent host round-trip is impossible here
    np.testing.assert_array_equal(strict_backend.to_numpy(x), np.ones((2, 2)))
    assert strict_backend.to_float(strict_backend.xp.sum(x)) == 4.0


def _error(name: str, base: type[Exception], message: str) -> Exception:
    return type(name, (base,), {})(message)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (_error("RuntimeError", RuntimeError, "CuPy failed to load libnvrtc.so.12: OSError: ..."), "nvrtc"),
        (_error("DynamicLibNotFoundError", RuntimeError, 'Failure finding "libnvrtc.so.13 or ..."'), "nvrtc"),
        (_error("RuntimeError", RuntimeError, "Failed to find CUDA headers. Please install ..."), "headers"),
        (_error("CompileException", Exception, 'could not open source file "cuda_fp16.h"'), "headers"),
        (_error("ImportError", ImportError, "libcublas.so.12: cannot open shared object file"), "cublas"),
        (_error("CompileException", Exception, "error: identifier x is undefined"), "compile"),
        (_error("CUDADriverError", RuntimeError, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"), "driver"),
        (_error("OutOfMemoryError", MemoryError, "Out of memory allocating 512 bytes"), "memory"),
        (_error("ValueError", ValueError, "something else"), "other"),
    ],
)
def test_a_failed_gpu_probe_is_told_by_its_error(error, kind):
    assert backend_mod._failure_kind(error) == kind
    fix = backend_mod._fix(kind, "14.0.1")
    if kind in ("nvrtc", "headers", "cublas"):
        assert "[ctk]" in fix
        assert "CUDA Toolkit" in backend_mod._fix(kind, "13.6.0")
