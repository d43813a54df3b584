"""The compiled loops that hold the cores (``NumpyOps`` with NumPy's own cblas_sgemm, ``fmnist.backend.threads``):
the same bits on 1 thread and on 2, the budget handed over and back, and the fallback where no cblas_sgemm is found
(the per-method parity with ``Ops`` of every path is in test_ops_parity.py)."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist.backend import _numba_loops as loops
from fmnist.backend import blas, get_backend, threads
from fmnist.backend.numpy_ops import NumpyOps
from fmnist.network import MLP, conv_net, get_loss, get_optimizer

pytestmark = pytest.mark.skipif(blas.sgemm() is None, reason=f"no cblas_sgemm here: {blas.describe()}")


@pytest.fixture(autouse=True)
def every_loop_on_the_threads(monkeypatch):
    """Small arrays too: elementwise loops run on one thread below ``PARALLEL_MIN`` elements, Adam below
    ``OPTIMIZER_PARALLEL_MIN`` parameters, dense products below ``SPLIT_GEMM`` multiply-adds."""
    monkeypatch.setattr(NumpyOps, "PARALLEL_MIN", 0)
    monkeypatch.setattr(NumpyOps, "OPTIMIZER_PARALLEL_MIN", 0)
    monkeypatch.setattr(NumpyOps, "SPLIT_GEMM", 2**12)  # small dense products are split in parts too


def _img(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _conv_both_ways(n, c, h, o, k, stride, padding, need_dx, bias, keep=True):
    """y, dW, db, dx of one convolution's forward and backward (NHWC), fresh NumpyOps."""
    be = get_backend("cpu")
    ops = type(be.ops)(be)
    if not keep:
        ops.KEEP_COLUMNS_BYTES = 0
    x = ops.to_layout(_img(n, c, h, h))
    w = _img(o, c, k, k, seed=1) * 0.3
    b = _img(o, seed=2) if bias else None
    y, saved = ops.conv2d(x, w, b, stride, padding, key="c")
    dy = _img(*y.shape, seed=3)
    dw, db = np.zeros_like(w), np.zeros(o, np.float32)
    dx = ops.conv2d_backward(dy, saved, w, dw, db if bias else None, stride, padding, need_dx, key="c")
    return [y.copy(), dw, db] + ([dx.copy()] if need_dx else [])


@pytest.mark.parametrize(
    "shape",
    [
        (9, 1, 8, 5, 3, 1, 1, False, True, True),  # one channel: transposed columns
        (9, 4, 8, 6, 3, 1, 1, True, False, True),  # Winograd, V kept
        (9, 4, 8, 6, 3, 1, 1, True, True, False),  # Winograd, V computed again
        (7, 3, 7, 5, 3, 1, 1, True, True, True),  # odd size: im2col per block
        (5, 3, 9, 4, 5, 2, 2, True, False, True),
    ],
    ids=["first", "winograd", "winograd-again", "direct", "direct-strided"],
)
@pytest.mark.parametrize("parts", [2, 3])  # a machine with 3 cores: some parts get one block more, or none
def test_a_convolution_gives_the_same_bits_on_one_thread_and_two(shape, parts, monkeypatch):
    *conv, keep = shape
    with threads.owned_cores(1):
        reference = _conv_both_ways(*conv, keep=keep)
    monkeypatch.setattr(loops, "PARTS", parts)
    with threads.owned_cores(1):
        one = _conv_both_ways(*conv, keep=keep)
    with threads.owned_cores(2):
        two = _conv_both_ways(*conv, keep=keep)
    for a, b, r in zip(one, two, reference, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5 * float(np.abs(r).max()))


def _train_cnn(steps: int) -> np.ndarray:
    be = get_backend("cpu")
    model = conv_net(backend=be, seed=0, conv_channels=(8, 16), convs_per_block=(1, 2), hidden=(32,), dropout=0.2)
    opt = get_optimizer("adam", model.parameters(), lr=1e-3, weight_decay=1e-4, decoupled_weight_decay=True)
    loss = get_loss("cross_entropy", label_smoothing=0.1)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        x, y = rng.normal(size=(12, 784)).astype(np.float32), rng.integers(0, 10, 12)
        _, dlogits = loss(model.forward(x, model.noise), y)
        model.backward(dlogits)
        opt.step()
    return np.array(model.flat.data)


def test_training_a_cnn_gives_the_same_bits_on_one_thread_and_two():
    with threads.owned_cores(1):
        one = _train_cnn(3)
    with threads.owned_cores(2):
        two = _train_cnn(3)
    np.testing.assert_array_equal(one, two)


def test_a_cnn_training_loop_hands_the_cores_to_the_loops_at_its_first_convolution_and_back_after():
    be = get_backend("cpu")
    model = conv_net(backend=be, seed=0, conv_channels=(4,), hidden=(8,))
    blas_before = threads.budget()
    with be.threads_for(1e12):  # a large step: BLAS keeps the budget until a convolution asks for it
        assert not threads.loops_hold_cores()
        assert threads.loop_threads() == 1
        model.forward(np.zeros((4, 784), np.float32))
        assert threads.loops_hold_cores()
        assert threads.loop_threads() == min(blas_before, threads._numba_threads())
        assert [lib.num_threads for lib in threads._blas().lib_controllers] == [1]
    assert not threads.loops_hold_cores()
    assert threads.loop_threads() == 1
    assert threads.budget() == blas_before


def test_an_mlp_training_loop_keeps_the_cores_for_blas():
    be = get_backend("cpu")
    model = MLP([784, 64, 10], backend=be)
    with be.threads_for(1e12):
        model.forward(np.zeros((300, 784), np.float32))
        assert not threads.loops_hold_cores()


def test_the_thread_budget_sets_the_loops_budget_and_the_child_processes_variables(monkeypatch):
    with threads.thread_budget(1):
        assert threads.budget() == 1
        with threads.owned_cores():
            assert threads.loop_threads() == 1
        import os

        assert os.environ["NUMBA_NUM_THREADS"] == "1"
    assert threads.budget() >= 1


def test_numpys_own_sgemm_is_found_and_passes_its_self_test():
    assert "sgemm" in blas.describe()
    a, b = _img(7, 5), _img(5, 3, seed=1)
    c = np.zeros((7, 3), np.float32)
    blas.gemm(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


def test_a_library_without_cblas_sgemm_means_the_numpy_path(monkeypatch):
    monkeypatch.setattr(blas, "_state", {})
    monkeypatch.setattr(blas, "_lookup", lambda path: None)
    assert blas.sgemm() is None
    assert "NumPy's matmul path" in blas.describe()


def test_an_sgemm_that_computes_something_else_is_refused(monkeypatch):
    def wrong(*args):  # a library whose symbol is not the C API's (e.g. another integer width)
        raise OSError("access violation")

    monkeypatch.setattr(blas, "_state", {})
    monkeypatch.setattr(blas, "_lookup", lambda path: (wrong, "cblas_sgemm"))
    assert blas.sgemm() is None
    assert "failed its self-test" in blas.describe()
