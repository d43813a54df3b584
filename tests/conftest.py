"""Shared fixtures: the backends every portable test runs on, and helpers for optional peers."""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import threading

import pytest

from fmnist.backend import Backend, BackendUnavailableError, get_backend
from fmnist.data import FASHION_MNIST, registry

from helpers import QuietHandler, learnable_arrays, write_tiny_mnist


@functools.cache
def _real_gpu() -> Backend | str:
    """The real GPU backend, or why there is none (checked once, before any simulated CuPy is installed)."""
    try:
        return get_backend("gpu")
    except BackendUnavailableError as err:
        return str(err)


@contextlib.contextmanager
def simulated_gpu():
    """The GPU backend on the simulated CuPy 13 (tests/simgpu): NumPy underneath, CUDA kernels compiled for the
    host, host synchronisations counted. Installed as ``cupy`` for the duration."""
    import simgpu

    _real_gpu()
    simgpu.install()
    try:
        yield get_backend("gpu")
    finally:
        simgpu.uninstall()


@pytest.fixture
def simulated_gpu_backend():
    with simulated_gpu() as backend:
        yield backend


@pytest.fixture
def real_gpu_backend():
    backend = _real_gpu()
    if isinstance(backend, str):
        pytest.skip(f"no GPU here: {backend}")
    return backend


def _gpu_backend_or_skip():
    """A real GPU when there is one, else the simulated GPU (so CI runs every GPU test)."""
    backend = _real_gpu()
    if not isinstance(backend, str):
        yield backend
        return
    with simulated_gpu() as simulated:
        yield simulated


def _strict_backend_or_skip():
    if importlib.util.find_spec("array_api_strict") is None:
        pytest.skip("array-api-strict is not installed (pip install 'fmnist[dev]')")
    return get_backend("array-api-strict")


@pytest.fixture(params=["cpu", "array-api-strict", pytest.param("gpu", marks=pytest.mark.gpu)])
def backend(request):
    """Each backend the shared array code must run on: NumPy, array-api-strict (simulated device) and CuPy (a real
    GPU where there is one, else the simulated CuPy 13)."""
    if request.param == "gpu":
        yield from _gpu_backend_or_skip()
    elif request.param == "array-api-strict":
        yield _strict_backend_or_skip()
    else:
        yield get_backend("cpu")


@pytest.fixture
def strict_backend():
    return _strict_backend_or_skip()


@pytest.fixture
def gpu_backend():
    yield from _gpu_backend_or_skip()


@pytest.fixture
def cpu64():
    """A float64 NumPy backend, for finite-difference gradient checks."""
    return get_backend("cpu", dtype="float64")


@pytest.fixture
def torch():
    """PyTorch as a test oracle; tests using it skip cleanly where it is absent."""
    return pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")


@pytest.fixture
def tiny_fashion(tmp_path, monkeypatch):
    """A learnable tiny 'fashion-mnist' in a data dir, pinned in the registry; no cache, system dir or mirrors.
    Returns its arrays."""
    monkeypatch.setenv("FMNIST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FMNIST_MIRRORS", raising=False)
    spec, arrays = write_tiny_mnist(tmp_path / "data", learnable_arrays(), base=FASHION_MNIST)
    monkeypatch.setitem(registry.DATASETS, "fashion-mnist", spec)
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tmp_path / "data"))
    return arrays


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/www; yields (base_url, directory)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", root
    server.shutdown()
    server.server_close()
