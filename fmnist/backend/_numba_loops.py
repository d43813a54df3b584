"""Compiled loops behind ``NumpyOps`` (Numba, cached on disk). ``numba`` is ``None`` here when Numba is not
installed; ``NumpyOps`` then runs the readable ``Ops`` versions.

Each loop is the formula of its ``Ops`` method written element by element, in float32, in one pass.
``error_model="numpy"`` drops Python's zero-division checks, which would keep LLVM from vectorising the loops.

Threads. The serial loops (``_jit``) run on the calling thread. The parallel ones (``_pjit``) split their work into
a fixed number of parts (blocks of images, or of rows: ``PARTS``, from the machine's cores, handed in as an argument
or as the leading size of their per-part scratch) and run the parts on Numba's threads of the calling thread, which
``NumpyOps`` sets from ``fmnist.backend.threads`` (1 unless BLAS has handed the cores over; set from Python: a kernel
that sets them itself cannot be cached). A part's work and the order in which per-part partial sums are added never
depend on the thread count, so the results are bit for bit the same on 1 thread or several. The convolution kernels
also take NumPy's ``cblas_sgemm`` (``blas.sgemm()``) as an argument (not a global, so that Numba can cache them) and
call it, single-threaded, from each part; in ``fmnist bench``'s profiled pass they also time those calls with libc's
clock, passed the same way (``clock``). Inside a part, a flat loop runs over a slice from index 0: an index loop from
a computed start does not vectorise (Numba cannot prove the index non-negative), and a data-dependent branch in it
then cost 50x.

The optimizer loops store their state (momentum, moving averages) and the parameters flushed to zero below the
smallest normal float32, as GPUs do with flush-to-zero. Without it, a parameter whose gradient stays 0 (a dead
ReLU unit) keeps a momentum that decays into the subnormal range and sticks at the smallest subnormal (0.9 · 1.4e-45
rounds back up): every later step then takes the CPU's subnormal slow path for it, which was measured to make Adam
7x slower (0.58 ms instead of 0.08 ms over 168k parameters) an epoch into training; and a network that learns
nothing drifts its weights there (Intel CPUs without flush-to-zero run 10x slower on them). The readable ``Ops``
flushes the parameters too; the state's difference to it is below 1.2e-38 in absolute value.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any

import numpy as np

from fmnist.backend.threads import configure_numba, machine_parts

try:
    import numba
    from numba import prange
except ImportError:  # pragma: no cover - numba is a dependency; this keeps a broken install usable
    numba = None
    prange = range

if numba is not None:
    configure_numba()

PARTS = machine_parts()  # the parts of every parallel loop (see above): the results never depend on the thread count


def _jit(function):  # type: ignore[no-untyped-def]
    if numba is None:  # pragma: no cover
        return function
    return numba.njit(cache=True, nogil=True, error_model="numpy")(function)


def _pjit(function):  # type: ignore[no-untyped-def]
    if numba is None:  # pragma: no cover
        return function
    return numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)(function)


_M32 = np.uint64(0xFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B9)
_MIX1 = np.uint64(0x85EBCA6B)
_MIX2 = np.uint64(0xC2B2AE35)
_S8, _S13, _S16 = np.uint64(8), np.uint64(13), np.uint64(16)
_TWO_TO_MINUS_24 = np.float32(2.0**-24)
_TINY = np.float32(np.finfo(np.float32).tiny)  # the smallest normal float32
_ZERO = np.float32(0.0)


@_jit
def _span(total, part, parts):  # pragma: no cover - compiled
    """The range [first, last) of part ``part`` of ``total`` items split into ``parts`` contiguous parts."""
    step = (total + parts - 1) // parts
    return min(total, part * step), min(total, part * step + step)


@_jit
def _normal(x):  # x, or 0 when x is subnormal (NaN stays NaN): see the optimizer loops
    return _ZERO if abs(x) < _TINY else x


@_jit
def _fmix32(x):  # x: uint64 holding 32 bits; multiplications masked back to 32 bits
    x ^= x >> _S16
    x = (x * _MIX1) & _M32
    x ^= x >> _S13
    x = (x * _MIX2) & _M32
    return x ^ (x >> _S16)


@_jit
def _unit(i, k0, k1):  # the i-th U[0, 1) float32 of the draw keyed (k0, k1), as in Ops.uniform
    x = (np.uint64(i) * _GOLDEN + k0) & _M32
    x = _fmix32(_fmix32(x) ^ k1)
    return np.float32(x >> _S8) * _TWO_TO_MINUS_24


@_jit
def uniform(out, k0, k1):  # pragma: no cover - compiled
    a, b = np.uint64(k0), np.uint64(k1)
    for i in range(out.size):
        out[i] = _unit(i, a, b)


@_jit
def dropout(x, out, mask, k0, k1, p, scale):  # pragma: no cover - compiled
    a, b = np.uint64(k0), np.uint64(k1)
    p32, s32, zero = np.float32(p), np.float32(scale), np.float32(0.0)
    for i in range(x.size):
        m = s32 if _unit(i, a, b) >= p32 else zero
        mask[i] = m
        out[i] = x[i] * m


@_jit
def shift_flip(x, out, u, k, flip, side, fill):  # pragma: no cover - compiled
    """Each image copied first (so that ``out`` may be ``x`` itself: a key chain passes its own result), then
    written mirrored and shifted, ``fill`` coming in at the border."""
    n = x.shape[0]
    span = np.float32(2 * k + 1)
    image = np.empty(side * side, x.dtype)
    for i in range(n):
        mirror = flip and u[i, 0] < np.float32(0.5)
        dy = min(int(np.floor(u[i, 1] * span)), 2 * k) - k
        dx = min(int(np.floor(u[i, 2] * span)), 2 * k) - k
        image[:] = x[i]
        for r in range(side):
            sr = r + dy
            for c in range(side):
                sc = c + dx
                if 0 <= sr < side and 0 <= sc < side:
                    out[i, r * side + c] = image[sr * side + (side - 1 - sc if mirror else sc)]
                else:
                    out[i, r * side + c] = fill


@_jit
def sgd(data, grad, lr, l2, shrink):  # pragma: no cover - compiled
    lr, l2, shrink = np.float32(lr), np.float32(l2), np.float32(shrink)
    for i in range(data.size):
        d = data[i]
        data[i] = _normal(d * shrink - lr * (grad[i] + l2 * d))


@_jit
def momentum(data, grad, buf, lr, mu, nesterov, l2, shrink):  # pragma: no cover - compiled
    lr, mu, l2, shrink = np.float32(lr), np.float32(mu), np.float32(l2), np.float32(shrink)
    for i in range(data.size):
        d = data[i]
        g = grad[i] + l2 * d
        b = _normal(mu * buf[i] + g)
        buf[i] = b
        data[i] = _normal(d * shrink - lr * (g + mu * b if nesterov else b))


@_jit
def rmsprop(data, grad, square_avg, lr, beta, eps, l2, shrink):  # pragma: no cover - compiled
    lr, rho, eps, l2, shrink = np.float32(lr), np.float32(beta), np.float32(eps), np.float32(l2), np.float32(shrink)
    one_minus_rho = np.float32(1.0) - rho
    for i in range(data.size):
        d = data[i]
        g = grad[i] + l2 * d
        v = _normal(rho * square_avg[i] + one_minus_rho * g * g)
        square_avg[i] = v
        data[i] = _normal(d * shrink - lr * g / (np.sqrt(v) + eps))


@_jit
def adam(data, grad, m, v, lr, beta1, beta2, eps, c_m, c_g, c_v, l2, shrink):  # pragma: no cover - compiled
    f = np.float32
    lr, b1, b2, eps, l2, shrink = f(lr), f(beta1), f(beta2), f(eps), f(l2), f(shrink)
    a1, a2, c_m, c_g, c_v = f(1.0) - b1, f(1.0) - b2, f(c_m), f(c_g), f(c_v)
    for i in range(data.size):
        d = data[i]
        g = grad[i] + l2 * d
        mi = _normal(b1 * m[i] + a1 * g)
        vi = _normal(b2 * v[i] + a2 * g * g)
        m[i] = mi
        v[i] = vi
        data[i] = _normal(d * shrink - lr * (c_m * mi + c_g * g) / (np.sqrt(vi) * c_v + eps))


@_pjit
def adam_parts(parts, data, grad, m, v, lr, beta1, beta2, eps, c_m, c_g, c_v, l2, shrink):  # pragma: no cover
    """``adam`` over ``parts`` slices of the flat buffers, on the loops' threads (elementwise: the same bits on any
    thread count)."""
    for part in prange(parts):
        first, last = _span(data.size, part, parts)
        adam(data[first:last], grad[first:last], m[first:last], v[first:last], lr, beta1, beta2, eps, c_m, c_g, c_v,
             l2, shrink)  # fmt: skip


# --- images, channels last (NHWC): the loops behind NumpyOps' convolution, pooling and batch norm -------------


@_jit
def _im2col_image(x, image, k, stride, pad, oh, ow, col, row0):  # pragma: no cover - compiled
    """Rows row0 ... of col: col[row0 + p·ow + q, (i, j, c)] = x[image, p·s - pad + i, q·s - pad + j, c], 0
    outside the image."""
    h, w, c_in = x.shape[1], x.shape[2], x.shape[3]
    for p in range(oh):
        for q in range(ow):
            r = row0 + p * ow + q
            for i in range(k):
                hi = p * stride - pad + i
                for j in range(k):
                    wi = q * stride - pad + j
                    base = (i * k + j) * c_in
                    if 0 <= hi < h and 0 <= wi < w:
                        for c in range(c_in):
                            col[r, base + c] = x[image, hi, wi, c]
                    else:
                        for c in range(c_in):
                            col[r, base + c] = 0.0


@_jit
def _col2im_image(dcol, row0, k, stride, pad, oh, ow, dx, image):  # pragma: no cover - compiled
    """The adjoint of ``_im2col_image``: dx[image] = Σ of the column entries that were copied from each pixel."""
    h, w, c_in = dx.shape[1], dx.shape[2], dx.shape[3]
    dx[image] = 0.0
    for p in range(oh):
        for q in range(ow):
            r = row0 + p * ow + q
            for i in range(k):
                hi = p * stride - pad + i
                if hi < 0 or hi >= h:
                    continue
                for j in range(k):
                    wi = q * stride - pad + j
                    if wi < 0 or wi >= w:
                        continue
                    base = (i * k + j) * c_in
                    for c in range(c_in):
                        dx[image, hi, wi, c] += dcol[r, base + c]


@_jit
def im2col(x, k, stride, pad, oh, ow, col):  # pragma: no cover - compiled
    """col[(n, p, q), (i, j, c)] = x[n, p·s - pad + i, q·s - pad + j, c], 0 outside the image."""
    for n in range(x.shape[0]):
        _im2col_image(x, n, k, stride, pad, oh, ow, col, n * oh * ow)


@_jit
def col2im(dcol, k, stride, pad, oh, ow, dx):  # pragma: no cover - compiled
    """The adjoint of im2col: dx[n, hi, wi, c] = Σ of the column entries that were copied from it."""
    for n in range(dx.shape[0]):
        _col2im_image(dcol, n * oh * ow, k, stride, pad, oh, ow, dx, n)


@_jit
def max_pool(x, k, stride, y, argmax):  # pragma: no cover - compiled
    """y[n, p, q, c] = max over the k×k window at (p·s, q·s); argmax its row-major index (the first on ties)."""
    n_images, oh, ow, channels = y.shape
    for n in range(n_images):
        for p in range(oh):
            for q in range(ow):
                for c in range(channels):
                    y[n, p, q, c] = x[n, p * stride, q * stride, c]
                    argmax[n, p, q, c] = 0
                for t in range(1, k * k):
                    i, j = t // k, t % k
                    for c in range(channels):
                        v = x[n, p * stride + i, q * stride + j, c]
                        if v > y[n, p, q, c]:
                            y[n, p, q, c] = v
                            argmax[n, p, q, c] = t


@_jit
def max_pool_backward(dy, argmax, k, stride, dx):  # pragma: no cover - compiled
    """dx = 0 but for each window's maximum, which receives the window's gradient (summed where windows overlap)."""
    n_images, oh, ow, channels = dy.shape
    if k == stride and dx.shape[1] == oh * k and dx.shape[2] == ow * k:  # windows tile the image: one write each
        for n in range(n_images):
            for p in range(oh):
                for q in range(ow):
                    for t in range(k * k):
                        row, column = p * k + t // k, q * k + t % k
                        for c in range(channels):
                            dx[n, row, column, c] = dy[n, p, q, c] if argmax[n, p, q, c] == t else 0.0
        return
    dx[:] = 0.0
    for n in range(n_images):
        for p in range(oh):
            for q in range(ow):
                for c in range(channels):
                    t = argmax[n, p, q, c]
                    dx[n, p * stride + t // k, q * stride + t % k, c] += dy[n, p, q, c]


@_pjit
def channel_moments(x, shift, s1, s2, partial):  # pragma: no cover - compiled
    """Per column c of x (m, C): Σ (x - shift[c]) and Σ (x - shift[c])² in float64 (shifted for accuracy); the
    parts' partial sums (partial: (parts, 2, C)) added in part order."""
    parts = partial.shape[0]
    m, channels = x.shape
    for part in prange(parts):
        first, last = _span(m, part, parts)
        partial[part] = 0.0
        for r in range(first, last):
            for c in range(channels):
                d = np.float64(x[r, c] - shift[c])
                partial[part, 0, c] += d
                partial[part, 1, c] += d * d
    _add_parts(partial, s1, s2)


