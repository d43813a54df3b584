"""Assembly: the model, optimizer, loss, schedule, augmentation and trainer a configuration describes (written
once: runs, reports and the benchmark all build their networks here)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fmnist.backend import NoiseStream
from fmnist.data.augment import augment_batch
from fmnist.network import MLP, conv_net, get_loss, get_optimizer
from fmnist.training.config import TrainConfig
from fmnist.training.fit import Trainer
from fmnist.training.schedules import lr_factor
from fmnist.training.splits import Splits


def build_model(config: TrainConfig, backend: Any, num_features: int, num_classes: int) -> Any:
    """The network of ``config`` on ``backend`` (weights drawn from ``config.seed``): an MLP, or a CNN whose
    dense head is the MLP's hidden layers."""
    if config.model == "cnn":
        side = math.isqrt(num_features)
        return conv_net(
            (1, side, side),
            backend=backend,
            seed=config.seed,
            weight_init=config.weight_init,
            conv_channels=config.conv_channels,
            convs_per_block=config.convs_per_block,
            kernel_size=config.kernel_size,
            batch_norm=config.batch_norm,
            hidden=config.hidden,
            num_classes=num_classes,
            activation=config.activation,
            dropout=config.dropout,
            conv_dropout=config.conv_dropout,
        )
    return MLP(
        config.sizes(num_features, num_classes),
        activation=config.activation,
        weight_init=config.weight_init,
        backend=backend,
        seed=config.seed,
        dropout=config.dropout,
    )


def schedule(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float] | None:
    """The learning-rate multiplier of ``config`` for step t = 1, 2, ... (``None``: constant, no warm-up)."""
    if config.lr_schedule == "constant" and not config.warmup_epochs:
        return None
    return lr_factor(
        config.lr_schedule,
        config.epochs * steps_per_epoch,
        round(config.warmup_epochs * steps_per_epoch),
        step_every=config.lr_step_epochs * steps_per_epoch,
        gamma=config.lr_gamma,
    )


def build_trainer(config: TrainConfig, backend: Any, splits: Splits) -> Trainer:
    """A ready ``Trainer`` for ``config`` on ``splits``."""
    model = build_model(config, backend, splits.train.num_features, len(splits.dataset.class_names))
    optimizer = get_optimizer(config.optimizer, model.parameters(), **config.optimizer_kwargs())
    augment = None
    if config.augment_shift or config.augment_flip:
        background = -splits.mean / splits.std  # a black pixel, standardised: what a shift brings in

        def augment(x: Any, noise: Any) -> Any:
            shift, flip = config.augment_shift, config.augment_flip
            return augment_batch(backend, x, noise, max_shift=shift, flip=flip, fill=background)

    return Trainer(
        model=model,
        optimizer=optimizer,
        loss_fn=get_loss(config.loss, label_smoothing=config.label_smoothing),
        train=splits.train,
        val=splits.val,
        batch_size=config.batch_size,
        rng=backend.rng((config.seed, 1)),  # its own stream: shuffles do not depend on the weight draws
        lr_factor=schedule(config, math.ceil(splits.train.n / config.batch_size)),
        noise=NoiseStream(config.seed),  # dropout masks and augmentation: counter-based, the same on every device
        augment=augment,
    )
