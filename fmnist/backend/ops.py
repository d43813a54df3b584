"""``Ops``: the readable array-API primitives of fmnist, each formula written once.

Everything a network computes goes through one ``Ops`` object (``backend.ops``): affine layers and their
gradients, the activations and their derivatives, dropout, the losses with their gradients, batch gathering and
augmentation, and one update method per optimizer rule. This class is the maths a student reads: plain array
expressions against ``self.xp`` (NumPy, CuPy or array-api-strict), allocating freely, never touching the host.

Faster classes override the same methods with the same signatures and are held to these by per-method parity
tests: ``NumpyOps`` (reused workspaces, ``out=`` ufuncs, compiled one-pass loops) and ``CupyOps`` (CUDA kernels).

Conventions shared by every implementation:

- Methods never modify their inputs, except the optimizer updates (which update parameters and state in place),
  ``clip_grad_norm`` (which scales gradients in place) and the ``*_grad`` arguments they are asked to fill.
- ``key`` names the call site (any hashable, e.g. ``(id(layer), 0)``). An override may return a reused buffer
  for it, valid until the next call with the same key: the next call with that key may write its result into the
  same buffer, even when that buffer is its input (so a chain of calls with one key runs in place). ``None`` asks
  for a fresh array. The base class always returns fresh arrays.
- Random numbers come from ``uniform(shape, seed, counter)``, a counter-based generator: the same
  ``(seed, counter)`` gives the same bits on every device, so noise never needs a saved device generator state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Key = Any

# murmur3's 32-bit finaliser constants, and the golden-ratio increment of the element counter
_MIX1, _MIX2, _GOLDEN = 0x85EBCA6B, 0xC2B2AE35, 0x9E3779B9
_TWO_TO_MINUS_24 = 2.0**-24
_TINY = 2.0**-126  # the smallest normal float32


def splitmix64(z: int) -> int:
    """One SplitMix64 step on a Python int (host): spreads a seed or counter over 64 well-mixed bits."""
    z = (z + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def draw_key(seed: int, counter: int) -> tuple[int, int]:
    """The two 32-bit words that select draw number ``counter`` of stream ``seed`` (computed on the host)."""
    z = splitmix64(splitmix64(int(seed) & 0xFFFFFFFFFFFFFFFF) ^ (int(counter) & 0xFFFFFFFFFFFFFFFF))
    return z & 0xFFFFFFFF, z >> 32


class Ops:
    """The readable primitives. Subclasses override methods with faster versions of the same formula."""

    def __init__(self, backend: Any):
        self.backend = backend
        self.xp = backend.xp

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{self.name}({self.backend.name}, {self.backend.dtype_name})"

    # --- random numbers -----------------------------------------------------------------------------------------

    def uniform(self, shape: tuple[int, ...], seed: int, counter: int) -> Any:
        """U[0, 1) float32 samples: element i is a hash of (i, seed, counter), identical on every device.

        x = fmix(fmix(i·φ + k₀) ⊕ k₁) on uint32 (murmur3's finaliser, wrapping arithmetic), u = (x >> 8) · 2⁻²⁴.
        """
        xp, be = self.xp, self.backend
        k0, k1 = draw_key(seed, counter)
        x = be.arange(math.prod(shape), dtype=xp.uint32)
        x = x * _GOLDEN + k0
        x = _fmix32(_fmix32(x) ^ k1)
        u = be.astype(x >> 8, xp.float32) * _TWO_TO_MINUS_24
        return xp.reshape(u, shape)

    # --- data ---------------------------------------------------------------------------------------------------

    def gather_scale(self, images: Any, rows: Any, scale: float, shift: float, key: Key = None) -> Any:
        """float rows of uint8 ``images`` (n, d) picked by the device index array ``rows``: pixel·scale + shift
        (scale = 1/(255·std) and shift = -mean/std standardise; shift = 0 just scales to [0, 1])."""
        x = self.backend.astype(self.xp.take(images, rows, axis=0), self.backend.dtype)
        return x * scale + shift

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
        """Augmented copies of the (n, side·side) images ``x``: each mirrored left-right with probability ½ (when
        ``flip``) and then shifted by (dy, dx) ∈ [-max_shift, max_shift]², ``fill`` (the background's value, e.g.
        -mean/std for standardised pixels) coming in at the border.

        Draws (n, 3) uniforms u: mirror when u₀ < ½; the shift of the padded image is ⌊u·(2k+1)⌋ ∈ [0, 2k].
        """
        xp, be = self.xp, self.backend
        n, k = int(x.shape[0]), int(max_shift)
        u = self.uniform((n, 3), seed, counter)
        images = xp.reshape(x, (n, side, side))
        if flip:
            mirror = xp.reshape(u[:, 0] < 0.5, (n, 1, 1))
            images = xp.where(mirror, xp.flip(images, axis=2), images)
        if k > 0:
            width = side + 2 * k
            padded = be.zeros((n, width, width), dtype=x.dtype) + fill
            padded[:, k : k + side, k : k + side] = images
            offsets = xp.minimum(be.astype(xp.floor(u[:, 1:] * (2 * k + 1)), xp.int64), 2 * k)
            base = be.arange(side, dtype=xp.int64)
            rows = xp.broadcast_to(xp.reshape(offsets[:, 0:1] + base, (n, side, 1)), (n, side, width))
            cols = xp.broadcast_to(xp.reshape(offsets[:, 1:2] + base, (n, 1, side)), (n, side, side))
            images = xp.take_along_axis(xp.take_along_axis(padded, rows, axis=1), cols, axis=2)
        return xp.reshape(images, (n, side * side))

    # --- affine layer -------------------------------------------------------------------------------------------

    def linear(self, x: Any, weight: Any, bias: Any, key: Key = None) -> Any:
        """z = x W + b, with x (n, fan_in), W (fan_in, fan_out), b (fan_out,) or ``None`` (no bias: a layer that
        batch norm follows needs none)."""
        z = self.xp.matmul(x, weight)
        return z if bias is None else z + bias

    def linear_backward(
        self, x: Any, weight: Any, dz: Any, weight_grad: Any, bias_grad: Any, need_dx: bool = True, key: Key = None
    ) -> Any:
        """Fill ∂L/∂W = xᵀ dz and ∂L/∂b = Σₙ dz (overwriting ``weight_grad``/``bias_grad``; ``bias_grad`` is
        ``None`` without a bias) and return ∂L/∂x = dz Wᵀ (``None`` when ``need_dx`` is false: the first layer needs
        no input gradient)."""
        xp = self.xp
        weight_grad[...] = xp.matmul(x.T, dz)
        if bias_grad is not None:
            bias_grad[...] = xp.sum(dz, axis=0)
        return xp.matmul(dz, weight.T) if need_dx else None

    def linear_relu(self, x: Any, weight: Any, bias: Any, key: Key = None) -> Any:
        """relu(x W + b): a linear layer and the ReLU after it in one call (a fast class adds the bias in the
        ReLU's pass)."""
        return self.relu(self.linear(x, weight, bias, key), key)

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
        """The backward of ``linear_relu`` (``a`` its output): dz = ``relu_backward(a, da)``, then
        ``linear_backward`` with dz (a fast class sums the bias gradient in the ReLU's pass)."""
        dz = self.relu_backward(a, da, None if key is None else (key, "relu"))
        return self.linear_backward(x, weight, dz, weight_grad, bias_grad, need_dx, key)

    # --- activations: forward on z, backward from the output a ------------------------------------------------

    def sigmoid(self, z: Any, key: Key = None) -> Any:
        """σ(z) = 1 / (1 + e⁻ᶻ), computed without overflow: e^-|z| is in (0, 1]."""
        xp = self.xp
        e = xp.exp(-xp.abs(z))
        return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

    def sigmoid_backward(self, a: Any, da: Any, key: Key = None) -> Any:
        """dz = da · σ'(z) = da · a (1 - a)."""
        return da * a * (1.0 - a)

    def tanh(self, z: Any, key: Key = None) -> Any:
        """tanh z."""
        return self.xp.tanh(z)

    def tanh_backward(self, a: Any, da: Any, key: Key = None) -> Any:
        """dz = da · (1 - a²)."""
        return da * (1.0 - a * a)

    def relu(self, z: Any, key: Key = None) -> Any:
        """max(z, 0)."""
        return self.xp.maximum(z, 0.0)

    def relu_backward(self, a: Any, da: Any, key: Key = None) -> Any:
        """dz = da where a > 0, else 0."""
        return da * self.backend.astype(a > 0, da.dtype)

    # --- dropout ------------------------------------------------------------------------------------------------

    def dropout(self, a: Any, p: float, seed: int, counter: int, key: Key = None) -> tuple[Any, Any]:
        """Inverted dropout: (a · mask, mask) with mask = [u ≥ p] / (1 - p) and u = ``uniform(a.shape, ...)``, so
        a unit is kept with probability 1 - p and evaluation needs no rescaling."""
        keep = self.uniform(tuple(a.shape), seed, counter) >= p
        mask = self.backend.astype(keep, a.dtype) * (1.0 / (1.0 - p))
        return a * mask, mask

    def dropout_backward(self, da: Any, mask: Any, key: Key = None) -> Any:
        """da · mask."""
        return da * mask

    # --- images: convolution, pooling, batch normalisation ---------------------------------------------------
    # Images are (n, C, H, W) here ("NCHW", as PyTorch lays them out). A faster class may keep them in another
    # layout between its own methods (``layout``); ``to_layout``/``from_layout`` convert at a model's edges.
    # Convolution weights are (out_channels, in_channels, kh, kw) and biases (out_channels,) in every layout.

    layout = "NCHW"

    def to_layout(self, x: Any, key: Key = None) -> Any:
        """NCHW images in this class's image layout (the base keeps NCHW)."""
        return x

    def from_layout(self, x: Any, key: Key = None) -> Any:
        """Images in this class's layout back to NCHW."""
        return x

    def nchw_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The NCHW shape of images whose shape in this class's layout is ``shape``."""
        return tuple(shape)

    @staticmethod
    def _window_slices(h: int, w: int, kh: int, kw: int, stride: int) -> tuple[list[tuple[slice, slice]], int, int]:
        """For each offset (i, j) of a kh×kw window, in row-major order, the strided (rows, columns) slices that
        pick element (i, j) of every window (p, q): pixel (p·s + i, q·s + j); and the output size (oh, ow)."""
        oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
        slices = [
            (slice(i, i + stride * (oh - 1) + 1, stride), slice(j, j + stride * (ow - 1) + 1, stride))
            for i in range(kh)
            for j in range(kw)
        ]
        return slices, oh, ow

    def _windows(self, x: Any, kh: int, kw: int, stride: int) -> tuple[list[Any], int, int]:
        """The kh·kw strided views of x (n, c, h, w), each (n, c, oh, ow), in row-major window order."""
        slices, oh, ow = self._window_slices(int(x.shape[2]), int(x.shape[3]), kh, kw, stride)
        return [x[:, :, rows, cols] for rows, cols in slices], oh, ow

    def _pad(self, x: Any, padding: int) -> Any:
        if not padding:
            return x
        n, c, h, w = (int(s) for s in x.shape)
        padded = self.backend.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=x.dtype)
        padded[:, :, padding : padding + h, padding : padding + w] = x
        return padded

    def im2col(self, x: Any, kh: int, kw: int, stride: int, padding: int) -> tuple[Any, int, int]:
        """The patches of x (n, c, h, w) as columns: (n, c·kh·kw, oh·ow), row index c·kh·kw + i·kw + j, so that
        a convolution is one matrix product with the weights viewed as (out_channels, c·kh·kw)."""
        xp = self.xp
        n, c = int(x.shape[0]), int(x.shape[1])
        views, oh, ow = self._windows(self._pad(x, padding), kh, kw, stride)
        return xp.reshape(xp.stack(views, axis=2), (n, c * kh * kw, oh * ow)), oh, ow

    def col2im(self, cols: Any, x_shape: tuple[int, ...], kh: int, kw: int, stride: int, padding: int) -> Any:
        """The adjoint of ``im2col``: each column entry added back to the input pixel it was copied from."""
        xp = self.xp
        n, c, h, w = x_shape
        padded = self.backend.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
        slices, oh, ow = self._window_slices(h + 2 * padding, w + 2 * padding, kh, kw, stride)
        cols = xp.reshape(cols, (n, c, kh * kw, oh, ow))
        for k, (rows, columns) in enumerate(slices):
            padded[:, :, rows, columns] += cols[:, :, k, :, :]
        return padded[:, :, padding : padding + h, padding : padding + w]

    def conv2d(
        self, x: Any, weight: Any, bias: Any, stride: int = 1, padding: int = 0, key: Key = None
    ) -> tuple[Any, Any]:
        """(y, saved): y[n, o] = Σ_c,i,j W[o, c, i, j] · x_pad[n, c, p·s + i, q·s + j] + b[o], one matrix product
        of the weights (o, c·kh·kw) with the patches (c·kh·kw, oh·ow) of each image. ``bias`` may be ``None`` (a
        convolution that feeds batch norm needs none: the normalisation removes it). ``saved`` is what the
        backward needs from this forward (here the patches, so that they are not cut out twice): pass it to
        ``conv2d_backward`` of the same ``Ops`` as it is."""
        xp = self.xp
        out_c, _, kh, kw = (int(s) for s in weight.shape)
        cols, oh, ow = self.im2col(x, kh, kw, stride, padding)
        y = xp.matmul(xp.reshape(weight, (out_c, -1)), cols)
        if bias is not None:
            y = y + xp.reshape(bias, (1, out_c, 1))
        return xp.reshape(y, (int(x.shape[0]), out_c, oh, ow)), (tuple(int(s) for s in x.shape), cols)

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
        """Fill ∂L/∂W = Σₙ dyₙ colsₙᵀ and ∂L/∂b = Σₙ,p,q dy (overwriting the ``*_grad``; ``bias_grad`` is ``None``
        without a bias) and return ∂L/∂x, the columns Wᵀ dyₙ folded back onto the input (``col2im``); ``None``
        when ``need_dx`` is false. ``saved`` is what ``conv2d`` returned beside y."""
        xp = self.xp
        x_shape, cols = saved
        out_c, _, kh, kw = (int(s) for s in weight.shape)
        dy = xp.reshape(dy, (int(dy.shape[0]), out_c, int(cols.shape[2])))
        weight_grad[...] = xp.reshape(
            xp.sum(xp.matmul(dy, self.backend.permute(cols, (0, 2, 1))), axis=0), weight.shape
        )
        if bias_grad is not None:
            bias_grad[...] = xp.sum(dy, axis=(0, 2))
        if not need_dx:
            return None
        dcols = xp.matmul(self.backend.permute(xp.reshape(weight, (out_c, -1)), (1, 0)), dy)
        return self.col2im(dcols, x_shape, kh, kw, stride, padding)

    def max_pool2d(self, x: Any, kernel: int, stride: int, key: Key = None) -> tuple[Any, Any]:
        """(y, argmax): the largest value of each kernel×kernel window (windows ``stride`` apart) and its index
        i·kernel + j inside the window (the first one on ties, in row-major order)."""
        xp = self.xp
        views, _, _ = self._windows(x, kernel, kernel, stride)
        stacked = xp.stack(views, axis=-1)
        return xp.max(stacked, axis=-1), xp.argmax(stacked, axis=-1)

    def max_pool2d_backward(self, dy: Any, argmax: Any, x_shape: tuple[int, ...], kernel: int, stride: int,
                            key: Key = None) -> Any:  # fmt: skip
        """∂L/∂x: each window's gradient goes to the input pixel that was its maximum (added up where windows
        overlap); every other pixel gets 0."""
        xp = self.xp
        dx = self.backend.zeros(x_shape, dtype=dy.dtype)
        slices, _, _ = self._window_slices(x_shape[2], x_shape[3], kernel, kernel, stride)
        for k, (rows, columns) in enumerate(slices):
            dx[:, :, rows, columns] += xp.where(argmax == k, dy, 0.0)
        return dx

    def _bn_axes(self, x: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(reduced axes, shape of a per-feature array for broadcasting): features are the columns of a 2-D
        input and the channels of images in this class's layout."""
        if x.ndim == 2:
            return (0,), (1, int(x.shape[1]))
        if self.layout == "NCHW":
            return (0, 2, 3), (1, int(x.shape[1]), 1, 1)
        return (0, 1, 2), (1, 1, 1, int(x.shape[3]))

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
        """(y, saved) with y = γ·x̂ + β, x̂ = (x - μ) / √(σ² + ε), per feature (columns of 2-D x, channels of
        images). Training: μ, σ² of the batch (σ² biased), and the running statistics move in place as PyTorch
        moves them, r ← (1 - momentum)·r + momentum·batch value (the variance's unbiased, ×m/(m-1)).
        Evaluation: the running statistics. ``saved`` = (x̂, 1/√(σ² + ε)) for the backward pass."""
        xp = self.xp
        axes, shape = self._bn_axes(x)
        if training:
            m = x.size // int(gamma.shape[0])
            mean = xp.mean(x, axis=axes, keepdims=True)
            var = xp.mean((x - mean) ** 2, axis=axes, keepdims=True)
            running_mean[...] = (1.0 - momentum) * running_mean + momentum * xp.reshape(mean, running_mean.shape)
            unbiased = xp.reshape(var, running_var.shape) * (m / max(1, m - 1))
            running_var[...] = (1.0 - momentum) * running_var + momentum * unbiased
        else:
            mean, var = xp.reshape(running_mean, shape), xp.reshape(running_var, shape)
        inv_std = 1.0 / xp.sqrt(var + eps)
        x_hat = (x - mean) * inv_std
        return xp.reshape(gamma, shape) * x_hat + xp.reshape(beta, shape), (x_hat, inv_std)

    def batch_norm_backward(
        self, dy: Any, saved: Any, gamma: Any, gamma_grad: Any, beta_grad: Any, training: bool, key: Key = None
    ) -> Any:
        """Fill ∂L/∂γ = Σ dy·x̂ and ∂L/∂β = Σ dy per feature and return ∂L/∂x: in training (batch statistics
        depend on x) γ/(m·σ) · (m·dy - Σ dy - x̂·Σ dy·x̂) over the m values of a feature; in evaluation γ·dy/σ."""
        xp = self.xp
        x_hat, inv_std = saved
        axes, shape = self._bn_axes(dy)
        sum_dy = xp.sum(dy, axis=axes, keepdims=True)
        sum_dy_xhat = xp.sum(dy * x_hat, axis=axes, keepdims=True)
        beta_grad[...] = xp.reshape(sum_dy, beta_grad.shape)
        gamma_grad[...] = xp.reshape(sum_dy_xhat, gamma_grad.shape)
        scale = xp.reshape(gamma, shape) * inv_std
        if not training:
            return dy * scale
        m = dy.size // int(gamma.shape[0])
        return (scale / m) * (m * dy - sum_dy - x_hat * sum_dy_xhat)

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
        """relu(max_pool2d(batch_norm(x))) in one call, the end of a convolution block; returns (y, saved). The
        same three formulas as their own methods (a fast class may fuse them into fewer passes)."""
        z, normalized = self.batch_norm(x, gamma, beta, running_mean, running_var, momentum, eps, training, key)
        pooled, argmax = self.max_pool2d(z, kernel, stride, key)
        y = self.relu(pooled, key)
        return y, (normalized, argmax, tuple(int(s) for s in z.shape), y)

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
        """The backward of ``batch_norm_pool_relu``: through the ReLU, the pooling and the batch norm in turn."""
        normalized, argmax, shape, y = saved
        dpooled = self.relu_backward(y, dy, key)
        dz = self.max_pool2d_backward(dpooled, argmax, shape, kernel, stride, key)
        return self.batch_norm_backward(dz, normalized, gamma, gamma_grad, beta_grad, training, key)

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
        """relu(batch_norm(x)) in one call; returns (y, saved). The same formulas as their own methods (a fast class
        applies the ReLU in the normalisation's pass)."""
        z, normalized = self.batch_norm(x, gamma, beta, running_mean, running_var, momentum, eps, training, key)
        y = self.relu(z, key)
        return y, (normalized, y)

    def batch_norm_relu_backward(
        self, dy: Any, saved: Any, gamma: Any, gamma_grad: Any, beta_grad: Any, training: bool, key: Key = None
    ) -> Any:
        """The backward of ``batch_norm_relu``: through the ReLU, then the batch norm."""
        normalized, y = saved
        dz = self.relu_backward(y, dy, key)
        return self.batch_norm_backward(dz, normalized, gamma, gamma_grad, beta_grad, training, key)

    # --- losses on logits ---------------------------------------------------------------------------------------

    def one_hot(self, y: Any, num_classes: int, dtype: Any) -> Any:
        """Rows of the identity for integer labels y (n,): (n, num_classes)."""
        classes = self.backend.arange(num_classes, dtype=y.dtype)
        return self.backend.astype(self.xp.expand_dims(y, axis=1) == classes, dtype)

    def log_softmax(self, logits: Any) -> Any:
        """log softmax along the class axis, stable: z - max z - log Σ exp(z - max z)."""
        xp = self.xp
        shifted = logits - xp.max(logits, axis=1, keepdims=True)
        return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))

    def softmax(self, logits: Any) -> Any:
        """softmax along the class axis, stable (max subtracted before exp)."""
        xp = self.xp
        e = xp.exp(logits - xp.max(logits, axis=1, keepdims=True))
        return e / xp.sum(e, axis=1, keepdims=True)

    def softmax_cross_entropy(
        self, logits: Any, y: Any, label_smoothing: float = 0.0, key: Key = None
    ) -> tuple[Any, Any]:
        """L = -(1/n) Σᵢ Σₖ tᵢₖ log softmax(zᵢ)ₖ and dL/dz = (softmax(z) - t) / n, with targets
        t = (1 - ε)·onehot(y) + ε/K (ε = ``label_smoothing``; 0 gives the usual one-hot loss). Returns
        (L as a 0-d array, dL/dz)."""
        xp = self.xp
        n, k = logits.shape
        logp = self.log_softmax(logits)
        target = self.one_hot(y, k, logits.dtype)
        if label_smoothing:
            target = (1.0 - label_smoothing) * target + label_smoothing / k
        loss = -xp.sum(logp * target) / n
        return loss, (xp.exp(logp) - target) / n

    def softmax_mse(self, logits: Any, y: Any, key: Key = None) -> tuple[Any, Any]:
        """L = (1/n) Σᵢ Σₖ (pᵢₖ - onehot(yᵢ)ₖ)² with p = softmax(z), and its gradient through the full softmax
        Jacobian J = diag(p) - p pᵀ: dL/dz = p ⊙ (g - (g·p)) with g = dL/dp = 2 (p - onehot) / n."""
        xp = self.xp
        n, k = logits.shape
        p = self.softmax(logits)
        diff = p - self.one_hot(y, k, logits.dtype)
        g = (2.0 / n) * diff
        return xp.sum(diff * diff) / n, p * (g - xp.sum(g * p, axis=1, keepdims=True))

    def count_correct(self, logits: Any, y: Any) -> Any:
        """How many rows have their largest logit at the label, as a 0-d float array (stays on the device)."""
        hits = self.xp.argmax(logits, axis=1) == y
        return self.xp.sum(self.backend.astype(hits, logits.dtype))

    # --- optimizer rules (in place on the parameters and their state) -----------------------------------------
    # Each rule takes its hyperparameters as one record (``SgdStep``, ``MomentumStep``, ``RmspropStep``,
    # ``AdamStep``: see below). Weight decay comes in two forms: L2 adds λθ to the gradient (g = ∇L + λθ);
    # decoupled (AdamW-style) shrinks the parameters first, θ ← θ(1 - lr·λ), and leaves the gradient alone.
    # Every rule ends with the parameters flushed to zero below the smallest normal float (``_flushed``).

    def _flushed(self, data: Any) -> None:
        """Parameters below the smallest normal float32 (1.18e-38) in magnitude set to exactly 0 (in place): a
        network that learns nothing drifts its weights into subnormal floats, on which CPUs without flush-to-zero
        run about 10x slower. NaN stays NaN."""
        data *= self.backend.astype(self.xp.abs(data) >= _TINY, data.dtype)  # NaN · 0 is NaN

    def _decayed(self, data: Any, grad: Any, hp: SgdStep) -> Any:
        if not hp.weight_decay:
            return grad
        if hp.decoupled:
            data *= 1.0 - hp.lr * hp.weight_decay
            return grad
        return grad + hp.weight_decay * data

    def sgd_update(self, data: Any, grad: Any, hp: SgdStep) -> None:
        """θ ← θ - lr·g."""
        g = self._decayed(data, grad, hp)
        data -= hp.lr * g
        self._flushed(data)

    def momentum_update(self, data: Any, grad: Any, buf: Any, hp: MomentumStep) -> None:
        """b ← μb + g;  θ ← θ - lr·b, or with ``nesterov`` the look-ahead step θ ← θ - lr·(g + μb)."""
        g = self._decayed(data, grad, hp)
        buf *= hp.momentum
        buf += g
        data -= hp.lr * (g + hp.momentum * buf if hp.nesterov else buf)
        self._flushed(data)

    def rmsprop_update(self, data: Any, grad: Any, square_avg: Any, hp: RmspropStep) -> None:
        """v ← βv + (1-β)g²;  θ ← θ - lr·g / (√v + ε)."""
        g = self._decayed(data, grad, hp)
        square_avg *= hp.beta
        square_avg += (1.0 - hp.beta) * (g * g)
        data -= hp.lr * g / (self.xp.sqrt(square_avg) + hp.eps)
        self._flushed(data)

    def adam_update(self, data: Any, grad: Any, m: Any, v: Any, hp: AdamStep) -> None:
        """m ← β₁m + (1-β₁)g;  v ← β₂v + (1-β₂)g²;  θ ← θ - lr·m̂ / (√v̂ + ε), with m̂ = m/(1-β₁ᵗ), v̂ = v/(1-β₂ᵗ).

        With ``nesterov`` (Nadam) the numerator looks ahead: β₁m̂ + (1-β₁)·g/(1-β₁ᵗ).
        """
        g = self._decayed(data, grad, hp)
        m *= hp.beta1
        m += (1.0 - hp.beta1) * g
        v *= hp.beta2
        v += (1.0 - hp.beta2) * (g * g)
        bc1, bc2 = 1.0 - hp.beta1**hp.t, 1.0 - hp.beta2**hp.t  # host floats from the host step count: no sync
        m_hat = m / bc1
        if hp.nesterov:
            m_hat = hp.beta1 * m_hat + ((1.0 - hp.beta1) / bc1) * g
        data -= hp.lr * m_hat / (self.xp.sqrt(v / bc2) + hp.eps)
        self._flushed(data)

    def clip_grad_norm(self, grads: list[Any], max_norm: float) -> None:
        """Scale the gradients in place by min(1, c / ‖g‖), ‖g‖ the L2 norm of all of them together. The scale
        stays a device scalar: no host sync."""
        xp = self.xp
        squares = [xp.sum(g * g) for g in grads]
        norm = xp.sqrt(sum(squares[1:], squares[0]))
        scale = xp.minimum(max_norm / (norm + 1e-6), 1.0)
        for g in grads:
            g *= scale