@_jit
def _add_parts(partial, first, second):  # pragma: no cover - compiled
    first[:] = partial[0, 0]
    second[:] = partial[0, 1]
    for part in range(1, partial.shape[0]):
        first += partial[part, 0]
        second += partial[part, 1]


# The normalisation steps run in place (the output is the input argument itself): with a separate output array that
# may alias the input, LLVM cannot vectorise the loop, which measured 1.6x slower.


@_pjit
def normalize(parts, x, mean, inv_std, gamma, beta, x_hat, relu):  # pragma: no cover - compiled
    """x̂ = (x - μ)·inv_std, then x ← γ·x̂ + β per column (in place), and max(·, 0) of that with ``relu``."""
    m, channels = x.shape
    zero = np.float32(0.0)
    for part in prange(parts):
        first, last = _span(m, part, parts)
        for r in range(first, last):
            for c in range(channels):
                x_hat[r, c] = (x[r, c] - mean[c]) * inv_std[c]
            if relu:
                for c in range(channels):
                    x[r, c] = max(gamma[c] * x_hat[r, c] + beta[c], zero)
            else:
                for c in range(channels):
                    x[r, c] = gamma[c] * x_hat[r, c] + beta[c]


@_pjit
def normalize_backward_sums(dy, x_hat, sum_dy, sum_dy_xhat, partial, y, relu):  # pragma: no cover - compiled
    """Per column Σ g and Σ g·x̂ (float64), g = dy, or with ``relu`` dy where the output y > 0 (else 0)."""
    parts = partial.shape[0]
    m, channels = dy.shape
    zero = np.float32(0.0)
    for part in prange(parts):
        first, last = _span(m, part, parts)
        partial[part] = 0.0
        for r in range(first, last):
            for c in range(channels):
                g = np.float64(dy[r, c] if not relu or y[r, c] > zero else zero)
                partial[part, 0, c] += g
                partial[part, 1, c] += g * x_hat[r, c]
    _add_parts(partial, sum_dy, sum_dy_xhat)


