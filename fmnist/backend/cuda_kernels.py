"""GPU kernels (CuPy): the CPU kernel interface on CuPy arrays, with the optimizer update as one CUDA kernel
over the flat parameter buffer (one launch per step instead of a dozen).

The CUDA source is a full translation unit, so CPU-only CI compiles it with ``nvcc`` for the T4 (sm_75) and
Hopper (sm_90) to prove it at least builds; CuPy compiles and caches it at run time.
"""

from __future__ import annotations

from typing import Any

from fmnist.backend.kernels import RULES, NumpyKernels

OPTIMIZER_SOURCE = r"""
extern "C" __global__ void fmnist_optimizer_step(
    const int rule, const long long n, float* __restrict__ data, const float* __restrict__ grad,
    float* __restrict__ s1, float* __restrict__ s2,
    const float lr, const float momentum, const float beta, const float beta1, const float beta2,
    const float eps, const float weight_decay, const float bc1, const float inv_sqrt_bc2)
{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const float g = grad[i] + weight_decay * data[i];
        if (rule == 0) {
            data[i] -= lr * g;
        } else if (rule == 1 || rule == 2) {
            const float b = momentum * s1[i] + g;
            s1[i] = b;
            data[i] -= lr * (rule == 1 ? b : g + momentum * b);
        } else if (rule == 3) {
            const float v = beta * s1[i] + (1.0f - beta) * g * g;
            s1[i] = v;
            data[i] -= lr * g / (sqrtf(v) + eps);
        } else {
            const float m = beta1 * s1[i] + (1.0f - beta1) * g;
            const float v = beta2 * s2[i] + (1.0f - beta2) * g * g;
            s1[i] = m;
            s2[i] = v;
            float numerator = m / bc1;
            if (rule == 5) numerator = beta1 * numerator + (1.0f - beta1) * g / bc1;
            data[i] -= lr * numerator / (sqrtf(v) * inv_sqrt_bc2 + eps);
        }
    }
}
"""


class CupyKernels(NumpyKernels):
    """The NumPy kernels on CuPy arrays, plus a single-launch optimizer update."""

    name = "cupy"

    def __init__(self) -> None:
        import cupy

        self.xp = cupy
        self._workspaces = {}
        self._kernel = cupy.RawKernel(OPTIMIZER_SOURCE, "fmnist_optimizer_step")

    def _take(self, images: Any, rows: Any, out: Any) -> None:
        self.xp.take(images, rows, axis=0, out=out)

    def optimizer_step(
        self, rule: str, data: Any, grad: Any, state: list[Any], hyper: dict[str, float], t: int
    ) -> None:
        import math

        import numpy as np

        s1 = state[0] if state else data
        s2 = state[1] if len(state) > 1 else data
        beta1, beta2 = hyper.get("beta1", 0.9), hyper.get("beta2", 0.999)
        n = int(data.size)
        threads = 256
        blocks = min(4096, (n + threads - 1) // threads)
        f32 = np.float32
        args = (
            np.int32(RULES[rule]),
            np.int64(n),
            data,
            grad,
            s1,
            s2,
            f32(hyper["lr"]),
            f32(hyper.get("momentum", 0.0)),
            f32(hyper.get("beta", 0.9)),
            f32(beta1),
            f32(beta2),
            f32(hyper.get("eps", 1e-8)),
            f32(hyper["weight_decay"]),
            f32(1.0 - beta1**t),
            f32(1.0 / math.sqrt(1.0 - beta2**t)),
        )
        self._kernel((blocks,), (threads,), args)
