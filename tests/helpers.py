"""Test data helpers."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import socket
from pathlib import Path

import numpy as np

from fmnist.data import MNIST, DatasetSpec, FileSpec, encode_idx
from fmnist.training.callbacks import Callback


def blobs(n: int = 300, dim: int = 20, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small separable problem: Gaussian clusters around random centres, float32 inputs and int64 labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, size=(classes, dim))
    y = rng.integers(0, classes, size=n)
    x = centres[y] + rng.normal(0.0, 1.0, size=(n, dim))
    return x.astype(np.float32), y.astype(np.int64)


def tiny_arrays(n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_labels": np.arange(n_test, dtype=np.uint8) % 10,
    }


def write_tiny_mnist(directory: Path, arrays: dict[str, np.ndarray] | None = None, base: DatasetSpec = MNIST):
    """Write gzip IDX files and return a spec like ``base`` whose pinned hashes are those of the files written."""
    arrays = arrays or tiny_arrays()
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for file in base.files:
        content = encode_idx(arrays[file.role])
        packed = gzip.compress(content, mtime=0)
        (directory / file.filename).write_bytes(packed)
        digest = hashlib.sha256(packed if file.hash_of == "gz" else content).hexdigest()
        files.append(FileSpec(file.role, file.filename, digest, file.hash_of))
    sizes = {"train": len(arrays["train_labels"]), "test": len(arrays["test_labels"])}
    return dataclasses.replace(base, files=tuple(files), mirrors=(), system_dirs=(), sizes=sizes), arrays


def learnable_arrays(n_train: int = 600, n_test: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny 10-class image set an MLP learns in a few epochs: a fixed random template per class plus noise."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(10, 28, 28))

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % 10
        noise = rng.normal(0, 60, size=(n, 28, 28))
        return np.clip(templates[labels] + noise, 0, 255).astype(np.uint8), labels.astype(np.uint8)

    train_images, train_labels = make(n_train)
    test_images, test_labels = make(n_test)
    return {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there any more: connection refused


class StopWhen(Callback):
    """A run callback that asks for a stop (as Ctrl-C does) when ``predicate()`` is true; polled before each step."""

    def __init__(self, predicate):
        self.predicate = predicate

    def should_stop(self) -> bool:
        return bool(self.predicate())
