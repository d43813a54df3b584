"""The multilayer perceptron: a ``Sequential`` of affine layers with one hidden activation (and dropout), logits
out. Its parameters keep the names ``layers.{i}.weight``/``layers.{i}.bias`` and its weights the
(fan_in, fan_out) layout, so model files and checkpoints of every version load."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from fmnist.backend import Backend, NoiseStream
from fmnist.network.activations import Activation, get_activation
from fmnist.network.layers import Dropout, Layer, Linear, activation_layer
from fmnist.network.sequential import Sequential


class MLP(Sequential):
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
            scaled by 1/(1-p), so evaluation needs no rescaling.

    ``forward(x, noise)`` is a training pass (dropout on, drawn from ``noise``); ``forward(x)`` the evaluation pass.
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
        self.sizes = sizes
        self.activation = get_activation(activation)
        self.dropout = float(dropout)
        layers: list[Layer] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(Linear(fan_in, fan_out))
            if i < len(sizes) - 2:
                layers.append(activation_layer(self.activation))
                if self.dropout:
                    layers.append(Dropout(self.dropout))
        super().__init__(layers, backend=backend, seed=seed, weight_init=weight_init, input_shape=(sizes[0],))
        self.weights = self.flat.params[0::2]
        self.biases = self.flat.params[1::2]

    def param_name(self, index: int, layer: Layer, name: str) -> str:
        affine = sum(isinstance(earlier, Linear) for earlier in self.layers[:index])
        return f"layers.{affine}.{name}"

    @property
    def num_layers(self) -> int:
        """Number of affine layers (hidden layers + the output layer)."""
        return len(self.weights)

    def forward(self, x: Any, noise: NoiseStream | None = None) -> Any:
        """Logits (n, classes) for inputs x (n, sizes[0]): a training pass with dropout drawn from ``noise`` when
        it is given, the evaluation pass otherwise."""
        self.train(noise is not None)
        return super().forward(x, noise)

    __call__ = forward

    def spec(self) -> dict[str, Any]:
        return {"model": "mlp", "sizes": self.sizes, "activation": self.activation.name, "dropout": self.dropout}

    def describe(self) -> str:
        """The architecture in a few words, e.g. ``MLP 784-256-256-10 relu``."""
        drop = f" dropout {self.dropout:g}" if self.dropout else ""
        return f"MLP {'-'.join(map(str, self.sizes))} {self.activation}{drop}"

    def __repr__(self) -> str:
        drop = f", dropout={self.dropout}" if self.dropout else ""
        return f"MLP(sizes={self.sizes}, activation={self.activation}, weight_init={self.weight_init!r}{drop})"


def model_from_spec(spec: dict[str, Any], backend: Backend | str = "cpu") -> Sequential:
    """Rebuild a model (MLP or Sequential) from its ``spec()``, weights not included (``load_state_dict``)."""
    if spec.get("model") == "mlp":
        return MLP(spec["sizes"], activation=spec["activation"], dropout=spec.get("dropout", 0.0), backend=backend)
    if spec.get("model") == "sequential":
        return Sequential.from_spec(spec, backend=backend)
    raise ValueError(f"unknown model description {spec.get('model')!r}")
