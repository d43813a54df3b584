"""What is measured: a network and its recipe (a ``TrainConfig``, the configuration ``fmnist train`` reads, so any
preset can be measured), a batch size and the samples of an epoch."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from fmnist.training.assemble import build_model
from fmnist.training.config import PRESETS, ConfigError, TrainConfig, layered

FEATURES, CLASSES = 784, 10  # Fashion-MNIST's 28x28 pixels and 10 classes (synthetic data has the same shape)

# The benchmark's plain recipe where no preset is named: a constant learning rate of 1e-3 and no weight decay.
PLAIN: dict[str, Any] = {"learning_rate": 1e-3, "weight_decay": 0.0, "lr_schedule": "constant"}

MLP_HEAD = (128,) * 5  # the default MLP: 784-5x128-10
CNN_HEAD = (128,)  # the default CNN's dense head
MLP_BATCHES = (64, 256, 1024, 4096)
CNN_BATCHES = (128,)


@dataclass(frozen=True)
class BenchCase:
    """One benchmark configuration: ``config`` (network, optimizer, recipe, batch size) trained on ``samples``
    images a timed epoch."""

    config: TrainConfig
    samples: int = 60000

    @classmethod
    def mlp(cls, sizes: tuple[int, ...] = (FEATURES, *MLP_HEAD, CLASSES), batch_size: int = 64,
            optimizer: str = "adam", samples: int = 60000) -> BenchCase:  # fmt: skip
        """The MLP of ``sizes`` (input first) with the plain recipe and ``optimizer``."""
        head = tuple(sizes[1:-1])
        config = TrainConfig(
            hidden_sizes=head or None, num_layers=len(head), batch_size=batch_size, optimizer=optimizer, **PLAIN
        )
        return cls(config, samples)

    def at_batch(self, batch_size: int) -> BenchCase:
        return dataclasses.replace(self, config=self.config.replace(batch_size=batch_size))

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    @property
    def sizes(self) -> tuple[int, ...]:
        """The dense layers' widths, input first (a CNN's: its head's, from the pixels)."""
        return (FEATURES, *self.config.hidden, CLASSES)

    @property
    def network(self) -> str:
        """The network in a few words: ``784-128-128-10`` or ``cnn 32-64x2 + 784-128-10``."""
        c = self.config
        dense = "-".join(map(str, self.sizes))
        if c.model != "cnn":
            return dense
        counts = c.convs_per_block * len(c.conv_channels) if len(c.convs_per_block) == 1 else c.convs_per_block
        blocks = "-".join(f"{ch}x{n}" if n > 1 else str(ch) for ch, n in zip(c.conv_channels, counts, strict=True))
        return f"cnn {blocks} + fc {'-'.join(map(str, c.hidden)) or 'none'}"

    @property
    def recipe(self) -> str:
        """The optimizer and regularisation in a few words (what both sides train with)."""
        return ", ".join(self.recipe_parts())

    def recipe_parts(self) -> list[str]:
        """``recipe``'s parts: the optimizer, then each regularisation, the augmentation and the schedule."""
        c = self.config
        rule = "adamw" if c.optimizer == "adam" and c.decoupled_weight_decay else c.optimizer
        parts = [f"{rule} lr {_short(c.learning_rate)}" + (f" wd {_short(c.weight_decay)}" if c.weight_decay else "")]
        parts += [f"label smoothing {c.label_smoothing:g}"] if c.label_smoothing else []
        drops = [p for p in ((c.conv_dropout if c.model == "cnn" else 0.0), c.dropout) if p]
        parts += [f"dropout {'/'.join(f'{p:g}' for p in drops)}"] if drops else []
        augment = [f"shift ±{c.augment_shift}"] if c.augment_shift else []
        augment += ["flip"] if c.augment_flip else []
        parts += [" + ".join(augment)] if augment else []
        parts += [f"{c.lr_schedule} lr"] if c.lr_schedule != "constant" else []
        return parts

    def build(self, backend: Any) -> Any:
        """The fmnist network of this case (``fmnist.training.assemble.build_model``)."""
        return build_model(self.config, backend, FEATURES, CLASSES)

    def gemm_flops_per_sample(self) -> int:
        """Floating-point operations of the matrix products of one training sample: forward (1 GEMM) and backward
        (2 GEMMs) of every dense and convolution layer."""
        if self.config.model == "cnn":
            return self.build("cpu").gemm_flops_per_sample
        return 6 * sum(a * b for a, b in itertools.pairwise(self.sizes))


def _short(value: float) -> str:
    """0.003 -> ``0.003``, 0.0005 -> ``5e-4``: a hyperparameter in few characters."""
    text = f"{value:g}"
    return f"{value:.0e}".replace("e-0", "e-") if len(text) > 5 and "e" not in text else text


def bench_case(
    model: str | None = None,
    preset: str | None = None,
    sizes: tuple[int, ...] | None = None,
    conv_channels: tuple[int, ...] | None = None,
    convs_per_block: tuple[int, ...] | None = None,
    batch_size: int | None = None,
    samples: int | None = None,
) -> BenchCase:
    """The case the options of ``fmnist bench`` describe: ``preset``'s network and recipe (else the plain recipe),
    with every option given winning, as in ``fmnist train``. ``sizes`` are the dense widths, input first: 784
    pixels in and 10 classes out.

    Raises:
        ConfigError: one line naming the invalid option.
    """
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"--preset: unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    layer = PRESETS[preset] if preset is not None else {}
    model = model or layer.get("model", "mlp")
    typed: dict[str, Any] = {"model": model, "batch_size": CNN_BATCHES[0] if model == "cnn" else MLP_BATCHES[0]}
    typed |= {"hidden_sizes": CNN_HEAD if model == "cnn" else MLP_HEAD}
    given = {"model"}
    if sizes is not None:
        if len(sizes) < 2 or sizes[0] != FEATURES or sizes[-1] != CLASSES:
            raise ConfigError(
                f"--sizes: the images have {FEATURES} pixels and {CLASSES} classes: give "
                f"{FEATURES},...,{CLASSES}, got {','.join(map(str, sizes))}"
            )
        head = tuple(sizes[1:-1])
        typed |= {"hidden_sizes": head or None, "num_layers": len(head)}
        given |= {"hidden_sizes", "num_layers"}
    for name, value in (
        ("conv_channels", conv_channels),
        ("convs_per_block", convs_per_block),
        ("batch_size", batch_size),
    ):
        if value is not None:
            typed[name] = value
            given.add(name)
    config = layered(typed, given, PLAIN, layer)
    if samples is None:
        samples = 12800 if config.model == "cnn" else 60000
    if samples <= 0:
        raise ConfigError(f"--samples must be > 0, got {samples}")
    return BenchCase(config, samples)
