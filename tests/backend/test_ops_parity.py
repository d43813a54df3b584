"""Every fast ``Ops`` method against the readable base method, one method at a time.

Implementations: ``NumpyOps`` (CPU; also with its compiled loops on 2 threads, and without NumPy's cblas_sgemm, as
where a BLAS has none), ``CupyOps`` on the simulated GPU (its CUDA kernels compiled for the host) and ``CupyOps`` on
a real GPU when one is here. The reference is the base ``Ops`` on NumPy float32. Random numbers,
dropout masks and augmentation must agree bit for bit (they are counter-based); arithmetic within float32 rounding.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from fmnist.backend import blas, get_backend
from fmnist.backend.buffered_ops import BufferedOps
from fmnist.backend.cupy_ops import CupyOps
from fmnist.backend.numpy_ops import NumpyOps
from fmnist.backend.ops import AdamStep, MomentumStep, Ops, RmspropStep, SgdStep
from fmnist.backend.threads import owned_cores


@dataclass
class Case:
    """Inputs of one method call, built on the host; ``outputs`` are the indices of arguments the method fills in
    place (their values after the call are compared too); ``steps`` repeats in-place updates (t = 1, 2, ...)."""

    args: Callable[[np.random.Generator], list[Any]]
    kwargs: dict[str, Any] = field(default_factory=dict)
    outputs: tuple[int, ...] = ()
    exact: bool = False
    steps: int = 1
    rtol: float = 2e-5
    images: tuple[int, ...] = ()  # arguments that are (n, C, H, W) images: given in the class's own layout
    run: Callable[..., Any] | None = None  # run(ops, *args) instead of calling the method directly
    layout_results: bool = True  # 4-D results are in the class's layout (False: the run already gives NCHW)


def _f32(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.normal(size=shape) * scale).astype(np.float32)


def _positive(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.uniform(0.01, 0.99, size=shape).astype(np.float32)


def _zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.float32)


def _labels(rng: np.random.Generator, n: int, k: int = 10) -> np.ndarray:
    return rng.integers(0, k, size=n).astype(np.int64)


def _subnormal(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Parameters of which every third is subnormal, with a zero gradient there (a unit that learns nothing):
    every rule must leave those parameters at exactly 0."""
    data, grad = _f32(rng, n), _f32(rng, n)
    data[::3] = np.float32(3e-39) * np.sign(data[::3])
    grad[::3] = 0.0
    return [data, grad]


