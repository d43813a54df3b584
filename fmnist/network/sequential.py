"""``Sequential``: layers applied in order, one forward and one backward, parameters in one flat buffer.

The model builds its layers: it gives each its parameters (views into one ``FlatParameters`` buffer, so every
optimizer updates the whole model in one pass), its buffers (such as batch norm's running statistics), the
backend's ``Ops`` and its call-site keys. Keys group a layer with the elementwise layers after it (activation,
dropout, batch norm) so that the fast ``Ops`` run such a chain in place; the last chain gets fresh arrays, so the
logits a caller receives are never overwritten by a later call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fmnist.backend import Backend, NoiseStream, get_backend
from fmnist.network.init import get_initializer
from fmnist.network.layers import BatchNorm, Conv2d, Layer, Linear, MaxPool2d, ReLU, Unflatten, layer_from_spec
from fmnist.network.parameters import FlatParameters, Parameter


class Sequential:
    """Layers applied in order: ``forward(x)`` gives the logits, ``backward(dlogits)`` fills every parameter's
    ``.grad``. ``train()``/``eval()`` switch batch norm and dropout between training and evaluation.

    Args:
        layers: the layers, input first.
        backend: a ``Backend`` or device name; arrays live on its device.
        seed: seed of the host RNG the weights are drawn from (the same weights on every device), and of the
            model's own noise stream (dropout outside a trainer).
        weight_init: ``random``, ``xavier`` or ``he`` for the weights of linear and convolution layers.
        input_shape: the per-sample input shape, e.g. ``(784,)`` or ``(1, 28, 28)``; checks the layers fit
            together and sizes evaluation chunks. Inferred from the first layer where it can be.
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        backend: Backend | str = "cpu",
        seed: int | None = 0,
        weight_init: str = "he",
        input_shape: Sequence[int] | None = None,
    ):
        self.layers = list(layers)
        if not self.layers or not all(isinstance(layer, Layer) for layer in self.layers):
            raise ValueError("a Sequential model needs a list of layers (fmnist.network layers)")
        self.backend = get_backend(backend)
        self.seed = seed
        self.weight_init = str(weight_init)
        self.noise = NoiseStream(seed or 0)
        self.training = True
        self._noise: Any = None
        self.input_shape = tuple(int(s) for s in input_shape) if input_shape is not None else self._infer_input()
        self.shapes = self._shapes()  # per-sample input shape of each layer, then the output shape (when known)
        self._build()

    # --- construction ---------------------------------------------------------------------------------------

    def _infer_input(self) -> tuple[int, ...] | None:
        first = self.layers[0]
        if isinstance(first, Linear):
            return (first.in_features,)
        return None

    def _shapes(self) -> list[tuple[int, ...] | None]:
        shapes: list[tuple[int, ...] | None] = [self.input_shape]
        for layer in self.layers:
            shape = shapes[-1]
            shapes.append(layer.output_shape(shape) if shape is not None else None)
        return shapes

    def param_name(self, index: int, layer: Layer, name: str) -> str:
        """The name of parameter (or buffer) ``name`` of layer number ``index``: ``"3.weight"`` (PyTorch's)."""
        return f"{index}.{name}"

    def _build(self) -> None:
        shapes: list[tuple[str, tuple[int, ...]]] = []
        owners: list[tuple[Layer, str]] = []
        for i, layer in enumerate(self.layers):
            for name, shape in layer.param_shapes(self.shapes[i] or ()):
                shapes.append((self.param_name(i, layer, name), shape))
                owners.append((layer, name))
        self.flat = FlatParameters(self.backend, shapes)
        for (layer, name), param in zip(owners, self.flat.params, strict=True):
            layer.params[name] = param
        self.buffers: dict[str, Any] = {}
        for i, layer in enumerate(self.layers):
            layer.model, layer.ops = self, self.backend.ops
            for name, shape, value in layer.buffer_shapes(self.shapes[i] or ()):
                array = self.backend.zeros(shape)
                array[...] = value
                layer.buffers[name] = self.buffers[self.param_name(i, layer, name)] = array
        rng = self.backend.rng(self.seed)
        init = get_initializer(self.weight_init)
        for layer in self.layers:
            layer.init_parameters(rng, init)
        self._assign_keys()

    def _assign_keys(self) -> None:
        """Forward chains (a layer and the elementwise layers after it) share a key; the backward chain that
        computes a layer's input gradient runs under the key of the layer above the elementwise ones."""
        chain, keys = -1, []
        for layer in self.layers:
            chain += 0 if layer.elementwise and chain >= 0 else 1
            keys.append((id(self), chain))
        last = keys[-1]
        for layer, key in zip(self.layers, keys, strict=True):
            layer.key = None if key == last else key  # the logits' chain: fresh arrays for the caller
        above = None
        for layer, key in zip(reversed(self.layers), reversed(keys), strict=True):
            if not layer.elementwise:
                above = key
            layer.backward_key = above
        first = next((i for i, layer in enumerate(self.layers) if layer.params), len(self.layers))
        for i, layer in enumerate(self.layers):
            layer.input_grad = i > first
        self._plan = self._fuse()
        self._trained = [step for step in self._plan if any(layer.params for layer in _members(step))]

    def _fuse(self) -> list[Any]:
        """The layers as the passes run them: a batch norm of images followed by a 2x2 max pool and a ReLU (in
        either order: they commute) runs as one ``Ops.batch_norm_pool_relu`` call, a batch norm followed by a ReLU
        as one ``Ops.batch_norm_relu`` call, and a linear layer followed by a ReLU as one ``Ops.linear_relu`` call;
        a fast class fuses them."""
        plan: list[Any] = []
        i = 0
        while i < len(self.layers):
            step = self._fused_at(i)
            plan.append(step if step is not None else self.layers[i])
            i += len(step.layers) if step is not None else 1
        return plan

    def _fused_at(self, i: int) -> Any:
        """The fused step that starts at layer ``i``, or None."""
        group = self.layers[i : i + 3]
        shape = self.shapes[i]
        if isinstance(group[0], Linear) and len(group) > 1 and isinstance(group[1], ReLU):
            return _LinearReLU(group[0], group[1])
        if (
            len(group) == 3
            and isinstance(group[0], BatchNorm)
            and {type(group[1]), type(group[2])} == {MaxPool2d, ReLU}
            and shape is not None
            and len(shape) == 3
        ):
            pool = group[1] if isinstance(group[1], MaxPool2d) else group[2]
            if (pool.kernel_size, pool.stride) == (2, 2):
                return _BatchNormPoolReLU(group[0], pool, group)
        if isinstance(group[0], BatchNorm) and len(group) > 1 and isinstance(group[1], ReLU):
            return _BatchNormReLU(group[0], group[1])
        return None

    @classmethod
    def from_spec(cls, spec: dict[str, Any], backend: Backend | str = "cpu") -> Sequential:
        """Rebuild a model from ``spec()`` (weights not included: load them with ``load_state_dict``)."""
        layers = [layer_from_spec(s) for s in spec["layers"]]
        return cls(layers, backend=backend, seed=None, input_shape=spec.get("input_shape"))

    def spec(self) -> dict[str, Any]:
        """The architecture as plain data, for model files."""
        shape = list(self.input_shape) if self.input_shape is not None else None
        return {"model": "sequential", "layers": [layer.spec() for layer in self.layers], "input_shape": shape}

    # --- use ------------------------------------------------------------------------------------------------

    def noise_stream(self) -> NoiseStream:
        """The noise of the pass in progress: the one given to ``forward``, else the model's own."""
        return self._noise if self._noise is not None else self.noise

    def forward(self, x: Any, noise: NoiseStream | None = None) -> Any:
        """Logits for a batch x: (n, features) rows or (n, C, H, W) images. In training mode dropout draws from
        ``noise`` (the trainer's stream; the model's own when none is given) and batch norm uses batch
        statistics. Intermediate results live in buffers the backend's ``Ops`` may reuse at the next call."""
        self._noise = noise
        if x.ndim == 4:
            x = self.backend.ops.to_layout(x)
        for step in self._plan:
            x = step.forward(x)
        return x

    __call__ = forward

    def backward(self, dlogits: Any) -> None:
        """Back-propagate dL/dlogits through the last ``forward`` and overwrite every parameter's ``grad``."""
        dy = dlogits
        first = self._plan.index(self._trained[0]) if self._trained else len(self._plan)
        for step in reversed(self._plan[first:]):
            dy = step.backward(dy)

    def train(self, mode: bool = True) -> Sequential:
        """Training mode (batch statistics, dropout) or, with ``mode=False``, evaluation mode."""
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def eval(self) -> Sequential:
        return self.train(False)

    def predict(self, x: Any, batch_size: int = 4096) -> Any:
        """Class indices (n,) for inputs x, evaluated in chunks."""
        xp, n = self.backend.xp, int(x.shape[0])
        out = [xp.argmax(self.forward(x[i : min(i + batch_size, n), ...]), axis=1) for i in range(0, n, batch_size)]
        return self.backend.concat(out) if len(out) > 1 else out[0]

    def parameters(self) -> list[Parameter]:
        """Every trainable parameter, in layer order."""
        return list(self.flat.params)

    # --- state: parameters and buffers -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Parameters and buffers by name (device arrays; views, copy before keeping), as PyTorch's."""
        return {**{p.name: p.data for p in self.flat.params}, **self.buffers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy arrays (host or device) into the parameters and buffers in place; names and shapes must match."""
        expected = {name: tuple(a.shape) for name, a in self.state_dict().items()}
        got = {name: tuple(arr.shape) for name, arr in state.items()}
        if got != expected:
            raise ValueError(f"state does not match this model: expected {expected}, got {got}")
        for name, target in self.state_dict().items():
            target[...] = self.backend.asarray(state[name], dtype=self.backend.dtype)

    def snapshot(self) -> tuple[Any, dict[str, Any]]:
        """A device copy of the parameters and buffers (e.g. the best epoch's, for early stopping)."""
        be = self.backend
        return be.copy(self.flat.data), {name: be.copy(a) for name, a in self.buffers.items()}

    def restore(self, snapshot: tuple[Any, dict[str, Any]]) -> None:
        """Put a ``snapshot()`` back."""
        data, buffers = snapshot
        self.flat.data[...] = data
        for name, value in buffers.items():
            self.buffers[name][...] = value

    # --- sizes ----------------------------------------------------------------------------------------------

    @property
    def activation_floats_per_sample(self) -> int:
        """Values one sample keeps through a forward pass (inputs and every layer's output), for memory sizing."""
        known = [math.prod(s) for s in self.shapes if s is not None]
        return 2 * sum(known) if known else 4096

    @property
    def gemm_flops_per_sample(self) -> int:
        """Floating-point operations of the matrix products of one training sample (forward + two backward)."""
        total = 0
        for layer, shape in zip(self.layers, self.shapes[1:], strict=True):
            if isinstance(layer, Linear):
                total += 6 * layer.in_features * layer.out_features
            elif isinstance(layer, Conv2d) and shape is not None:
                total += 6 * layer.in_channels * layer.kernel_size**2 * math.prod(shape)
        return total

    @property
    def num_outputs(self) -> int:
        """The number of logits (classes)."""
        last = self.shapes[-1]
        if last is not None:
            return int(last[0])
        return next(layer.out_features for layer in reversed(self.layers) if isinstance(layer, Linear))

    def describe(self) -> str:
        """The architecture on one line, e.g. ``CNN 1x28x28-conv32-bn-relu-pool2-...-fc10``."""
        parts = [layer.short() for layer in self.layers if layer.short()]
        kind = "CNN" if any(isinstance(layer, Conv2d | Unflatten) for layer in self.layers) else "Sequential"
        return f"{kind} {'-'.join(parts)}"

    def __repr__(self) -> str:
        inner = ",\n  ".join(layer.describe() for layer in self.layers)
        return f"Sequential([\n  {inner}\n])"


class _BatchNormPoolReLU:
    """A batch norm of images, a 2x2 max pool and a ReLU run as one ``Ops`` call (their layers keep their
    parameters, buffers, modes and keys); the model's passes call it in their place."""

    def __init__(self, norm: BatchNorm, pool: MaxPool2d, layers: list[Layer]):
        self.norm, self.pool, self.layers = norm, pool, layers

    def forward(self, x: Any) -> Any:
        bn = self.norm
        g, b = bn.params["weight"].data, bn.params["bias"].data
        rm, rv = bn.buffers["running_mean"], bn.buffers["running_var"]
        self._trained = bn.training
        y, self._saved = bn.ops.batch_norm_pool_relu(
            x, g, b, rm, rv, bn.momentum, bn.eps, bn.training, self.pool.kernel_size, self.pool.stride,
            key=self.pool.key,
        )  # fmt: skip
        return y

    def backward(self, dy: Any) -> Any:
        bn = self.norm
        g, b = bn.params["weight"], bn.params["bias"]
        return bn.ops.batch_norm_pool_relu_backward(
            dy, self._saved, g.data, g.grad, b.grad, self._trained, self.pool.kernel_size, self.pool.stride,
            key=bn.backward_key,
        )  # fmt: skip


class _BatchNormReLU:
    """A batch norm and the ReLU after it run as one ``Ops`` call (``batch_norm_relu``)."""

    def __init__(self, norm: BatchNorm, relu: ReLU):
        self.norm, self.layers = norm, [norm, relu]

    def forward(self, x: Any) -> Any:
        bn = self.norm
        g, b = bn.params["weight"].data, bn.params["bias"].data
        rm, rv = bn.buffers["running_mean"], bn.buffers["running_var"]
        self._trained = bn.training
        y, self._saved = bn.ops.batch_norm_relu(x, g, b, rm, rv, bn.momentum, bn.eps, bn.training, key=bn.key)
        return y

    def backward(self, dy: Any) -> Any:
        bn = self.norm
        g, b = bn.params["weight"], bn.params["bias"]
        return bn.ops.batch_norm_relu_backward(
            dy, self._saved, g.data, g.grad, b.grad, self._trained, key=bn.backward_key
        )


class _LinearReLU:
    """A linear layer and the ReLU after it run as one ``Ops`` call (``linear_relu``); the layers keep their
    parameters and keys."""

    def __init__(self, linear: Linear, relu: ReLU):
        self.linear, self.relu, self.layers = linear, relu, [linear, relu]

    def forward(self, x: Any) -> Any:
        layer = self.linear
        self._x = x
        b = layer.params["bias"].data if layer.bias else None
        self._a = layer.ops.linear_relu(x, layer.params["weight"].data, b, key=layer.key)
        return self._a

    def backward(self, da: Any) -> Any:
        layer = self.linear
        w = layer.params["weight"]
        b_grad = layer.params["bias"].grad if layer.bias else None
        return layer.ops.linear_relu_backward(
            self._x, w.data, self._a, da, w.grad, b_grad, layer.input_grad, key=layer.backward_key
        )


def _members(step: Any) -> list[Layer]:
    return step.layers if isinstance(step, _BatchNormPoolReLU | _BatchNormReLU | _LinearReLU) else [step]
