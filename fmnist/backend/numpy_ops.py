"""``NumpyOps``: the CPU's fast versions of the ``Ops`` primitives, same signatures, same formulas.

Where the speed comes from (see ../README.md "Performance"):

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

import math
from typing import Any

import numpy as np

from fmnist.backend import _numba_loops as loops
from fmnist.backend.buffered_ops import BufferedOps
from fmnist.backend.ops import Key, draw_key


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

    def uniform(self, shape: tuple[int, ...], seed: int, counter: int) -> Any:
        if loops.numba is None:
            return super().uniform(shape, seed, counter)
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

    def shift_flip(
        self, x: Any, max_shift: int, flip: bool, seed: int, counter: int, side: int = 28, key: Key = None
    ) -> Any:
        if loops.numba is None:
            return super().shift_flip(x, max_shift, flip, seed, counter, side, key)
        n = int(x.shape[0])
        u = self.uniform((n, 3), seed, counter)
        out = self.workspace("shift_flip", key, tuple(x.shape), x.dtype.type)
        loops.shift_flip(x, out, u, int(max_shift), bool(flip), int(side))
        return out

    # --- affine layer and activations: out= ufuncs, valid on CuPy too (CupyOps inherits these) ---------------

    def linear(self, x: Any, weight: Any, bias: Any, key: Key = None) -> Any:
        out = self.workspace("out", key, (int(x.shape[0]), int(weight.shape[1])))
        self.xp.matmul(x, weight, out=out)
        out += bias
        return out

    def linear_backward(
        self, x: Any, weight: Any, dz: Any, weight_grad: Any, bias_grad: Any, need_dx: bool = True, key: Key = None
    ) -> Any:
        xp = self.xp
        xp.matmul(x.T, dz, out=weight_grad)
        xp.sum(dz, axis=0, out=bias_grad)
        if not need_dx:
            return None
        return xp.matmul(dz, weight.T, out=self.workspace("grad", key, tuple(x.shape)))

    def sigmoid(self, z: Any, key: Key = None) -> Any:
        out = self.workspace("out", key, tuple(z.shape))
        with np.errstate(over="ignore", under="ignore"):  # exp(-z) = inf for z < -88: 1/inf = 0, the limit
            np.negative(z, out=out)
            np.exp(out, out=out)
            out += 1.0
            np.reciprocal(out, out=out)
        return out

    def sigmoid_backward(self, a: Any, da: Any, key: Key = None) -> Any:
        xp = self.xp
        tmp = self.workspace("act_tmp", key, tuple(a.shape))
        xp.subtract(1.0, a, out=tmp)
        tmp *= a
        return xp.multiply(da, tmp, out=self.workspace("grad", key, tuple(a.shape)))

    def tanh(self, z: Any, key: Key = None) -> Any:
        return self.xp.tanh(z, out=self.workspace("out", key, tuple(z.shape)))

    def tanh_backward(self, a: Any, da: Any, key: Key = None) -> Any:
        xp = self.xp
        tmp = self.workspace("act_tmp", key, tuple(a.shape))
        xp.multiply(a, a, out=tmp)
        xp.subtract(1.0, tmp, out=tmp)
        return xp.multiply(da, tmp, out=self.workspace("grad", key, tuple(a.shape)))

    def relu(self, z: Any, key: Key = None) -> Any:
        return self.xp.maximum(z, 0.0, out=self.workspace("out", key, tuple(z.shape)))

    def relu_backward(self, a: Any, da: Any, key: Key = None) -> Any:
        # multiply by the mask rather than assign through it: boolean-mask assignment is several times slower
        xp = self.xp
        mask = self.workspace("relu_mask", key, tuple(a.shape), np.bool_)
        xp.greater(a, 0.0, out=mask)
        return xp.multiply(da, mask, out=self.workspace("grad", key, tuple(a.shape)))

    # --- dropout ------------------------------------------------------------------------------------------------

    def dropout(self, a: Any, p: float, seed: int, counter: int, key: Key = None) -> tuple[Any, Any]:
        if loops.numba is None:
            return super().dropout(a, p, seed, counter, key)
        shape = tuple(a.shape)
        out, mask = self.workspace("dropout", key, shape), self.workspace("dropout_mask", key, shape)
        k0, k1 = draw_key(seed, counter)
        loops.dropout(a.reshape(-1), out.reshape(-1), mask.reshape(-1), k0, k1, p, 1.0 / (1.0 - p))
        return out, mask

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

    def sgd_update(self, data: Any, grad: Any, *, lr: float, weight_decay: float, decoupled: bool) -> None:
        if loops.numba is None:
            return super().sgd_update(data, grad, lr=lr, weight_decay=weight_decay, decoupled=decoupled)
        loops.sgd(_flat(data), _flat(grad), lr, *_decay_terms(lr, weight_decay, decoupled))

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
        if loops.numba is None:
            return super().momentum_update(
                data,
                grad,
                buf,
                lr=lr,
                momentum=momentum,
                nesterov=nesterov,
                weight_decay=weight_decay,
                decoupled=decoupled,
            )
        decay = _decay_terms(lr, weight_decay, decoupled)
        loops.momentum(_flat(data), _flat(grad), _flat(buf), lr, momentum, nesterov, *decay)

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
        if loops.numba is None:
            return super().rmsprop_update(
                data, grad, square_avg, lr=lr, beta=beta, eps=eps, weight_decay=weight_decay, decoupled=decoupled
            )
        decay = _decay_terms(lr, weight_decay, decoupled)
        loops.rmsprop(_flat(data), _flat(grad), _flat(square_avg), lr, beta, eps, *decay)

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
        if loops.numba is None:
            return super().adam_update(
                data,
                grad,
                m,
                v,
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                eps=eps,
                t=t,
                nesterov=nesterov,
                weight_decay=weight_decay,
                decoupled=decoupled,
            )
        coefficients = adam_coefficients(beta1, beta2, t, nesterov)
        decay = _decay_terms(lr, weight_decay, decoupled)
        loops.adam(_flat(data), _flat(grad), _flat(m), _flat(v), lr, beta1, beta2, eps, *coefficients, *decay)

    def clip_grad_norm(self, grads: list[Any], max_norm: float) -> None:
        norm = math.sqrt(sum(float(np.dot(_flat(g), _flat(g))) for g in grads))  # host floats: this is the host
        scale = min(max_norm / (norm + 1e-6), 1.0)
        if scale < 1.0:
            for g in grads:
                g *= np.float32(scale)


def adam_coefficients(beta1: float, beta2: float, t: int, nesterov: bool) -> tuple[float, float, float]:
    """Adam's bias corrections folded into three host constants, so that one pass computes
    θ -= lr·(c_m·m + c_g·g) / (√v·c_v + ε): c_m = 1/(1-β₁ᵗ) (Nadam: β₁/(1-β₁ᵗ)), c_g = 0 (Nadam: (1-β₁)/(1-β₁ᵗ)),
    c_v = 1/√(1-β₂ᵗ)."""
    bc1 = 1.0 - beta1**t
    c_m, c_g = (beta1 / bc1, (1.0 - beta1) / bc1) if nesterov else (1.0 / bc1, 0.0)
    return c_m, c_g, 1.0 / math.sqrt(1.0 - beta2**t)


def _decay_terms(lr: float, weight_decay: float, decoupled: bool) -> tuple[float, float]:
    """(l2, shrink): g = ∇L + l2·θ, then θ ← shrink·θ before the rule's step (see ``Ops._decayed``)."""
    if decoupled:
        return 0.0, 1.0 - lr * weight_decay
    return weight_decay, 1.0


def _flat(x: Any) -> Any:
    """A 1-D view of a contiguous array (compiled loops take flat buffers)."""
    return x.reshape(-1)
