"""Files: atomic writes with the user's umask, pickle-free ``.npz`` archives, and tolerant JSON readers.

Every file fmnist writes goes through ``atomic_open``: a temporary file in the target's directory, flushed, then
renamed over the target, so a reader (or a process killed mid-write) never sees half a file. The file gets the
mode a plain ``open(path, "w")`` would give it (0o666 less the user's umask), not the 0o600 of ``mkstemp``: run
directories are meant to be shared.

An archive holds named float/int arrays plus one JSON metadata string stored as a 0-d unicode array, so it loads
with ``np.load(..., allow_pickle=False)`` and never executes code. Models and checkpoints are archives.

This module imports nothing of fmnist: every package may use it.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

# --- atomic writes -----------------------------------------------------------------------------------------------


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary binary file that replaces ``path`` only if the block finishes without an exception."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            if hasattr(os, "fchmod"):
                os.fchmod(out.fileno(), 0o666 & ~umask())
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically."""
    with atomic_open(path) as out:
        out.write(data.encode() if isinstance(data, str) else data)


def write_json(path: str | os.PathLike, value: Any) -> None:
    """``value`` as indented JSON with a final newline, written atomically."""
    atomic_write(path, json.dumps(value, indent=2, default=str) + "\n")


def umask() -> int:
    """The process umask, read without changing it where the system allows (Linux: /proc/self/status), since
    setting it to read it back races with threads creating files meanwhile."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)  # the briefest, safest value while we look
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


# --- tolerant readers (views of files that may be missing or being written) ----------------------------------------


def read_json(path: str | os.PathLike) -> Any:
    """The parsed file, or ``None`` when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Lines that parse as JSON objects (a line being written at the moment is skipped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


# --- pickle-free archives ------------------------------------------------------------------------------------------

FORMAT = "fmnist"
VERSION = 2  # 2: models record their architecture and buffers (batch norm); files of version 1 keep loading
SUPPORTED = (1, 2)


class ArchiveError(ValueError):
    """A model or checkpoint file is missing, damaged, or not one of ours; the message names the file."""


def save_archive(path: str | os.PathLike, kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Atomically write an ``.npz`` of ``arrays`` plus ``meta`` (JSON) tagged with ``kind`` ("model"/"checkpoint")."""
    header = {"format": FORMAT, "kind": kind, "version": VERSION, **meta}
    with atomic_open(path) as out:
        np.savez(out, __meta__=np.array(json.dumps(header)), **arrays)


def load_archive(path: str | os.PathLike, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Load an archive written by ``save_archive`` (never unpickles).

    Raises:
        ArchiveError: missing, damaged, foreign, or of another kind; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise ArchiveError(f"{path}: damaged or not an .npz archive ({type(err).__name__}: {err})") from err
    raw = arrays.pop("__meta__", None)
    try:
        meta = json.loads(str(raw)) if raw is not None else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArchiveError(f"{path}: not an fmnist {kind} file (no fmnist metadata)")
    if meta.get("kind") != kind:
        raise ArchiveError(f"{path}: is an fmnist {meta.get('kind')} file, expected a {kind}")
    if meta.get("version") not in SUPPORTED:
        raise ArchiveError(
            f"{path}: format version {meta.get('version')} is not supported (this fmnist reads "
            f"{', '.join(map(str, SUPPORTED))}); a newer fmnist wrote it"
        )
    return meta, arrays
