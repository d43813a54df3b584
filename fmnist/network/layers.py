"""Layers with hand-written backward passes, composed from the backend's ``Ops`` (the formulas live there).

Every layer has ``forward(x)``, ``backward(dy) -> dx``, ``parameters()`` and a train/eval mode (``training``). A
layer gets its parameters, buffers, ``Ops`` and call-site keys when a ``Sequential`` model builds it: parameters
are views into the model's one flat buffer, so every optimizer works unchanged.

Images are given as (n, C, H, W); between layers they are kept in the ``Ops`` class's layout (``ops.layout``):
``Unflatten`` and a model's input convert to it, ``Flatten`` converts back to NCHW order first, so a ``Linear``
after it sees features in PyTorch's order. Convolution weights are (out_channels, in_channels, kh, kw), linear
weights (in_features, out_features).
"""

from __future__ import annotations

import math
from typing import Any

from fmnist.network import activations
from fmnist.network.parameters import Parameter


class Layer:
    """Base class. Subclasses declare ``param_shapes``/``buffer_shapes`` and implement ``forward``/``backward``.

    ``elementwise`` layers keep their input's shape and may run in place in the buffers of the layer before
    them (activations, dropout, batch norm); the model gives them that layer's key.
    """

    elementwise = False

    def __init__(self) -> None:
        self.training = True
        self.params: dict[str, Parameter] = {}
        self.buffers: dict[str, Any] = {}
        self.ops: Any = None
        self.model: Any = None
        self.key: Any = None  # call site of the forward chain this layer belongs to
        self.backward_key: Any = None  # call site of the backward chain that computes this layer's input gradient
        self.input_grad = True  # False for the first layer with parameters: no gradient to pass further down

    # --- description (before the model builds the layer) ---------------------------------------------------------

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The per-sample output shape for a per-sample input ``shape`` (e.g. (C, H, W) or (features,))."""
        return shape

    def param_shapes(self, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
        """Names and shapes of the parameters, for a per-sample input ``shape``."""
        return []

    def buffer_shapes(self, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...], float]]:
        """Names, shapes and initial values of the buffers (state that is not trained, such as running means)."""
        return []

    def init_parameters(self, rng: Any, weight_init: Any) -> None:
        """Draw the initial parameter values (weights from ``weight_init``, biases 0)."""

    def describe(self) -> str:
        return type(self).__name__

    def spec(self) -> dict[str, Any]:
        """The layer as plain data (``type`` and constructor arguments), to rebuild it from a model file."""
        return {"type": type(self).__name__, **self._arguments()}

    def _arguments(self) -> dict[str, Any]:
        return {}

    def short(self) -> str:
        """A few characters for an architecture line (``conv32``, ``pool2``, ``fc128``)."""
        return type(self).__name__.lower()

    # --- use -------------------------------------------------------------------------------------------------

    def forward(self, x: Any) -> Any:
        raise NotImplementedError

    def backward(self, dy: Any) -> Any:
        raise NotImplementedError

    def parameters(self) -> list[Parameter]:
        return list(self.params.values())

    def train(self, mode: bool = True) -> Layer:
        self.training = mode
        return self

    def eval(self) -> Layer:
        return self.train(False)

    def __repr__(self) -> str:
        return self.describe()


class Linear(Layer):
    """y = x W + b with W (in_features, out_features), b (out_features,); ``bias=False`` for a layer that batch
    norm follows (the normalisation removes any constant)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.bias = bool(bias)
        if self.in_features <= 0 or self.out_features <= 0:
            raise ValueError(f"Linear needs positive sizes, got {in_features} -> {out_features}")

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if shape != (self.in_features,):
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) got inputs of shape {shape}")
        return (self.out_features,)

    def param_shapes(self, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
        weight = ("weight", (self.in_features, self.out_features))
        return [weight, ("bias", (self.out_features,))] if self.bias else [weight]

    def init_parameters(self, rng: Any, weight_init: Any) -> None:
        self.params["weight"].data[...] = weight_init(rng, self.in_features, self.out_features)

    def forward(self, x: Any) -> Any:
        self._x = x
        b = self.params["bias"].data if self.bias else None
        return self.ops.linear(x, self.params["weight"].data, b, key=self.key)

    def backward(self, dy: Any) -> Any:
        w = self.params["weight"]
        b_grad = self.params["bias"].grad if self.bias else None
        return self.ops.linear_backward(self._x, w.data, dy, w.grad, b_grad, self.input_grad, key=self.backward_key)

    def describe(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}{'' if self.bias else ', bias=False'})"

    def _arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {"in_features": self.in_features, "out_features": self.out_features}
        if not self.bias:  # recorded only when off: model files of every version read alike
            arguments["bias"] = False
        return arguments

    def short(self) -> str:
        return f"fc{self.out_features}"


