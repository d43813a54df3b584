"""``CupyOps``: the GPU's versions of the ``Ops`` primitives, as CUDA kernels where one launch replaces many.

On a GPU the small steps of an MLP are bound by kernel launches (~5-10 µs of host time each), not by arithmetic.
So the elementwise stretches that NumPy runs as several ufuncs are single kernels here: the batch gather + scale,
the counter-based noise, dropout, augmentation, the sigmoid, softmax + cross-entropy + its gradient, and each
optimizer rule over the flat parameter buffer (one launch per step for the whole model). Matrix products go to
cuBLAS through ``cupy.matmul``; the ``out=`` ufunc versions inherited from ``BufferedOps`` cover the rest.

``SOURCE`` is one full CUDA C translation unit: CI compiles it with ``nvcc`` for the T4 (sm_75) and Hopper (sm_90)
and, through the simulated GPU, with g++ for the host, so every kernel's maths is checked against ``Ops`` on a
machine without a GPU. Only names that CuPy 13 and 14 both provide are used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmnist.backend.buffered_ops import BufferedOps
from fmnist.backend.numpy_ops import _decay_terms, adam_coefficients
from fmnist.backend.ops import Key, Ops, draw_key

SOURCE = r"""
// Counter-based uniform numbers: the same bits as Ops.uniform (murmur3's finaliser on uint32).
__device__ __forceinline__ unsigned int fmnist_fmix32(unsigned int x)
{
    x ^= x >> 16;
    x *= 0x85EBCA6Bu;
    x ^= x >> 13;
    x *= 0xC2B2AE35u;
    return x ^ (x >> 16);
}

__device__ __forceinline__ float fmnist_unit(long long i, unsigned int k0, unsigned int k1)
{
    unsigned int x = (unsigned int)i * 0x9E3779B9u + k0;
    x = fmnist_fmix32(fmnist_fmix32(x) ^ k1);
    return (float)(x >> 8) * 5.9604644775390625e-08f;  // 2^-24: exact
}

#define FMNIST_GRID_STRIDE(i, n)                                                  \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

extern "C" __global__ void fmnist_uniform(float* __restrict__ out, const long long n, const unsigned int k0,
                                          const unsigned int k1)
{
    FMNIST_GRID_STRIDE(i, n) { out[i] = fmnist_unit(i, k0, k1); }
}

extern "C" __global__ void fmnist_dropout(const float* __restrict__ x, float* __restrict__ out,
                                          float* __restrict__ mask, const long long n, const unsigned int k0,
                                          const unsigned int k1, const float p, const float scale)
{
    FMNIST_GRID_STRIDE(i, n)
    {
        const float m = fmnist_unit(i, k0, k1) >= p ? scale : 0.0f;
        mask[i] = m;
        out[i] = x[i] * m;
    }
}

// Batch gather from uint8 images (rows of length d) and scaling: out[r, j] = images[rows[r], j] * scale + shift.
extern "C" __global__ void fmnist_gather_scale(const unsigned char* __restrict__ images,
                                               const long long* __restrict__ rows, float* __restrict__ out,
                                               const long long n, const long long d, const float scale,
                                               const float shift)
{
    FMNIST_GRID_STRIDE(i, n * d)
    {
        const long long r = i / d, j = i - r * d;
        out[i] = (float)images[rows[r] * d + j] * scale + shift;
    }
}

// Mirror (u0 < 1/2, when flip) then shift by floor(u * (2k+1)) - k in each direction, fill coming in.
extern "C" __global__ void fmnist_shift_flip(const float* __restrict__ x, float* __restrict__ out,
                                             const float* __restrict__ u, const long long n, const int side,
                                             const int k, const int flip, const float fill)
{
    const long long pixels = (long long)side * side;
    const float span = (float)(2 * k + 1);
    FMNIST_GRID_STRIDE(i, n * pixels)
    {
        const long long img = i / pixels;
        const int r = (int)(i - img * pixels) / side, c = (int)(i - img * pixels) % side;
        const bool mirror = flip && u[img * 3] < 0.5f;
        const int dy = min((int)floorf(u[img * 3 + 1] * span), 2 * k) - k;
        const int dx = min((int)floorf(u[img * 3 + 2] * span), 2 * k) - k;
        const int sr = r + dy, sc = c + dx;
        float value = fill;
        if (sr >= 0 && sr < side && sc >= 0 && sc < side)
            value = x[img * pixels + (long long)sr * side + (mirror ? side - 1 - sc : sc)];
        out[i] = value;
    }
}

