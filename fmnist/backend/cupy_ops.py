"""``CupyOps``: the GPU's versions of the ``Ops`` primitives, as CUDA kernels where one launch replaces many.

On a GPU the small steps of a network are bound by kernel launches (~5-10 µs of host time each), not by arithmetic.
So what NumPy runs as several ufuncs is one kernel here: the batch gather + scale, the counter-based noise, dropout,
augmentation, the sigmoid, the ReLU's derivative, softmax + cross-entropy + its gradient + the mean loss, the count
of correct predictions, each optimizer rule over the flat parameter buffer (one launch per step for the whole
model), and the image operations: im2col / col2im, a direct convolution for the first layer, max pooling, batch
norm (statistics by one deterministic reduction launch, the rest in one pass; one launch in all for the few rows of
a dense layer), and batch norm -> 2x2 max pool -> ReLU fused. Matrix products go to cuBLAS through ``cupy.matmul``
on 2-D operands (a convolution is one GEMM per layer, its weight gradient one more); the ``out=`` ufunc versions
inherited from ``BufferedOps`` cover the rest. No cuDNN: the backward passes are the hand-written ones.

Images are channels-last (NHWC) between layers, as ``NumpyOps`` keeps them, so dropout masks follow the same
element order on both devices (a run resumes exactly on the other one). A convolution keeps its im2col columns from
the forward to the backward pass (``KEEP_COLUMNS_BYTES`` per layer) rather than cutting them out twice.

``SOURCE`` (``kernels.cu`` beside this file) is one full CUDA C translation unit, compiled once per process by
``compiled_module`` (the GPU probe does it, so no compilation falls inside the first epoch). CI compiles it with the
real NVRTC for the T4 (sm_75) and Hopper (sm_90), and with g++ for the host through the simulated GPU, where every
kernel is checked against ``Ops``. Only names that CuPy 13 and 14 both provide are used, and no call here makes the
host wait for the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fmnist.backend.buffered_ops import BufferedOps
from fmnist.backend.ops import AdamStep, Key, MomentumStep, Ops, RmspropStep, SgdStep, draw_key

SOURCE = (Path(__file__).parent / "kernels.cu").read_text()  # one CUDA C translation unit

_THREADS = 256  # elementwise kernels: threads per block
_MAX_BLOCKS = 4096  # elementwise kernels stride over at most this many blocks
_TILE, _LANES = 32, 8  # reductions: a block is 32 channels x 8 row lanes
_ROW_BLOCKS = 128  # reductions over many rows: at most this many blocks of rows, merged by the last one
SMALL_ROWS = 1024  # batch norm over at most this many rows (a dense layer's batch): one launch
SMALL_CONV = 25  # c*k*k at most: the direct convolution kernel (a first layer) instead of im2col + GEMM
_RULES = {"sgd": 0, "momentum": 1, "nesterov": 2, "rmsprop": 3, "adam": 4}
f32, i32, i64, u32 = np.float32, np.int32, np.int64, np.uint32

_MODULES: dict[int, tuple[Any, Any, dict[str, Any]]] = {}  # id(xp) -> (xp, compiled module, its kernels)


def compiled_module(xp: Any) -> Any:
    """fmnist's kernels compiled for the current GPU: once per process and array library (``xp`` is CuPy), at the
    first call. Raises what CuPy raises where it cannot compile (a machine with the driver only). The GPU probe calls
    it before any training, so the compilation time never lands in an epoch."""
    entry = _MODULES.get(id(xp))
    if entry is None or entry[0] is not xp:
        module = xp.RawModule(code=SOURCE)
        kernels = {"fmnist_probe": module.get_function("fmnist_probe")}  # CuPy compiles the whole source here
        entry = _MODULES[id(xp)] = (xp, module, kernels)
    return entry[1]


def _function(xp: Any, name: str) -> Any:
    """The kernel ``name`` of the compiled module (looking it up in a compiled module costs no compilation)."""
    compiled_module(xp)
    _, module, kernels = _MODULES[id(xp)]
    kernel = kernels.get(name)
    if kernel is None:
        kernel = kernels[name] = module.get_function(name)
    return kernel


def _overlap(a: Any, b: Any) -> bool:
    """Whether two device arrays may share memory (their byte ranges meet)."""
    pa, pb = a.data.ptr, b.data.ptr
    return pa < pb + b.nbytes and pb < pa + a.nbytes


class CupyOps(BufferedOps):
    """``Ops`` on CuPy float32 arrays: CUDA kernels for the elementwise stretches, the reductions and the image
    operations, cuBLAS for matrix products.

    Inherited from ``BufferedOps`` (``out=`` ufuncs and workspaces, which CuPy supports alike): ``linear``,
    ``linear_backward``, ``tanh``, ``relu`` and the sigmoid, tanh and dropout backwards.
    """

    layout = "NHWC"
    KEEP_COLUMNS_BYTES = 1 << 30  # a convolution keeps its columns for the backward pass up to this size

    def __init__(self, backend: Any):
        super().__init__(backend)
        self._scratch: dict[tuple, Any] = {}
        self._kernels: dict[str, Any] = {}

    # --- launching ---------------------------------------------------------------------------------------------

    def _kernel(self, name: str) -> Any:
        kernel = self._kernels.get(name)  # a launch is ~5-10 µs of host time: keep the lookup to one dict
        if kernel is None:
            kernel = self._kernels[name] = _function(self.xp, name)
        return kernel

    def _launch(self, name: str, n: int, *args: Any) -> None:
        """An elementwise kernel striding over ``n`` items."""
        blocks = max(1, min(_MAX_BLOCKS, (n + _THREADS - 1) // _THREADS))
        self._kernel(name)((blocks,), (_THREADS,), args)

    def _scratch_buffer(self, tag: str, shape: tuple[int, ...], dtype: Any = np.float32) -> Any:
        """Scratch shared by every call site (reduction partials, counters, recomputed columns): made once with
        zeros, reused. The kernels that use counters leave them at zero."""
        full = (tag, shape, dtype)
        buf = self._scratch.get(full)
        if buf is None:
            buf = self._scratch[full] = self.xp.zeros(shape, dtype=dtype)
        return buf

    def _reduce(self, name: str, rows: int, channels: int, per: int, head: tuple, tail: tuple) -> None:
        """A per-channel reduction over ``rows`` in one launch: blocks of 32 channels x 8 row lanes, up to
        ``_ROW_BLOCKS`` blocks of rows whose ``per`` double partials per channel the last block merges."""
        blocks = max(1, min(_ROW_BLOCKS, -(-rows // _THREADS)))
        tiles = -(-channels // _TILE)
        partials = self._scratch_buffer(f"{name}_partials", (blocks * channels * per,), np.float64)
        counters = self._scratch_buffer(f"{name}_counters", (tiles,), np.uint32)
        self._kernel(name)((blocks, tiles), (_TILE, _LANES), (*head, partials, counters, *tail))

    def _per_tile(self, name: str, channels: int, *args: Any) -> None:
        """A kernel with one block per 32 channels that sees every row (the few rows of a dense layer)."""
        self._kernel(name)((1, -(-channels // _TILE)), (_TILE, _LANES), args)

    def _apart(self, tag: str, key: Key, shape: tuple[int, ...], x: Any) -> Any:
        """The workspace of (``tag``, ``key``) with ``x``'s dtype, or a second one where the first holds ``x``: for
        kernels that read other elements than the one they write (the key contract allows a call on its own
        previous result)."""
        out = self.workspace(tag, key, shape, x.dtype.type)
        if _overlap(out, x):
            out = self.workspace(f"{tag}'", key, shape, x.dtype.type)
        return out

    # --- random numbers and data -------------------------------------------------------------------------------

    def uniform(self, shape: tuple[int, ...], seed: int, counter: int) -> Any:
        out = self.xp.empty(shape, dtype=np.float32)
        k0, k1 = draw_key(seed, counter)
        self._launch("fmnist_uniform", out.size, out, i64(out.size), u32(k0), u32(k1))
        return out

    def gather_scale(self, images: Any, rows: Any, scale: float, shift: float, key: Key = None) -> Any:
        if rows.dtype != np.int64 or images.dtype != np.uint8:
            return Ops.gather_scale(self, images, rows, scale, shift, key)
        n, d = int(rows.shape[0]), int(images.shape[1])
        out = self.workspace("features", key, (n, d))
        self._launch("fmnist_gather_scale", n * d, images, rows, out, i64(n), i64(d), f32(scale), f32(shift))
        return out

    def shift_flip(
        self,
        x: Any,
        max_shift: int,
        flip: bool,
        seed: int,
        counter: int,
        side: int = 28,
        fill: float = 0.0,
        key: Key = None,
    ) -> Any:
        n = int(x.shape[0])
        out = self._apart("shift_flip", key, tuple(x.shape), x)
        k0, k1 = draw_key(seed, counter)  # the kernel draws Ops.uniform((n, 3), seed, counter) itself
        args = (x, out, i64(n), i32(side), i32(max_shift), i32(bool(flip)), f32(fill), u32(k0), u32(k1))
        self._launch("fmnist_shift_flip", n * side * side, *args)
        return out

    # --- activations and dropout --------------------------------------------------------------------------------

    def sigmoid(self, z: Any, key: Key = None) -> Any:
        out = self.workspace("out", key, tuple(z.shape))
        self._launch("fmnist_sigmoid", z.size, z, out, i64(z.size))
        return out

    def relu_backward(self, a: Any, da: Any, key: Key = None) -> Any:
        out = self.workspace("grad", key, tuple(a.shape))
        self._launch("fmnist_relu_backward", a.size, a, da, out, i64(a.size))
        return out

    def dropout(self, a: Any, p: float, seed: int, counter: int, key: Key = None) -> tuple[Any, Any]:
        shape = tuple(a.shape)
        out, mask = self.workspace("dropout", key, shape), self.workspace("dropout_mask", key, shape)
        k0, k1 = draw_key(seed, counter)
        args = (a, out, mask, i64(a.size), u32(k0), u32(k1), f32(p), f32(1 / (1 - p)))
        self._launch("fmnist_dropout", a.size, *args)
        return out, mask

    # --- images: channels last (NHWC) between layers ------------------------------------------------------------

    def to_layout(self, x: Any, key: Key = None) -> Any:
        n, c, h, w = (int(s) for s in x.shape)
        if c == 1:  # one channel: NCHW and NHWC are the same bytes
            return self.xp.reshape(x, (n, h, w, 1))
        out = self._apart("to_nhwc", key, (n, h, w, c), x)
        out[...] = self.xp.transpose(x, (0, 2, 3, 1))
        return out

    def from_layout(self, x: Any, key: Key = None) -> Any:
        n, h, w, c = (int(s) for s in x.shape)
        if c == 1:
            return self.xp.reshape(x, (n, 1, h, w))
        out = self._apart("to_nchw", key, (n, c, h, w), x)
        out[...] = self.xp.transpose(x, (0, 3, 1, 2))
        return out

    def nchw_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        n, h, w, c = shape
        return (n, c, h, w)

    @staticmethod
    def _conv_plan(x: Any, weight: Any, stride: int, padding: int) -> tuple[int, ...]:
        n, h, w, c = (int(s) for s in x.shape)
        out_c, _, k, _ = (int(s) for s in weight.shape)
        oh, ow = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
        return n, h, w, c, out_c, k, oh, ow

    def _im2col(self, x: Any, k: int, stride: int, padding: int, oh: int, ow: int, col: Any) -> Any:
        n, h, w, c = (int(s) for s in x.shape)
        args = (x, col, *(i32(v) for v in (n, h, w, c, k, stride, padding, oh, ow)))
        self._launch("fmnist_im2col", col.size, *args)
        return col

    def conv2d(
        self, x: Any, weight: Any, bias: Any, stride: int = 1, padding: int = 0, key: Key = None
    ) -> tuple[Any, Any]:
        xp = self.xp
        n, h, w, c, out_c, k, oh, ow = self._conv_plan(x, weight, stride, padding)
        y = self._apart("out", key, (n, oh, ow, out_c), x)
        if c * k * k <= SMALL_CONV:  # a first layer: the direct kernel, bias included, one launch
            sizes = (i32(v) for v in (n, h, w, c, out_c, k, stride, padding, oh, ow))
            has_bias = bias is not None
            self._launch("fmnist_conv_small", y.size, x, weight, bias if has_bias else weight, i32(has_bias), y, *sizes)
            return y, [x, None]
        shape = (n * oh * ow, c * k * k)
        kept = 4 * shape[0] * shape[1] <= self.KEEP_COLUMNS_BYTES
        col = self.workspace("col", key, shape) if kept else self._scratch_buffer("col", shape)
        self._im2col(x, k, stride, padding, oh, ow, col)
        rows = xp.reshape(y, (-1, out_c))
        xp.matmul(col, xp.reshape(weight, (out_c, -1)).T, out=rows)  # one 2-D GEMM, the weights as they are
        if bias is not None:
            rows += bias
        return y, [x, col if kept else None]  # the backward overwrites the columns, then drops them from saved

    def conv2d_backward(
        self,
        dy: Any,
        saved: Any,
        weight: Any,
        weight_grad: Any,
        bias_grad: Any,
        stride: int = 1,
        padding: int = 0,
        need_dx: bool = True,
        key: Key = None,
    ) -> Any:
        xp = self.xp
        x, col = saved
        n, h, w, c, out_c, k, oh, ow = self._conv_plan(x, weight, stride, padding)
        columns = c * k * k
        if columns <= SMALL_CONV and not need_dx:  # a first layer: both gradients in one launch
            sizes = tuple(i32(v) for v in (n, h, w, c, out_c, k, stride, padding, oh, ow))
            has_bias = bias_grad is not None
            head = (x, dy, weight_grad, bias_grad if has_bias else weight_grad, i32(has_bias), *sizes)
            self._reduce("fmnist_conv_small_weight_grad", n * oh * ow, out_c, columns + 1, head, ())
            return None
        if col is None:  # not kept (too large, a direct forward, or a second backward): cut out again
            col = self._im2col(x, k, stride, padding, oh, ow, self._scratch_buffer("col", (n * oh * ow, columns)))
        dy_rows = xp.reshape(dy, (-1, out_c))
        xp.matmul(dy_rows.T, col, out=xp.reshape(weight_grad, (out_c, columns)))  # dW: one GEMM, in place
        if bias_grad is not None:
            xp.sum(dy_rows, axis=0, out=bias_grad)
        if not need_dx:
            return None
        xp.matmul(dy_rows, xp.reshape(weight, (out_c, columns)), out=col)  # the column gradients, over the columns
        saved[1] = None
        dx = self.workspace("grad", key, (n, h, w, c))
        args = (col, dx, *(i32(v) for v in (n, h, w, c, k, stride, padding, oh, ow)))
        self._launch("fmnist_col2im", dx.size, *args)
        return dx

    def max_pool2d(self, x: Any, kernel: int, stride: int, key: Key = None) -> tuple[Any, Any]:
        n, h, w, c = (int(s) for s in x.shape)
        oh, ow = (h - kernel) // stride + 1, (w - kernel) // stride + 1
        shape = (n, oh, ow, c)
        y, argmax = self.workspace("out", key, shape), self.workspace("pool_argmax", key, shape, np.uint8)
        self._launch("fmnist_max_pool", y.size, x, y, argmax, *(i32(v) for v in (n, h, w, c, kernel, stride, oh, ow)))
        return y, argmax

    def max_pool2d_backward(self, dy: Any, argmax: Any, x_shape: tuple[int, ...], kernel: int, stride: int,
                            key: Key = None) -> Any:  # fmt: skip
        n, h, w, c = (int(s) for s in x_shape)
        _, oh, ow, _ = (int(s) for s in dy.shape)
        dx = self.workspace("grad", key, (n, h, w, c))
        sizes = (i32(v) for v in (n, h, w, c, kernel, stride, oh, ow))
        self._launch("fmnist_max_pool_backward", dx.size, dy, argmax, dx, *sizes)
        return dx

    # --- batch norm: features of 2-D inputs, channels of NHWC images, both as (rows, C) -------------------------

    def _moments(self, x: Any, rows: int, c: int, running_mean: Any, running_var: Any, momentum: float, eps: float,
                 stats: Any) -> None:  # fmt: skip
        head = (x, i64(rows), i32(c), running_mean, running_var, f32(momentum), f32(eps))
        self._reduce("fmnist_bn_moments", rows, c, 3, head, (stats,))

    def batch_norm(
        self,
        x: Any,
        gamma: Any,
        beta: Any,
        running_mean: Any,
        running_var: Any,
        momentum: float,
        eps: float,
        training: bool,
        key: Key = None,
    ) -> tuple[Any, Any]:
        c = int(gamma.shape[0])
        rows = x.size // c
        stats = self.workspace("bn_stats", key, (2 * c,))
        y, x_hat = self.workspace("out", key, tuple(x.shape)), self.workspace("bn_xhat", key, tuple(x.shape))
        if training and rows <= SMALL_ROWS:
            args = (x, y, x_hat, i64(rows), i32(c), gamma, beta, running_mean, running_var, f32(momentum), f32(eps))
            self._per_tile("fmnist_bn_forward_small", c, *args, stats)
            return y, (x_hat, stats)
        if training:
            self._moments(x, rows, c, running_mean, running_var, momentum, eps, stats)
        args = (x, y, x_hat, i64(rows), i32(c), stats, gamma, beta, running_mean, running_var, f32(eps))
        self._launch("fmnist_bn_apply", x.size, *args, i32(training))
        return y, (x_hat, stats)

    def batch_norm_backward(
        self, dy: Any, saved: Any, gamma: Any, gamma_grad: Any, beta_grad: Any, training: bool, key: Key = None
    ) -> Any:
        x_hat, stats = saved
        c = int(gamma.shape[0])
        rows = dy.size // c
        dx = self.workspace("grad", key, tuple(dy.shape))
        if rows <= SMALL_ROWS:
            args = (dy, x_hat, dx, i64(rows), i32(c), gamma, stats, i32(training), gamma_grad, beta_grad)
            self._per_tile("fmnist_bn_backward_small", c, *args)
            return dx
        coef = self.workspace("bn_coef", key, (2 * c,))
        head = (dy, dy, i32(0), x_hat, i64(rows), i32(c), f32(rows), i32(training))
        self._reduce("fmnist_bn_grad_sums", rows, c, 2, head, (gamma_grad, beta_grad, coef))
        self._launch("fmnist_bn_backward_apply", dy.size, dy, x_hat, dx, i64(rows), i32(c), gamma, stats, coef)
        return dx

    def batch_norm_pool_relu(
        self,
        x: Any,
        gamma: Any,
        beta: Any,
        running_mean: Any,
        running_var: Any,
        momentum: float,
        eps: float,
        training: bool,
        kernel: int = 2,
        stride: int = 2,
        key: Key = None,
    ) -> tuple[Any, Any]:
        n, h, w, c = (int(s) for s in x.shape)
        if (kernel, stride) != (2, 2) or h % 2 or w % 2:  # the three methods one after the other
            return Ops.batch_norm_pool_relu(
                self, x, gamma, beta, running_mean, running_var, momentum, eps, training, kernel, stride, key
            )
        shape = (n, h // 2, w // 2, c)
        stats = self.workspace("bn_stats", key, (2 * c,))
        if training:
            self._moments(x, n * h * w, c, running_mean, running_var, momentum, eps, stats)
        y, argmax = self.workspace("out", key, shape), self.workspace("pool_argmax", key, shape, np.uint8)
        x_hat = self.workspace("bnp_xhat", key, shape)
        args = (x, y, argmax, x_hat, *(i32(v) for v in (n, h, w, c)), stats, gamma, beta, running_mean, running_var)
        self._launch("fmnist_bn_pool_relu", y.size, *args, f32(eps), i32(training))
        return y, (x, y, argmax, x_hat, stats)

    def batch_norm_pool_relu_backward(
        self,
        dy: Any,
        saved: Any,
        gamma: Any,
        gamma_grad: Any,
        beta_grad: Any,
        training: bool,
        kernel: int = 2,
        stride: int = 2,
        key: Key = None,
    ) -> Any:
        if len(saved) != 5:  # the composite path ran (odd sizes or another window)
            return Ops.batch_norm_pool_relu_backward(
                self, dy, saved, gamma, gamma_grad, beta_grad, training, kernel, stride, key
            )
        x, y, argmax, x_hat, stats = saved
        n, h, w, c = (int(s) for s in x.shape)
        coef = self.workspace("bn_coef", key, (2 * c,))
        head = (dy, y, i32(1), x_hat, i64(y.size // c), i32(c), f32(n * h * w), i32(training))
        self._reduce("fmnist_bn_grad_sums", y.size // c, c, 2, head, (gamma_grad, beta_grad, coef))
        dx = self.workspace("grad", key, (n, h, w, c))
        args = (dy, y, argmax, x, dx, *(i32(v) for v in (n, h, w, c)), gamma, stats, coef)
        self._launch("fmnist_bn_pool_relu_backward", dx.size, *args)
        return dx

    # --- losses -------------------------------------------------------------------------------------------------

    def softmax_cross_entropy(
        self, logits: Any, y: Any, label_smoothing: float = 0.0, key: Key = None
    ) -> tuple[Any, Any]:
        if y.dtype != np.int64:
            return Ops.softmax_cross_entropy(self, logits, y, label_smoothing, key)
        n, k = (int(s) for s in logits.shape)
        blocks = max(1, min(64, -(-n // _THREADS)))
        dlogits = self.workspace("ce_dlogits", key, (n, k))
        loss = self.xp.empty((), dtype=np.float32)  # the caller keeps it (the trainer's per-step record)
        partials = self._scratch_buffer("ce_partials", (blocks,))
        counter = self._scratch_buffer("ce_counter", (1,), np.uint32)
        args = (logits, y, dlogits, loss, i64(n), i32(k), f32(label_smoothing), partials, counter)
        self._kernel("fmnist_softmax_xent")((blocks,), (_THREADS,), args)
        return loss, dlogits

    def count_correct(self, logits: Any, y: Any) -> Any:
        if y.dtype != np.int64:
            return Ops.count_correct(self, logits, y)
        n, k = (int(s) for s in logits.shape)
        out = self.xp.empty((), dtype=np.float32)
        self._kernel("fmnist_count_correct")((1,), (_THREADS,), (logits, y, out, i64(n), i32(k)))
        return out

    # --- optimizer rules: one launch over the flat buffer -------------------------------------------------------

    def _step(self, rule: str, data: Any, grad: Any, s1: Any, s2: Any, lr: float, a: float, b: float, eps: float,
              coefficients: tuple[float, float, float], decay: tuple[float, float]) -> None:  # fmt: skip
        args = (i32(_RULES[rule]), i64(data.size), data, grad, s1, s2, f32(lr), f32(a), f32(b), f32(eps))
        self._launch("fmnist_optimizer", data.size, *args, *(f32(c) for c in coefficients), *(f32(d) for d in decay))

    def sgd_update(self, data: Any, grad: Any, hp: SgdStep) -> None:
        self._step("sgd", data, grad, data, data, hp.lr, 0.0, 0.0, 1.0, (0.0, 0.0, 0.0), hp.decay_terms())

    def momentum_update(self, data: Any, grad: Any, buf: Any, hp: MomentumStep) -> None:
        rule = "nesterov" if hp.nesterov else "momentum"
        self._step(rule, data, grad, buf, buf, hp.lr, hp.momentum, 0.0, 1.0, (0.0, 0.0, 0.0), hp.decay_terms())

    def rmsprop_update(self, data: Any, grad: Any, square_avg: Any, hp: RmspropStep) -> None:
        args = (hp.lr, hp.beta, 0.0, hp.eps, (0.0, 0.0, 0.0), hp.decay_terms())
        self._step("rmsprop", data, grad, square_avg, square_avg, *args)

    def adam_update(self, data: Any, grad: Any, m: Any, v: Any, hp: AdamStep) -> None:
        args = (hp.lr, hp.beta1, hp.beta2, hp.eps, hp.coefficients(), hp.decay_terms())
        self._step("adam", data, grad, m, v, *args)

    # --- before the first step ----------------------------------------------------------------------------------

    def probe(self) -> list[float]:
        """Check that this GPU runs fmnist, and compile what a training step needs before any step is timed:
        compile fmnist's kernels and run one, then run each kind of operation a step uses once on tiny arrays
        (CuPy compiles its own elementwise and reduction kernels at their first use, per dtype; cuBLAS loads at
        the first product). Raises what CuPy raises where it cannot (no NVRTC, no headers, no cuBLAS, a driver
        too old, no memory). Returns a few results for the caller to check; one host sync."""
        xp = self.xp
        out = xp.empty((64,), dtype=np.float32)
        _function(xp, "fmnist_probe")((1,), (64,), (out, i64(64)))
        self._warm_up()
        halves = out * f32(0.5) + f32(0.5)  # a CuPy elementwise kernel
        square = xp.matmul(xp.reshape(out[:16], (4, 4)), xp.reshape(out[16:32], (4, 4)))  # cuBLAS
        return [float(v) for v in xp.stack([xp.sum(halves), xp.sum(square)]).get()]  # the one host sync

    def _warm_up(self) -> None:
        """Run the operations of a training step once on tiny arrays (MLP and CNN, forward, loss, backward,
        update), so that CuPy's own kernels are compiled and cached before the first epoch is timed."""
        xp, be = self.xp, self.backend
        rows = be.asarray(np.array([1, 0], dtype=np.int64))
        x = self.gather_scale(be.asarray(np.zeros((2, 64), np.uint8)), rows, 1 / 255, 0.0)
        w, b, g = be.zeros((64, 4)), be.zeros(4), be.zeros((64, 4))
        z = self.relu(self.linear(x, w, b))
        self.tanh_backward(self.tanh(z), z)
        self.sigmoid_backward(self.sigmoid(z), z)
        loss, dz = self.softmax_cross_entropy(z, xp.take(rows, rows, axis=0))
        self.count_correct(z, rows)
        self.linear_backward(x, w, self.dropout_backward(self.relu_backward(z, dz), z), g, be.zeros(4))
        images = self.to_layout(xp.reshape(self.shift_flip(x, 1, True, 0, 1, side=8), (2, 1, 8, 8)))
        for channels in (1, 4):  # the direct kernel of a first layer, then im2col + GEMM
            weight = be.zeros((channels, channels, 3, 3))
            y, saved = self.conv2d(images, weight, be.zeros(channels), 1, 1)
            self.conv2d_backward(y, saved, weight, be.zeros(weight.shape), be.zeros(channels), 1, 1, channels > 1)
            images = self.to_layout(be.zeros((2, 4, 8, 8)))
        self.from_layout(images)
        stats = be.zeros((2, 2))
        stats[0, 0] = loss  # the trainer's per-step record
        self.sgd_update(be.zeros(4), be.zeros(4), SgdStep())
