"""A run's data: the dataset loaded and split (seeded, stratified), normalised alike, moved to the device once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fmnist.data import Dataset, DeviceData, load_dataset, pixel_stats, stratified_split
from fmnist.training.config import TrainConfig


@dataclass
class Splits:
    """Device data for one run: training, validation (``None`` with ``val_fraction`` 0) and test sets."""

    train: DeviceData
    val: DeviceData | None
    test: DeviceData
    mean: float
    std: float
    dataset: Dataset = field(repr=False)


def prepare_data(config: TrainConfig, backend: Any, progress: Any = None) -> Splits:
    """Load the dataset, split train/validation (seeded, stratified) and move everything to the device once."""
    dataset = load_dataset(config.dataset, data_dir=config.data_dir, progress=progress)
    train_idx, val_idx = stratified_split(dataset.train_labels, config.val_fraction, config.seed)
    mean, std = pixel_stats(dataset.train_images, train_idx) if config.standardize else (0.0, 1.0)
    full = DeviceData(backend, dataset.train_images, dataset.train_labels)
    test = DeviceData(backend, dataset.test_images, dataset.test_labels).normalized(mean, std)
    val = full.subset(val_idx).normalized(mean, std) if len(val_idx) else None
    return Splits(full.subset(train_idx).normalized(mean, std), val, test, mean, std, dataset)
