"""The multilayer perceptron: affine layers with one hidden activation, logits out, hand-written backward.

One forward and one backward, composed of the backend's ``Ops`` calls; the speed comes from the ops (workspaces,
fused kernels), not from a second copy of this logic."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from fmnist.backend import Backend, get_backend
from fmnist.network.activations import Activation, get_activation
from fmnist.network.init import get_initializer
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
            scaled by 1/(1-p), so evaluation (no ``noise`` given) needs no rescaling.
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
        self._cache: list[tuple[Any, Any, Any]] = []  # per layer: (input, activation output, dropout mask)

    @property
    def num_layers(self) -> int:
        """Number of affine layers (hidden layers + the output layer)."""
        return len(self.weights)

    @property
    def gemm_flops_per_sample(self) -> int:
        """Floating-point operations of the matrix products of one training sample (forward + backward)."""
        return 6 * sum(a * b for a, b in itertools.pairwise(self.sizes))

    @property
    def activation_floats_per_sample(self) -> int:
        """Activations one sample keeps in a forward pass (input, pre-activations and outputs): sizes memory."""
        return self.sizes[0] + 2 * sum(self.sizes[1:])

    def parameters(self) -> list[Parameter]:
        """Every trainable parameter, in layer order (weight, bias, weight, bias, ...)."""
        return list(self.flat.params)

    def forward(self, x: Any, noise: Any = None) -> Any:
        """Logits (n, classes) for inputs x (n, sizes[0]); caches what ``backward`` needs.

        Given ``noise`` (a ``NoiseStream``, which the trainer owns) and ``dropout > 0``, this is a training pass:
        each hidden output is multiplied by a mask of 0 and 1/(1-p) drawn from it. Without it, the evaluation pass.
        Hidden activations live in buffers the backend's ``Ops`` may reuse at the next ``forward``; the returned
        logits are a fresh array.
        """
        ops, me = self.backend.ops, id(self)
        cache = []
        last = self.num_layers - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            if i == last:
                self._cache = [*cache, (x, None, None)]
                return ops.linear(x, weight.data, bias.data)
            z = ops.linear(x, weight.data, bias.data, key=(me, i))
            a = self.activation.forward(ops, z, key=(me, i))
            out, mask = a, None
            if noise is not None and self.dropout:
                out, mask = ops.dropout(a, self.dropout, *noise.next(), key=(me, i))
            cache.append((x, a, mask))  # (layer input, activation output, dropout mask)
            x = out
        raise AssertionError("unreachable: an MLP has at least one layer")

    __call__ = forward

    def backward(self, dlogits: Any) -> None:
        """Back-propagate dL/dlogits from the last ``forward`` and overwrite every parameter's ``grad``."""
        if not self._cache:
            raise RuntimeError("backward() needs a forward() first")
        ops, me = self.backend.ops, id(self)
        dz = dlogits
        for i in range(self.num_layers - 1, -1, -1):
            weight, bias = self.weights[i], self.biases[i]
            key = (me, i)  # one key for the chain from dL/dz_i to dL/dz_(i-1): the ops may run it in place
            dx = ops.linear_backward(self._cache[i][0], weight.data, dz, weight.grad, bias.grad, i > 0, key=key)
            if i > 0:
                _, a, mask = self._cache[i - 1]
                if mask is not None:
                    dx = ops.dropout_backward(dx, mask, key=key)
                dz = self.activation.backward(ops, a, dx, key=key)

    def predict(self, x: Any, batch_size: int = 4096) -> Any:
        """Class indices (n,) for inputs x, evaluated in chunks."""
        xp, n = self.backend.xp, int(x.shape[0])
        out = [xp.argmax(self.forward(x[i : min(i + batch_size, n), ...]), axis=1) for i in range(0, n, batch_size)]
        return self.backend.concat(out) if len(out) > 1 else out[0]

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

    def describe(self) -> str:
        """The architecture in a few words, e.g. ``MLP 784-256-256-10 relu``."""
        drop = f" dropout {self.dropout:g}" if self.dropout else ""
        return f"MLP {'-'.join(map(str, self.sizes))} {self.activation}{drop}"

    def __repr__(self) -> str:
        drop = f", dropout={self.dropout}" if self.dropout else ""
        return f"MLP(sizes={self.sizes}, activation={self.activation}, weight_init={self.weight_init!r}{drop})"