@_pjit
def normalize_backward(parts, dy, x_hat, scale, mean_dy, mean_dy_xhat, y, relu):  # pragma: no cover - compiled
    """dy ← scale·(g - mean(g) - x̂·mean(g·x̂)) per column (in place), g = dy, or with ``relu`` dy where y > 0."""
    m, channels = dy.shape
    zero = np.float32(0.0)
    for part in prange(parts):
        first, last = _span(m, part, parts)
        for r in range(first, last):
            for c in range(channels):
                g = dy[r, c] if not relu or y[r, c] > zero else zero
                dy[r, c] = scale[c] * (g - mean_dy[c] - x_hat[r, c] * mean_dy_xhat[c])


@_jit
def _relu_backward(a, dy):  # pragma: no cover - compiled
    for i in range(dy.size):
        dy[i] = dy[i] if a[i] > 0.0 else 0.0


@_jit
def _relu(z):  # pragma: no cover - compiled
    zero = np.float32(0.0)
    for i in range(z.size):
        z[i] = max(z[i], zero)


@_pjit
def relu_backward(parts, a, dy):  # pragma: no cover - compiled
    """dy ← dy where a > 0, else 0 (in place, flat arrays)."""
    for part in prange(parts):
        first, last = _span(dy.size, part, parts)
        _relu_backward(a[first:last], dy[first:last])


@_pjit
def relu(parts, z):  # pragma: no cover - compiled
    """z ← max(z, 0) (in place, flat)."""
    for part in prange(parts):
        first, last = _span(z.size, part, parts)
        _relu(z[first:last])


