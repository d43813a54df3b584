"""``TrainConfig``: every hyperparameter of a run in one frozen, validated record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fmnist import names
from fmnist.names import flag

# The options with named values; every spelling in ``fmnist.names`` is accepted and stored canonical.
CHOICES: dict[str, tuple[str, ...]] = {
    kind: names.values(kind)
    for kind in ("dataset", "loss", "optimizer", "weight_init", "activation", "device", "lr_schedule", "model")
}


# Named configurations for `fmnist train --preset NAME`: options given on the command line still win.
PRESETS: dict[str, dict[str, Any]] = {
    "best": {
        "hidden_sizes": (1024, 512),
        "epochs": 60,
        "batch_size": 128,
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "weight_decay": 5e-4,
        "decoupled_weight_decay": True,
        "dropout": 0.2,
        "label_smoothing": 0.1,
        "lr_schedule": "cosine",
        "warmup_epochs": 1.0,
        "augment_shift": 1,
        "augment_flip": False,
        "weight_init": "he",
        "activation": "relu",
    },
    "cnn-best": {  # the most accurate CNN we found for a 20-minute budget on 2 CPU cores (README: Results)
        "model": "cnn",
        "conv_channels": (32, 64),
        "convs_per_block": (1, 2),
        "kernel_size": 3,
        "batch_norm": True,
        "conv_dropout": 0.1,
        "hidden_sizes": (128,),
        "dropout": 0.3,
        "epochs": 24,
        "batch_size": 128,
        "optimizer": "adam",
        "learning_rate": 3e-3,
        "weight_decay": 5e-4,
        "decoupled_weight_decay": True,
        "label_smoothing": 0.1,
        "lr_schedule": "onecycle",
        "augment_shift": 2,
        "augment_flip": True,
        "weight_init": "he",
        "activation": "relu",
    },
}


class ConfigError(ValueError):
    """An invalid option; the message is one line naming the option and the valid values."""


@dataclass(frozen=True)
class TrainConfig:
    """A training run's configuration. Defaults are the best plain configuration we know for Fashion-MNIST.

    Names follow the DA6401 ``train.py`` flags. ``hidden_sizes``, when given, overrides
    ``num_layers`` x ``hidden_size`` (uneven layers). With ``model="cnn"`` these are the dense head after the
    convolutions: ``conv_channels`` lists one block per entry (``convs_per_block`` convolutions of ``kernel_size``
    with "same" padding, each followed by batch norm when ``batch_norm`` and the activation, then a 2x2 max pool).
    """

    dataset: str = "fashion-mnist"
    epochs: int = 20
    batch_size: int = 64
    loss: str = "cross_entropy"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    beta: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    weight_decay: float = 1e-4
    weight_init: str = "he"
    num_layers: int = 2
    hidden_size: int = 256
    hidden_sizes: tuple[int, ...] | None = None
    activation: str = "relu"
    model: str = "mlp"
    conv_channels: tuple[int, ...] = (32, 64)
    convs_per_block: tuple[int, ...] = (1,)
    kernel_size: int = 3
    batch_norm: bool = True
    conv_dropout: float = 0.0
    device: str = "cpu"
    seed: int = 0
    val_fraction: float = 0.1
    patience: int | None = None
    lr_schedule: str = "cosine"
    warmup_epochs: float = 0.0
    lr_step_epochs: int = 10
    lr_gamma: float = 0.1
    dropout: float = 0.0
    label_smoothing: float = 0.0
    decoupled_weight_decay: bool = False
    max_grad_norm: float | None = None
    augment_shift: int = 0
    augment_flip: bool = False
    standardize: bool = True
    wandb: bool = False
    wandb_project: str = "fmnist"
    wandb_entity: str | None = None
    data_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            if item.name in CHOICES:
                try:
                    value: Any = names.canonical(item.name, getattr(self, item.name))
                except names.UnknownNameError as err:
                    raise ConfigError(f"{flag(item.name)}: {err}") from None
            else:
                value = coerce(item.name, getattr(self, item.name))
            object.__setattr__(self, item.name, value)
        self.validate()

    def validate(self) -> None:
        """Raise ``ConfigError`` (one line) for the first invalid value."""
        positive = ("epochs", "batch_size", "hidden_size")
        for name in positive:
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"--{name} must be > 0, got {getattr(self, name)}")
        if self.num_layers < 0:
            raise ConfigError(f"--num_layers must be >= 0, got {self.num_layers}")
        if not self.conv_channels or any(c <= 0 for c in self.conv_channels):
            raise ConfigError(
                f"--conv-channels must list positive channel counts such as 32,64, got {self.conv_channels}"
            )
        if len(self.conv_channels) > 4:
            raise ConfigError(
                f"--conv-channels: at most 4 blocks (each halves the 28x28 image), got {len(self.conv_channels)}"
            )
        counts = self.convs_per_block
        if any(c <= 0 for c in counts) or len(counts) not in (1, len(self.conv_channels)):
            raise ConfigError(f"--convs-per-block takes one count > 0, or one per --conv-channels block, got {counts}")
        if not 0 <= self.conv_dropout < 1:
            raise ConfigError(f"--conv-dropout must be in [0, 1), got {self.conv_dropout}")
        if self.kernel_size <= 0 or self.kernel_size % 2 == 0:
            raise ConfigError(f"--kernel-size must be odd and > 0 (the padding keeps the size), got {self.kernel_size}")
        if self.hidden_sizes is not None and any(s <= 0 for s in self.hidden_sizes):
            raise ConfigError(f"--hidden-sizes must all be > 0, got {','.join(map(str, self.hidden_sizes))}")
        if not self.learning_rate > 0:
            raise ConfigError(f"--learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("momentum", "beta", "beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.epsilon > 0:
            raise ConfigError(f"--epsilon must be > 0, got {self.epsilon}")
        if not self.weight_decay >= 0:
            raise ConfigError(f"--weight_decay must be >= 0, got {self.weight_decay}")
        if not self.warmup_epochs >= 0:
            raise ConfigError(f"--warmup-epochs must be >= 0, got {self.warmup_epochs}")
        if self.lr_step_epochs <= 0:
            raise ConfigError(f"--lr-step-epochs must be > 0, got {self.lr_step_epochs}")
        if not 0 < self.lr_gamma <= 1:
            raise ConfigError(f"--lr-gamma must be in (0, 1], got {self.lr_gamma}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.label_smoothing and self.loss != "cross_entropy":
            raise ConfigError("--label-smoothing applies to --loss cross_entropy only")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError(f"--clip-grad-norm must be > 0, got {self.max_grad_norm}")
        if not 0 <= self.augment_shift <= 8:
            raise ConfigError(f"--augment-shift must be in 0..8 pixels, got {self.augment_shift}")
        if self.patience is not None and self.patience <= 0:
            raise ConfigError(f"--patience must be > 0, got {self.patience}")
        if self.patience is not None and self.val_fraction == 0:
            raise ConfigError("--patience watches the validation loss: it needs --val-fraction > 0")

    @property
    def hidden(self) -> tuple[int, ...]:
        """The hidden layer widths."""
        return self.hidden_sizes if self.hidden_sizes is not None else (self.hidden_size,) * self.num_layers

    def sizes(self, num_features: int = 784, num_classes: int = 10) -> list[int]:
        """Layer widths of the MLP, input first."""
        return [num_features, *self.hidden, num_classes]

    def optimizer_kwargs(self) -> dict[str, Any]:
        """Hyperparameters for ``get_optimizer`` (those the chosen rule does not use are ignored there)."""
        return {
            "lr": self.learning_rate,
            "momentum": self.momentum,
            "beta": self.beta,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "eps": self.epsilon,
            "weight_decay": self.weight_decay,
            "decoupled_weight_decay": self.decoupled_weight_decay,
            "max_grad_norm": self.max_grad_norm,
        }

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["hidden_sizes"] = list(self.hidden_sizes) if self.hidden_sizes is not None else None
        out["conv_channels"] = list(self.conv_channels)
        out["convs_per_block"] = list(self.convs_per_block)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict (a run's ``config.json``, a ``--config`` file, a sweep trial): keys may be any
        spelling ``fmnist.names`` knows (``lr``, ``-nhl``, ``hidden_layers``...); unknown or repeated keys raise
        ``ConfigError``."""
        fields: dict[str, Any] = {}
        for name, value in values.items():
            try:
                field_name = "extra" if name == "extra" else names.parameter(name)
            except names.UnknownNameError as err:
                raise ConfigError(str(err)) from None
            if field_name in fields:
                raise ConfigError(f"{flag(field_name)} is given twice (as {name!r} and under another name)")
            fields[field_name] = value
        return cls(**fields)