extern "C" __global__ void fmnist_sigmoid(const float* __restrict__ z, float* __restrict__ out, const long long n)
{
    FMNIST_GRID_STRIDE(i, n)
    {
        const float e = expf(-fabsf(z[i]));  // in (0, 1]: never overflows
        out[i] = z[i] >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
}

// Softmax + cross-entropy with label smoothing eps, one thread per row: the row's loss and dL/dlogits.
extern "C" __global__ void fmnist_softmax_xent(const float* __restrict__ logits, const long long* __restrict__ y,
                                               float* __restrict__ dlogits, float* __restrict__ row_loss,
                                               const long long n, const int k, const float eps)
{
    FMNIST_GRID_STRIDE(row, n)
    {
        const float* z = logits + row * k;
        float* dz = dlogits + row * k;
        float peak = z[0];
        for (int j = 1; j < k; ++j) peak = fmaxf(peak, z[j]);
        float total = 0.0f, shifted_sum = 0.0f;
        for (int j = 0; j < k; ++j) {
            total += expf(z[j] - peak);
            shifted_sum += z[j] - peak;
        }
        const long long label = y[row];
        const float picked = (1.0f - eps) * (z[label] - peak) + (eps / k) * shifted_sum;
        row_loss[row] = logf(total) - picked;
        const float inv_n = 1.0f / (float)n;
        for (int j = 0; j < k; ++j) {
            const float target = (j == label ? 1.0f - eps : 0.0f) + eps / k;
            dz[j] = (expf(z[j] - peak) / total - target) * inv_n;
        }
    }
}

// Every optimizer rule over a flat buffer in one pass. rule: 0 sgd, 1 momentum, 2 nesterov momentum, 3 rmsprop,
// 4 adam (nadam through c_m, c_g). a: momentum / rmsprop beta / adam beta1; b: adam beta2.
// L2 decay adds l2 * theta to the gradient; decoupled decay scales theta by shrink first.
extern "C" __global__ void fmnist_optimizer(const int rule, const long long n, float* __restrict__ data,
                                            const float* __restrict__ grad, float* __restrict__ s1,
                                            float* __restrict__ s2, const float lr, const float a, const float b,
                                            const float eps, const float c_m, const float c_g, const float c_v,
                                            const float l2, const float shrink)
{
    FMNIST_GRID_STRIDE(i, n)
    {
        const float d = data[i];
        const float g = grad[i] + l2 * d;
        float step;
        if (rule == 0) {
            step = g;
        } else if (rule == 1 || rule == 2) {
            const float buf = a * s1[i] + g;
            s1[i] = buf;
            step = rule == 1 ? buf : g + a * buf;
        } else if (rule == 3) {
            const float v = a * s1[i] + (1.0f - a) * g * g;
            s1[i] = v;
            step = g / (sqrtf(v) + eps);
        } else {
            const float m = a * s1[i] + (1.0f - a) * g;
            const float v = b * s2[i] + (1.0f - b) * g * g;
            s1[i] = m;
            s2[i] = v;
            step = (c_m * m + c_g * g) / (sqrtf(v) * c_v + eps);
        }
        data[i] = d * shrink - lr * step;
    }
}
"""

_THREADS = 256
_MAX_BLOCKS = 4096
_RULES = {"sgd": 0, "momentum": 1, "nesterov": 2, "rmsprop": 3, "adam": 4}


class CupyOps(BufferedOps):
    """``Ops`` on CuPy float32 arrays: CUDA kernels for the elementwise stretches, cuBLAS for matrix products.

    Inherited from ``BufferedOps`` (``out=`` ufuncs and workspaces, which CuPy supports alike): ``linear``,
    ``linear_backward``, ``tanh``, ``relu`` and the activation and dropout backwards.
    """

    def __init__(self, backend: Any):
        super().__init__(backend)
        self._module: Any = None
        self._kernels: dict[str, Any] = {}

    def _kernel(self, name: str) -> Any:
        """The compiled kernel ``name`` (the module compiles on first use and CuPy caches it on disk)."""
        kernel = self._kernels.get(name)
        if kernel is None:
            if self._module is None:
                self._module = self.xp.RawModule(code=SOURCE)
            kernel = self._kernels[name] = self._module.get_function(name)
        return kernel

    def _launch(self, name: str, n: int, *args: Any) -> None:
        blocks = max(1, min(_MAX_BLOCKS, (n + _THREADS - 1) // _THREADS))
        self._kernel(name)((blocks,), (_THREADS,), args)

    # --- random numbers and data -------------------------------------------------------------------------------

    def uniform(self, shape: tuple[int, ...], seed: int, counter: int) -> Any:
        out = self.xp.empty(shape, dtype=np.float32)
        k0, k1 = draw_key(seed, counter)
        self._launch("fmnist_uniform", out.size, out, np.int64(out.size), np.uint32(k0), np.uint32(k1))
        return out

    def gather_scale(self, images: Any, rows: Any, scale: float, shift: float, key: Key = None) -> Any:
        if rows.dtype != np.int64 or images.dtype != np.uint8:
            return Ops.gather_scale(self, images, rows, scale, shift, key)
        n, d = int(rows.shape[0]), int(images.shape[1])
        out = self.workspace("features", key, (n, d))
        args = (images, rows, out, np.int64(n), np.int64(d), np.float32(scale), np.float32(shift))
        self._launch("fmnist_gather_scale", n * d, *args)
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
        u = self.uniform((n, 3), seed, counter)
        out = self.workspace("shift_flip", key, tuple(x.shape))
        args = (x, out, u, np.int64(n), np.int32(side), np.int32(max_shift), np.int32(bool(flip)), np.float32(fill))
        self._launch("fmnist_shift_flip", n * side * side, *args)
        return out

    # --- activations and dropout --------------------------------------------------------------------------------

    def sigmoid(self, z: Any, key: Key = None) -> Any:
        out = self.workspace("out", key, tuple(z.shape))
        self._launch("fmnist_sigmoid", z.size, z, out, np.int64(z.size))
        return out

    def dropout(self, a: Any, p: float, seed: int, counter: int, key: Key = None) -> tuple[Any, Any]:
        shape = tuple(a.shape)
        out, mask = self.workspace("dropout", key, shape), self.workspace("dropout_mask", key, shape)
        k0, k1 = draw_key(seed, counter)
        args = (a, out, mask, np.int64(a.size), np.uint32(k0), np.uint32(k1), np.float32(p), np.float32(1 / (1 - p)))
        self._launch("fmnist_dropout", a.size, *args)
        return out, mask

    # --- losses -------------------------------------------------------------------------------------------------

    def softmax_cross_entropy(
        self, logits: Any, y: Any, label_smoothing: float = 0.0, key: Key = None
    ) -> tuple[Any, Any]:
        if y.dtype != np.int64:
            return Ops.softmax_cross_entropy(self, logits, y, label_smoothing, key)
        n, k = (int(s) for s in logits.shape)
        dlogits = self.workspace("ce_dlogits", key, (n, k))
        row_loss = self.workspace("ce_rows", key, (n,))
        args = (logits, y, dlogits, row_loss, np.int64(n), np.int32(k), np.float32(label_smoothing))
        self._launch("fmnist_softmax_xent", n, *args)
        return self.xp.sum(row_loss) / np.float32(n), dlogits

    # --- optimizer rules: one launch over the flat buffer -------------------------------------------------------

    def _step(self, rule: str, data: Any, grad: Any, s1: Any, s2: Any, lr: float, a: float, b: float, eps: float,
              coefficients: tuple[float, float, float], decay: tuple[float, float]) -> None:  # fmt: skip
        f = np.float32
        args = (np.int32(_RULES[rule]), np.int64(data.size), data, grad, s1, s2, f(lr), f(a), f(b), f(eps))
        self._launch("fmnist_optimizer", data.size, *args, *(f(c) for c in coefficients), *(f(d) for d in decay))

    def sgd_update(self, data: Any, grad: Any, *, lr: float, weight_decay: float, decoupled: bool) -> None:
        decay = _decay_terms(lr, weight_decay, decoupled)
        self._step("sgd", data, grad, data, data, lr, 0.0, 0.0, 1.0, (0.0, 0.0, 0.0), decay)

    def momentum_update(
        self,
        data: Any,
        grad: Any,
        buf: Any,
        *,
        lr: float,
        momentum: float,
        nesterov: bool,
        weight_decay: float,
        decoupled: bool,
    ) -> None:
        rule = "nesterov" if nesterov else "momentum"
        decay = _decay_terms(lr, weight_decay, decoupled)
        self._step(rule, data, grad, buf, buf, lr, momentum, 0.0, 1.0, (0.0, 0.0, 0.0), decay)

    def rmsprop_update(
        self,
        data: Any,
        grad: Any,
        square_avg: Any,
        *,
        lr: float,
        beta: float,
        eps: float,
        weight_decay: float,
        decoupled: bool,
    ) -> None:
        decay = _decay_terms(lr, weight_decay, decoupled)
        self._step("rmsprop", data, grad, square_avg, square_avg, lr, beta, 0.0, eps, (0.0, 0.0, 0.0), decay)

    def adam_update(
        self,
        data: Any,
        grad: Any,
        m: Any,
        v: Any,
        *,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        t: int,
        nesterov: bool,
        weight_decay: float,
        decoupled: bool,
    ) -> None:
        coefficients = adam_coefficients(beta1, beta2, t, nesterov)
        decay = _decay_terms(lr, weight_decay, decoupled)
        self._step("adam", data, grad, m, v, lr, beta1, beta2, eps, coefficients, decay)
