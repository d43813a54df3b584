"""``CupyOps``: the GPU's versions of the ``Ops`` primitives, as CUDA kernels where one launch replaces many.

On a GPU the small steps of a network are bound by kernel launches (~5-10 µs of host time each), not by arithmetic.
So the elementwise stretches that NumPy runs as several ufuncs are single kernels here: the batch gather + scale,
the counter-based noise, dropout, augmentation, the sigmoid, softmax + cross-entropy + its gradient, and each
optimizer rule over the flat parameter buffer (one launch per step for the whole model). Matrix products go to
cuBLAS through ``cupy.matmul``; the ``out=`` ufunc versions inherited from ``BufferedOps`` cover the rest.

``SOURCE`` (``kernels.cu`` beside this file) is one full CUDA C translation unit: CI compiles it for the T4 (sm_75)
and Hopper (sm_90) and, through the simulated GPU, with g++ for the host, so every kernel's maths is checked against
``Ops`` on a machine without a GPU. Only names that CuPy 13 and 14 both provide are used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fmnist.backend.buffered_ops import BufferedOps
from fmnist.backend.ops import AdamStep, Key, MomentumStep, Ops, RmspropStep, SgdStep, draw_key

SOURCE = (Path(__file__).parent / "kernels.cu").read_text()  # one CUDA C translation unit

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