def _field_types() -> dict[str, tuple[str, bool]]:
    """Field -> (base type name, None allowed), read from the annotations (``"int | None"`` -> ``("int", True)``)."""
    types = {}
    for item in dataclasses.fields(TrainConfig):
        text = str(item.type)
        types[item.name] = (text.removesuffix(" | None"), text.endswith(" | None"))
    return types


FIELD_TYPES: dict[str, tuple[str, bool]] = _field_types()
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def coerce(name: str, value: Any) -> Any:
    """``value`` as the type of field ``name`` (``64.0`` -> ``64`` for an integer, ``"1e-3"`` -> ``0.001``,
    ``"true"`` -> ``True``, ``[256, 128]`` or ``"256,128"`` -> ``(256, 128)``), as files and sweeps write them.

    Raises:
        ConfigError: the value does not fit the field's type.
    """
    base, optional = FIELD_TYPES[name]
    if value is None and optional:
        return None
    try:
        if base == "int":
            return _integer(value)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base == "bool":
            return _boolean(value)
        if base == "str":
            if value is None or isinstance(value, (dict, list, tuple, set)):
                raise ValueError
            return str(value)
        if base == "tuple[int, ...]":
            return _sizes(value)
    except (TypeError, ValueError):
        what = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a text value"}
        wanted = what.get(base, "comma-separated integers such as 256,128")
        raise ConfigError(f"{flag(name)} must be {wanted}, got {value!r}") from None
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return value
    number = float(value)  # "64", "64.0", 64.0; not 64.5
    if not number.is_integer():
        raise ValueError
    return int(number)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if isinstance(value, (int, float, str)) and text in _TRUE + _FALSE:
        return text in _TRUE
    raise ValueError


def _sizes(value: Any) -> tuple[int, ...]:
    parts = value.split(",") if isinstance(value, str) else list(value)
    sizes = tuple(_integer(part) for part in parts if not (isinstance(part, str) and not part.strip()))
    if not sizes:
        raise ValueError
    return sizes