def _img(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(size=shape).astype(np.float32)


def _conv_grads(rng, n, c, h, o, k, s, p):  # x, w, dy, weight_grad, bias_grad, stride, padding
    oh = (h + 2 * p - k) // s + 1
    return [_img(rng, n, c, h, h), _f32(rng, o, c, k, k), _img(rng, n, o, oh, oh), _zeros(o, c, k, k), _zeros(o), s, p]


def _conv_then_backward(ops, x, w, dy, weight_grad, bias_grad, stride, padding, need_dx=True, bias=True, times=1):
    """The backward of a convolution after its forward (what the backward keeps from the forward is the class's
    own business), keyed as a layer keys them; ``times`` > 1 runs the backward again on the same ``saved``."""
    b = ops.xp.zeros(w.shape[0], dtype=w.dtype) if bias else None
    _, saved = ops.conv2d(x, w, b, stride, padding, key="conv")
    bias_grad = bias_grad if bias else None
    for _ in range(times):
        dx = ops.conv2d_backward(dy, saved, w, weight_grad, bias_grad, stride, padding, need_dx, key="conv_back")
    return dx


def _without_kept_columns(ops, *args):
    """As ``_conv_then_backward`` where the class may keep no im2col columns from the forward (a GPU over its
    memory budget cuts them out again)."""
    ops.KEEP_COLUMNS_BYTES = 0  # an attribute of this instance only; classes that keep nothing ignore it
    try:
        return _conv_then_backward(ops, *args)
    finally:
        del ops.KEEP_COLUMNS_BYTES


def _twice(method: str) -> Callable[..., Any]:
    """Run ``method`` on its own previous result with the same key (the key contract allows it: in place)."""

    def run(ops, x, *rest):
        return getattr(ops, method)(getattr(ops, method)(x, *rest, key="k"), *rest, key="k")

    return run


def _pool_then_backward(ops, x, dy, kernel, stride):
    _, argmax = ops.max_pool2d(x, kernel, stride)
    return ops.max_pool2d_backward(dy, argmax, tuple(int(v) for v in x.shape), kernel, stride)


def _norm_then_backward(ops, x, gamma, beta, mean, var, dy, gamma_grad, beta_grad, training):
    _, saved = ops.batch_norm(x, gamma, beta, mean, var, 0.1, 1e-5, training, key="bn")
    return ops.batch_norm_backward(dy, saved, gamma, gamma_grad, beta_grad, training, key="bn")


def _norm_relu_then_backward(ops, x, gamma, beta, mean, var, dy, gamma_grad, beta_grad, training):
    _, saved = ops.batch_norm_relu(x, gamma, beta, mean, var, 0.1, 1e-5, training, key="bnr")
    return ops.batch_norm_relu_backward(dy, saved, gamma, gamma_grad, beta_grad, training, key="bnr")


def _norm_pool_then_backward(ops, x, gamma, beta, mean, var, dy, gamma_grad, beta_grad, training):
    _, saved = ops.batch_norm_pool_relu(x, gamma, beta, mean, var, 0.1, 1e-5, training, key="bnp")
    return ops.batch_norm_pool_relu_backward(dy, saved, gamma, gamma_grad, beta_grad, training, key="bnp")


def _bn_args(rng, shape, image):
    c = shape[1]
    x = (_img(rng, *shape) * 2 + 1) if image else _f32(rng, *shape) * 2 + 1
    return [x, _f32(rng, c) + 1, _f32(rng, c), _f32(rng, c) * 0.1, _positive(rng, c) + 0.5]


_DECAYS = [
    {"weight_decay": 0.0, "decoupled": False},
    {"weight_decay": 0.01, "decoupled": False},
    {"weight_decay": 0.01, "decoupled": True},
]

CASES: dict[str, list[Case]] = {
    "uniform": [Case(lambda r: [(7, 13), 3, 5], exact=True), Case(lambda r: [(1000,), 2**40 + 7, 123456], exact=True)],
    "gather_scale": [
        Case(
            lambda r: [
                r.integers(0, 256, size=(50, 784), dtype=np.uint8),
                r.integers(0, 50, size=16).astype(np.int64),
                1 / (255 * 0.35),
                -0.29 / 0.35,
            ],
            kwargs={"key": "k"},
            rtol=1e-6,
        ),
        Case(lambda r: [r.integers(0, 256, size=(5, 12), dtype=np.uint8), np.array([4, 0, 4]), 1 / 255, 0.0]),
    ],
    "shift_flip": [
        Case(lambda r: [_f32(r, 9, 784), 2, True, 7, 1], kwargs={"key": "k"}, exact=True),
        Case(lambda r: [_f32(r, 4, 36), 1, False, 7, 2], kwargs={"side": 6, "fill": -0.8}, exact=True),
        Case(lambda r: [_f32(r, 4, 64), 0, True, 1, 3], kwargs={"side": 8}, exact=True),
        Case(lambda r: [_f32(r, 9, 784), 2, True, 7, 1], exact=True, run=_twice("shift_flip")),  # on its own result
    ],
    "linear": [
        Case(lambda r: [_f32(r, 8, 20), _f32(r, 20, 16), _f32(r, 16)], kwargs={"key": "k"}),
        Case(lambda r: [_f32(r, 8, 20), _f32(r, 20, 16), None], kwargs={"key": "k"}),  # no bias (before batch norm)
        Case(lambda r: [_f32(r, 256, 300), _f32(r, 300, 128), _f32(r, 128)], kwargs={"key": "k"}),  # split in parts
    ],
    "linear_backward": [
        Case(
            lambda r: [_f32(r, 8, 20), _f32(r, 20, 16), _f32(r, 8, 16), _zeros(20, 16), _zeros(16)],
            kwargs={"need_dx": True, "key": "k"},
            outputs=(3, 4),
        ),
        Case(
            lambda r: [_f32(r, 8, 20), _f32(r, 20, 16), _f32(r, 8, 16), _zeros(20, 16), _zeros(16)],
            kwargs={"need_dx": False},
            outputs=(3, 4),
        ),
        Case(
            lambda r: [_f32(r, 8, 20), _f32(r, 20, 16), _f32(r, 8, 16), _zeros(20, 16), None],
            kwargs={"need_dx": True, "key": "k"},
            outputs=(3,),
        ),
        Case(  # large enough to be split in parts (while the loops hold the cores)
            lambda r: [_f32(r, 256, 300), _f32(r, 300, 128), _f32(r, 256, 128), _zeros(300, 128), _zeros(128)],
            kwargs={"need_dx": True, "key": "k"},
            outputs=(3, 4),
        ),
    ],
    "linear_relu": [
        Case(
            lambda r, shape=shape, bias=bias: [
                _f32(r, shape[0], shape[1]),
                _f32(r, shape[1], shape[2]),
                _f32(r, shape[2]) if bias else None,
            ],
            kwargs={"key": "k"},
        )
        for shape in [(8, 20, 16), (256, 300, 128)]
        for bias in (True, False)
    ],
    "linear_relu_backward": [
        Case(
            lambda r, shape=shape, bias=bias: [
                _f32(r, shape[0], shape[1]),
                _f32(r, shape[1], shape[2]),
                np.maximum(_f32(r, shape[0], shape[2]), 0),
                _f32(r, shape[0], shape[2]),
                _zeros(shape[1], shape[2]),
                _zeros(shape[2]) if bias else None,
            ],
            kwargs={"need_dx": need_dx, "key": "k"},
            outputs=(4, 5) if bias else (4,),
        )
        for shape in [(8, 20, 16), (256, 300, 128)]
        for bias in (True, False)
        for need_dx in (True, False)
    ],
    "sigmoid": [
        Case(lambda r: [np.concatenate([_f32(r, 60, scale=5), np.float32([-1e3, -90, 0, 90, 1e3])])]),
        Case(lambda r: [_f32(r, 6, 9, scale=3)], run=_twice("sigmoid")),
    ],
    "sigmoid_backward": [Case(lambda r: [_positive(r, 6, 9), _f32(r, 6, 9)], kwargs={"key": "k"})],
    "tanh": [Case(lambda r: [_f32(r, 6, 9, scale=3)], kwargs={"key": "k"})],
    "tanh_backward": [Case(lambda r: [_positive(r, 6, 9), _f32(r, 6, 9)], kwargs={"key": "k"})],
    "relu": [Case(lambda r: [_f32(r, 6, 9)], kwargs={"key": "k"}, exact=True)],
    "relu_backward": [
        Case(lambda r: [np.maximum(_f32(r, 6, 9), 0), _f32(r, 6, 9)], kwargs={"key": "k"}, exact=True),
        Case(  # in place: the second call's da is the first's result
            lambda r: [np.maximum(_f32(r, 6, 9), 0), _f32(r, 6, 9)],
            exact=True,
            run=lambda ops, a, da: ops.relu_backward(a, ops.relu_backward(a, da, key="k"), key="k"),
        ),
    ],
    "dropout": [
        Case(lambda r: [_f32(r, 32, 50), 0.3, 11, 4], kwargs={"key": "k"}, exact=True),
        Case(lambda r: [_f32(r, 3, 5), 0.5, 0, 1], exact=True),
    ],
    "dropout_backward": [Case(lambda r: [_f32(r, 6, 9), np.float32(2.0) * (_positive(r, 6, 9) > 0.5)], exact=True)],
    "softmax_cross_entropy": [
        Case(lambda r: [_f32(r, 16, 10, scale=3), _labels(r, 16)], kwargs={"key": "k"}),
        Case(lambda r: [_f32(r, 600, 10, scale=3), _labels(r, 600), 0.1], kwargs={"key": "k"}),  # 3 blocks
        Case(lambda r: [_f32(r, 16, 10, scale=3), _labels(r, 16), 0.1]),
        Case(lambda r: [np.float32([[1e4, -1e4, 0], [-1e4, 1e4, 5e3]]), np.array([1, 0])], kwargs={"key": "k"}),
    ],
    "softmax_mse": [Case(lambda r: [_f32(r, 16, 10, scale=3), _labels(r, 16)])],
    "count_correct": [
        Case(lambda r: [_f32(r, 64, 10), _labels(r, 64)], exact=True),
        Case(lambda r: [np.round(_f32(r, 700, 7)), _labels(r, 700, 7)], exact=True),  # ties: the first maximum
    ],
    "softmax": [Case(lambda r: [_f32(r, 16, 10, scale=3)])],
    "sgd_update": [
        Case(lambda r: [_f32(r, 300), _f32(r, 300)], kwargs={"hp": SgdStep(lr=0.1, **d)}, outputs=(0,), steps=3)
        for d in _DECAYS
    ]
    + [Case(lambda r: _subnormal(r, 300), kwargs={"hp": SgdStep(lr=0.1)}, outputs=(0,), steps=2)],
    "momentum_update": [
        Case(
            lambda r: [_f32(r, 300), _f32(r, 300), np.zeros(300, np.float32)],
            kwargs={"hp": MomentumStep(lr=0.1, momentum=0.8, nesterov=nesterov, **d)},
            outputs=(0, 2),
            steps=3,
        )
        for nesterov in (False, True)
        for d in _DECAYS
    ]
    + [
        Case(
            lambda r: [*_subnormal(r, 300), np.zeros(300, np.float32)],
            kwargs={"hp": MomentumStep(lr=0.1, weight_decay=0.01)},
            outputs=(0, 2),
            steps=2,
        )
    ],
    "rmsprop_update": [
        Case(
            lambda r: [_f32(r, 300), _f32(r, 300), np.zeros(300, np.float32)],
            kwargs={"hp": RmspropStep(lr=0.01, beta=0.9, eps=1e-7, **d)},
            outputs=(0, 2),
            steps=3,
        )
        for d in _DECAYS
    ]
    + [
        Case(
            lambda r: [*_subnormal(r, 300), np.zeros(300, np.float32)],
            kwargs={"hp": RmspropStep(lr=0.01)},
            outputs=(0, 2),
            steps=2,
        )
    ],
    "adam_update": [
        Case(
            lambda r: [_f32(r, 300), _f32(r, 300), np.zeros(300, np.float32), np.zeros(300, np.float32)],
            kwargs={"hp": AdamStep(lr=0.01, beta1=0.85, beta2=0.99, eps=1e-7, nesterov=nesterov, **d)},
            outputs=(0, 2, 3),
            steps=3,
        )
        for nesterov in (False, True)
        for d in _DECAYS
    ]
    + [
        Case(
            lambda r: [*_subnormal(r, 300), np.zeros(300, np.float32), np.zeros(300, np.float32)],
            kwargs={"hp": AdamStep(lr=1e-4, weight_decay=5e-4, nesterov=True)},
            outputs=(0, 2, 3),
            steps=2,
        )
    ],
    "to_layout": [
        Case(
            lambda r, c=c: [_img(r, 2, c, 5, 4)],
            exact=True,
            layout_results=False,
            run=lambda ops, x: ops.from_layout(ops.to_layout(x)),
        )
        for c in (3, 1)
    ],
    "from_layout": [
        Case(
            lambda r: [_img(r, 2, 3, 5, 4)],
            images=(0,),
            exact=True,
            layout_results=False,
            run=lambda ops, x: ops.from_layout(x),
        )
    ],
    "nchw_shape": [
        Case(
            lambda r: [_img(r, 2, 3, 5, 4)],
            images=(0,),
            exact=True,
            run=lambda ops, x: list(ops.nchw_shape(tuple(x.shape))),
        )
    ],
    "conv2d": [
        Case(
            lambda r, g=g, bias=bias: [
                _img(r, g[0], g[1], g[2], g[2]),
                _f32(r, g[3], g[1], g[4], g[4]),
                _f32(r, g[3]) if bias else None,
                *g[5:],
            ],
            images=(0,),
            kwargs={"key": "k"},
            rtol=1e-4,
            run=lambda ops, *a, **k: ops.conv2d(*a, **k)[0],  # y; what it saves for the backward is its own
        )
        for g in [
            (3, 2, 7, 4, 3, 1, 1),  # odd size: im2col per block
            (3, 2, 7, 4, 3, 2, 0),
            (2, 3, 8, 5, 5, 1, 2),
            (4, 1, 6, 3, 3, 2, 1),
            (4, 1, 6, 3, 3, 1, 1),  # one channel: transposed columns
            (3, 1, 5, 4, 5, 1, 2),
            (3, 2, 8, 4, 3, 1, 1),  # 3x3, stride 1, padding 1, even size: Winograd
            (9, 5, 6, 7, 3, 1, 1),  # several blocks per part, the last one short
        ]
        for bias in (True, False)
    ],
    "conv2d_backward": [
        Case(lambda r, g=g: _conv_grads(r, *g), images=(0, 2), outputs=(3, 4), rtol=1e-4, run=_conv_then_backward)
        for g in [
            (3, 2, 7, 4, 3, 1, 1),
            (3, 2, 7, 4, 3, 2, 0),
            (2, 3, 8, 5, 5, 1, 2),
            (4, 1, 6, 3, 3, 2, 1),
            (3, 2, 8, 4, 3, 1, 1),
            (9, 5, 6, 7, 3, 1, 1),
            (2, 1, 6, 3, 3, 1, 1),  # one channel with an input gradient (not a first layer)
        ]
    ]
    + [  # without a bias (before batch norm)
        Case(
            lambda r, g=g: _conv_grads(r, *g),
            images=(0, 2),
            outputs=(3,),
            rtol=1e-4,
            run=lambda ops, *a: _conv_then_backward(ops, *a, bias=False),
        )
        for g in [(3, 2, 7, 4, 3, 1, 1), (3, 2, 8, 4, 3, 1, 1)]
    ]
    + [  # a first layer: one channel, no input gradient, with and without a bias
        Case(
            lambda r, g=g: _conv_grads(r, *g),
            images=(0, 2),
            outputs=(3, 4) if bias else (3,),
            rtol=1e-4,
            run=lambda ops, *a, bias=bias: _conv_then_backward(ops, *a, need_dx=False, bias=bias),
        )
        for bias in (True, False)
        for g in [(3, 1, 6, 4, 3, 1, 1), (19, 1, 5, 3, 5, 1, 2)]
    ]
    + [  # no input gradient; the columns (Winograd's transform) cut out again; the backward twice on one forward
        Case(
            lambda r, g=g: _conv_grads(r, *g),
            images=(0, 2),
            outputs=(3, 4),
            rtol=1e-4,
            run=lambda ops, *a: _conv_then_backward(ops, *a, need_dx=False),
        )
        for g in [(2, 3, 8, 5, 5, 1, 2), (3, 2, 8, 4, 3, 1, 1)]
    ]
    + [
        Case(
            lambda r, g=g: _conv_grads(r, *g),
            images=(0, 2),
            outputs=(3, 4),
            rtol=1e-4,
            run=_without_kept_columns,
        )
        for g in [(3, 4, 7, 5, 3, 1, 1), (5, 4, 8, 5, 3, 1, 1)]
    ]
    + [
        Case(
            lambda r, g=g: _conv_grads(r, *g),
            images=(0, 2),
            outputs=(3, 4),
            rtol=1e-4,
            run=lambda ops, *a: _conv_then_backward(ops, *a, times=2),
        )
        for g in [(3, 4, 7, 5, 3, 2, 1), (3, 4, 8, 5, 3, 1, 1)]
    ],
    "max_pool2d": [
        Case(lambda r, g=g: [_img(r, 2, 3, g[0], g[0]), g[1], g[2]], images=(0,), exact=True)
        for g in [(8, 2, 2), (7, 3, 2), (6, 2, 1)]
    ],
    "max_pool2d_backward": [
        Case(
            lambda r, g=g: [_img(r, 2, 3, g[0], g[0]), _img(r, 2, 3, g[3], g[3]), g[1], g[2]],
            images=(0, 1),
            rtol=1e-6,  # overlapping windows add up in another order
            run=_pool_then_backward,
        )
        for g in [(8, 2, 2, 4), (7, 3, 2, 3), (6, 2, 1, 5)]
    ],
    "batch_norm": [
        Case(
            lambda r, g=g: [*_bn_args(r, g[0], len(g[0]) == 4), 0.1, 1e-5, g[1]],
            images=(0,) if len(g[0]) == 4 else (),
            outputs=(3, 4),
            rtol=1e-4,
            run=lambda ops, *a: ops.batch_norm(*a, key="bn")[0],
        )
        for g in [
            ((4, 3, 5, 5), True),
            ((4, 3, 5, 5), False),
            ((9, 6), True),
            ((9, 6), False),
            ((9, 40), True),  # two tiles of 32 channels
            ((8, 3, 16, 16), True),  # 2048 rows: statistics over several blocks of rows
            ((1100, 5), True),
            ((1100, 5), False),
        ]
    ],
    "batch_norm_backward": [
        Case(
            lambda r, g=g: [*_bn_args(r, g[0], len(g[0]) == 4), _img(r, *g[0]), _zeros(g[0][1]), _zeros(g[0][1]), g[1]],
            images=(0, 5) if len(g[0]) == 4 else (),
            outputs=(3, 4, 6, 7),  # the forward inside moved the running statistics
            rtol=1e-4,
            run=_norm_then_backward,
        )
        for g in [
            ((4, 3, 5, 5), True),
            ((4, 3, 5, 5), False),
            ((9, 6), True),
            ((9, 6), False),
            ((9, 40), True),
            ((8, 3, 16, 16), True),
            ((8, 3, 16, 16), False),
            ((1100, 5), True),
        ]
    ],
    "batch_norm_relu": [
        Case(
            lambda r, g=g: [*_bn_args(r, g[0], len(g[0]) == 4), 0.1, 1e-5, g[1]],
            images=(0,) if len(g[0]) == 4 else (),
            outputs=(3, 4),
            rtol=1e-4,
            run=lambda ops, *a: ops.batch_norm_relu(*a, key="bnr")[0],
        )
        for g in [((4, 3, 5, 5), True), ((4, 3, 5, 5), False), ((9, 6), True), ((8, 3, 16, 16), True)]
    ],
    "batch_norm_relu_backward": [
        Case(
            lambda r, g=g: [*_bn_args(r, g[0], len(g[0]) == 4), _img(r, *g[0]), _zeros(g[0][1]), _zeros(g[0][1]), g[1]],
            images=(0, 5) if len(g[0]) == 4 else (),
            outputs=(3, 4, 6, 7),
            rtol=1e-4,
            run=_norm_relu_then_backward,
        )
        for g in [((4, 3, 5, 5), True), ((4, 3, 5, 5), False), ((9, 6), True), ((8, 3, 16, 16), True)]
    ],
    "batch_norm_pool_relu": [
        Case(
            lambda r, g=g: [*_bn_args(r, g[0], True), 0.1, 1e-5, g[1], *g[2]],
            images=(0,),
            outputs=(3, 4),
            rtol=1e-4,
            run=lambda ops, *a: ops.batch_norm_pool_relu(*a, key="bnp")[0],
        )
        for g in [
            ((4, 3, 6, 6), True, (2, 2)),
            ((4, 3, 6, 6), False, (2, 2)),
            ((2, 3, 7, 7), True, (2, 2)),
            ((2, 2, 6, 6), True, (3, 3)),
            ((8, 33, 12, 12), True, (2, 2)),  # 1152 rows, two channel tiles
        ]
    ],
    "batch_norm_pool_relu_backward": [
        Case(
            lambda r, g=g: [*_bn_args(r, g[0], True), _img(r, *g[1]), _zeros(g[0][1]), _zeros(g[0][1]), g[2]],
            images=(0, 5),
            outputs=(3, 4, 6, 7),
            rtol=1e-4,
            run=_norm_pool_then_backward,
        )
        for g in [
            ((4, 3, 6, 6), (4, 3, 3, 3), True),
            ((4, 3, 6, 6), (4, 3, 3, 3), False),
            ((2, 3, 7, 7), (2, 3, 3, 3), True),
            ((8, 33, 12, 12), (8, 33, 6, 6), True),
        ]
    ],
    "clip_grad_norm": [
        Case(lambda r: [[_f32(r, 50) * 10, _f32(r, 7)], 1.0], outputs=(0,)),
        Case(lambda r: [[_f32(r, 50) * 1e-3], 1.0], outputs=(0,)),
    ],
}

IMPLEMENTATIONS = [
    "NumpyOps",
    "NumpyOps on 2 threads",  # the compiled loops hold the cores, BLAS on one thread
    "NumpyOps without cblas",  # where NumPy's BLAS has no usable cblas_sgemm: the np.matmul paths
    "CupyOps (simulated GPU)",
    pytest.param("CupyOps (GPU)", marks=pytest.mark.gpu),
]


@pytest.fixture(params=IMPLEMENTATIONS)
def fast_backend(request, monkeypatch):
    if request.param == "NumpyOps on 2 threads":
        monkeypatch.setattr(NumpyOps, "PARALLEL_MIN", 0)  # small arrays too
        monkeypatch.setattr(NumpyOps, "OPTIMIZER_PARALLEL_MIN", 0)
        monkeypatch.setattr(NumpyOps, "SPLIT_GEMM", 2**20)  # the (256, 300, 128) products are split in parts
        with owned_cores(2):
            yield get_backend("cpu")
        return
    if request.param.startswith("NumpyOps"):
        if request.param == "NumpyOps without cblas":
            monkeypatch.setattr(blas, "sgemm", lambda: None)
        yield get_backend("cpu")
    elif request.param == "CupyOps (GPU)":
        yield request.getfixturevalue("real_gpu_backend")
    else:
        yield request.getfixturevalue("simulated_gpu_backend")


def _to_device(be: Any, value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return be.asarray(value)
    if isinstance(value, list):
        return [_to_device(be, v) for v in value]
    return value


def _to_host(be: Any, value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_to_host(be, v) for v in value]
    if value is None or isinstance(value, int | float):
        return value
    return np.array(be.to_numpy(value))  # a copy: workspaces are reused


def _call(be: Any, method: str, case: Case) -> tuple[list[Any], list[Any]]:
    """(results, host inputs after the call) of ``case`` on ``be``'s ops."""
    ops = be.ops
    host_args = case.args(np.random.default_rng(0))
    args = _to_device(be, host_args)
    for i in case.images:  # images are given in the class's layout; results converted back to NCHW below
        args[i] = ops.to_layout(args[i])
    results = []
    for t in range(1, case.steps + 1):
        kwargs = {"hp": dataclasses.replace(case.kwargs["hp"], t=t)} if method == "adam_update" else case.kwargs
        result = case.run(ops, *args, **kwargs) if case.run else getattr(ops, method)(*args, **kwargs)
        results.append(_to_host(be, _to_nchw(ops, result) if case.layout_results else result))
    return results, _to_host(be, [_to_nchw(ops, a) if i in case.images else a for i, a in enumerate(args)])


def _to_nchw(ops: Any, value: Any) -> Any:
    """4-D results (images, pooling indices) back to NCHW; everything else as it is."""
    if isinstance(value, tuple | list):
        return [_to_nchw(ops, v) for v in value]
    return ops.from_layout(value) if getattr(value, "ndim", 0) == 4 else value


def _cases() -> list[tuple[str, int]]:
    return [(method, i) for method, cases in CASES.items() for i in range(len(cases))]


@pytest.mark.parametrize(("method", "index"), _cases(), ids=[f"{m}-{i}" for m, i in _cases()])
def test_override_matches_the_readable_method(fast_backend, method, index):
    case = CASES[method][index]
    reference = get_backend("cpu")
    reference.fast = False
    assert type(reference.ops) is Ops
    expected, expected_args = _call(reference, method, case)
    got, got_args = _call(fast_backend, method, case)
    compare = _exact if case.exact else _close(case.rtol)
    compare(got, expected)
    for i in case.outputs:
        compare(got_args[i], expected_args[i])
    untouched = [i for i in range(len(expected_args)) if i not in case.outputs]
    original = _to_host(reference, _to_device(reference, case.args(np.random.default_rng(0))))
    for i in untouched:  # methods never modify their inputs
        _exact(got_args[i], original[i])


def _exact(got: Any, expected: Any) -> None:
    if isinstance(expected, list):
        assert len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            _exact(g, e)
    elif isinstance(expected, np.ndarray):
        assert got.shape == expected.shape
        if expected.dtype.kind in "iu":  # index arrays may use another integer type (pooling argmax)
            assert got.dtype.kind in "iu"
        else:
            assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    else:
        assert got == expected


def _close(rtol: float) -> Callable[[Any, Any], None]:
    def compare(got: Any, expected: Any) -> None:
        if isinstance(expected, list):
            assert len(got) == len(expected)
            for g, e in zip(got, expected, strict=True):
                compare(g, e)
        elif isinstance(expected, np.ndarray):
            assert got.shape == expected.shape
            assert got.dtype == expected.dtype
            scale = max(1.0, float(np.abs(expected).max(initial=0)))
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)
        else:
            assert got == expected

    return compare


@pytest.mark.parametrize("cls", [NumpyOps, CupyOps])
def test_every_override_has_a_parity_case(cls):
    overridden = {
        name
        for klass in cls.__mro__
        if klass is not Ops and issubclass(klass, Ops)
        for name, value in vars(klass).items()
        if callable(value) and not name.startswith("_") and hasattr(Ops, name)
    }
    assert overridden, "the fast class overrides nothing?"
    assert sorted(overridden - set(CASES)) == []


def test_override_signatures_match_the_base():
    for cls in (BufferedOps, NumpyOps, CupyOps):
        for name, value in vars(cls).items():
            if callable(value) and not name.startswith("_") and hasattr(Ops, name) and value is not getattr(Ops, name):
                assert inspect.signature(value) == inspect.signature(getattr(Ops, name)), f"{cls.__name__}.{name}"
