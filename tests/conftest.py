"""Shared fixtures: the backends every portable test runs on, and helpers for optional peers."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import threading

import pytest

from fmnist.backend import BackendUnavailableError, get_backend

from helpers import QuietHandler


def _gpu_backend_or_skip():
    try:
        return get_backend("gpu")
    except BackendUnavailableError as err:
        pytest.skip(f"no GPU here: {err}")


def _strict_backend_or_skip():
    if importlib.util.find_spec("array_api_strict") is None:
        pytest.skip("array-api-strict is not installed (pip install 'fmnist[dev]')")
    return get_backend("array-api-strict")


@pytest.fixture(params=["cpu", "array-api-strict", pytest.param("gpu", marks=pytest.mark.gpu)])
def backend(request):
    """Each backend the shared array code must run on: NumPy, array-api-strict (simulated device) and CuPy."""
    if request.param == "gpu":
        return _gpu_backend_or_skip()
    if request.param == "array-api-strict":
        return _strict_backend_or_skip()
    return get_backend("cpu")


@pytest.fixture
def strict_backend():
    return _strict_backend_or_skip()


@pytest.fixture
def gpu_backend():
    return _gpu_backend_or_skip()


@pytest.fixture
def cpu64():
    """A float64 NumPy backend, for finite-difference gradient checks."""
    return get_backend("cpu", dtype="float64")


@pytest.fixture
def torch():
    """PyTorch as a test oracle; tests using it skip cleanly where it is absent."""
    return pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")


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
