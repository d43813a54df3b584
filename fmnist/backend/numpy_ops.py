"""``NumpyOps``: the CPU's fast versions of the ``Ops`` primitives, same signatures, same formulas.

Where the speed comes from (the README's "Performance" section has the measurements):

- preallocated workspaces per call site (``key``) and shape, so no fresh memory is touched in the step (first
  touch of new pages is slow). A forward chain with one key (affine, then activation) shares one buffer, and so
  does a backward chain (input gradient, dropout, activation derivative): the elementwise steps run in place;
- ``out=`` ufuncs instead of temporaries;
- a fused softmax + cross-entropy gradient; the batch gathered and scaled in one pass; a linear layer's bias added
  in its ReLU's pass, and its bias gradient summed in the ReLU derivative's pass;
- Numba loops for what NumPy would do in many passes: each optimizer rule in one pass over the flat parameter
  buffer, the counter-based noise, dropout, augmentation, batch norm with its pooling and ReLU;
- convolutions as kernels that own the cores: where NumPy's own ``cblas_sgemm`` is found (``blas``), BLAS runs on
  one thread and each core runs the whole pipeline on its blocks of images (Winograd F(2x2, 3x3) for 3x3 layers,
  transposed columns for a first layer, im2col per block otherwise), calling the single-threaded GEMM itself
  (and timing it in ``fmnist bench``'s profiled pass, so that the bench tells GEMMs from data movement: ``_owned``).
  While the loops hold the cores this way (``fmnist.backend.threads``), the large products of linear layers, the
  batch-norm loops and Adam are split over the cores too, in fixed parts: the results are the same bits on any
  number of threads. Otherwise the loops run on one thread, so that they never compete with OpenBLAS's threads.

Without Numba the readable ``Ops`` versions run instead; without a usable ``cblas_sgemm`` (macOS Accelerate, MKL
builds) convolutions run as chunked im2col + ``np.matmul``. Every override is held to its ``Ops`` method by the
per-method parity tests.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from fmnist.backend import _numba_loops as loops
from fmnist.backend import blas
from fmnist.backend.buffered_ops import BufferedOps
from fmnist.backend.ops import AdamStep, Key, MomentumStep, RmspropStep, SgdStep, draw_key
from fmnist.backend.profile import credit, profiling, span
from fmnist.backend.threads import loops_hold_cores, own_cores


def compiled(method: Callable) -> Callable:
    """A method whose body calls the compiled loops: where Numba is missing (a broken install), the readable
    ``Ops`` method of the same name runs instead, with the same arguments."""

    @functools.wraps(method)
    def dispatch(self: Any, *args: Any, **kwargs: Any) -> Any:
        if loops.numba is None:
            return getattr(BufferedOps, method.__name__)(self, *args, **kwargs)
        return method(self, *args, **kwargs)

    return dispatch


class NumpyOps(BufferedOps):
    """``Ops`` on NumPy float32 arrays with workspaces, ``out=`` ufuncs and compiled loops."""

    def __init__(self, backend: Any):
        super().__init__(backend)
        self._aranges: dict[int, Any] = {}
        self._owned_failed = False  # an owned kernel failed to compile: the im2col + np.matmul path from then on

    def _rows(self, n: int) -> Any:
        """``arange(n)`` as int64, made once per n."""
        rows = self._aranges.get(n)
        if rows is None:
            rows = self._aranges[n] = self.xp.arange(n, dtype=np.int64)
        return rows

    # --- threads: see fmnist.backend.threads ------------------------------------------------------------------

    PARALLEL_MIN = 2**20  # elements from which an elementwise loop runs on the loops' threads (smaller: one thread)

    def _loop_threads(self, size: int | None = None, minimum: int | None = None) -> int:
        """Set (and return) the threads of the next parallel loops: the budget where the loops hold it (for an
        elementwise loop of ``size`` elements, only from ``minimum`` (``PARALLEL_MIN``) on: below, a second thread
        costs more than it brings). Their parts are fixed, so this never changes a result."""
        small = size is not None and size < (self.PARALLEL_MIN if minimum is None else minimum)
        threads = 1 if small or loops.numba is None else own_cores()
        if loops.numba is not None:
            loops.numba.set_num_threads(threads)
        return threads

    def _partial(self, key: Key, channels: int) -> Any:
        """Scratch for per-part partial sums of two per-channel moments (float64)."""
        return self.workspace("partial_sums", key, (loops.PARTS, 2, channels), np.float64)

    def _owned_gemm(self) -> Any:
        """The sgemm the owned kernels call, or None: then the im2col + np.matmul path runs."""
        if loops.numba is None or self._owned_failed:
            return None
        return blas.sgemm()

    def _fall_back(self, err: Exception) -> None:
        self._owned_failed = True
        warnings.warn(f"fmnist: convolution kernels unavailable ({err}); using NumPy's matmul", stacklevel=3)

    def _owned(self, kernel: Callable[..., None], *args: Any) -> None:
        """``kernel(*args, clock, timed, spent)``: an owned convolution kernel. While a profiler is active
        (``fmnist bench``'s profiled pass) the kernel times its sgemm calls and each of its parts (``loops.clock``),
        and the GEMMs' share of the call's wall time is credited to ``conv_gemm``; the rest of the convolution
        method then counts as its data movement (``conv_data``). Untimed, the kernel reads no clock.

        The parts run side by side on the loops' threads, so their seconds add up to more than the call's: the
        GEMMs' wall time is taken as the call's wall time times Σ GEMM seconds / Σ part seconds. Where the parts are
        balanced over the threads that is Σ GEMM seconds / threads; unlike that, it needs no count of the threads
        that really ran, and holds with more parts than threads, parts of unequal size or a core taken by
        another process (each stretches a part's GEMMs and its data movement alike). The approximation: the
        threads' start and join, and a thread's wait for the slowest, are shared out in the same ratio."""
        clock, usable = loops.clock()
        spent = self.workspace("conv_seconds", "conv", (loops.PARTS, 2), np.float64)
        if not usable or not profiling():
            kernel(*args, clock, False, spent)
            return
        spent[...] = 0.0
        start = time.perf_counter()
        kernel(*args, clock, True, spent)
        wall = time.perf_counter() - start
        gemm, busy = (float(s) for s in spent.sum(axis=0))
        if busy > 0:
            credit("conv_gemm", wall * min(1.0, gemm / busy))

    # --- random numbers and data -------------------------------------------------------------------------------

    @compiled
    def uniform(self, shape: tuple[int, ...], seed: int, counter: int) -> Any:
        out = np.empty(shape, dtype=np.float32)
        loops.uniform(out.reshape(-1), *draw_key(seed, counter))
        return out

    def gather_scale(self, images: Any, rows: Any, scale: float, shift: float, key: Key = None) -> Any:
        n, d = int(rows.shape[0]), int(images.shape[1])
        out = self.workspace("features", key, (n, d))
        if loops.numba is not None and images.flags.c_contiguous:  # one pass: gather, convert, scale
            loops.gather_scale(images, rows, scale, shift, out)  # rows are valid indices (the trainer's order)
            return out
        raw = self.workspace("gather", key, (n, d), np.uint8)
        # mode="clip" avoids NumPy's internal buffering of out= with mode="raise" (4-5x slower); rows are valid
        np.take(images, rows, axis=0, out=raw, mode="clip")
        np.multiply(raw, np.float32(scale), out=out)
        if shift:
            out += np.float32(shift)
        return out

    @compiled
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
        u = self.uniform((n, 3), seed, counter)
        out = self.workspace("shift_flip", key, tuple(x.shape), x.dtype.type)
        loops.shift_flip(x, out, u, int(max_shift), bool(flip), int(side), np.float32(fill))
        return out

    # --- affine layers: while the compiled loops hold the cores (BLAS on one thread: a CNN's step), a large
    # product is split into parts by rows, one single-threaded GEMM per part on each core

    # Multiply-adds from which a product is split (the CNN's 3136 -> 128 layer: 51M at batch 128). Smaller products
    # stay on one thread: waking the second costs more than it brings, e.g. the default MLP's first layer at batch
    # 64 (784 -> 256, 12.8M) made `fmnist train` 20-25% slower when split.
    SPLIT_GEMM = 2**25

    def _product(self, a: Any, b: Any, out: Any, trans_a: bool = False, trans_b: bool = False) -> Any:
        """out = op(a) op(b) (op: transposed where asked), split over the parts where that pays."""
        m, n = out.shape
        k = a.shape[0] if trans_a else a.shape[1]
        gemm = None
        if m * n * k >= self.SPLIT_GEMM and loops_hold_cores() and a.flags.c_contiguous and b.flags.c_contiguous:
            gemm = self._owned_gemm()
        if gemm is None or not out.flags.c_contiguous:
            return np.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)
        self._loop_threads()
        loops.gemm_rows(gemm, loops.PARTS, a, b, out, trans_a, trans_b)
        return out

    @compiled
    def linear_relu(self, x: Any, weight: Any, bias: Any, key: Key = None) -> Any:
        if bias is None:
            return self.relu(self.linear(x, weight, None, key), key)
        out = self._product(x, weight, self.workspace("out", key, (int(x.shape[0]), int(weight.shape[1]))))
        loops.bias_relu(out, bias)  # one pass: + bias, max(·, 0)
        return out

    @compiled
    def linear_relu_backward(
        self,
        x: Any,
        weight: Any,
        a: Any,
        da: Any,
        weight_grad: Any,
        bias_grad: Any,
        need_dx: bool = True,
        key: Key = None,
    ) -> Any:
        dz = self.workspace("relu_grad", key, tuple(a.shape))
        sums = self.workspace("bias_sums", key, (int(a.shape[1]),), np.float64)
        loops.relu_backward_sums(a, da, dz, sums)  # one pass: the ReLU's derivative and the bias gradient
        if bias_grad is not None:
            bias_grad[...] = sums
        return self.linear_backward(x, weight, dz, weight_grad, None, need_dx, key)

    # --- activations (the affine layer and the others come from BufferedOps) -------------------------------

    def sigmoid(self, z: Any, key: Key = None) -> Any:
        out = self.workspace("out", key, tuple(z.shape))
        with np.errstate(over="ignore", under="ignore"):  # exp(-z) = inf for z < -88: 1/inf = 0, the limit
            np.negative(z, out=out)
            np.exp(out, out=out)
            out += 1.0
            np.reciprocal(out, out=out)
        return out

    # --- dropout ------------------------------------------------------------------------------------------------

    @compiled
    def dropout(self, a: Any, p: float, seed: int, counter: int, key: Key = None) -> tuple[Any, Any]:
        shape = tuple(a.shape)
        out, mask = self.workspace("dropout", key, shape), self.workspace("dropout_mask", key, shape)
        k0, k1 = draw_key(seed, counter)
        loops.dropout(a.reshape(-1), out.reshape(-1), mask.reshape(-1), k0, k1, p, 1.0 / (1.0 - p))
        return out, mask

    def relu_backward(self, a: Any, da: Any, key: Key = None) -> Any:
        out = self.workspace("grad", key, tuple(a.shape))
        if out is not da:
            np.copyto(out, da)
        self._loop_threads(out.size)
        loops.relu_backward(loops.PARTS, _flat(a), _flat(out))  # one pass, no mask array
        return out

    @compiled
    def relu(self, z: Any, key: Key = None) -> Any:
        out = self.workspace("out", key, tuple(z.shape))
        if out is not z:
            np.copyto(out, z)
        self._loop_threads(out.size)
        loops.relu(loops.PARTS, _flat(out))
        return out

    # --- images: kept channels last (NHWC) between layers, so a convolution is im2col + one GEMM whose output is
    # already the next layer's input (no transpose), and batch norm works on contiguous (pixels, channels) rows.

    layout = "NHWC"
    COL_BUDGET = 4 * 2**20  # bytes of im2col columns per chunk of images: a whole step was fastest at 2-4 MB

    def to_layout(self, x: Any, key: Key = None) -> Any:
        n, c, h, w = (int(s) for s in x.shape)
        return self._copy(x.transpose(0, 2, 3, 1), "to_nhwc", key, (n, h, w, c))

    def from_layout(self, x: Any, key: Key = None) -> Any:
        n, h, w, c = (int(s) for s in x.shape)
        return self._copy(x.transpose(0, 3, 1, 2), "to_nchw", key, (n, c, h, w))

    def nchw_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        n, h, w, c = shape
        return (n, c, h, w)

    def _copy(self, view: Any, tag: str, key: Key, shape: tuple[int, ...]) -> Any:
        out = self.workspace(tag, key, shape, view.dtype.type)
        np.copyto(out, view)
        return out

    # --- convolution. Where NumPy's own cblas_sgemm is found (``blas.sgemm()``), kernels that split their work
    # over the cores themselves (``_numba_loops``; BLAS on one thread meanwhile, see ``fmnist.backend.threads``):
    # Winograd F(2x2, 3x3) for 3x3 / stride 1 / padding 1 on even sizes with several channels, transposed columns
    # for one channel (a first layer), im2col per block of images for every other shape. Elsewhere (and should a
    # kernel fail to compile) the chunked im2col + np.matmul below, with BLAS's threads.

    WINOGRAD_BLOCK = 4  # images per block of a Winograd part (its transforms and products stay in cache)
    FIRST_BLOCK = 16  # images per block of a one-channel layer
    DIRECT_BLOCK_BYTES = 2 * 2**20  # im2col columns per block of the other shapes
    KEEP_COLUMNS_BYTES = 2**27  # Winograd's input transform kept for the backward up to this size, else recomputed

    def conv2d(
        self, x: Any, weight: Any, bias: Any, stride: int = 1, padding: int = 0, key: Key = None
    ) -> tuple[Any, Any]:
        gemm = self._owned_gemm()
        if gemm is not None:
            try:
                return self._owned_conv2d(gemm, x, weight, bias, stride, padding, key)
            except loops.numba.core.errors.NumbaError as err:  # pragma: no cover - a broken Numba or BLAS
                self._fall_back(err)
        return self._im2col_conv2d(x, weight, bias, stride, padding, key)

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
        method, x = saved[0], saved[1]
        gemm = self._owned_gemm()
        args = (dy, saved, weight, weight_grad, bias_grad, stride, padding, need_dx, key)
        if method != "im2col" and gemm is not None:
            try:
                return self._owned_conv2d_backward(gemm, *args)
            except loops.numba.core.errors.NumbaError as err:  # pragma: no cover
                self._fall_back(err)
        return self._im2col_conv2d_backward(dy, x, *args[2:])

    def _conv_plan(self, x: Any, weight: Any, stride: int, padding: int) -> tuple[int, ...]:
        n, h, w, c = (int(s) for s in x.shape)
        out_c, _, k, _ = (int(s) for s in weight.shape)
        oh, ow = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
        columns = k * k * c
        chunk = max(1, min(n, self.COL_BUDGET // (4 * oh * ow * columns)))
        return n, c, out_c, k, oh, ow, columns, chunk

    @staticmethod
    def _winograd(x: Any, weight: Any, stride: int, padding: int) -> bool:
        _, h, w, c = (int(s) for s in x.shape)
        return int(weight.shape[2]) == 3 and stride == 1 and padding == 1 and c > 1 and h % 2 == 0 and w % 2 == 0

    def _owned_conv2d(self, gemm: Any, x: Any, weight: Any, bias: Any, stride: int, padding: int,
                      key: Key) -> tuple[Any, Any]:  # fmt: skip
        n, c, out_c, k, oh, ow, columns, _ = self._conv_plan(x, weight, stride, padding)
        y = self.workspace("out", key, (n, oh, ow, out_c))
        rows = y.reshape(-1, out_c)
        self._loop_threads()
        if c == 1 and stride == 1:  # the first layer: transposed columns, the bias in the product
            extended = self.workspace("conv_w1", key, (k * k + 1, out_c))
            extended[: k * k] = weight.reshape(out_c, k * k).T
            extended[k * k] = bias if bias is not None else 0.0
            nb = min(n, self.FIRST_BLOCK)
            cols = self.workspace("conv_cols1", "conv", (loops.PARTS, k * k + 1, nb * oh * ow))
            self._owned(loops.one_channel_forward, gemm, x.reshape(x.shape[:3]), extended, rows, cols, k, padding, nb)
            return y, ("first", x)
        if self._winograd(x, weight, stride, padding):
            return y, self._winograd_forward(gemm, x, weight, bias, y, key)
        nb = max(1, min(n, self.DIRECT_BLOCK_BYTES // (4 * oh * ow * columns)))
        cols = self.workspace("conv_cols", "conv", (loops.PARTS, nb * oh * ow, columns))
        args = (cols, k, stride, padding, oh, ow, nb)
        self._owned(loops.direct_forward, gemm, x, self._weight_matrix(weight, key), rows, *args)
        if bias is not None:
            rows += bias
        return y, ("direct", x)

    def _winograd_plan(self, x: Any, out_c: int, keep: bool | None = None) -> tuple[int, int, bool, Any, Any]:
        """(tiles per image, images per block, keep V (the forward decides), V's buffer shape, the per-part M
        scratch). Without ``keep`` V's buffer is scratch too, part p's rows from p·rb (rb: M's rows per part)."""
        n, h, w, c = (int(s) for s in x.shape)
        tiles, nb = (h // 2) * (w // 2), min(n, self.WINOGRAD_BLOCK)
        if keep is None:
            keep = 16 * n * tiles * c * 4 <= self.KEEP_COLUMNS_BYTES
        rb = _skewed(nb * tiles, out_c)
        m = self.workspace("wino_m", "conv", (loops.PARTS, 16, rb, out_c))
        return tiles, nb, keep, (16, _skewed(n * tiles if keep else loops.PARTS * rb, c), c), m

    def _winograd_forward(self, gemm: Any, x: Any, weight: Any, bias: Any, y: Any, key: Key) -> Any:
        out_c, c = int(weight.shape[0]), int(x.shape[3])
        _, nb, keep, v_shape, m = self._winograd_plan(x, out_c)
        u = self.workspace("wino_u", key, (16, c, out_c))
        loops.wino_weights(weight, u)
        v = self.workspace("wino_v", key if keep else "conv", v_shape)
        if bias is None:
            bias = self.workspace("zero_bias", "conv", (out_c,))  # zeros, never written
        self._owned(loops.wino_forward, gemm, x, u, bias, y, v, keep, m, nb)
        return ("winograd", x, v if keep else None)

    def _owned_conv2d_backward(self, gemm: Any, dy: Any, saved: Any, weight: Any, weight_grad: Any, bias_grad: Any,
                               stride: int, padding: int, need_dx: bool, key: Key) -> Any:  # fmt: skip
        method, x = saved[0], saved[1]
        n, c, out_c, k, oh, ow, columns, _ = self._conv_plan(x, weight, stride, padding)
        self._loop_threads()
        dy_rows = dy.reshape(-1, out_c)
        dx = self.workspace("grad", key, tuple(int(s) for s in x.shape)) if need_dx else x  # x: never written
        sums = self.workspace("conv_db", key, (loops.PARTS, out_c), np.float64)
        if method == "first" and not need_dx:
            nb = min(n, self.FIRST_BLOCK)
            cols = self.workspace("conv_cols1", "conv", (loops.PARTS, k * k + 1, nb * oh * ow))
            parts = self.workspace("conv_dw1", key, (loops.PARTS, k * k + 1, out_c))
            self._owned(loops.one_channel_backward, gemm, x.reshape(x.shape[:3]), dy_rows, parts, cols, k, padding, nb)
            total = parts.sum(axis=0)
            np.copyto(weight_grad, total[: k * k].T.reshape(weight_grad.shape))
            if bias_grad is not None:
                bias_grad[...] = total[k * k]
            return None
        if method == "winograd":
            keep = saved[2] is not None
            tiles, nb, _, v_shape, m = self._winograd_plan(x, out_c, keep)
            v = saved[2] if keep else self.workspace("wino_v", "conv", v_shape)
            u = self.workspace("wino_u", key, (16, c, out_c))
            loops.wino_weights(weight, u)
            du = self.workspace("wino_du", key, (loops.PARTS, 16, c, out_c))
            dv = self.workspace("wino_dv", "conv", (loops.PARTS, 16, _skewed(nb * tiles, c), c))
            self._owned(loops.wino_backward, gemm, x, dy, u, v, keep, du, m, dv, dx, need_dx, sums, nb)
            loops.wino_weight_grad(du, weight_grad)
        else:
            nb = max(1, min(n, self.DIRECT_BLOCK_BYTES // (4 * oh * ow * columns)))
            cols = self.workspace("conv_cols", "conv", (loops.PARTS, nb * oh * ow, columns))
            parts = self.workspace("conv_dw", key, (loops.PARTS, columns, out_c))
            args = (parts, cols, dx, need_dx, sums, k, stride, padding, oh, ow, nb)
            self._owned(loops.direct_backward, gemm, x, self._weight_matrix(weight, key), dy_rows, *args)
            np.copyto(weight_grad, parts.sum(axis=0).reshape(k, k, c, out_c).transpose(3, 2, 0, 1))
        if bias_grad is not None:
            bias_grad[...] = sums.sum(axis=0)
        return dx if need_dx else None

    def _weight_matrix(self, weight: Any, key: Key) -> Any:
        """The weights (o, c, i, j) as the GEMM operand ((i, j, c), o), matching the im2col column order."""
        out_c, c, k, _ = (int(s) for s in weight.shape)
        wmat = self.workspace("conv_w", key, (k * k * c, out_c))
        np.copyto(wmat.reshape(k, k, c, out_c), weight.transpose(2, 3, 1, 0))
        return wmat

    def _one_channel_columns(self, x: Any, k: int, padding: int, key: Key) -> Any:
        """The transposed columns (k·k + 1, pixels) of one-channel images (a first layer); the last row is ones, so
        that one product also adds the bias (forward) or sums its gradient (backward)."""
        n, h, w, _ = (int(s) for s in x.shape)
        pixels = n * (h + 2 * padding - k + 1) * (w + 2 * padding - k + 1)
        cols = self.workspace("conv_cols_t", key, (k * k + 1, pixels))
        loops.one_channel_columns(x.reshape(n, h, w), 0, n, k, padding, cols)
        return cols

    def _im2col_conv2d(self, x: Any, weight: Any, bias: Any, stride: int, padding: int, key: Key) -> tuple[Any, Any]:
        n, c, out_c, k, oh, ow, columns, chunk = self._conv_plan(x, weight, stride, padding)
        wmat = self._weight_matrix(weight, key)
        y = self.workspace("out", key, (n, oh, ow, out_c))
        if c == 1 and stride == 1:  # the first layer: one product with the transposed columns, bias included
            extended = self.workspace("conv_w1", key, (k * k + 1, out_c))
            extended[: k * k] = wmat
            extended[k * k] = bias if bias is not None else 0.0
            cols = self._one_channel_columns(x, k, padding, key)
            with span("conv_gemm"):
                np.matmul(cols.T, extended, out=y.reshape(-1, out_c))
            return y, ("im2col", x)
        rows, pixels = y.reshape(-1, out_c), oh * ow
        col = self.workspace("col", "conv", (chunk * pixels, columns))
        for first in range(0, n, chunk):
            last = min(first + chunk, n)
            part = col[: (last - first) * pixels]
            loops.im2col(x[first:last], k, stride, padding, oh, ow, part)
            with span("conv_gemm"):
                np.matmul(part, wmat, out=rows[first * pixels : last * pixels])
        if bias is not None:
            rows += bias
        return y, ("im2col", x)  # the columns are cut out again in the backward, per chunk: cheaper than keeping all

    def _im2col_conv2d_backward(self, dy: Any, x: Any, weight: Any, weight_grad: Any, bias_grad: Any, stride: int,
                                padding: int, need_dx: bool, key: Key) -> Any:  # fmt: skip
        n, c, out_c, k, oh, ow, columns, chunk = self._conv_plan(x, weight, stride, padding)
        pixels, dy_rows = oh * ow, dy.reshape(-1, out_c)
        if c == 1 and stride == 1 and not need_dx:  # the first layer: one product gives dW and db
            dwmat = self.workspace("conv_dw1", key, (columns + 1, out_c))
            cols = self._one_channel_columns(x, k, padding, key)
            with span("conv_gemm"):
                np.matmul(cols, dy_rows, out=dwmat)
            np.copyto(weight_grad, dwmat[:columns].reshape(k, k, c, out_c).transpose(3, 2, 0, 1))
            if bias_grad is not None:
                bias_grad[...] = dwmat[columns]
            return None
        if bias_grad is not None:
            np.sum(dy_rows, axis=0, out=bias_grad)
        wmat = self._weight_matrix(weight, key) if need_dx else None
        dwmat, partial = (
            self.workspace("conv_dw", key, (columns, out_c)),
            self.workspace("conv_dw2", key, (columns, out_c)),
        )
        col = self.workspace("col", "conv", (chunk * pixels, columns))
        dx = self.workspace("grad", key, tuple(int(s) for s in x.shape)) if need_dx else None
        for first in range(0, n, chunk):  # the columns are recomputed per chunk: cheaper than keeping them all
            last = min(first + chunk, n)
            part, grad = col[: (last - first) * pixels], dy_rows[first * pixels : last * pixels]
            loops.im2col(x[first:last], k, stride, padding, oh, ow, part)
            with span("conv_gemm"):
                np.matmul(part.T, grad, out=dwmat if first == 0 else partial)
            if first:
                dwmat += partial
            if need_dx:
                with span("conv_gemm"):
                    np.matmul(grad, wmat.T, out=part)  # the column gradients, in the columns' buffer
                loops.col2im(part, k, stride, padding, oh, ow, dx[first:last])
        np.copyto(weight_grad, dwmat.reshape(k, k, c, out_c).transpose(3, 2, 0, 1))
        return dx

    def max_pool2d(self, x: Any, kernel: int, stride: int, key: Key = None) -> tuple[Any, Any]:
        n, h, w, c = (int(s) for s in x.shape)
        shape = (n, (h - kernel) // stride + 1, (w - kernel) // stride + 1, c)
        y, argmax = self.workspace("out", key, shape), self.workspace("pool_argmax", key, shape, np.uint8)
        loops.max_pool(x, kernel, stride, y, argmax)
        return y, argmax

    def max_pool2d_backward(self, dy: Any, argmax: Any, x_shape: tuple[int, ...], kernel: int, stride: int,
                            key: Key = None) -> Any:  # fmt: skip
        dx = self.workspace("grad", key, tuple(x_shape))
        loops.max_pool_backward(dy, argmax, kernel, stride, dx)
        return dx

    def _bn_statistics(self, m: int, s1: Any, s2: Any, running_mean: Any, running_var: Any, momentum: float,
                       eps: float, training: bool) -> tuple[Any, Any]:  # fmt: skip
        """(mean, inv_std) from the shifted moments (training, moving the running statistics) or the running ones."""
        if training:
            shifted_mean = s1 / m
            var = np.maximum(s2 / m - shifted_mean * shifted_mean, 0.0)
            mean = running_mean + shifted_mean  # float64
            running_mean *= 1.0 - momentum
            running_mean += (momentum * mean).astype(np.float32)
            running_var *= 1.0 - momentum
            running_var += (momentum * m / max(1, m - 1) * var).astype(np.float32)
        else:
            mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
        return mean.astype(np.float32), (1.0 / np.sqrt(var + eps)).astype(np.float32)

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
        y, x_hat, inv_std = self._normalized(x, gamma, beta, running_mean, running_var, momentum, eps, training, key)
        return y, (x_hat, inv_std)

    def batch_norm_relu(
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
        args = (x, gamma, beta, running_mean, running_var, momentum, eps, training, key)
        y, x_hat, inv_std = self._normalized(*args, relu=True)
        return y, ((x_hat, inv_std), y)

    def _normalized(self, x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any, momentum: float,
                    eps: float, training: bool, key: Key, relu: bool = False) -> tuple[Any, Any, Any]:  # fmt: skip
        """(y, x̂, inv_std) of batch norm (and a ReLU), y in place of the layer before it where it shares the key."""
        channels = int(gamma.shape[0])
        rows = x.reshape(-1, channels)  # (pixels or samples, features): both layouts alike
        m = int(rows.shape[0])
        s1, s2 = (
            self.workspace("bn_s1", key, (channels,), np.float64),
            self.workspace("bn_s2", key, (channels,), np.float64),
        )
        self._loop_threads(rows.size)
        if training:
            loops.channel_moments(rows, running_mean, s1, s2, self._partial(key, channels))
        mean, inv_std = self._bn_statistics(m, s1, s2, running_mean, running_var, momentum, eps, training)
        x_hat = self.workspace("bn_xhat", key, tuple(rows.shape))
        y = self.workspace("out", key, tuple(x.shape))
        if y is not x:  # usually it is: batch norm runs in place on the layer before it (one key)
            np.copyto(y, x)
        loops.normalize(loops.PARTS, y.reshape(-1, channels), mean, inv_std, gamma, beta, x_hat, relu)
        return y, x_hat, inv_std

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
        if (kernel, stride) != (2, 2) or h % 2 or w % 2:
            return super().batch_norm_pool_relu(
                x, gamma, beta, running_mean, running_var, momentum, eps, training, kernel, stride, key
            )
        shape = (n, h // 2, w // 2, c)
        s1, s2 = self.workspace("bn_s1", key, (c,), np.float64), self.workspace("bn_s2", key, (c,), np.float64)
        vmax, vmin = self.workspace("bnp_max", key, shape), self.workspace("bnp_min", key, shape)
        imax, imin = self.workspace("bnp_imax", key, shape, np.uint8), self.workspace("bnp_imin", key, shape, np.uint8)
        self._loop_threads(x.size)
        loops.bn_moments_minmax_pool2(x, running_mean, s1, s2, vmax, imax, vmin, imin, self._partial(key, c))
        mean, inv_std = self._bn_statistics(n * h * w, s1, s2, running_mean, running_var, momentum, eps, training)
        scale = gamma * inv_std
        bias = (beta - mean * scale).astype(np.float32)
        y, argmax = self.workspace("out", key, shape), self.workspace("pool_argmax", key, shape, np.uint8)
        x_hat = self.workspace("bnp_xhat", key, shape)
        self._loop_threads(x.size)
        loops.bn_relu_pick(loops.PARTS, vmax, imax, vmin, imin, scale, bias, mean, inv_std, y, argmax, x_hat)
        return y, (x, y, argmax, x_hat, mean, inv_std)

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
        if len(saved) != 6:  # the composite path ran (odd sizes or another window)
            return super().batch_norm_pool_relu_backward(
                dy, saved, gamma, gamma_grad, beta_grad, training, kernel, stride, key
            )
        x, y, argmax, x_hat, mean, inv_std = saved
        dx = self.workspace("grad", key, tuple(x.shape))
        self._loop_threads(x.size)
        args = (x, mean, inv_std, gamma, training, gamma_grad, beta_grad, dx, self._partial(key, int(x.shape[3])))
        loops.bn_pool_relu_backward(dy, y, argmax, x_hat, *args)
        return dx

    def batch_norm_backward(
        self, dy: Any, saved: Any, gamma: Any, gamma_grad: Any, beta_grad: Any, training: bool, key: Key = None
    ) -> Any:
        return self._normalized_backward(dy, saved, None, gamma, gamma_grad, beta_grad, training, key)

    def batch_norm_relu_backward(
        self, dy: Any, saved: Any, gamma: Any, gamma_grad: Any, beta_grad: Any, training: bool, key: Key = None
    ) -> Any:
        normalized, y = saved
        return self._normalized_backward(dy, normalized, y, gamma, gamma_grad, beta_grad, training, key)

    def _normalized_backward(self, dy: Any, saved: Any, y: Any, gamma: Any, gamma_grad: Any, beta_grad: Any,
                             training: bool, key: Key) -> Any:  # fmt: skip
        """The backward of batch norm, through the ReLU first where its output ``y`` is given (two passes)."""
        x_hat, inv_std = saved
        channels = int(gamma.shape[0])
        rows = dy.reshape(-1, channels)
        y_rows = rows if y is None else y.reshape(-1, channels)
        m = int(rows.shape[0])
        sum_dy, sum_dy_xhat = (
            self.workspace("bn_g1", key, (channels,), np.float64),
            self.workspace("bn_g2", key, (channels,), np.float64),
        )
        self._loop_threads(rows.size)
        args = (self._partial(key, channels), y_rows, y is not None)
        loops.normalize_backward_sums(rows, x_hat, sum_dy, sum_dy_xhat, *args)
        beta_grad[...] = sum_dy
        gamma_grad[...] = sum_dy_xhat
        scale = gamma * inv_std
        zero = np.zeros(channels, np.float32)
        mean_dy = (sum_dy / m).astype(np.float32) if training else zero
        mean_dy_xhat = (sum_dy_xhat / m).astype(np.float32) if training else zero
        dx = self.workspace("grad", key, tuple(dy.shape))
        if dx is not dy:
            np.copyto(dx, dy)
        args = (scale, mean_dy, mean_dy_xhat, y_rows, y is not None)
        loops.normalize_backward(loops.PARTS, dx.reshape(-1, channels), x_hat, *args)
        return dx

    # --- losses -------------------------------------------------------------------------------------------------

    def softmax_cross_entropy(
        self, logits: Any, y: Any, label_smoothing: float = 0.0, key: Key = None
    ) -> tuple[Any, Any]:
        n, k = logits.shape
        rows = self._rows(n)
        shifted = self.workspace("ce_shifted", key, (n, k))
        peak = self.workspace("ce_peak", key, (n, 1))
        np.max(logits, axis=1, keepdims=True, out=peak)
        np.subtract(logits, peak, out=shifted)
        picked = shifted[rows, y]  # shifted logit of the true class (n,)
        eps = label_smoothing
        if eps:
            picked = (1.0 - eps) * picked + (eps / k) * np.sum(shifted, axis=1)
        np.exp(shifted, out=shifted)
        total = self.workspace("ce_total", key, (n, 1))
        np.sum(shifted, axis=1, keepdims=True, out=total)
        loss = (np.log(total[:, 0]) - picked).mean()
        np.reciprocal(total, out=total)
        total *= 1.0 / n
        shifted *= total  # softmax / n
        if eps:
            shifted -= eps / (k * n)
        shifted[rows, y] -= (1.0 - eps) / n
        return loss, shifted

    def count_correct(self, logits: Any, y: Any) -> Any:
        return np.asarray(np.count_nonzero(np.argmax(logits, axis=1) == y), dtype=logits.dtype)

    # --- optimizer rules: one compiled pass over the flat buffer --------------------------------------------------

    @compiled
    def sgd_update(self, data: Any, grad: Any, hp: SgdStep) -> None:
        loops.sgd(_flat(data), _flat(grad), hp.lr, *hp.decay_terms())

    @compiled
    def momentum_update(self, data: Any, grad: Any, buf: Any, hp: MomentumStep) -> None:
        loops.momentum(_flat(data), _flat(grad), _flat(buf), hp.lr, hp.momentum, hp.nesterov, *hp.decay_terms())

    @compiled
    def rmsprop_update(self, data: Any, grad: Any, square_avg: Any, hp: RmspropStep) -> None:
        loops.rmsprop(_flat(data), _flat(grad), _flat(square_avg), hp.lr, hp.beta, hp.eps, *hp.decay_terms())

    # Parameters from which Adam's pass is split over the loops' threads. Waking the second thread costs more than
    # it brings below a few million: the MLP 784-5x128-10 (168k parameters) at batch 64 measured Adam at 0.34 ms a
    # step on two threads against 0.06 ms on one (fmnist bench's profiled pass), 1.3 ms steps instead of 0.9.
    OPTIMIZER_PARALLEL_MIN = 2**22

    @compiled
    def adam_update(self, data: Any, grad: Any, m: Any, v: Any, hp: AdamStep) -> None:
        args = (hp.lr, hp.beta1, hp.beta2, hp.eps, *hp.coefficients(), *hp.decay_terms())
        flat = (_flat(data), _flat(grad), _flat(m), _flat(v))
        if loops_hold_cores() and self._loop_threads(data.size, self.OPTIMIZER_PARALLEL_MIN) > 1:
            loops.adam_parts(loops.PARTS, *flat, *args)
        else:
            loops.adam(*flat, *args)

    def clip_grad_norm(self, grads: list[Any], max_norm: float) -> None:
        norm = math.sqrt(sum(float(np.dot(_flat(g), _flat(g))) for g in grads))  # host floats: this is the host
        scale = min(max_norm / (norm + 1e-6), 1.0)
        if scale < 1.0:
            for g in grads:
                g *= np.float32(scale)


def _skewed(rows: int, width: int) -> int:
    """At least ``rows`` rows of ``width`` floats, so many that a plane of them is not within 128 bytes of a
    multiple of 4 KiB: the 16 Winograd planes are read and written as 16 streams at once, and at such strides they
    all map to the same L1 sets and alias in the store buffer (measured 4-6x slower transforms)."""
    while not 128 <= (rows * width * 4) % 4096 <= 4096 - 128:
        rows += 1
    return rows


def _flat(x: Any) -> Any:
    """A 1-D view of a contiguous array (compiled loops take flat buffers)."""
    return x.reshape(-1)
