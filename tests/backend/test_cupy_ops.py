"""What ``CupyOps`` promises beyond the per-method parity with ``Ops`` (test_ops_parity.py), on the simulated GPU:
the launches each image operation costs, calls on their own previous result with the same key (the key contract
allows it; kernels that read neighbouring elements get another buffer), and the im2col columns kept from a
convolution's forward to its backward."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist.backend import get_backend

pytestmark = pytest.mark.gpu


@pytest.fixture
def gpu(simulated_gpu_backend):
    import simgpu

    return simulated_gpu_backend, simgpu


@pytest.fixture
def ref():
    cpu = get_backend("cpu")
    cpu.fast = False
    return cpu.ops


def _img(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=shape).astype(np.float32)


def test_shift_flip_on_its_own_result_reads_the_input_before_overwriting_it(gpu, ref):
    be, _ = gpu
    x = _img(5, 64)
    once = be.ops.shift_flip(be.asarray(x), 2, True, 3, 1, side=8, key="k")
    twice = be.ops.shift_flip(once, 2, True, 3, 2, side=8, key="k")
    expected = ref.shift_flip(ref.shift_flip(x, 2, True, 3, 1, side=8), 2, True, 3, 2, side=8)
    np.testing.assert_array_equal(be.to_numpy(twice), expected)


def test_a_convolution_of_its_own_result_with_one_key(gpu, ref):
    be, _ = gpu
    x, w = _img(2, 3, 6, 6), _img(3, 3, 3, 3) * 0.3
    ops = be.ops
    first, _ = ops.conv2d(ops.to_layout(be.asarray(x)), be.asarray(w), None, 1, 1, key="k")
    second, _ = ops.conv2d(first, be.asarray(w), None, 1, 1, key="k")
    expected = ref.conv2d(ref.conv2d(x, w, None, 1, 1)[0], w, None, 1, 1)[0]
    np.testing.assert_allclose(be.to_numpy(ops.from_layout(second)), expected, rtol=1e-5, atol=1e-5)


def test_layout_changes_of_their_own_result_with_one_key(gpu):
    be, _ = gpu
    x = _img(2, 4, 4, 4)
    ops = be.ops
    nhwc = ops.to_layout(be.asarray(x), key="k")
    again = ops.to_layout(ops.from_layout(ops.to_layout(nhwc, key="k"), key="k"), key="k")
    np.testing.assert_array_equal(be.to_numpy(again), x.transpose(0, 2, 3, 1).transpose(0, 2, 3, 1))


def test_the_columns_are_kept_for_the_backward_and_dropped_after(gpu):
    be, _ = gpu
    ops = be.ops
    x, w = ops.to_layout(be.asarray(_img(2, 4, 6, 6))), be.asarray(_img(5, 4, 3, 3))
    y, saved = ops.conv2d(x, w, None, 1, 1, key="c")
    assert saved[1].shape == (2 * 6 * 6, 4 * 3 * 3)
    ops.conv2d_backward(y, saved, w, be.zeros((5, 4, 3, 3)), None, 1, 1, True, key="b")
    assert saved[1] is None  # overwritten by the column gradients: a second backward cuts them out again
    ops.KEEP_COLUMNS_BYTES = 0
    try:
        assert ops.conv2d(x, w, None, 1, 1, key="c")[1][1] is None
    finally:
        del ops.KEEP_COLUMNS_BYTES


def _launches(simgpu, call) -> int:
    call()  # warm-up: workspaces
    with simgpu.count_launches() as log:
        call()
    return log.count


def test_launches_of_each_image_operation(gpu):
    be, simgpu = gpu
    ops = be.ops
    first, wide = ops.to_layout(be.asarray(_img(8, 1, 8, 8))), ops.to_layout(be.asarray(_img(8, 4, 8, 8)))
    w1, w2, b = be.asarray(_img(4, 1, 3, 3)), be.asarray(_img(6, 4, 3, 3)), be.zeros(6)
    g, rm, rv = be.zeros(4) + 1.0, be.zeros(4), be.zeros(4) + 1.0
    dense, big = be.asarray(_img(64, 4)), ops.to_layout(be.asarray(_img(8, 4, 16, 16)))  # 64 and 2048 rows

    dy1, dy2 = ops.to_layout(be.asarray(_img(8, 4, 8, 8))), ops.to_layout(be.asarray(_img(8, 6, 8, 8)))
    dw1, dw2 = be.zeros(w1.shape), be.zeros(w2.shape)

    def conv_backward(x, w, dy, dw, need_dx):
        _, saved = ops.conv2d(x, w, None, 1, 1, key="c")
        ops.conv2d_backward(dy, saved, w, dw, None, 1, 1, need_dx, key="b")

    counts = {
        "first layer forward (direct kernel)": _launches(simgpu, lambda: ops.conv2d(first, w1, None, 1, 1, key="c")),
        "convolution forward (im2col, GEMM)": _launches(simgpu, lambda: ops.conv2d(wide, w2, None, 1, 1, key="c")),
        "... with a bias": _launches(simgpu, lambda: ops.conv2d(wide, w2, b, 1, 1, key="c")),
        "max pool": _launches(simgpu, lambda: ops.max_pool2d(wide, 2, 2, key="p")),
        "batch norm of a dense layer": _launches(
            simgpu, lambda: ops.batch_norm(dense, g, g, rm, rv, 0.1, 1e-5, True, key="n")
        ),
        "batch norm over many rows": _launches(
            simgpu, lambda: ops.batch_norm(big, g, g, rm, rv, 0.1, 1e-5, True, key="n")
        ),
        "batch norm, pool, ReLU": _launches(
            simgpu, lambda: ops.batch_norm_pool_relu(wide, g, g, rm, rv, 0.1, 1e-5, True, key="n")
        ),
    }
    assert counts == {
        "first layer forward (direct kernel)": 1,
        "convolution forward (im2col, GEMM)": 2,
        "... with a bias": 3,
        "max pool": 1,
        "batch norm of a dense layer": 1,
        "batch norm over many rows": 2,
        "batch norm, pool, ReLU": 2,
    }
    forward = 2  # the forward inside: im2col + GEMM
    assert _launches(simgpu, lambda: conv_backward(wide, w2, dy2, dw2, True)) == forward + 3  # dW, dcols, col2im
    assert _launches(simgpu, lambda: conv_backward(first, w1, dy1, dw1, False)) == 1 + 1  # dW (and db) in one
