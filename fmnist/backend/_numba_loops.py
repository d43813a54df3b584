"""Compiled single-threaded loops behind ``NumpyOps`` (Numba, cached on disk). ``numba`` is ``None`` here when
Numba is not installed; ``NumpyOps`` then runs the readable ``Ops`` versions.

Each loop is the formula of its ``Ops`` method written element by element, in float32, in one pass. They use one
thread on purpose: beside OpenBLAS's threads a second spinning pool makes both slower (see PERFORMANCE notes).
``error_model="numpy"`` drops Python's zero-division checks, which would keep LLVM from vectorising the loops.

The optimizer loops store their state (momentum, moving averages) flushed to zero below the smallest normal float32,
as GPUs do with flush-to-zero. Without it, a parameter whose gradient stays 0 (a dead ReLU unit) keeps a momentum
that decays into the subnormal range and sticks at the smallest subnormal (0.9 · 1.4e-45 rounds back up): every
later step then takes the CPU's subnormal slow path for it, which was measured to make Adam 7x slower (0.58 ms
instead of 0.08 ms over 168k parameters) an epoch into training. The difference to the readable ``Ops`` is below
1.2e-38 in absolute value.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; this keeps a broken install usable
    numba = None


def _jit(function):  # type: ignore[no-untyped-def]
    if numba is None:  # pragma: no cover
        return function
    return numba.njit(cache=True, nogil=True, error_model="numpy")(function)


_M32 = np.uint64(0xFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B9)
_MIX1 = np.uint64(0x85EBCA6B)
_MIX2 = np.uint64(0xC2B2AE35)
_S8, _S13, _S16 = np.uint64(8), np.uint64(13), np.uint64(16)
_TWO_TO_MINUS_24 = np.float32(2.0**-24)
_TINY = np.float32(np.finfo(np.float32).tiny)  # the smallest normal float32
_ZERO = np.float32(0.0)


@_jit
def _normal(x):  # x, or 0 when x is subnormal: see the optimizer loops
    return x if abs(x) >= _TINY else _ZERO


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
    n = x.shape[0]
    span = np.float32(2 * k + 1)
    for i in range(n):
        mirror = flip and u[i, 0] < np.float32(0.5)
        dy = min(int(np.floor(u[i, 1] * span)), 2 * k) - k
        dx = min(int(np.floor(u[i, 2] * span)), 2 * k) - k
        for r in range(side):
            sr = r + dy
            for c in range(side):
                sc = c + dx
                if 0 <= sr < side and 0 <= sc < side:
                    out[i, r * side + c] = x[i, sr * side + (side - 1 - sc if mirror else sc)]
                else:
                    out[i, r * side + c] = fill


@_jit
def sgd(data, grad, lr, l2, shrink):  # pragma: no cover - compiled
    lr, l2, shrink = np.float32(lr), np.float32(l2), np.float32(shrink)
    for i in range(data.size):
        d = data[i]
        data[i] = d * shrink - lr * (grad[i] + l2 * d)


@_jit
def momentum(data, grad, buf, lr, mu, nesterov, l2, shrink):  # pragma: no cover - compiled
    lr, mu, l2, shrink = np.float32(lr), np.float32(mu), np.float32(l2), np.float32(shrink)
    for i in range(data.size):
        d = data[i]
        g = grad[i] + l2 * d
        b = _normal(mu * buf[i] + g)
        buf[i] = b
        data[i] = d * shrink - lr * (g + mu * b if nesterov else b)


@_jit
def rmsprop(data, grad, square_avg, lr, beta, eps, l2, shrink):  # pragma: no cover - compiled
    lr, rho, eps, l2, shrink = np.float32(lr), np.float32(beta), np.float32(eps), np.float32(l2), np.float32(shrink)
    one_minus_rho = np.float32(1.0) - rho
    for i in range(data.size):
        d = data[i]
        g = grad[i] + l2 * d
        v = _normal(rho * square_avg[i] + one_minus_rho * g * g)
        square_avg[i] = v
        data[i] = d * shrink - lr * g / (np.sqrt(v) + eps)


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
        data[i] = d * shrink - lr * (c_m * mi + c_g * g) / (np.sqrt(vi) * c_v + eps)


# --- images, channels last (NHWC): the loops behind NumpyOps' convolution, pooling and batch norm -------------


@_jit
def im2col(x, k, stride, pad, oh, ow, col):  # pragma: no cover - compiled
    """col[(n, p, q), (i, j, c)] = x[n, p·s - pad + i, q·s - pad + j, c], 0 outside the image."""
    n_images, h, w, c_in = x.shape
    for n in range(n_images):
        for p in range(oh):
            for q in range(ow):
                r = (n * oh + p) * ow + q
                for i in range(k):
                    hi = p * stride - pad + i
                    for j in range(k):
                        wi = q * stride - pad + j
                        base = (i * k + j) * c_in
                        if 0 <= hi < h and 0 <= wi < w:
                            for c in range(c_in):
                                col[r, base + c] = x[n, hi, wi, c]
                        else:
                            for c in range(c_in):
                                col[r, base + c] = 0.0


@_jit
def col2im(dcol, k, stride, pad, oh, ow, dx):  # pragma: no cover - compiled
    """The adjoint of im2col: dx[n, hi, wi, c] = Σ of the column entries that were copied from it."""
    n_images, h, w, c_in = dx.shape
    dx[:] = 0.0
    for n in range(n_images):
        for p in range(oh):
            for q in range(ow):
                r = (n * oh + p) * ow + q
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
                            dx[n, hi, wi, c] += dcol[r, base + c]


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


@_jit
def channel_moments(x, shift, s1, s2):  # pragma: no cover - compiled
    """Per column c of x (m, C): Σ (x - shift[c]) and Σ (x - shift[c])² in float64 (shifted for accuracy)."""
    m, channels = x.shape
    s1[:] = 0.0
    s2[:] = 0.0
    for r in range(m):
        for c in range(channels):
            d = np.float64(x[r, c] - shift[c])
            s1[c] += d
            s2[c] += d * d


# The normalisation steps run in place (the output is the input argument itself): with a separate output array that
# may alias the input, LLVM cannot vectorise the loop, which measured 1.6x slower.


@_jit
def normalize(x, mean, inv_std, gamma, beta, x_hat):  # pragma: no cover - compiled
    """x̂ = (x - μ)·inv_std, then x ← γ·x̂ + β, per column (in place)."""
    m, channels = x.shape
    for r in range(m):
        for c in range(channels):
            x_hat[r, c] = (x[r, c] - mean[c]) * inv_std[c]
        for c in range(channels):
            x[r, c] = gamma[c] * x_hat[r, c] + beta[c]


@_jit
def normalize_backward_sums(dy, x_hat, sum_dy, sum_dy_xhat):  # pragma: no cover - compiled
    m, channels = dy.shape
    sum_dy[:] = 0.0
    sum_dy_xhat[:] = 0.0
    for r in range(m):
        for c in range(channels):
            g = np.float64(dy[r, c])
            sum_dy[c] += g
            sum_dy_xhat[c] += g * x_hat[r, c]


@_jit
def normalize_backward(dy, x_hat, scale, mean_dy, mean_dy_xhat):  # pragma: no cover - compiled
    """dy ← scale·(dy - mean(dy) - x̂·mean(dy·x̂)) per column (in place)."""
    m, channels = dy.shape
    for r in range(m):
        for c in range(channels):
            dy[r, c] = scale[c] * (dy[r, c] - mean_dy[c] - x_hat[r, c] * mean_dy_xhat[c])


@_jit
def relu_backward(a, dy):  # pragma: no cover - compiled
    """dy ← dy where a > 0, else 0 (in place, flat arrays)."""
    for i in range(dy.size):
        dy[i] = dy[i] if a[i] > 0.0 else 0.0


@_jit
def bn_moments_minmax_pool2(x, shift, s1, s2, vmax, imax, vmin, imin):  # pragma: no cover - compiled
    """One read of x (n, h, w, c) (h, w even): per channel Σ (x - shift) and Σ (x - shift)² in float64, and per 2x2
    window the max and min with their positions 0..3 (the first on ties). The taps are compared in registers and
    each output stored once, so the channel loop vectorises (stores inside branches kept it scalar, 15x slower)."""
    n_images, h, w, channels = x.shape
    s1[:] = 0.0
    s2[:] = 0.0
    for n in range(n_images):
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
                    s1[c] += np.float64(d0 + d1 + d2 + d3)
                    s2[c] += np.float64(d0 * d0 + d1 * d1 + d2 * d2 + d3 * d3)


@_jit
def bn_relu_pick(vmax, imax, vmin, imin, scale, bias, mean, inv_std, y, argmax, x_hat):  # pragma: no cover
    """relu(scale·v + bias) per pooled position, v the window's max where scale ≥ 0 and its min where scale < 0
    (batch norm is a per-channel affine map, so the max of its outputs sits where the input is largest or
    smallest); keeps the winning tap and x̂ there for the backward."""
    n_images, oh, ow, channels = vmax.shape
    zero = np.float32(0.0)
    for n in range(n_images):
        for p in range(oh):
            for q in range(ow):
                for c in range(channels):
                    up = scale[c] >= zero
                    v = vmax[n, p, q, c] if up else vmin[n, p, q, c]
                    argmax[n, p, q, c] = imax[n, p, q, c] if up else imin[n, p, q, c]
                    y[n, p, q, c] = max(scale[c] * v + bias[c], zero)
                    x_hat[n, p, q, c] = (v - mean[c]) * inv_std[c]


@_jit
def bn_pool_relu_backward(dy, y, argmax, x_hat, x, mean, inv_std, gamma, training, gamma_grad, beta_grad, dx):
    """The backward of relu(max_pool2(batch_norm(x))) without gathers. Pass 1 over the pooled grid: g = dy where
    y > 0, Σ g and Σ g·x̂ (x̂ at the winning tap); pass 2 over the full grid, row by row so that the tap
    2·(h & 1) + (w & 1) is constant in the channel loop: dx = a·x + b + [tap wins]·s·g, with s = γ/σ and, in
    training, a = -s/σ·mean(g x̂), b = -s·mean(g) + s/σ·μ·mean(g x̂) (evaluation: a = b = 0)."""
    n_images, h, w, channels = x.shape
    m = n_images * h * w
    zero = np.float32(0.0)
    sum_g = np.zeros(channels, np.float64)
    sum_gx = np.zeros(channels, np.float64)
    for n in range(n_images):
        for p in range(h // 2):
            for q in range(w // 2):
                for c in range(channels):
                    g = dy[n, p, q, c] if y[n, p, q, c] > zero else zero
                    sum_g[c] += g
                    sum_gx[c] += g * x_hat[n, p, q, c]
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
    for n in range(n_images):
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
def im2col_one_channel(padded, k, cols):  # pragma: no cover - compiled
    """One-channel, stride-1 im2col, transposed: cols[(i, j), (n, p, q)] = padded[n, p + i, q + j]. Each (tap,
    image, row) is a contiguous run, so the copy vectorises (the (pixels, 9) layout measured 2.5x slower)."""
    n_images, hp, wp = padded.shape
    oh, ow = hp - k + 1, wp - k + 1
    for i in range(k):
        for j in range(k):
            t = i * k + j
            for n in range(n_images):
                for p in range(oh):
                    base = (n * oh + p) * ow
                    for q in range(ow):
                        cols[t, base + q] = padded[n, p + i, q + j]
