"""Pickle-free ``.npz`` archives for models and checkpoints.

An archive holds named float/int arrays plus one JSON metadata string stored as a 0-d unicode array, so it loads
with ``np.load(..., allow_pickle=False)`` and never executes code.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.training.atomic import atomic_open

FORMAT = "fmnist"
VERSION = 2  # 2: models record their architecture and buffers (batch norm); files of version 1 keep loading
SUPPORTED = (1, 2)


class CheckpointError(ValueError):
    """A model or checkpoint file is missing, damaged, or not one of ours."""


def save_archive(path: str | os.PathLike, kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Atomically write an ``.npz`` of ``arrays`` plus ``meta`` (JSON) tagged with ``kind`` ("model"/"checkpoint")."""
    header = {"format": FORMAT, "kind": kind, "version": VERSION, **meta}
    with atomic_open(path) as out:
        np.savez(out, __meta__=np.array(json.dumps(header)), **arrays)


def load_archive(path: str | os.PathLike, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Load an archive written by ``save_archive`` (never unpickles).

    Raises:
        CheckpointError: missing, damaged, foreign, or of another kind; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise CheckpointError(f"{path}: damaged or not an .npz archive ({type(err).__name__}: {err})") from err
    raw = arrays.pop("__meta__", None)
    try:
        meta = json.loads(str(raw)) if raw is not None else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an fmnist {kind} file (no fmnist metadata)")
    if meta.get("kind") != kind:
        raise CheckpointError(f"{path}: is an fmnist {meta.get('kind')} file, expected a {kind}")
    if meta.get("version") not in SUPPORTED:
        raise CheckpointError(
            f"{path}: format version {meta.get('version')} is not supported (this fmnist reads "
            f"{', '.join(map(str, SUPPORTED))}); a newer fmnist wrote it"
        )
    return meta, arrays
