"""The multilayer perceptron: affine layers with one hidden activation, logits out, hand-written backward."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from fmnist.backend import Backend, get_backend
from fmnist.network.activations import Activation, get_activation
from fmnist.network.init import get_initializer
from fmnist.network.losses import fused_cross_entropy
from fmnist.network.parameters import FlatParameters, Parameter


class MLP:
    """An MLP ``sizes[0] -> sizes[1] -> ... -> sizes[-1]`` whose last layer returns logits.

    Hidden layer i computes ``a_i = f(a_{i-1} W_i + b_i)`` with ``W_i`` shaped (fan_in, fan_out). All weights and
    biases are views into one flat buffer (``self.flat``), and so are their gradients.

    Args:
        sizes: layer widths, input first and classes last, e.g. ``[784, 128, 10]``; at least two entries.
        activation: hidden activation name (``identity sigmoid tanh ReLU|relu``) or an ``Activation``.
        weight_init: ``random Xavier|xavier he``.
        backend: a ``Backend`` or device name; arrays live on its device.
        seed: seed of the host RNG the weights are drawn from (same weights on every device).
        dropout: inverted-dropout rate p of every hidden layer's output during training (0: off). A kept unit is
            scaled by 1/(1-p), so evaluation (no ``rng`` given) needs no rescaling.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str | Activation = "relu",
        weight_init: str = "xavier",
        backend: Backend | str = "cpu",
        seed: int | None = 0,
        dropout: float = 0.0,
    ):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or any(s <= 0 for s in sizes):
            raise ValueError(f"sizes must hold at least two positive widths, got {sizes}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = float(dropout)
        self.backend = get_backend(backend)
        self.sizes = sizes
        self.activation = get_activation(activation)
        self.weight_init = str(weight_init)
        init = get_initializer(weight_init)

        shapes: list[tuple[str, tuple[int, ...]]] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            shapes += [(f"layers.{i}.weight", (fan_in, fan_out)), (f"layers.{i}.bias", (fan_out,))]
        self.flat = FlatParameters(self.backend, shapes)
        self.weights = self.flat.params[0::2]
        self.biases = self.flat.params[1::2]
        rng = self.backend.rng(seed)
        for weight, fan_in, fan_out in zip(self.weights, sizes[:-1], sizes[1:], strict=True):
            weight.data[...] = init(rng, fan_in, fan_out)
        self._inputs: list[Any] = []
        self._outputs: list[Any] = []  # hidden activations before dropout (for f')
        self._masks: list[Any] = []  # scaled dropout masks, when training with dropout

    @property
    def num_layers(self) -> int:
        """Number of affine layers (hidden layers + the output layer)."""
        return len(self.weights)

    @property
    def gemm_flops_per_sample(self) -> int:
        """Floating-point operations of the matrix products of one training sample (forward + backward)."""
        return 6 * sum(a * b for a, b in itertools.pairwise(self.sizes))

    def parameters(self) -> list[Parameter]:
        """Every trainable parameter, in layer order (weight, bias, weight, bias, ...)."""
        return list(self.flat.params)

    def forward(self, x: Any, rng: Any = None) -> Any:
        """Logits (n, classes) for inputs x (n, sizes[0]); caches what ``backward`` needs.

        Given ``rng`` (a backend ``HostRNG``) and ``dropout > 0``, this is a training pass: each hidden output is
        multiplied by a mask of 0 and 1/(1-p) drawn from ``rng``. Without ``rng`` it is the evaluation pass.
        """
        xp = self.backend.xp
        inputs, outputs, masks = [], [], []
        last = self.num_layers - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            inputs.append(x)
            z = xp.matmul(x, weight.data) + bias.data
            if i == last:
                x = z
                break
            x = self.activation.forward(xp, z)
            outputs.append(x)
            if rng is not None and self.dropout:
                keep = xp.astype(rng.random(tuple(x.shape)) >= self.dropout, x.dtype)
                masks.append(keep * (1.0 / (1.0 - self.dropout)))
                x = x * masks[-1]
        self._inputs, self._outputs, self._masks = inputs, outputs, masks
        return x

    __call__ = forward

    def backward(self, dlogits: Any) -> None:
        """Back-propagate dL/dlogits from the last ``forward`` and overwrite every parameter's ``grad``."""
        if not self._inputs:
            raise RuntimeError("backward() needs a forward() first")
        xp = self.backend.xp
        dz = dlogits
        for i in range(self.num_layers - 1, -1, -1):
            a_in = self._inputs[i]
            self.weights[i].grad[...] = xp.matmul(a_in.T, dz)
            self.biases[i].grad[...] = xp.sum(dz, axis=0)
            if i > 0:
                da = xp.matmul(dz, self.weights[i].data.T)
                if self._masks:
                    da = da * self._masks[i - 1]
                dz = self.activation.backward(xp, self._outputs[i - 1], da)

    def train_step(self, x: Any, y: Any, loss_fn: Any, optimizer: Any, rng: Any = None) -> tuple[Any, Any]:
        """Forward, loss, backward and ``optimizer.step()`` on one batch; returns (loss, number correct) as
        device scalars, without a host round-trip.

        With the backend's fused kernels this runs the fast path (preallocated workspaces, in-place activations,
        fused softmax + cross-entropy gradient); otherwise the reference ``forward``/``backward``. Both give the
        same parameters (parity tests). ``rng`` draws the dropout masks (needed when ``dropout > 0``).
        """
        if self.dropout and rng is None:
            raise ValueError("a model with dropout needs rng= for its training step")
        xp = self.backend.xp
        kernels = self.backend.kernels
        if kernels is None:
            logits = self.forward(x, rng)
            correct = xp.sum(xp.astype(xp.argmax(logits, axis=1) == y, xp.int64))
            loss, dlogits = loss_fn(logits, y)
            self.backward(dlogits)
            optimizer.step()
            return loss, correct
        n, last, act = int(x.shape[0]), self.num_layers - 1, self.activation.name
        inputs, outputs, masks = [], [], []
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            inputs.append(x)
            z = kernels.linear(x, weight.data, bias.data, out=kernels.buffer(("z", i), (n, weight.shape[1])))
            x = z if i == last else kernels.activate(act, z)
            if i < last:
                outputs.append(x)
                if self.dropout:
                    x, mask = kernels.dropout(x, rng.random(tuple(x.shape)), self.dropout, key=i)
                    masks.append(mask)
        correct = xp.sum(xp.argmax(x, axis=1) == y)
        smoothing = fused_cross_entropy(loss_fn)
        if smoothing is not None:
            loss, dz = kernels.softmax_cross_entropy(x, y, smoothing)  # dlogits overwrite the logits workspace
        else:
            loss, dz = loss_fn(x, y)
        for i in range(last, -1, -1):
            kernels.matmul(inputs[i].T, dz, out=self.weights[i].grad)
            kernels.sum_rows(dz, out=self.biases[i].grad)
            if i > 0:
                da = kernels.matmul(dz, self.weights[i].data.T, out=kernels.buffer(("da", i), inputs[i].shape))
                if masks:
                    kernels.dropout_backward(da, masks[i - 1], self.dropout)
                dz = kernels.activation_backward(act, outputs[i - 1], da)
        self._inputs, self._outputs, self._masks = [], [], []  # workspaces are reused: no stale backward cache
        optimizer.step()
        return loss, correct

    def predict(self, x: Any, batch_size: int = 4096) -> Any:
        """Class indices (n,) for inputs x, evaluated in chunks; does not disturb the backward cache."""
        xp = self.backend.xp
        saved, n = (self._inputs, self._outputs, self._masks), x.shape[0]
        out = [xp.argmax(self.forward(x[i : min(i + batch_size, n), ...]), axis=1) for i in range(0, n, batch_size)]
        self._inputs, self._outputs, self._masks = saved
        return xp.concat(out) if len(out) > 1 else out[0]

    def state_dict(self) -> dict[str, Any]:
        """Parameter arrays by name (device arrays; views, copy before keeping)."""
        return {p.name: p.data for p in self.flat.params}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy arrays (host or device) into the parameters in place; names and shapes must match exactly."""
        expected = {p.name: p.shape for p in self.flat.params}
        got = {name: tuple(arr.shape) for name, arr in state.items()}
        if got != expected:
            raise ValueError(f"state does not match this model: expected {expected}, got {got}")
        for p in self.flat.params:
            p.data[...] = self.backend.asarray(state[p.name], dtype=self.backend.dtype)

    def __repr__(self) -> str:
        drop = f", dropout={self.dropout}" if self.dropout else ""
        return f"MLP(sizes={self.sizes}, activation={self.activation}, weight_init={self.weight_init!r}{drop})"
