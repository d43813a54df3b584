"""``TrainConfig``: every hyperparameter of a run in one frozen, validated record; the presets; configuration
files (JSON or YAML) and the layering of typed options over a preset and a file."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
    "cnn-best": {  # the most accurate CNN we found for an 8-minute budget on 2 CPU cores (README: Results)
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
# The most accurate recipe we found for a 20-minute budget on 2 CPU cores: cnn-best's network and recipe, trained
# for 50 epochs instead of 24 (README: Results).
PRESETS["cnn-long"] = {**PRESETS["cnn-best"], "epochs": 50}


class ConfigError(ValueError):
    """An invalid option; the message is one line naming the option and the valid values."""


# Keys a saved configuration may hold beside the options: the record of a run's config.json (written by
# ``fmnist.rundir``), and "extra", a field of older versions. ``from_record`` and config files skip them.
RECORD_KEYS = ("environment", "normalization", "command", "started")
NOT_OPTIONS = (*RECORD_KEYS, "extra")

# The configuration's optimizer fields and their names in ``fmnist.network.get_optimizer``.
OPTIMIZER_FIELDS = {
    "learning_rate": "lr",
    "momentum": "momentum",
    "beta": "beta",
    "beta1": "beta1",
    "beta2": "beta2",
    "epsilon": "eps",
    "weight_decay": "weight_decay",
}


def _in_unit(v: Any) -> bool:
    return 0 <= v < 1


# Rules on one field each, checked in this order: (field, valid, what a valid value is). The optimizer's fields
# are checked by the optimizer's own ranges (``fmnist.network.optimizers.RANGES``), right after these.
RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("epochs", lambda v: v > 0, "> 0"),
    ("batch_size", lambda v: v > 0, "> 0"),
    ("hidden_size", lambda v: v > 0, "> 0"),
    ("num_layers", lambda v: v >= 0, ">= 0"),
    ("conv_dropout", _in_unit, "in [0, 1)"),
    ("kernel_size", lambda v: v > 0 and v % 2 == 1, "odd and > 0 (the padding keeps the size)"),
    ("val_fraction", _in_unit, "in [0, 1)"),
    ("warmup_epochs", lambda v: v >= 0, ">= 0"),
    ("lr_step_epochs", lambda v: v > 0, "> 0"),
    ("lr_gamma", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("dropout", _in_unit, "in [0, 1)"),
    ("label_smoothing", _in_unit, "in [0, 1)"),
    ("max_grad_norm", lambda v: v is None or v > 0, "> 0"),
    ("augment_shift", lambda v: 0 <= v <= 8, "in 0..8 pixels"),
    ("patience", lambda v: v is None or v > 0, "> 0"),
)


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
        from fmnist.network.optimizers import RANGES

        for name, valid, what in RULES:
            if not valid(getattr(self, name)):
                raise ConfigError(f"{flag(name)} must be {what}, got {getattr(self, name)}")
        for name, rule in OPTIMIZER_FIELDS.items():
            what, valid = RANGES[rule]
            if not valid(getattr(self, name)):
                raise ConfigError(f"{flag(name)} {what}, got {getattr(self, name)}")
        self._validate_network()
        if self.label_smoothing and self.loss != "cross_entropy":
            raise ConfigError("--label-smoothing applies to --loss cross_entropy only")
        if self.patience is not None and self.val_fraction == 0:
            raise ConfigError("--patience watches the validation loss: it needs --val-fraction > 0")

    def _validate_network(self) -> None:
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
        if self.hidden_sizes is not None and any(s <= 0 for s in self.hidden_sizes):
            raise ConfigError(f"--hidden-sizes must all be > 0, got {','.join(map(str, self.hidden_sizes))}")

    @property
    def hidden(self) -> tuple[int, ...]:
        """The hidden layer widths."""
        return self.hidden_sizes if self.hidden_sizes is not None else (self.hidden_size,) * self.num_layers

    def sizes(self, num_features: int = 784, num_classes: int = 10) -> list[int]:
        """Layer widths of the MLP, input first."""
        return [num_features, *self.hidden, num_classes]

    def optimizer_kwargs(self) -> dict[str, Any]:
        """Hyperparameters for ``get_optimizer`` (those the chosen rule does not use are ignored there)."""
        kwargs = {rule: getattr(self, name) for name, rule in OPTIMIZER_FIELDS.items()}
        return {**kwargs, "decoupled_weight_decay": self.decoupled_weight_decay, "max_grad_norm": self.max_grad_norm}

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name in OPTIONS:
            if isinstance(out[name], tuple):
                out[name] = list(out[name])
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict (a ``--config`` file, a sweep trial): keys may be any spelling ``fmnist.names`` knows
        (``lr``, ``-nhl``, ``hidden_layers``...); unknown or repeated keys raise ``ConfigError``."""
        fields: dict[str, Any] = {}
        for name, value in values.items():
            field_name = option_name(name)
            if field_name in fields:
                raise ConfigError(f"{flag(field_name)} is given twice (as {name!r} and under another name)")
            fields[field_name] = value
        return cls(**fields)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TrainConfig:
        """The configuration of a saved record (a run's ``config.json``, ``best_config.json``): the options, with
        the record's other keys (``RECORD_KEYS``, and ``extra`` of older versions) left out."""
        return cls.from_dict(options_of(record))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` (field names), validated."""
        return dataclasses.replace(self, **changes)


OPTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainConfig))


def options_of(record: dict[str, Any]) -> dict[str, Any]:
    """The options of a saved record: every key but ``NOT_OPTIONS``."""
    return {k: v for k, v in record.items() if k not in NOT_OPTIONS}


def option_name(name: str) -> str:
    """The ``TrainConfig`` field for an option name (``-lr``, ``learning_rate``, ``hidden-sizes``,
    ``hidden_layers``...).

    Raises:
        ConfigError: no such option (the message suggests the nearest), or a name with two meanings.
    """
    try:
        return names.parameter(name)
    except (names.UnknownNameError, names.AmbiguousNameError) as err:
        raise ConfigError(str(err)) from None


# --- configuration files and layers ------------------------------------------------------------------------------


def load_mapping(path: Path) -> Any:
    """A YAML or JSON file as Python data (YAML's 1e-4 style numbers become floats).

    Raises:
        ConfigError: not valid JSON or YAML.
    """
    import yaml

    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({err})") from err
    return _floats(data)


def _floats(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _floats(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_floats(v) for v in data]
    if isinstance(data, str):
        try:
            return float(data) if any(c in data.lower() for c in ".e") and data.strip()[0] in "0123456789.-+" else data
        except ValueError:
            return data
    return data


def read_config_file(path: Path) -> dict[str, Any]:
    """Option values from a JSON/YAML file (a run's ``config.json``, a sweep's ``best_config.json``, one written by
    hand), keyed by ``TrainConfig`` field; a record's other keys are skipped.

    Raises:
        ConfigError: the file is missing or unreadable, not a mapping, or names an option twice or one that is
            unknown.
    """
    if not path.is_file():
        raise ConfigError(f"{path} does not exist")
    raw = load_mapping(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of option names to values")
    values: dict[str, Any] = {}
    for key, value in options_of(raw).items():
        name = option_name(key)
        if name in values:
            raise ConfigError(f"{key!r} sets {flag(name)} a second time")
        values[name] = tuple(value) if isinstance(value, list) else value
    return values


def layered(typed: dict[str, Any], given: set[str], *layers: dict[str, Any]) -> TrainConfig:
    """The configuration of ``typed`` option values where each name in ``given`` was typed by the user, and the
    ``layers`` (a preset, then a configuration file) fill in the rest, later layers winning. Typing
    ``num_layers`` or ``hidden_size`` replaces a layer's ``hidden_sizes``.

    Raises:
        ConfigError: an invalid value.
    """
    given = set(given)
    if {"num_layers", "hidden_size"} & given:
        given.add("hidden_sizes")
    values = dict(typed)
    for layer in layers:
        values.update({k: v for k, v in layer.items() if k not in given})
    return TrainConfig(**values)


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
    """``[256, 128]``, ``"256,128"``, ``"[256, 128]"`` or ``"256 128"`` -> ``(256, 128)``."""
    parts = value.strip().strip("[]()").replace(",", " ").split() if isinstance(value, str) else list(value)
    sizes = tuple(_integer(part) for part in parts if not (isinstance(part, str) and not part.strip()))
    if not sizes:
        raise ValueError
    return sizes
