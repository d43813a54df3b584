"""``NumpyOps``: the CPU's fast versions of the ``Ops`` primitives, same signatures, same formulas.

Where the speed comes from (the README's "Performance" section has the measurements):

- preallocated workspaces per call site (``key``) and shape, so no fresh memory is touched in the step (first
  touch of new pages is slow). A forward chain with one key (affine, then activation) shares one buffer, and so
  does a backward chain (input gradient, dropout, activation derivative): the elementwise steps run in place;
- ``out=`` ufuncs instead of temporaries;
- a fused softmax + cross-entropy gradient;
- single-threaded Numba loops for what NumPy would do in many passes: each optimizer rule in one pass over the
  flat parameter buffer, the counter-based noise, dropout and augmentation. They stay single-threaded so they never
  compete with OpenBLAS for the cores. Without Numba the readable ``Ops`` versions run instead.

Every override is held to its ``Ops`` method by the per-method parity tests.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from fmnist.backend import _numba_loops as loops
from fmnist.backend.buffered_ops import BufferedOps
from fmnist.backend.ops import AdamStep, Key, MomentumStep, RmspropStep, SgdStep, draw_key


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

    def _rows(self, n: int) -> Any:
        """``arange(n)`` as int64, made once per n."""
        rows = self._aranges.get(n)
        if rows is None:
            rows = self._aranges[n] = self.xp.arange(n, dtype=np.int64)
        return rows

    # --- random numbers and data -------------------------------------------------------------------------------

    @compiled
    def uniform(self, shape: tuple[int, ...], seed: int, counter: int) -> Any:
        out = np.empty(shape, dtype=np.float32)
        loops.uniform(out.reshape(-1), *draw_key(seed, counter))
        return out

    def gather_scale(self, images: Any, rows: Any, scale: float, shift: float, key: Key = None) -> Any:
        n, d = int(rows.shape[0]), int(images.shape[1])
        raw = self.workspace("gather", key, (n, d), np.uint8)
        # mode="clip" avoids NumPy's internal buffering of out= with mode="raise" (4-5x slower); rows are valid
        np.take(images, rows, axis=0, out=raw, mode="clip")
        out = self.workspace("features", key, (n, d))
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
        loops.relu_backward(_flat(a), _flat(out))  # one pass, no mask array
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

    def _conv_plan(self, x: Any, weight: Any, stride: int, padding: int) -> tuple[int, ...]:
        n, h, w, c = (int(s) for s in x.shape)
        out_c, _, k, _ = (int(s) for s in weight.shape)
        oh, ow = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
        columns = k * k * c
        chunk = max(1, min(n, self.COL_BUDGET // (4 * oh * ow * columns)))
        return n, c, out_c, k, oh, ow, columns, chunk

    def _weight_matrix(self, weight: Any, key: Key) -> Any:
        """The weights (o, c, i, j) as the GEMM operand ((i, j, c), o), matching the im2col column order."""
        out_c, c, k, _ = (int(s) for s in weight.shape)
        wmat = self.workspace("conv_w", key, (k * k * c, out_c))
        np.copyto(wmat.reshape(k, k, c, out_c), weight.transpose(2, 3, 1, 0))
        return wmat

    def _one_channel_columns(self, x: Any, k: int, padding: int, key: Key) -> Any:
        """The transposed columns (k·k + 1, pixels) of one-channel images (a first layer), contiguous copies; the
        last row is ones, so that one product also adds the bias (forward) or sums its gradient (backward)."""
        n, h, w, _ = (int(s) for s in x.shape)
        padded = self.workspace("conv_pad", key, (n, h + 2 * padding, w + 2 * padding))  # borders stay zero
        padded[:, padding : padding + h, padding : padding + w] = x[..., 0]
        pixels = n * (h + 2 * padding - k + 1) * (w + 2 * padding - k + 1)
        cols = self.workspace("conv_cols_t", key, (k * k + 1, pixels))
        loops.im2col_one_channel(padded, k, cols)
        cols[k * k] = 1.0
        return cols

    def conv2d(
        self, x: Any, weight: Any, bias: Any, stride: int = 1, padding: int = 0, key: Key = None
    ) -> tuple[Any, Any]:
        n, c, out_c, k, oh, ow, columns, chunk = self._conv_plan(x, weight, stride, padding)
        wmat = self._weight_matrix(weight, key)
        y = self.workspace("out", key, (n, oh, ow, out_c))
        if c == 1 and stride == 1:  # the first layer: one product with the transposed columns, bias included
            extended = self.workspace("conv_w1", key, (k * k + 1, out_c))
            extended[: k * k] = wmat
            extended[k * k] = bias if bias is not None else 0.0
            np.matmul(self._one_channel_columns(x, k, padding, key).T, extended, out=y.reshape(-1, out_c))
            return y, x
        rows, pixels = y.reshape(-1, out_c), oh * ow
        col = self.workspace("col", "conv", (chunk * pixels, columns))
        for first in range(0, n, chunk):
            last = min(first + chunk, n)
            part = col[: (last - first) * pixels]
            loops.im2col(x[first:last], k, stride, padding, oh, ow, part)
            np.matmul(part, wmat, out=rows[first * pixels : last * pixels])
        if bias is not None:
            rows += bias
        return y, x  # the columns are cut out again in the backward, per chunk: cheaper than keeping them all

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
        x = saved
        n, c, out_c, k, oh, ow, columns, chunk = self._conv_plan(x, weight, stride, padding)
        pixels, dy_rows = oh * ow, dy.reshape(-1, out_c)
        if c == 1 and stride == 1 and not need_dx:  # the first layer: one product gives dW and db
            dwmat = self.workspace("conv_dw1", key, (columns + 1, out_c))
            np.matmul(self._one_channel_columns(x, k, padding, key), dy_rows, out=dwmat)
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
            np.matmul(part.T, grad, out=dwmat if first == 0 else partial)
            if first:
                dwmat += partial
            if need_dx:
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
        channels = int(gamma.shape[0])
        rows = x.reshape(-1, channels)  # (pixels or samples, features): both layouts alike
        m = int(rows.shape[0])
        s1, s2 = (
            self.workspace("bn_s1", key, (channels,), np.float64),
            self.workspace("bn_s2", key, (channels,), np.float64),
        )
        if training:
            loops.channel_moments(rows, running_mean, s1, s2)
        mean, inv_std = self._bn_statistics(m, s1, s2, running_mean, running_var, momentum, eps, training)
        x_hat = self.workspace("bn_xhat", key, tuple(rows.shape))
        y = self.workspace("out", key, tuple(x.shape))
        if y is not x:  # usually it is: batch norm runs in place on the layer before it (one key)
            np.copyto(y, x)
        loops.normalize(y.reshape(-1, channels), mean, inv_std, gamma, beta, x_hat)
        return y, (x_hat, inv_std)

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
        loops.bn_moments_minmax_pool2(x, running_mean, s1, s2, vmax, imax, vmin, imin)  # one read of x
        mean, inv_std = self._bn_statistics(n * h * w, s1, s2, running_mean, running_var, momentum, eps, training)
        scale = gamma * inv_std
        bias = (beta - mean * scale).astype(np.float32)
        y, argmax = self.workspace("out", key, shape), self.workspace("pool_argmax", key, shape, np.uint8)
        x_hat = self.workspace("bnp_xhat", key, shape)
        loops.bn_relu_pick(vmax, imax, vmin, imin, scale, bias, mean, inv_std, y, argmax, x_hat)
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
        loops.bn_pool_relu_backward(dy, y, argmax, x_hat, x, mean, inv_std, gamma, training, gamma_grad, beta_grad, dx)
        return dx

    def batch_norm_backward(
        self, dy: Any, saved: Any, gamma: Any, gamma_grad: Any, beta_grad: Any, training: bool, key: Key = None
    ) -> Any:
        x_hat, inv_std = saved
        channels = int(gamma.shape[0])
        rows = dy.reshape(-1, channels)
        m = int(rows.shape[0])
        sum_dy, sum_dy_xhat = (
            self.workspace("bn_g1", key, (channels,), np.float64),
            self.workspace("bn_g2", key, (channels,), np.float64),
        )
        loops.normalize_backward_sums(rows, x_hat, sum_dy, sum_dy_xhat)
        beta_grad[...] = sum_dy
        gamma_grad[...] = sum_dy_xhat
        scale = gamma * inv_std
        zero = np.zeros(channels, np.float32)
        mean_dy = (sum_dy / m).astype(np.float32) if training else zero
        mean_dy_xhat = (sum_dy_xhat / m).astype(np.float32) if training else zero
        dx = self.workspace("grad", key, tuple(dy.shape))
        if dx is not dy:
            np.copyto(dx, dy)
        loops.normalize_backward(dx.reshape(-1, channels), x_hat, scale, mean_dy, mean_dy_xhat)
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

    @compiled
    def adam_update(self, data: Any, grad: Any, m: Any, v: Any, hp: AdamStep) -> None:
        args = (hp.lr, hp.beta1, hp.beta2, hp.eps, *hp.coefficients(), *hp.decay_terms())
        loops.adam(_flat(data), _flat(grad), _flat(m), _flat(v), *args)

    def clip_grad_norm(self, grads: list[Any], max_norm: float) -> None:
        norm = math.sqrt(sum(float(np.dot(_flat(g), _flat(g))) for g in grads))  # host floats: this is the host
        scale = min(max_norm / (norm + 1e-6), 1.0)
        if scale < 1.0:
            for g in grads:
                g *= np.float32(scale)


def _flat(x: Any) -> Any:
    """A 1-D view of a contiguous array (compiled loops take flat buffers)."""
    return x.reshape(-1)