class Conv2d(Layer):
    """2-D convolution of (C, H, W) images: weights (out_channels, in_channels, kernel, kernel) and biases
    (out_channels,) as PyTorch lays them out; ``stride`` and zero ``padding`` on every side. ``bias=False`` for a
    convolution followed by batch norm, which removes any per-channel constant (as ``nn.Conv2d(bias=False)``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = int(kernel_size), int(stride), int(padding)
        self.bias = bool(bias)
        if min(self.in_channels, self.out_channels, self.kernel_size, self.stride) <= 0 or self.padding < 0:
            raise ValueError(f"invalid {self.describe()}")

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 3 or shape[0] != self.in_channels:
            raise ValueError(f"{self.describe()} needs ({self.in_channels}, H, W) images, got {shape}")
        k, s, p = self.kernel_size, self.stride, self.padding
        h, w = (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1
        if h <= 0 or w <= 0:
            raise ValueError(f"{self.describe()} does not fit {shape[1]}x{shape[2]} images")
        return (self.out_channels, h, w)

    def param_shapes(self, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
        k = self.kernel_size
        weight = ("weight", (self.out_channels, self.in_channels, k, k))
        return [weight, ("bias", (self.out_channels,))] if self.bias else [weight]

    def init_parameters(self, rng: Any, weight_init: Any) -> None:
        area = self.kernel_size**2  # fan-in and fan-out count every kernel position
        shape = self.params["weight"].shape
        self.params["weight"].data[...] = weight_init(rng, self.in_channels * area, self.out_channels * area, shape)

    def forward(self, x: Any) -> Any:
        b = self.params["bias"].data if self.bias else None
        y, self._saved = self.ops.conv2d(x, self.params["weight"].data, b, self.stride, self.padding, key=self.key)
        return y

    def backward(self, dy: Any) -> Any:
        w = self.params["weight"]
        b_grad = self.params["bias"].grad if self.bias else None
        args = (self.stride, self.padding, self.input_grad)
        return self.ops.conv2d_backward(dy, self._saved, w.data, w.grad, b_grad, *args, key=self.backward_key)

    def describe(self) -> str:
        extra = (f", stride={self.stride}" if self.stride != 1 else "") + (
            f", padding={self.padding}" if self.padding else ""
        )
        extra += "" if self.bias else ", bias=False"
        return f"Conv2d({self.in_channels}, {self.out_channels}, {self.kernel_size}{extra})"

    def _arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
        }
        if not self.bias:  # recorded only when off: model files of every version read alike
            arguments["bias"] = False
        return arguments

    def short(self) -> str:
        return f"conv{self.out_channels}" + (f"k{self.kernel_size}" if self.kernel_size != 3 else "")


class MaxPool2d(Layer):
    """The maximum of each kernel×kernel window, windows ``stride`` apart (default: ``kernel_size``)."""

    def __init__(self, kernel_size: int, stride: int | None = None):
        super().__init__()
        self.kernel_size = int(kernel_size)
        self.stride = int(stride) if stride is not None else self.kernel_size
        if self.kernel_size <= 0 or self.stride <= 0:
            raise ValueError(f"invalid {self.describe()}")

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 3:
            raise ValueError(f"{self.describe()} needs (C, H, W) images, got {shape}")
        k, s = self.kernel_size, self.stride
        h, w = (shape[1] - k) // s + 1, (shape[2] - k) // s + 1
        if h <= 0 or w <= 0:
            raise ValueError(f"{self.describe()} does not fit {shape[1]}x{shape[2]} images")
        return (shape[0], h, w)

    def forward(self, x: Any) -> Any:
        self._shape = tuple(int(s) for s in x.shape)
        y, self._argmax = self.ops.max_pool2d(x, self.kernel_size, self.stride, key=self.key)
        return y

    def backward(self, dy: Any) -> Any:
        return self.ops.max_pool2d_backward(
            dy, self._argmax, self._shape, self.kernel_size, self.stride, key=self.backward_key
        )

    def describe(self) -> str:
        stride = f", stride={self.stride}" if self.stride != self.kernel_size else ""
        return f"MaxPool2d({self.kernel_size}{stride})"

    def _arguments(self) -> dict[str, Any]:
        return {"kernel_size": self.kernel_size, "stride": self.stride}

    def short(self) -> str:
        return f"pool{self.kernel_size}"


class BatchNorm(Layer):
    """Batch normalisation over the features of a 2-D input or the channels of images: batch statistics in
    training (running statistics updated with ``momentum``, as PyTorch defines it), running statistics in
    evaluation. Parameters ``weight`` (γ, ones) and ``bias`` (β, zeros); buffers ``running_mean`` (zeros) and
    ``running_var`` (ones)."""

    elementwise = True

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        if self.num_features <= 0 or not self.eps > 0 or not 0 <= self.momentum <= 1:
            raise ValueError(f"invalid {self.describe()}")

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if shape[0] != self.num_features or len(shape) not in (1, 3):
            raise ValueError(
                f"{self.describe()} needs ({self.num_features},) or ({self.num_features}, H, W), got {shape}"
            )
        return shape

    def param_shapes(self, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
        return [("weight", (self.num_features,)), ("bias", (self.num_features,))]

    def buffer_shapes(self, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...], float]]:
        return [("running_mean", (self.num_features,), 0.0), ("running_var", (self.num_features,), 1.0)]

    def init_parameters(self, rng: Any, weight_init: Any) -> None:
        self.params["weight"].data[...] = 1.0

    def forward(self, x: Any) -> Any:
        g, b = self.params["weight"].data, self.params["bias"].data
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        y, self._saved = self.ops.batch_norm(x, g, b, rm, rv, self.momentum, self.eps, self.training, key=self.key)
        self._trained = self.training
        return y

    def backward(self, dy: Any) -> Any:
        g, b = self.params["weight"], self.params["bias"]
        return self.ops.batch_norm_backward(
            dy, self._saved, g.data, g.grad, b.grad, self._trained, key=self.backward_key
        )

    def describe(self) -> str:
        return f"BatchNorm({self.num_features})"

    def _arguments(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    def short(self) -> str:
        return "bn"


class Flatten(Layer):
    """(n, C, H, W) images to (n, C·H·W) rows in NCHW order (PyTorch's ``nn.Flatten``)."""

    def short(self) -> str:
        return ""

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(shape),)

    def forward(self, x: Any) -> Any:
        self._shape = tuple(int(s) for s in x.shape)
        if len(self._shape) == 4:
            x = self.ops.from_layout(x, key=self.key)
        return self.model.backend.xp.reshape(x, (self._shape[0], -1))

    def backward(self, dy: Any) -> Any:
        if len(self._shape) != 4:
            return self.model.backend.xp.reshape(dy, self._shape)
        nchw = self.ops.nchw_shape(self._shape)
        return self.ops.to_layout(self.model.backend.xp.reshape(dy, nchw), key=self.backward_key)


