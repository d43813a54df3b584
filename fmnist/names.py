"""One table of spellings: the canonical names of optimizers, activations, initialisers, losses, datasets, devices,
schedules and options, and every other spelling people write for them.

The command line, ``--config`` files, sweep files and the Python API all go through this table, so
``fmnist train -o nesterov``, a sweep file's ``optimizer: {values: [nesterov]}`` and ``get_optimizer("Nesterov")``
mean the same thing. Matching ignores case, spaces, ``-`` and ``_`` (``Fashion-MNIST`` = ``fashion_mnist``).
This module imports nothing of fmnist, so every package may use it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")

# kind -> canonical value -> (how people see it in help and errors, other spellings)
VALUES: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "optimizer": {
        "sgd": ("sgd", ("gd", "vanilla_sgd", "stochastic_gradient_descent")),
        "momentum": ("momentum", ("sgd_momentum", "momentum_sgd", "mgd", "momentum_gd", "classical_momentum")),
        "nag": ("nag", ("nesterov", "nesterov_momentum", "nesterov_accelerated_gradient", "sgd_nesterov")),
        "rmsprop": ("rmsprop", ("rms",)),
        "adam": ("adam", ()),
        "nadam": ("nadam", ("nesterov_adam",)),
    },
    "activation": {
        "identity": ("identity", ("linear", "none", "id")),
        "sigmoid": ("sigmoid", ("logistic", "sigm")),
        "tanh": ("tanh", ("hyperbolic_tangent",)),
        "relu": ("ReLU", ("rectifier", "rectified_linear", "rectified_linear_unit")),
    },
    "weight_init": {
        "random": ("random", ("normal", "random_normal", "gaussian", "randn")),
        # fmnist's Xavier is Glorot *uniform* and its He is Kaiming *normal*: only those spellings are aliases
        "xavier": ("Xavier", ("glorot", "xavier_uniform", "glorot_uniform")),
        "he": ("he", ("kaiming", "he_normal", "kaiming_normal", "msra")),
    },
    "loss": {
        "cross_entropy": (
            "cross_entropy",
            ("ce", "categorical_crossentropy", "categorical_cross_entropy", "softmax_cross_entropy", "log_loss", "nll"),
        ),
        "mean_squared_error": ("mean_squared_error", ("mse", "mean_square_error", "squared_error", "squared_loss")),
    },
    "dataset": {
        "fashion-mnist": ("fashion_mnist", ("fmnist", "fashion")),
        "mnist": ("mnist", ()),
    },
    "device": {
        "cpu": ("cpu", ("numpy",)),
        "gpu": ("gpu", ("cuda", "cupy")),
        "auto": ("auto", ()),
    },
    "model": {
        "mlp": ("mlp", ("dense", "fully_connected", "fc", "feedforward")),
        "cnn": ("cnn", ("conv", "convnet", "convolutional", "conv_net")),
    },
    "lr_schedule": {
        "constant": ("constant", ("const", "fixed", "none")),
        "cosine": ("cosine", ("cos", "cosine_annealing", "cosine_decay")),
        "step": ("step", ("step_lr", "step_decay")),
        "onecycle": ("onecycle", ("one_cycle", "1cycle", "one_cycle_lr", "onecyclelr")),
    },
}

# TrainConfig field -> other names: the DA6401 short flags first, then names course sweep files use
PARAMETERS: dict[str, tuple[str, ...]] = {
    "dataset": ("d", "data", "dataset_name"),
    "epochs": ("e", "epoch", "num_epochs", "n_epochs", "max_epochs"),
    "batch_size": ("b", "batch", "bs", "mini_batch_size", "minibatch_size"),
    "loss": ("l", "loss_function", "loss_fn", "criterion"),
    "optimizer": ("o", "optim", "opt", "optimiser", "optimizer_name"),
    "learning_rate": ("lr", "eta", "lr_rate"),
    "momentum": ("m", "mom"),
    "beta": ("rho", "rmsprop_beta", "beta_rmsprop"),
    "beta1": ("b1", "adam_beta1"),
    "beta2": ("b2", "adam_beta2"),
    "epsilon": ("eps",),
    "weight_decay": ("w_d", "wd", "l2", "l2_reg", "l2_regularization", "l2_regularisation", "l2_lambda", "l2_penalty"),
    "weight_init": (
        "w_i",
        "init",
        "weight_initialization",
        "weight_initialisation",
        "initialization",
        "initialisation",
        "initializer",
        "initialiser",
        "weight_initializer",
        "init_method",
    ),
    "num_layers": (
        "nhl",
        "hidden_layers",
        "num_hidden_layers",
        "n_layers",
        "n_hidden_layers",
        "number_of_layers",
        "number_of_hidden_layers",
        "layers",
        "depth",
    ),
    "hidden_size": (
        "sz",
        "hidden_layer_size",
        "layer_size",
        "hidden_units",
        "num_hidden_units",
        "hidden_neurons",
        "units",
        "neurons",
        "num_neurons",
        "hidden_dim",
        "width",
    ),
    "hidden_sizes": ("hs", "layer_sizes", "hidden_layer_sizes", "hidden_dims", "widths"),
    "activation": ("a", "activation_function", "activation_fn", "act", "nonlinearity"),
    "model": ("architecture", "arch", "model_type", "network"),
    "conv_channels": ("channels", "filters", "num_filters", "conv_filters", "cc"),
    "convs_per_block": ("convs", "conv_per_block", "cpb"),
    "kernel_size": ("kernel", "filter_size", "ks"),
    "batch_norm": ("bn", "batchnorm", "use_batch_norm", "batch_normalization", "batch_normalisation"),
    "conv_dropout": ("feature_dropout", "spatial_dropout"),
    "device": (),
    "seed": ("random_seed", "random_state"),
    "val_fraction": ("validation_split", "val_split", "validation_fraction"),
    "patience": ("early_stopping_patience",),
    "lr_schedule": ("schedule", "scheduler", "lr_scheduler", "learning_rate_schedule"),
    "warmup_epochs": ("warmup", "lr_warmup_epochs"),
    "lr_step_epochs": ("lr_step", "lr_step_size"),
    "lr_gamma": ("gamma", "lr_decay_factor"),
    "dropout": ("dropout_rate", "do", "dropout_prob", "dropout_p"),
    "label_smoothing": ("smoothing",),
    "decoupled_weight_decay": ("decoupled_wd",),
    "max_grad_norm": ("clip_grad_norm", "grad_clip", "gradient_clipping", "clip_norm", "clip_grad", "max_norm"),
    "augment_shift": ("shift",),
    "augment_flip": ("flip", "hflip", "horizontal_flip"),
    "standardize": ("standardise",),
    "wandb": ("use_wandb",),
    "wandb_project": ("wp", "project"),
    "wandb_entity": ("we", "entity"),
    "data_dir": ("data_path",),
}

# The DA6401 train.py options keep their underscored long flags (--learning_rate); fmnist's own use dashes.
DA6401_FLAGS: dict[str, str] = {
    "wandb_project": "-wp",
    "wandb_entity": "-we",
    "dataset": "-d",
    "epochs": "-e",
    "batch_size": "-b",
    "loss": "-l",
    "optimizer": "-o",
    "learning_rate": "-lr",
    "momentum": "-m",
    "beta": "-beta",
    "beta1": "-beta1",
    "beta2": "-beta2",
    "epsilon": "-eps",
    "weight_decay": "-w_d",
    "weight_init": "-w_i",
    "num_layers": "-nhl",
    "hidden_size": "-sz",
    "activation": "-a",
}
_OTHER_FLAGS = {"max_grad_norm": "--clip-grad-norm"}

# Short column headers and run-directory parts, e.g. t007_hl-3_bs-16_act-tanh_opt-adam
SHORT: dict[str, str] = {
    "num_layers": "hl",
    "hidden_size": "sz",
    "hidden_sizes": "hs",
    "batch_size": "bs",
    "activation": "act",
    "optimizer": "opt",
    "learning_rate": "lr",
    "weight_decay": "wd",
    "weight_init": "wi",
    "epochs": "ep",
    "loss": "loss",
    "dropout": "do",
    "momentum": "mom",
    "beta": "beta",
    "beta1": "b1",
    "beta2": "b2",
    "epsilon": "eps",
    "label_smoothing": "ls",
    "max_grad_norm": "clip",
    "augment_shift": "shift",
    "augment_flip": "flip",
    "warmup_epochs": "warm",
    "lr_schedule": "sched",
    "lr_gamma": "gamma",
    "lr_step_epochs": "lrstep",
    "val_fraction": "val",
    "decoupled_weight_decay": "dwd",
    "standardize": "std",
    "patience": "pat",
    "dataset": "data",
    "model": "model",
    "conv_channels": "cc",
    "convs_per_block": "cpb",
    "kernel_size": "ks",
    "batch_norm": "bn",
    "conv_dropout": "cdo",
}


class UnknownNameError(ValueError):
    """A name that is in no table; the one-line message suggests the nearest spelling and lists the valid ones."""

    def __init__(self, what: str, value: object, valid: Iterable[str], suggestion: str | None = None) -> None:
        self.what, self.value, self.valid, self.suggestion = what, value, tuple(valid), suggestion
        hint = f" (did you mean {suggestion}?)" if suggestion else ""
        super().__init__(f"unknown {what} {str(value)!r}{hint}; valid: {', '.join(self.valid)}")


def key(text: object) -> str:
    """The matching key of a spelling: lower case without spaces, ``-`` or ``_``."""
    return "".join(ch for ch in str(text).strip().lower() if ch not in " -_")


def _index(table: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, str]]:
    """key -> (canonical, spelling as written), refusing a spelling that two canonical names claim."""
    index: dict[str, tuple[str, str]] = {}
    for canonical, spellings in table.items():
        for spelling in (*spellings, canonical):  # the first spelling of a key is the one suggestions show
            found = index.setdefault(key(spelling), (canonical, spelling))
            if found[0] != canonical:
                raise RuntimeError(f"spelling {spelling!r} means both {found[0]!r} and {canonical!r}")
    return index


_VALUE_INDEX = {kind: _index({c: (d, *a) for c, (d, a) in table.items()}) for kind, table in VALUES.items()}
_PARAMETER_INDEX = _index({field: (field, *others) for field, others in PARAMETERS.items()})
_KINDS = {key(kind): kind for kind in VALUES}


def kind_of(kind: str) -> str | None:
    """The table for ``kind`` (``"weight init"``, ``"weight_init"``...), or None where there is none."""
    return _KINDS.get(key(kind))


def _table(kind: str) -> str:
    found = kind_of(kind)
    if found is None:
        raise KeyError(f"no table of {kind!r} names; tables: {', '.join(VALUES)}")
    return found


def values(kind: str) -> tuple[str, ...]:
    """The canonical values of ``kind`` (e.g. ``("identity", "sigmoid", "tanh", "relu")``)."""
    return tuple(VALUES[_table(kind)])


def display(kind: str, value: str) -> str:
    """How a canonical value is shown (the DA6401 spelling: ``ReLU``, ``Xavier``, ``fashion_mnist``)."""
    entry = VALUES[_table(kind)].get(value)
    return entry[0] if entry else value


def shown(kind: str) -> tuple[str, ...]:
    """The valid values of ``kind`` as shown in help and errors."""
    return tuple(display(kind, value) for value in values(kind))


def aliases(kind: str) -> dict[str, tuple[str, ...]]:
    """Canonical value -> every other accepted spelling (for documentation and tests)."""
    return {value: (shown_as, *others) for value, (shown_as, others) in VALUES[_table(kind)].items()}


def resolve(kind: str, value: object) -> str | None:
    """The canonical value of ``kind`` for any accepted spelling of it, or None."""
    found = _VALUE_INDEX[_table(kind)].get(key(value)) if value is not None else None
    return found[0] if found else None


def canonical(kind: str, value: object) -> str:
    """The canonical value of ``kind`` (``optimizer``, ``activation``, ``weight_init``, ``loss``, ``dataset``,
    ``device``, ``lr_schedule``) for any accepted spelling, e.g. ``canonical("optimizer", "Nesterov") == "nag"``.

    Raises:
        UnknownNameError: no such value; the message lists the valid ones and suggests the nearest.
    """
    table = _table(kind)
    found = resolve(table, value)
    if found is None:
        raise UnknownNameError(table.replace("_", " "), value, shown(table), suggest(value, _VALUE_INDEX[table]))
    return found


def parameter(name: object) -> str:
    """The ``TrainConfig`` field for an option or sweep parameter name (``-lr``, ``--hidden-sizes``,
    ``hidden_layers``, ``weight_initialization``...).

    Raises:
        UnknownNameError: no such parameter; the message lists the valid ones and suggests the nearest.
    """
    text = str(name).lstrip("-")
    found = _PARAMETER_INDEX.get(key(text))
    if found is None:
        raise UnknownNameError("parameter", name, PARAMETERS, suggest(text, _PARAMETER_INDEX))
    return found[0]


def choose(what: str, value: object, valid: Iterable[str]) -> str:
    """``value`` matched (ignoring case and separators) to one of ``valid``, for small sets with no table
    (presets, a table another module owns).

    Raises:
        UnknownNameError: no match; the message lists ``valid`` and suggests the nearest.
    """
    index = {key(v): (v, v) for v in valid}
    found = index.get(key(value))
    if found is None:
        raise UnknownNameError(what, value, (v for v, _ in index.values()), suggest(value, index))
    return found[0]


def suggest(value: object, index: Mapping[str, tuple[str, str]]) -> str | None:
    """The accepted spelling nearest to ``value`` (difflib), or None when nothing is close."""
    close = difflib.get_close_matches(key(value), list(index), n=1, cutoff=0.6)
    return index[close[0]][1] if close else None


def flag(field: str) -> str:
    """The ``fmnist train`` long flag of a ``TrainConfig`` field (``--learning_rate``, ``--val-fraction``)."""
    if field in DA6401_FLAGS:
        return f"--{field}"
    return _OTHER_FLAGS.get(field, f"--{field.replace('_', '-')}")


def short(field: str) -> str:
    """A short name of a field for narrow tables and directory names (``hl``, ``bs``, ``opt``...)."""
    return SHORT.get(field, field)


def lookup(kind: str, name: str, table: Mapping[str, T], spellings: Mapping[str, str] | None = None) -> T:
    """``table[name]`` for any spelling of ``name`` that this table accepts (``ReLU``, ``relu``, ``nesterov`` for
    ``nag``...): how the network library finds an activation, initialiser, loss or optimizer by name.
    ``spellings`` maps table keys to how they are shown in the error.

    Raises:
        UnknownNameError (a ValueError): ``name`` is unknown; the one-line message suggests the nearest name and
        lists every valid one.
    """
    table_kind = kind_of(kind)
    candidates = [str(name), str(name).lower()]
    if table_kind is not None:
        candidates.append(resolve(table_kind, name) or "")
    for candidate in candidates:
        if candidate in table:
            return table[candidate]
    if table_kind is not None and set(table) == set(values(table_kind)):
        canonical(table_kind, name)  # raises: nearest of every accepted spelling, the valid ones listed
    spellings = spellings or {}
    valid = [spellings.get(k) or (display(table_kind, k) if table_kind else k) for k in table]
    index = {key(s): (s, s) for s in valid}
    raise UnknownNameError(kind, name, valid, suggest(name, index))
