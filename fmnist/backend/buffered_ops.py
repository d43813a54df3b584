"""``BufferedOps``: what the fast ``Ops`` classes share: reused workspaces per call site and the affine and
elementwise steps as ``out=`` ufuncs, which NumPy and CuPy spell alike. ``NumpyOps`` and ``CupyOps`` build on it.

Keys: a forward chain with one key (affine, then activation) shares one buffer, and so does a backward chain (input
gradient, dropout, activation derivative): the elementwise steps run in place. A result is valid until the next
call with the same key (see ``Ops``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmnist.backend.ops import Key, Ops


class BufferedOps(Ops):
    """``Ops`` with workspaces and ``out=`` ufuncs, for any NumPy-like namespace (``self.xp``)."""

    def __init__(self, backend: Any):
        super().__init__(backend)
        self._workspaces: dict[tuple, Any] = {}

    def workspace(self, tag: str, key: Key, shape: tuple[int, ...], dtype: Any = np.float32) -> Any:
        """The buffer of call site (``tag``, ``key``) for ``shape``: made once, then reused (``key=None``: fresh)."""
        if key is None:
            return self.xp.empty(shape, dtype=dtype)
        full = (tag, key, shape, dtype)  # dtype is a type such as np.float32: hashable without np.dtype() per call
        buf = self._workspaces.get(full)
        if buf is None:
            buf = self._workspaces[full] = self.xp.zeros(shape, dtype=dtype)
        return buf

    # --- affine layer and activations ------------------------------------------------------------------------

    def _product(self, a: Any, b: Any, out: Any, trans_a: bool = False, trans_b: bool = False) -> Any:
        """out = op(a) op(b), op transposing where asked: the affine layers' GEMMs (a device may split them)."""
        return self.xp.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)

    def linear(self, x: Any, weight: Any, bias: Any, key: Key = None) -> Any:
        out = self._product(x, weight, self.workspace("out", key, (int(x.shape[0]), int(weight.shape[1]))))
        if bias is not None:
            out += bias
        return out

    def linear_backward(
        self, x: Any, weight: Any, dz: Any, weight_grad: Any, bias_grad: Any, need_dx: bool = True, key: Key = None
    ) -> Any:
        self._product(x, dz, weight_grad, trans_a=True)
        if bias_grad is not None:
            self.xp.sum(dz, axis=0, out=bias_grad)
        if not need_dx:
            return None
        return self._product(dz, weight, self.workspace("grad", key, tuple(x.shape)), trans_b=True)

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

    def dropout_backward(self, da: Any, mask: Any, key: Key = None) -> Any:
        return self.xp.multiply(da, mask, out=self.workspace("grad", key, tuple(da.shape)))
