"""IDX parsing with validation: magic number, dimensions, item counts and exact length are all checked."""

from __future__ import annotations

import math
import struct

import numpy as np


class DataFileError(ValueError):
    """A data file is missing, truncated, corrupt or does not match its pinned hash; the message names the file,
    says what is wrong and how to fix it."""


UBYTE = 0x08


def parse_idx(raw: bytes, name: str, fix: str = "") -> np.ndarray:
    """Parse an unsigned-byte IDX file's bytes into a read-only uint8 array (no copy of the data).

    Args:
        raw: the decompressed IDX bytes.
        name: the file's name or path, used in error messages.
        fix: a hint appended to errors (e.g. which cache entry to delete).

    Raises:
        DataFileError: bad magic, unsupported element type, or a length that disagrees with the header.
    """
    hint = _hint(fix)
    if len(raw) < 4:
        raise DataFileError(f"{name}: only {len(raw)} bytes, too short for an IDX header.{hint}")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or ndim == 0:
        raise DataFileError(f"{name}: bad IDX magic number 0x{raw[:4].hex()} (not an IDX file).{hint}")
    if dtype != UBYTE:
        raise DataFileError(f"{name}: IDX element type 0x{dtype:02x} is not unsigned byte (0x08).{hint}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFileError(f"{name}: truncated IDX header ({len(raw)} of {header} bytes).{hint}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + math.prod(dims)
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataFileError(f"{name}: {what}: header says dims {dims} = {expected} bytes, file has {len(raw)}.{hint}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def check_images(images: np.ndarray, name: str, fix: str = "") -> None:
    """Images must be (n, 28, 28)."""
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataFileError(f"{name}: expected images of shape (n, 28, 28), got {images.shape}.{_hint(fix)}")


def check_labels(labels: np.ndarray, num_classes: int, name: str, fix: str = "") -> None:
    """Labels must be one-dimensional and in [0, num_classes)."""
    if labels.ndim != 1:
        raise DataFileError(f"{name}: expected a 1-D label file, got shape {labels.shape}.{_hint(fix)}")
    if labels.size and int(labels.max()) >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise DataFileError(
            f"{name}: label {int(labels[bad])} at index {bad} is outside 0..{num_classes - 1}.{_hint(fix)}"
        )


def check_counts(images: np.ndarray, labels: np.ndarray, split: str, expected: int | None) -> None:
    """Images and labels of a split must agree in count (and match the dataset's official count when given)."""
    if images.shape[0] != labels.shape[0]:
        raise DataFileError(
            f"{split}: {images.shape[0]} images but {labels.shape[0]} labels; the files do not belong together"
        )
    if expected is not None and images.shape[0] != expected:
        raise DataFileError(f"{split}: {images.shape[0]} items, expected {expected}")


def _hint(fix: str) -> str:
    return f" {fix}" if fix else ""


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of a uint8 array (used by tests and by tools that write small datasets)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return struct.pack(f">HBB{array.ndim}I", 0, UBYTE, array.ndim, *array.shape) + array.tobytes()