@_pjit
def bn_moments_minmax_pool2(x, shift, s1, s2, vmax, imax, vmin, imin, partial):  # pragma: no cover - compiled
    """One read of x (n, h, w, c) (h, w even): per channel Σ (x - shift) and Σ (x - shift)² in float64 (the parts'
    partial sums, added in part order), and per 2x2 window the max and min with their positions 0..3 (the first on
    ties). The taps are compared in registers and each output stored once, so the channel loop vectorises (stores
    inside branches kept it scalar, 15x slower)."""
    parts = partial.shape[0]
    n_images, h, w, channels = x.shape
    for part in prange(parts):
        begin, end = _span(n_images, part, parts)
        partial[part] = 0.0
        for n in range(begin, end):
            for p in range(h // 2):
                for q in range(w // 2):
                    for c in range(channels):
                        v0, v1 = x[n, 2 * p, 2 * q, c], x[n, 2 * p, 2 * q + 1, c]
                        v2, v3 = x[n, 2 * p + 1, 2 * q, c], x[n, 2 * p + 1, 2 * q + 1, c]
                        high, at_high, low, at_low = v0, 0, v0, 0
                        if v1 > high:
                            high, at_high = v1, 1
                        if v2 > high:
                            high, at_high = v2, 2
                        if v3 > high:
                            high, at_high = v3, 3
                        if v1 < low:
                            low, at_low = v1, 1
                        if v2 < low:
                            low, at_low = v2, 2
                        if v3 < low:
                            low, at_low = v3, 3
                        vmax[n, p, q, c], imax[n, p, q, c] = high, at_high
                        vmin[n, p, q, c], imin[n, p, q, c] = low, at_low
                        r = shift[c]
                        d0, d1, d2, d3 = v0 - r, v1 - r, v2 - r, v3 - r
                        partial[part, 0, c] += np.float64(d0 + d1 + d2 + d3)
                        partial[part, 1, c] += np.float64(d0 * d0 + d1 * d1 + d2 * d2 + d3 * d3)
    _add_parts(partial, s1, s2)


@_pjit
def bn_relu_pick(parts, vmax, imax, vmin, imin, scale, bias, mean, inv_std, y, argmax, x_hat):  # pragma: no cover
    """relu(scale·v + bias) per pooled position, v the window's max where scale ≥ 0 and its min where scale < 0
    (batch norm is a per-channel affine map, so the max of its outputs sits where the input is largest or
    smallest); keeps the winning tap and x̂ there for the backward."""
    n_images, oh, ow, channels = vmax.shape
    zero = np.float32(0.0)
    for part in prange(parts):
        begin, end = _span(n_images, part, parts)
        for n in range(begin, end):
            for p in range(oh):
                for q in range(ow):
                    for c in range(channels):
                        up = scale[c] >= zero
                        v = vmax[n, p, q, c] if up else vmin[n, p, q, c]
                        argmax[n, p, q, c] = imax[n, p, q, c] if up else imin[n, p, q, c]
                        y[n, p, q, c] = max(scale[c] * v + bias[c], zero)
                        x_hat[n, p, q, c] = (v - mean[c]) * inv_std[c]


@_pjit
def _pool_relu_sums(dy, y, x_hat, partial):  # pragma: no cover - compiled
    """Per channel Σ g and Σ g·x̂ over the pooled grid (g = dy where y > 0), the parts' partial sums in order."""
    parts = partial.shape[0]
    n_images, oh, ow, channels = dy.shape
    zero = np.float32(0.0)
    for part in prange(parts):
        begin, end = _span(n_images, part, parts)
        partial[part] = 0.0
        for n in range(begin, end):
            for p in range(oh):
                for q in range(ow):
                    for c in range(channels):
                        g = dy[n, p, q, c] if y[n, p, q, c] > zero else zero
                        partial[part, 0, c] += g
                        partial[part, 1, c] += g * x_hat[n, p, q, c]


@_pjit
def _bn_pool_relu_dx(parts, dy, y, argmax, x, a, b, s, dx):  # pragma: no cover - compiled
    n_images, h, w, channels = x.shape
    zero = np.float32(0.0)
    for part in prange(parts):
        begin, end = _span(n_images, part, parts)
        for n in range(begin, end):
            for row in range(h):
                p = row >> 1
                for column in range(w):
                    q = column >> 1
                    tap = np.uint8(2 * (row & 1) + (column & 1))
                    for c in range(channels):
                        r = a[c] * x[n, row, column, c] + b[c]
                        if argmax[n, p, q, c] == tap and y[n, p, q, c] > zero:
                            r += s[c] * dy[n, p, q, c]
                        dx[n, row, column, c] = r


@_jit
def bn_pool_relu_backward(dy, y, argmax, x_hat, x, mean, inv_std, gamma, training, gamma_grad, beta_grad, dx, partial):
    """The backward of relu(max_pool2(batch_norm(x))) without gathers. Pass 1 over the pooled grid: g = dy where
    y > 0, Σ g and Σ g·x̂ (x̂ at the winning tap); pass 2 over the full grid, row by row so that the tap
    2·(h & 1) + (w & 1) is constant in the channel loop: dx = a·x + b + [tap wins]·s·g, with s = γ/σ and, in
    training, a = -s/σ·mean(g x̂), b = -s·mean(g) + s/σ·μ·mean(g x̂) (evaluation: a = b = 0)."""
    n_images, h, w, channels = x.shape
    m = n_images * h * w
    _pool_relu_sums(dy, y, x_hat, partial)
    sum_g = np.zeros(channels, np.float64)
    sum_gx = np.zeros(channels, np.float64)
    _add_parts(partial, sum_g, sum_gx)
    a = np.zeros(channels, np.float32)
    b = np.zeros(channels, np.float32)
    s = np.empty(channels, np.float32)
    for c in range(channels):
        beta_grad[c] = sum_g[c]
        gamma_grad[c] = sum_gx[c]
        s[c] = gamma[c] * inv_std[c]
        if training:
            a[c] = -s[c] * inv_std[c] * sum_gx[c] / m
            b[c] = -s[c] * sum_g[c] / m + s[c] * inv_std[c] * mean[c] * sum_gx[c] / m
    _bn_pool_relu_dx(partial.shape[0], dy, y, argmax, x, a, b, s, dx)


# --- the MLP's elementwise steps fused around its GEMMs ----------------------------------------------------------


@_jit
def gather_scale(images, rows, scale, shift, out):  # pragma: no cover - compiled
    """out[r] = images[rows[r]]·scale + shift in float32: the batch gathered and converted in one pass."""
    s, b = np.float32(scale), np.float32(shift)
    for r in range(rows.shape[0]):
        src = rows[r]
        for c in range(images.shape[1]):
            out[r, c] = np.float32(images[src, c]) * s + b


@_jit
def bias_relu(z, bias):  # pragma: no cover - compiled
    """z ← max(z + bias, 0) per row (in place): a linear layer's bias and its ReLU in one pass."""
    n, m = z.shape
    zero = np.float32(0.0)
    for r in range(n):
        for c in range(m):
            z[r, c] = max(z[r, c] + bias[c], zero)


@_jit
def relu_backward_sums(a, da, dz, sums):  # pragma: no cover - compiled
    """dz = da where a > 0, else 0, and sums[c] = Σ_r dz[r, c] (float64): a ReLU's derivative and the bias
    gradient of the linear layer below it in one pass."""
    n, m = a.shape
    zero = np.float32(0.0)
    sums[:] = 0.0
    for r in range(n):
        for c in range(m):
            g = da[r, c] if a[r, c] > zero else zero
            dz[r, c] = g
            sums[c] += g


# --- convolutions that own the cores ------------------------------------------------------------------------------
# Each part takes its blocks of images in turn (blocks part, part + parts, ...), transforms a block into its own
# scratch and calls the single-threaded sgemm on it, so that everything of a block stays in cache. Weight (and bias)
# gradients are per-part partial sums (parts with no block write zeros), added in part order by the caller.

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_F0, _F1 = np.float32(0.0), np.float32(1.0)

# The kernels' own clock, for ``fmnist bench``'s profiled pass: a part cannot hand its GEMMs to a Python span (they
# run between its data movement, on the loops' threads), so each kernel takes ``clock, timed, spent`` last and, only
# where ``timed``, reads the clock around its sgemm calls and around the whole part: spent[part, 0] += seconds in
# sgemm, spent[part, 1] += seconds the part ran (``NumpyOps`` turns the two into the GEMMs' share of the call).
# Untimed (training) no clock is read: a branch on a flag per group of GEMMs. The clock is libc's clock_gettime
# (vDSO: about 20 ns), passed as an argument like ``gemm``: a ctypes function in a global would be compiled in as an
# address, which Numba's on-disk cache cannot load again (``ModuleNotFoundError: No module named '<dynamic>'``).
_MONOTONIC = getattr(time, "CLOCK_MONOTONIC", 1)  # a plain int: compiled in as a constant (1 on Linux, 6 on macOS)
_CLOCK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)  # int clock_gettime(id, timespec*)
_clock: list[tuple[Any, bool]] = []  # (function, usable), looked up once


def clock() -> tuple[Any, bool]:
    """(the clock the convolution kernels take, whether it can time them): libc's ``clock_gettime`` where it is found
    and reads what ``time.clock_gettime(CLOCK_MONOTONIC)`` does (Linux, macOS); elsewhere a do-nothing function of
    the same signature (the kernels need an argument of that type) and False: the convolutions are not split."""
    if not _clock:
        _clock.append(_find_clock())
    return _clock[0]


def _find_clock() -> tuple[Any, bool]:
    idle = _CLOCK_TYPE(lambda clock_id, stamp: 0)
    try:
        function = ctypes.CDLL(None).clock_gettime  # the process's own libc (dlopen(NULL))
        function.restype, function.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_void_p]
        stamp = np.zeros(2, np.int64)  # struct timespec: 64-bit seconds and nanoseconds (LP64)
        before = time.clock_gettime(_MONOTONIC)
        status = function(_MONOTONIC, stamp.ctypes.data)
        after = time.clock_gettime(_MONOTONIC)
    except (AttributeError, OSError, TypeError):  # no libc or no clock_gettime here (Windows)
        return idle, False
    read = float(stamp[0]) + 1e-9 * float(stamp[1])
    if status != 0 or not before - 1e-3 <= read <= after + 1e-3:  # another struct layout: not this clock
        return idle, False
    return function, True