class Unflatten(Layer):
    """(n, C·H·W) rows to (C, H, W) images (e.g. flat 784-pixel batches to (1, 28, 28))."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 3 or min(self.shape) <= 0:
            raise ValueError(f"Unflatten needs a (C, H, W) shape, got {shape}")

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if math.prod(shape) != math.prod(self.shape):
            raise ValueError(f"{self.describe()} cannot reshape inputs of shape {shape}")
        return self.shape

    def forward(self, x: Any) -> Any:
        self._shape = tuple(int(s) for s in x.shape)
        images = self.model.backend.xp.reshape(x, (self._shape[0], *self.shape))
        return self.ops.to_layout(images, key=self.key)

    def backward(self, dy: Any) -> Any:
        return self.model.backend.xp.reshape(self.ops.from_layout(dy, key=self.backward_key), self._shape)

    def describe(self) -> str:
        return f"Unflatten({', '.join(map(str, self.shape))})"

    def _arguments(self) -> dict[str, Any]:
        return {"shape": list(self.shape)}

    def short(self) -> str:
        return "x".join(map(str, self.shape))


class Dropout(Layer):
    """Inverted dropout in training: each value kept with probability 1 - p and scaled by 1/(1 - p); identity in
    evaluation. The noise comes from the model's noise stream (the trainer's, when a trainer drives it)."""

    elementwise = True

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: Any) -> Any:
        self._mask = None
        if not self.training or not self.p:
            return x
        y, self._mask = self.ops.dropout(x, self.p, *self.model.noise_stream().next(), key=self.key)
        return y

    def backward(self, dy: Any) -> Any:
        if self._mask is None:
            return dy
        return self.ops.dropout_backward(dy, self._mask, key=self.backward_key)

    def describe(self) -> str:
        return f"Dropout({self.p:g})"

    def _arguments(self) -> dict[str, Any]:
        return {"p": self.p}

    def short(self) -> str:
        return f"drop{self.p:g}"


class _Activation(Layer):
    """An activation function as a layer; the derivative is computed from the cached output."""

    elementwise = True
    function: activations.Activation

    def forward(self, x: Any) -> Any:
        self._a = self.function.forward(self.ops, x, key=self.key)
        return self._a

    def backward(self, dy: Any) -> Any:
        return self.function.backward(self.ops, self._a, dy, key=self.backward_key)

    def describe(self) -> str:
        return type(self).__name__


class ReLU(_Activation):
    function = activations.ReLU()


class Sigmoid(_Activation):
    function = activations.Sigmoid()


class Tanh(_Activation):
    function = activations.Tanh()


class Identity(_Activation):
    function = activations.Identity()


LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (Linear, Conv2d, MaxPool2d, BatchNorm, Flatten, Unflatten, Dropout, ReLU, Sigmoid, Tanh, Identity)
}

ACTIVATION_LAYERS: dict[str, type[_Activation]] = {
    "identity": Identity,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
}


def activation_layer(name: str | activations.Activation) -> Layer:
    """The layer of the activation called ``name`` (any spelling ``get_activation`` accepts)."""
    return ACTIVATION_LAYERS[activations.get_activation(name).name]()


def layer_from_spec(spec: dict[str, Any]) -> Layer:
    """Rebuild a layer from ``Layer.spec()`` (a model file's architecture)."""
    values = dict(spec)
    kind = values.pop("type", None)
    if kind not in LAYERS:
        raise ValueError(f"unknown layer type {kind!r}; valid: {', '.join(LAYERS)}")
    return LAYERS[kind](**values)
