"""The network library: activations, initialisers, losses, the MLP and optimizers.

Array code here goes only through a backend's namespace (``backend.xp``); nothing imports NumPy or CuPy.
"""

from fmnist.network.activations import ACTIVATIONS, Activation, get_activation
from fmnist.network.init import INITIALISERS, get_initializer
from fmnist.network.losses import LOSSES, cross_entropy, get_loss, mean_squared_error
from fmnist.network.mlp import MLP
from fmnist.network.optimizers import OPTIMIZERS, Optimizer, get_optimizer
from fmnist.network.parameters import FlatParameters, Parameter

__all__ = [
    "ACTIVATIONS",
    "INITIALISERS",
    "LOSSES",
    "MLP",
    "OPTIMIZERS",
    "Activation",
    "FlatParameters",
    "Optimizer",
    "Parameter",
    "cross_entropy",
    "get_activation",
    "get_initializer",
    "get_loss",
    "get_optimizer",
    "mean_squared_error",
]