# --- optimizer hyperparameters: one record per rule, with its defaults (declared here once) -------------------------


@dataclass(frozen=True)
class SgdStep:
    """The hyperparameters of one SGD step (host values): θ ← θ - lr·g. Every rule also takes ``weight_decay``,
    as L2 added to the gradient or, with ``decoupled``, AdamW-style shrinking θ ← θ(1 - lr·λ)."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    decoupled: bool = False

    def decay_terms(self) -> tuple[float, float]:
        """(l2, shrink) for one-pass loops: g = ∇L + l2·θ, then θ ← shrink·θ before the rule's step."""
        if self.decoupled:
            return 0.0, 1.0 - self.lr * self.weight_decay
        return self.weight_decay, 1.0


@dataclass(frozen=True)
class MomentumStep(SgdStep):
    """Heavy-ball momentum, or with ``nesterov`` the look-ahead step (torch.optim.SGD's conventions)."""

    lr: float = 1e-2
    momentum: float = 0.9
    nesterov: bool = False


@dataclass(frozen=True)
class RmspropStep(SgdStep):
    """RMSprop with decay ``beta`` (torch's ``alpha``)."""

    beta: float = 0.9
    eps: float = 1e-8


@dataclass(frozen=True)
class AdamStep(SgdStep):
    """Adam at step ``t`` (from 1), or with ``nesterov`` Nadam."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    t: int = 1
    nesterov: bool = False

    def coefficients(self) -> tuple[float, float, float]:
        """The bias corrections folded into three host constants, so that one pass computes
        θ -= lr·(c_m·m + c_g·g) / (√v·c_v + ε): c_m = 1/(1-β₁ᵗ) (Nadam: β₁/(1-β₁ᵗ)), c_g = 0 (Nadam:
        (1-β₁)/(1-β₁ᵗ)), c_v = 1/√(1-β₂ᵗ)."""
        bc1 = 1.0 - self.beta1**self.t
        c_m, c_g = (self.beta1 / bc1, (1.0 - self.beta1) / bc1) if self.nesterov else (1.0 / bc1, 0.0)
        return c_m, c_g, 1.0 / math.sqrt(1.0 - self.beta2**self.t)


def _fmix32(x: Any) -> Any:
    """murmur3's 32-bit finaliser on a uint32 array (multiplications wrap modulo 2³²)."""
    x = x ^ (x >> 16)
    x = x * _MIX1
    x = x ^ (x >> 13)
    x = x * _MIX2
    return x ^ (x >> 16)
