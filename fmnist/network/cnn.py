"""The convolutional network ``fmnist train --model cnn`` builds: blocks of convolutions and a max pool, then a
dense head, as one ``Sequential``."""

from __future__ import annotations

from collections.abc import Sequence

from fmnist.backend import Backend
from fmnist.network.layers import (
    BatchNorm,
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    Linear,
    MaxPool2d,
    Unflatten,
    activation_layer,
)
from fmnist.network.sequential import Sequential


def conv_net_layers(
    image_shape: tuple[int, int, int] = (1, 28, 28),
    conv_channels: Sequence[int] = (32, 64),
    convs_per_block: int | Sequence[int] = 1,
    kernel_size: int = 3,
    batch_norm: bool = True,
    hidden: Sequence[int] = (128,),
    num_classes: int = 10,
    activation: str = "relu",
    dropout: float = 0.0,
    conv_dropout: float = 0.0,
) -> list[Layer]:
    """The layers of a CNN taking flat rows of ``image_shape`` pixels: per entry of ``conv_channels`` a block of
    ``convs_per_block`` × (Conv2d with "same" padding, BatchNorm when ``batch_norm``, activation) and a 2x2 max
    pool (one count for every block, or one per block); Dropout(``conv_dropout``) on the last block's features;
    then Flatten, per ``hidden`` width Linear, BatchNorm, activation and Dropout(``dropout``); then the Linear to
    ``num_classes`` logits. A convolution or linear layer followed by batch norm has no bias (the normalisation
    removes it).

    The last activation of a block comes after its pool: max-pooling commutes with every activation here, as
    they are all non-decreasing (max f(z) = f(max z)), so the function is the same and the activation touches a
    quarter of the values.
    """
    channels, height, width = image_shape
    counts = [convs_per_block] * len(conv_channels) if isinstance(convs_per_block, int) else list(convs_per_block)
    if len(counts) == 1:
        counts *= len(conv_channels)
    layers: list[Layer] = [Unflatten(image_shape)]
    for out, count in zip(conv_channels, counts, strict=True):
        for i in range(count):
            layers.append(Conv2d(channels, out, kernel_size, padding=kernel_size // 2, bias=not batch_norm))
            if batch_norm:
                layers.append(BatchNorm(out))
            if i < count - 1:
                layers.append(activation_layer(activation))
            channels = out
        layers += [MaxPool2d(2), activation_layer(activation)]
        height, width = height // 2, width // 2
    if conv_dropout:
        layers.append(Dropout(conv_dropout))
    layers.append(Flatten())
    features = channels * height * width
    for width_out in hidden:
        layers.append(Linear(features, width_out, bias=not batch_norm))
        if batch_norm:
            layers.append(BatchNorm(width_out))
        layers.append(activation_layer(activation))
        if dropout:
            layers.append(Dropout(dropout))
        features = width_out
    layers.append(Linear(features, num_classes))
    return layers


def conv_net(
    image_shape: tuple[int, int, int] = (1, 28, 28),
    backend: Backend | str = "cpu",
    seed: int | None = 0,
    weight_init: str = "he",
    **architecture: object,
) -> Sequential:
    """A ``Sequential`` of ``conv_net_layers(image_shape, **architecture)`` taking flat rows of pixels."""
    layers = conv_net_layers(image_shape, **architecture)  # type: ignore[arg-type]
    size = image_shape[0] * image_shape[1] * image_shape[2]
    return Sequential(layers, backend=backend, seed=seed, weight_init=weight_init, input_shape=(size,))
