"""``TrainConfig``: every hyperparameter of a run in one frozen, validated record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": ("fashion-mnist", "mnist"),
    "loss": ("cross_entropy", "mean_squared_error"),
    "optimizer": ("sgd", "momentum", "nag", "rmsprop", "adam", "nadam"),
    "weight_init": ("random", "xavier", "he"),
    "activation": ("identity", "sigmoid", "tanh", "relu"),
    "device": ("cpu", "gpu", "auto"),
    "lr_schedule": ("constant", "cosine", "step"),
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
}


class ConfigError(ValueError):
    """An invalid option; the message is one line naming the option and the valid values."""


@dataclass(frozen=True)
class TrainConfig:
    """A training run's configuration. Defaults are the best plain configuration we know for Fashion-MNIST.

    Names follow the DA6401 ``train.py`` flags. ``hidden_sizes``, when given, overrides
    ``num_layers`` x ``hidden_size`` (uneven layers).
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
        normalised = {
            "dataset": str(self.dataset).lower().replace("_", "-"),
            "loss": str(self.loss).lower(),
            "optimizer": str(self.optimizer).lower(),
            "weight_init": str(self.weight_init).lower(),
            "activation": str(self.activation).lower(),
            "device": str(self.device).lower(),
            "lr_schedule": str(self.lr_schedule).lower(),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)
        if self.hidden_sizes is not None:
            object.__setattr__(self, "hidden_sizes", tuple(int(s) for s in self.hidden_sizes))
        self.validate()

    def validate(self) -> None:
        """Raise ``ConfigError`` (one line) for the first invalid value."""
        for name, valid in CHOICES.items():
            if getattr(self, name) not in valid:
                raise ConfigError(f"--{name}: {getattr(self, name)!r} is not one of {', '.join(valid)}")
        positive = ("epochs", "batch_size", "hidden_size")
        for name in positive:
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"--{name} must be > 0, got {getattr(self, name)}")
        if self.num_layers < 0:
            raise ConfigError(f"--num_layers must be >= 0, got {self.num_layers}")
        if self.hidden_sizes is not None and any(s <= 0 for s in self.hidden_sizes):
            raise ConfigError(f"--hidden-sizes must all be > 0, got {','.join(map(str, self.hidden_sizes))}")
        if not self.learning_rate > 0:
            raise ConfigError(f"--learning_rate must be > 0, got {self.learning_rate}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
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
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. a run's ``config.json``); unknown keys raise ``ConfigError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown configuration key(s): {', '.join(unknown)}")
        return cls(**values)