@_jit
def _now(clock):  # pragma: no cover - compiled
    """The monotonic clock in seconds (a float64 keeps nanoseconds for 100 days of uptime)."""
    stamp = np.empty(2, np.int64)
    clock(_MONOTONIC, stamp.ctypes.data)
    return stamp[0] + 1e-9 * stamp[1]


@_jit
def _tick(clock, timed):  # pragma: no cover - compiled
    """The clock where ``timed``, else 0 without reading it."""
    return _now(clock) if timed else 0.0


@_jit
def _tock(clock, timed, start, spent, part, column):  # pragma: no cover - compiled
    """spent[part, column] += the seconds since ``start`` (``_tick``), where ``timed``."""
    if timed:
        spent[part, column] += _now(clock) - start


@_jit
def _wino_input(x, image, v, row0, d):  # pragma: no cover - compiled
    """Winograd F(2x2, 3x3) input transform of one image: V[ξν, row0 + tile, c] = (Bᵀ d B)[ξ, ν] for each 4x4
    input tile d (rows 2ti-1 ... 2ti+2, columns 2tj-1 ... 2tj+2, zero outside the image), with
    Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]; d (4, 4, c) is scratch."""
    h, w, c_in = x.shape[1], x.shape[2], x.shape[3]
    tw = w // 2
    for ti in range(h // 2):
        for tj in range(tw):
            t = row0 + ti * tw + tj
            for a in range(4):
                hi = 2 * ti - 1 + a
                for b in range(4):
                    wi = 2 * tj - 1 + b
                    if 0 <= hi < h and 0 <= wi < w:
                        for c in range(c_in):
                            d[a, b, c] = x[image, hi, wi, c]
                    else:
                        for c in range(c_in):
                            d[a, b, c] = 0.0
            for b in range(4):  # Bᵀ d (the channel loop innermost: it vectorises)
                for c in range(c_in):
                    d0, d1, d2, d3 = d[0, b, c], d[1, b, c], d[2, b, c], d[3, b, c]
                    d[0, b, c] = d0 - d2
                    d[1, b, c] = d1 + d2
                    d[2, b, c] = d2 - d1
                    d[3, b, c] = d1 - d3
            for a in range(4):  # (Bᵀ d) B
                for c in range(c_in):
                    e0, e1, e2, e3 = d[a, 0, c], d[a, 1, c], d[a, 2, c], d[a, 3, c]
                    v[a * 4 + 0, t, c] = e0 - e2
                    v[a * 4 + 1, t, c] = e1 + e2
                    v[a * 4 + 2, t, c] = e2 - e1
                    v[a * 4 + 3, t, c] = e1 - e3


@_jit
def _wino_output(m, row0, bias, y, image, s):  # pragma: no cover - compiled
    """The output transform: y[image] tile by tile = Aᵀ M A + bias, Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]], M the
    16 products of the tile (rows row0 + tile of m); s (2, 4, o) is scratch."""
    h, w, c_out = y.shape[1], y.shape[2], y.shape[3]
    tw = w // 2
    for ti in range(h // 2):
        for tj in range(tw):
            t = row0 + ti * tw + tj
            for b in range(4):
                for c in range(c_out):
                    m0, m1, m2, m3 = m[b, t, c], m[4 + b, t, c], m[8 + b, t, c], m[12 + b, t, c]
                    s[0, b, c] = m0 + m1 + m2
                    s[1, b, c] = m1 - m2 - m3
            for a in range(2):
                for c in range(c_out):
                    s0, s1, s2, s3 = s[a, 0, c], s[a, 1, c], s[a, 2, c], s[a, 3, c]
                    y[image, 2 * ti + a, 2 * tj, c] = s0 + s1 + s2 + bias[c]
                    y[image, 2 * ti + a, 2 * tj + 1, c] = s1 - s2 - s3 + bias[c]


@_jit
def _wino_output_adjoint(dy, image, dm, row0, sums):  # pragma: no cover - compiled
    """The adjoint of the output transform: dM = A g Aᵀ for each tile's 2x2 gradient g; and sums[c] += Σ g (the
    bias gradient, float64)."""
    h, w, c_out = dy.shape[1], dy.shape[2], dy.shape[3]
    tw = w // 2
    for ti in range(h // 2):
        for tj in range(tw):
            t = row0 + ti * tw + tj
            for c in range(c_out):
                g00, g01 = dy[image, 2 * ti, 2 * tj, c], dy[image, 2 * ti, 2 * tj + 1, c]
                g10, g11 = dy[image, 2 * ti + 1, 2 * tj, c], dy[image, 2 * ti + 1, 2 * tj + 1, c]
                sums[c] += np.float64(g00 + g01) + np.float64(g10 + g11)
                a0, b0 = g00, g01  # the rows of A g: g0, g0 + g1, g0 - g1, -g1; then the same along the columns
                a1, b1 = g00 + g10, g01 + g11
                a2, b2 = g00 - g10, g01 - g11
                a3, b3 = -g10, -g11
                dm[0, t, c], dm[1, t, c], dm[2, t, c], dm[3, t, c] = a0, a0 + b0, a0 - b0, -b0
                dm[4, t, c], dm[5, t, c], dm[6, t, c], dm[7, t, c] = a1, a1 + b1, a1 - b1, -b1
                dm[8, t, c], dm[9, t, c], dm[10, t, c], dm[11, t, c] = a2, a2 + b2, a2 - b2, -b2
                dm[12, t, c], dm[13, t, c], dm[14, t, c], dm[15, t, c] = a3, a3 + b3, a3 - b3, -b3


@_jit
def _wino_input_adjoint(dv, row0, dx, image, e):  # pragma: no cover - compiled
    """The adjoint of the input transform: dx[image] = Σ over tiles of B dV Bᵀ, added where tiles overlap (and
    dropped outside the image); e (4, 4, c) is scratch."""
    h, w, c_in = dx.shape[1], dx.shape[2], dx.shape[3]
    tw = w // 2
    dx[image] = 0.0
    for ti in range(h // 2):
        for tj in range(tw):
            t = row0 + ti * tw + tj
            for a in range(4):  # dV Bᵀ along the columns
                for c in range(c_in):
                    v0, v1, v2, v3 = dv[a * 4, t, c], dv[a * 4 + 1, t, c], dv[a * 4 + 2, t, c], dv[a * 4 + 3, t, c]
                    e[a, 0, c] = v0
                    e[a, 1, c] = v1 - v2 + v3
                    e[a, 2, c] = -v0 + v1 + v2
                    e[a, 3, c] = -v3
            hi = 2 * ti - 1
            for b in range(4):  # then B (...) along the rows, added into the image
                wi = 2 * tj - 1 + b
                if wi < 0 or wi >= w:
                    continue
                for c in range(c_in):
                    f0, f1, f2, f3 = e[0, b, c], e[1, b, c], e[2, b, c], e[3, b, c]
                    if hi >= 0:
                        dx[image, hi, wi, c] += f0
                    dx[image, hi + 1, wi, c] += f1 - f2 + f3
                    dx[image, hi + 2, wi, c] += -f0 + f1 + f2
                    if hi + 3 < h:
                        dx[image, hi + 3, wi, c] += -f3


@_pjit
def wino_forward(gemm, x, u, bias, y, v, keep, m, nb, clock, timed, spent):  # pragma: no cover - compiled
    """y = conv3x3(x) + bias (stride 1, padding 1, even sizes; NHWC) by Winograd F(2x2, 3x3), per block of nb
    images: V per tile, then M[ξν] = V[ξν] U[ξν] (16 GEMMs (tiles, c) @ (c, o)), then y = Aᵀ M A. u (16, c, o)
    is the transformed weights; v (16, rows, c) gets every image's V from row 0 with ``keep`` (for the backward),
    else it is scratch, part p's from row p·rb; m (PARTS, 16, rb, o) is scratch, rb ≥ nb·tiles. ``clock``,
    ``timed``, ``spent``: the GEMMs' and the parts' seconds (see ``clock``)."""
    parts = m.shape[0]
    n, h, w, c = x.shape
    o = u.shape[2]
    tiles = (h // 2) * (w // 2)
    rb = m.shape[2]
    blocks = (n + nb - 1) // nb
    for part in prange(parts):
        begun = _tick(clock, timed)
        d = np.empty((4, 4, c), np.float32)
        s = np.empty((2, 4, o), np.float32)
        for block in range(part, blocks, parts):
            first, last = block * nb, min(n, block * nb + nb)
            base = first * tiles if keep else part * rb
            for image in range(first, last):
                _wino_input(x, image, v, base + (image - first) * tiles, d)
            start = _tick(clock, timed)
            for xi in range(16):
                gemm(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, (last - first) * tiles, o, c, _F1, v[xi, base:].ctypes.data,
                     c, u[xi].ctypes.data, o, _F0, m[part, xi].ctypes.data, o)  # fmt: skip
            _tock(clock, timed, start, spent, part, 0)
            for image in range(first, last):
                _wino_output(m[part], (image - first) * tiles, bias, y, image, s)
        _tock(clock, timed, begun, spent, part, 1)


@_pjit
def wino_backward(gemm, x, dy, u, v, keep, du, m, dv, dx, need_dx, sums, nb, clock, timed, spent):
    """The backward of ``wino_forward``, per block: dM = A g Aᵀ per tile (and Σ dy into sums[part] for the bias),
    dU[part] = Σ over blocks of V[ξν]ᵀ dM[ξν] (16 GEMMs (c, tiles) @ (tiles, o)), and with ``need_dx``
    dV[ξν] = dM[ξν] U[ξν]ᵀ and dx = the input transform's adjoint of dV. Without ``keep`` V is computed again
    from x, into v's part-p rows. du (PARTS, 16, c, o), sums (PARTS, o) float64; m, dv (PARTS, 16, rb, ·);
    ``clock``, ``timed``, ``spent`` as in ``wino_forward``."""
    parts = du.shape[0]
    n, h, w, o = dy.shape
    c = u.shape[1]
    tiles = (h // 2) * (w // 2)
    rb = m.shape[2]
    blocks = (n + nb - 1) // nb
    for part in prange(parts):
        begun = _tick(clock, timed)
        d = np.empty((4, 4, c), np.float32)
        sums[part] = 0.0
        du[part] = 0.0
        for block in range(part, blocks, parts):
            first, last = block * nb, min(n, block * nb + nb)
            rows = (last - first) * tiles
            base = first * tiles if keep else part * rb
            for image in range(first, last):
                _wino_output_adjoint(dy, image, m[part], (image - first) * tiles, sums[part])
                if not keep:
                    _wino_input(x, image, v, base + (image - first) * tiles, d)
            start = _tick(clock, timed)
            for xi in range(16):
                gemm(_ROW_MAJOR, _TRANS, _NO_TRANS, c, o, rows, _F1, v[xi, base:].ctypes.data, c,
                     m[part, xi].ctypes.data, o, _F1, du[part, xi].ctypes.data, o)  # fmt: skip
            if need_dx:
                for xi in range(16):
                    gemm(_ROW_MAJOR, _NO_TRANS, _TRANS, rows, c, o, _F1, m[part, xi].ctypes.data, o,
                         u[xi].ctypes.data, o, _F0, dv[part, xi].ctypes.data, c)  # fmt: skip
            _tock(clock, timed, start, spent, part, 0)
            if need_dx:
                for image in range(first, last):
                    _wino_input_adjoint(dv[part], (image - first) * tiles, dx, image, d)
        _tock(clock, timed, begun, spent, part, 1)


@_jit
def wino_weights(weight, u):  # pragma: no cover - compiled
    """U[ξν, c, o] = (G w[o, c] Gᵀ)[ξ, ν], G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]] (the output channel
    innermost: it vectorises)."""
    out_c, in_c = weight.shape[0], weight.shape[1]
    half = np.float32(0.5)
    t = np.empty((4, 3, out_c), np.float32)
    for c in range(in_c):
        for j in range(3):  # G g: the rows of the 3x3 kernel
            for o in range(out_c):
                g0, g1, g2 = weight[o, c, 0, j], weight[o, c, 1, j], weight[o, c, 2, j]
                t[0, j, o] = g0
                t[1, j, o] = half * (g0 + g1 + g2)
                t[2, j, o] = half * (g0 - g1 + g2)
                t[3, j, o] = g2
        for a in range(4):  # (G g) Gᵀ: its columns
            for o in range(out_c):
                g0, g1, g2 = t[a, 0, o], t[a, 1, o], t[a, 2, o]
                u[a * 4, c, o] = g0
                u[a * 4 + 1, c, o] = half * (g0 + g1 + g2)
                u[a * 4 + 2, c, o] = half * (g0 - g1 + g2)
                u[a * 4 + 3, c, o] = g2


@_jit
def wino_weight_grad(du, weight_grad):  # pragma: no cover - compiled
    """∂L/∂w[o, c] = Gᵀ dU[·, c, o] G, dU the sum of the parts' partial sums (in part order): the adjoint of
    ``wino_weights``."""
    out_c, in_c = weight_grad.shape[0], weight_grad.shape[1]
    half = np.float32(0.5)
    total = du[0].copy()
    for part in range(1, du.shape[0]):
        total += du[part]
    r = np.empty((3, 4, out_c), np.float32)
    for c in range(in_c):
        for b in range(4):  # Gᵀ dU: the rows
            for o in range(out_c):
                d0, d1, d2, d3 = total[b, c, o], total[4 + b, c, o], total[8 + b, c, o], total[12 + b, c, o]
                r[0, b, o] = d0 + half * (d1 + d2)
                r[1, b, o] = half * (d1 - d2)
                r[2, b, o] = half * (d1 + d2) + d3
        for i in range(3):  # (Gᵀ dU) G: the columns
            for o in range(out_c):
                d0, d1, d2, d3 = r[i, 0, o], r[i, 1, o], r[i, 2, o], r[i, 3, o]
                weight_grad[o, c, i, 0] = d0 + half * (d1 + d2)
                weight_grad[o, c, i, 1] = half * (d1 - d2)
                weight_grad[o, c, i, 2] = half * (d1 + d2) + d3


@_jit
def one_channel_columns(x, first, last, k, pad, cols):  # pragma: no cover - compiled
    """Transposed stride-1 columns of one-channel images first ... last-1: cols[i·k + j, (image - first, p, q)] =
    x[image, p - pad + i, q - pad + j] (0 outside), and row k·k all ones (it adds the bias, or sums its gradient).
    Each (tap, image, row) is a contiguous run, so the copy vectorises."""
    h, w = x.shape[1], x.shape[2]
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    for i in range(k):
        for j in range(k):
            t = i * k + j
            lo = min(max(0, pad - j), ow)
            hi = max(lo, min(ow, w + pad - j))
            for image in range(first, last):
                for p in range(oh):
                    base = ((image - first) * oh + p) * ow
                    r = p - pad + i
                    if r < 0 or r >= h:
                        cols[t, base : base + ow] = 0.0
                        continue
                    cols[t, base : base + lo] = 0.0
                    for q in range(lo, hi):
                        cols[t, base + q] = x[image, r, q - pad + j]
                    cols[t, base + hi : base + ow] = 0.0
    cols[k * k, : (last - first) * oh * ow] = 1.0


@_pjit
def one_channel_forward(gemm, x, wext, y, cols, k, pad, nb, clock, timed, spent):  # pragma: no cover - compiled
    """A one-channel, stride-1 convolution (a first layer) per block of nb images: y rows (pixels, o) =
    colsᵀ @ wext, wext (k·k + 1, o) the taps and the bias; x (n, h, w); cols (PARTS, k·k + 1, ≥ nb·pixels);
    ``clock``, ``timed``, ``spent`` as in ``wino_forward``."""
    parts = cols.shape[0]
    n = x.shape[0]
    o = wext.shape[1]
    pixels = y.shape[0] // n
    blocks = (n + nb - 1) // nb
    for part in prange(parts):
        begun = _tick(clock, timed)
        for block in range(part, blocks, parts):
            first, last = block * nb, min(n, block * nb + nb)
            one_channel_columns(x, first, last, k, pad, cols[part])
            start = _tick(clock, timed)
            gemm(_ROW_MAJOR, _TRANS, _NO_TRANS, (last - first) * pixels, o, k * k + 1, _F1, cols[part].ctypes.data,
                 cols.shape[2], wext.ctypes.data, o, _F0, y[first * pixels :].ctypes.data, o)  # fmt: skip
            _tock(clock, timed, start, spent, part, 0)
        _tock(clock, timed, begun, spent, part, 1)


@_pjit
def one_channel_backward(gemm, x, dy, dw, cols, k, pad, nb, clock, timed, spent):  # pragma: no cover - compiled
    """dw[part] (k·k + 1, o) = Σ over the part's blocks of cols @ dy rows: the taps' weight gradient and, in the
    last row, the bias gradient (``clock``, ``timed``, ``spent`` as in ``wino_forward``)."""
    parts = cols.shape[0]
    n = x.shape[0]
    o = dy.shape[1]
    pixels = dy.shape[0] // n
    blocks = (n + nb - 1) // nb
    for part in prange(parts):
        begun = _tick(clock, timed)
        dw[part] = 0.0
        for block in range(part, blocks, parts):
            first, last = block * nb, min(n, block * nb + nb)
            one_channel_columns(x, first, last, k, pad, cols[part])
            start = _tick(clock, timed)
            gemm(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, k * k + 1, o, (last - first) * pixels, _F1, cols[part].ctypes.data,
                 cols.shape[2], dy[first * pixels :].ctypes.data, o, _F1, dw[part].ctypes.data, o)  # fmt: skip
            _tock(clock, timed, start, spent, part, 0)
        _tock(clock, timed, begun, spent, part, 1)


@_pjit
def direct_forward(gemm, x, wm, y, cols, k, stride, pad, oh, ow, nb, clock, timed, spent):  # pragma: no cover
    """Any other convolution per block of nb images: im2col of the block, then one GEMM into y rows (pixels, o);
    wm (k·k·c, o) in the columns' (i, j, c) order; cols (PARTS, ≥ nb·pixels, k·k·c); ``clock``, ``timed``,
    ``spent`` as in ``wino_forward``."""
    parts = cols.shape[0]
    n = x.shape[0]
    kc, o = wm.shape
    pixels = oh * ow
    blocks = (n + nb - 1) // nb
    for part in prange(parts):
        begun = _tick(clock, timed)
        for block in range(part, blocks, parts):
            first, last = block * nb, min(n, block * nb + nb)
            for image in range(first, last):
                _im2col_image(x, image, k, stride, pad, oh, ow, cols[part], (image - first) * pixels)
            start = _tick(clock, timed)
            gemm(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, (last - first) * pixels, o, kc, _F1, cols[part].ctypes.data, kc,
                 wm.ctypes.data, o, _F0, y[first * pixels :].ctypes.data, o)  # fmt: skip
            _tock(clock, timed, start, spent, part, 0)
        _tock(clock, timed, begun, spent, part, 1)


@_pjit
def direct_backward(gemm, x, wm, dy, dw, cols, dx, need_dx, sums, k, stride, pad, oh, ow, nb, clock, timed, spent):
    """The backward of ``direct_forward``: dw[part] = Σ colsᵀ dy over the part's blocks, sums[part] = Σ dy (the
    bias), and with ``need_dx`` the column gradients dy wmᵀ (into the columns' scratch) folded back into dx;
    ``clock``, ``timed``, ``spent`` as in ``wino_forward``."""
    parts = cols.shape[0]
    n = x.shape[0]
    kc, o = wm.shape
    pixels = oh * ow
    blocks = (n + nb - 1) // nb
    for part in prange(parts):
        begun = _tick(clock, timed)
        dw[part] = 0.0
        sums[part] = 0.0
        col = cols[part]
        for block in range(part, blocks, parts):
            first, last = block * nb, min(n, block * nb + nb)
            rows = (last - first) * pixels
            for image in range(first, last):
                _im2col_image(x, image, k, stride, pad, oh, ow, col, (image - first) * pixels)
            for r in range(first * pixels, last * pixels):
                for c in range(o):
                    sums[part, c] += dy[r, c]
            start = _tick(clock, timed)
            gemm(_ROW_MAJOR, _TRANS, _NO_TRANS, kc, o, rows, _F1, col.ctypes.data, kc, dy[first * pixels :].ctypes.data,
                 o, _F1, dw[part].ctypes.data, o)  # fmt: skip
            if need_dx:
                gemm(_ROW_MAJOR, _NO_TRANS, _TRANS, rows, kc, o, _F1, dy[first * pixels :].ctypes.data, o,
                     wm.ctypes.data, o, _F0, col.ctypes.data, kc)  # fmt: skip
            _tock(clock, timed, start, spent, part, 0)
            if need_dx:
                for image in range(first, last):
                    _col2im_image(col, (image - first) * pixels, k, stride, pad, oh, ow, dx, image)
        _tock(clock, timed, begun, spent, part, 1)


@_pjit
def gemm_rows(gemm, parts, a, b, c, trans_a, trans_b):  # pragma: no cover - compiled
    """c = op(a) op(b) with the rows of c split into ``parts`` parts, one single-threaded GEMM each; op(a) = aᵀ with
    ``trans_a`` (a is then stored (k, m)). 2-D C-contiguous float32 arrays."""
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    for part in prange(parts):
        first, last = _span(m, part, parts)
        if first < last:
            start = a[:, first:] if trans_a else a[first:]
            op_a, op_b = _TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS
            gemm(_ROW_MAJOR, op_a, op_b, last - first, n, k, _F1, start.ctypes.data, a.shape[1], b.ctypes.data,
                 b.shape[1], _F0, c[first:].ctypes.data, n)  # fmt: skip
