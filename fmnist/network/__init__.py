"""The network library: layers, the Sequential model, the MLP and the CNN, activations, initialisers, losses,
optimizers.

Array code here goes only through a backend's namespace (``backend.xp``); nothing imports NumPy or CuPy.
"""

from fmnist.network.activations import ACTIVATIONS, Activation, get_activation
from fmnist.network.cnn import conv_net, conv_net_layers
from fmnist.network.init import INITIALISERS, get_initializer
from fmnist.network.layers import (
    BatchNorm,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Tanh,
    Unflatten,
)
from fmnist.network.losses import LOSSES, cross_entropy, get_loss, mean_squared_error
from fmnist.network.mlp import MLP, model_from_spec
from fmnist.network.optimizers import OPTIMIZERS, Optimizer, get_optimizer
from fmnist.network.parameters import FlatParameters, Parameter
from fmnist.network.sequential import Sequential

__all__ = [
    "ACTIVATIONS",
    "INITIALISERS",
    "LOSSES",
    "MLP",
    "OPTIMIZERS",
    "Activation",
    "BatchNorm",
    "Conv2d",
    "Dropout",
    "FlatParameters",
    "Flatten",
    "Identity",
    "Layer",
    "Linear",
    "MaxPool2d",
    "Optimizer",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "Unflatten",
    "conv_net",
    "conv_net_layers",
    "cross_entropy",
    "get_activation",
    "get_initializer",
    "get_loss",
    "get_optimizer",
    "mean_squared_error",
    "model_from_spec",
]
