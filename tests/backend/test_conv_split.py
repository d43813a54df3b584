"""``fmnist bench``'s split of the CPU's convolutions into their GEMMs (``conv_gemm``) and the rest (``conv_data``):
the compiled kernels time their own sgemm calls only while a profiler is active, and hand the GEMMs' share of the
call to it; the im2col + ``np.matmul`` fallback opens spans around its products. Timing never changes a result."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fmnist.backend import _numba_loops as loops
from fmnist.backend import blas, get_backend, threads
from fmnist.backend.numpy_ops import NumpyOps
from fmnist.backend.profile import ProfiledOps, Profiler

owned = pytest.mark.skipif(blas.sgemm() is None, reason=f"no cblas_sgemm here: {blas.describe()}")
clocked = pytest.mark.skipif(not loops.clock()[1], reason="no clock_gettime here: the convolutions are not split")
compiled = pytest.mark.skipif(loops.numba is None, reason="no Numba")

# (n, c, h, o, k, stride, padding, need_dx): one shape for each kernel
SHAPES = {
    "first": (9, 1, 8, 5, 3, 1, 1, False),  # one channel: transposed columns
    "winograd": (9, 4, 8, 6, 3, 1, 1, True),
    "direct": (5, 3, 9, 4, 5, 2, 2, True),  # im2col per block
}
KERNELS = {"first": "one_channel", "winograd": "wino", "direct": "direct"}


def _img(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _conv(ops, n, c, h, o, k, stride, padding, need_dx):
    """y, dW, db (and dx) of one convolution's forward and backward through ``ops`` (NHWC)."""
    x = ops.to_layout(_img(n, c, h, h))
    w, b = _img(o, c, k, k, seed=1) * 0.3, _img(o, seed=2)
    y, saved = ops.conv2d(x, w, b, stride, padding, key="c")
    dy = _img(*y.shape, seed=3)
    dw, db = np.zeros_like(w), np.zeros(o, np.float32)
    dx = ops.conv2d_backward(dy, saved, w, dw, db, stride, padding, need_dx, key="c")
    return [y.copy(), dw, db] + ([dx.copy()] if need_dx else [])


def _fresh(fallback: bool = False) -> NumpyOps:
    be = get_backend("cpu")
    ops = NumpyOps(be)
    ops._owned_failed = fallback  # True: the chunked im2col + np.matmul path
    return ops


@pytest.fixture
def spied(monkeypatch):
    """The owned kernels, each call's ``timed`` flag and ``spent`` seconds recorded (name, timed, spent copy)."""
    seen: list[tuple[str, bool, np.ndarray]] = []
    for name in ("one_channel_forward", "one_channel_backward", "wino_forward", "wino_backward", "direct_forward",
                 "direct_backward"):  # fmt: skip
        kernel = getattr(loops, name)

        def spy(*args, _kernel=kernel, _name=name):
            _kernel(*args)
            seen.append((_name, args[-2], args[-1].copy()))

        monkeypatch.setattr(loops, name, spy)
    return seen


@compiled
@clocked
def test_the_kernels_clock_reads_the_monotonic_clock():
    function, usable = loops.clock()
    assert usable
    before = time.clock_gettime(time.CLOCK_MONOTONIC)
    now = loops._now(function)
    after = time.clock_gettime(time.CLOCK_MONOTONIC)
    assert before <= now <= after + 1e-6


@owned
@clocked
@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_a_profiled_convolution_credits_its_gemms_and_leaves_the_rest_to_its_call(shape, spied):
    profiler = Profiler()
    with profiler.active():
        _conv(ProfiledOps(_fresh(), profiler), *SHAPES[shape])
    assert profiler.seconds["conv_gemm"] > 0
    assert profiler.calls["conv_gemm"] == 2  # the forward's kernel and the backward's
    assert profiler.seconds["conv2d"] > 0  # the data movement: what the call took besides its GEMMs
    assert profiler.seconds["conv2d_backward"] > 0
    assert [name for name, _, _ in spied] == [f"{KERNELS[shape]}_forward", f"{KERNELS[shape]}_backward"]
    for _, timed, spent in spied:
        assert timed
        assert (spent[:, 0] > 0).any()  # seconds in sgemm, per part (a part with no block has none)
        assert (spent[:, 0] <= spent[:, 1]).all()  # within the part's own seconds


@owned
@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_without_a_profiler_no_clock_is_read_and_nothing_is_credited(shape, spied):
    profiler = Profiler()  # not active
    _conv(_fresh(), *SHAPES[shape])
    assert profiler.seconds == {}
    assert len(spied) == 2
    assert not any(timed for _, timed, _ in spied)


@owned
@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
@pytest.mark.parametrize("threads_", [1, 2], ids=["1-thread", "2-threads"])
def test_timing_the_kernels_leaves_their_results_bit_for_bit(shape, threads_):
    with threads.owned_cores(threads_):
        untimed = _conv(_fresh(), *SHAPES[shape])
        with Profiler().active():
            timed = _conv(_fresh(), *SHAPES[shape])
    for a, b in zip(untimed, timed, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_the_matmul_fallback_opens_spans_around_its_products(shape):
    profiler = Profiler()
    with profiler.active():
        got = _conv(ProfiledOps(_fresh(fallback=True), profiler), *SHAPES[shape])
    assert profiler.seconds["conv_gemm"] > 0
    assert profiler.seconds["conv2d"] > 0
    assert profiler.seconds["conv2d_backward"] > 0
    for a, b in zip(_conv(_fresh(fallback=True), *SHAPES[shape]), got, strict=True):
        np.testing.assert_array_equal(a, b)
