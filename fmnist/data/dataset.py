"""``load_dataset``: verified uint8 images and labels for train and test, plus a seeded stratified split."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from fmnist.data.fetch import ProgressFn, ResolvedFile, resolve_file
from fmnist.data.idx import check_counts, check_images, check_labels, parse_idx
from fmnist.data.registry import DatasetSpec, get_dataset_spec


@dataclass
class Dataset:
    """A loaded dataset: uint8 images (n, 28, 28) and int labels (n,) for train and test (host arrays).

    The image arrays are read-only views of the decompressed file bytes: one uint8 copy in memory, no float copies.
    """

    name: str
    class_names: tuple[str, ...]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    files: list[ResolvedFile] = field(default_factory=list, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels) of ``"train"`` or ``"test"``."""
        if name == "train":
            return self.train_images, self.train_labels
        if name == "test":
            return self.test_images, self.test_labels
        raise ValueError(f"unknown split {name!r}; valid: train, test")


def load_dataset(
    name: str | DatasetSpec = "fashion-mnist",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: ProgressFn | None = None,
) -> Dataset:
    """Find (or download), verify and parse a dataset.

    Args:
        name: ``fashion-mnist`` (or ``fashion_mnist``), ``mnist``, or a ``DatasetSpec``.
        data_dir: a directory searched first (else ``FMNIST_DATA_DIR``, then the cache, then system dirs).
        download: fetch missing files from the mirrors into the cache.
        progress: called as ``progress(filename, bytes_so_far, total)`` while downloading.

    Raises:
        DataFileError: a file is missing (and ``download`` is off), fails its hash, or is malformed.
    """
    spec = name if isinstance(name, DatasetSpec) else get_dataset_spec(name)
    arrays: dict[str, np.ndarray] = {}
    resolved = []
    for file in spec.files:
        found = resolve_file(spec, file, data_dir=data_dir, download=download, progress=progress)
        resolved.append(found)
        fix = f"Delete {found.path} and re-download it with `fmnist data download --dataset {spec.name}`."
        array = parse_idx(found.content, str(found.path), fix)
        if file.role.endswith("images"):
            check_images(array, str(found.path), fix)
        else:
            check_labels(array, len(spec.class_names), str(found.path), fix)
        arrays[file.role] = array
    for split in ("train", "test"):
        check_counts(
            arrays[f"{split}_images"], arrays[f"{split}_labels"], f"{spec.name} {split}", spec.sizes.get(split)
        )
    return Dataset(
        name=spec.name,
        class_names=spec.class_names,
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"].astype(np.int64),
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"].astype(np.int64),
        files=resolved,
    )


def stratified_split(labels: np.ndarray, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified train/validation split of indices: each class gives ``round(val_fraction * count)``.

    Uses a host NumPy generator, so the split is identical on every device for the same seed.

    Returns:
        (train_indices, val_indices), each sorted ascending; ``val_fraction`` 0 gives every index to training.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0:
        return np.arange(labels.shape[0]), np.arange(0)
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = round(val_fraction * members.size)
        val.append(rng.permutation(members)[:take])
    val_idx = np.sort(np.concatenate(val))
    mask = np.ones(labels.shape[0], dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask), val_idx
