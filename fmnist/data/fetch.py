"""Finding, verifying and downloading dataset files.

Resolution, first hit wins for each file: an explicit directory (``data_dir`` or ``FMNIST_DATA_DIR``), the user
cache (``FMNIST_CACHE_DIR`` or the platform cache dir), system directories (e.g. Debian's
``/usr/share/datasets/fashion-mnist``), then a download into the cache: ``FMNIST_MIRRORS`` (comma-separated base
URLs) first, then the built-in mirrors, each with retries. Downloads land in a temporary file that is verified and
then renamed, so a partial or failed download never leaves a file that looks valid.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fmnist.data.idx import DataFileError
from fmnist.data.registry import DatasetSpec, FileSpec
from fmnist.files import umask

ProgressFn = Callable[[str, int, int | None], None]  # (filename, bytes so far, total bytes or None)

CHUNK = 1 << 20


@dataclass(frozen=True)
class ResolvedFile:
    """Where a file was found and its verified, decompressed IDX bytes."""

    spec: FileSpec
    path: Path
    source: str  # "data-dir", "cache", "system" or "download"
    content: bytes
    size: int  # bytes on disk (.gz)


def cache_dir() -> Path:
    """The user cache: ``FMNIST_CACHE_DIR`` if set, else the platform cache dir (e.g. ``~/.cache/fmnist``)."""
    env = os.environ.get("FMNIST_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("fmnist", appauthor=False))


def mirrors(spec: DatasetSpec) -> list[str]:
    """Base URLs to try in order: ``FMNIST_MIRRORS`` first, then the dataset's built-in mirrors."""
    extra = [m.strip() for m in os.environ.get("FMNIST_MIRRORS", "").split(",") if m.strip()]
    return [m if m.endswith("/") else m + "/" for m in extra] + list(spec.mirrors)


def candidate_dirs(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """(source, directory) pairs searched before any download, in order."""
    dirs: list[tuple[str, Path]] = []
    explicit = data_dir if data_dir is not None else os.environ.get("FMNIST_DATA_DIR")
    if explicit:
        root = Path(explicit).expanduser()
        dirs += [("data-dir", root), ("data-dir", root / spec.name)]
    dirs.append(("cache", cache_dir() / spec.name))
    dirs += [("system", Path(d)) for d in spec.system_dirs]
    return dirs


def read_verified(path: Path, file: FileSpec, fix: str) -> bytes:
    """Read a ``.gz`` file, check its pinned SHA-256 and return the decompressed IDX bytes.

    Raises:
        DataFileError: unreadable, not gzip, truncated, or the hash does not match.
    """
    fix = f" {fix}" if fix else ""
    try:
        packed = path.read_bytes()
        content = gzip.decompress(packed)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataFileError(f"{path}: cannot be decompressed ({err}); the file is corrupt or truncated.{fix}") from err
    digest = hashlib.sha256(content if file.hash_of == "content" else packed).hexdigest()
    if digest != file.sha256:
        what = "decompressed content" if file.hash_of == "content" else "file"
        raise DataFileError(
            f"{path}: SHA-256 of the {what} is {digest[:16]}…, expected {file.sha256[:16]}… "
            f"(corrupt, truncated or a different file).{fix}"
        )
    return content


def resolve_file(
    spec: DatasetSpec,
    file: FileSpec,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: ProgressFn | None = None,
) -> ResolvedFile:
    """Find ``file`` (first hit wins), verify it and return its content; download it into the cache if needed."""
    for source, directory in candidate_dirs(spec, data_dir):
        path = directory / file.filename
        if path.is_file():
            fix = _fix_for(source, path, spec)
            return ResolvedFile(file, path, source, read_verified(path, file, fix), path.stat().st_size)
    if not download:
        searched = ", ".join(str(d) for _, d in candidate_dirs(spec, data_dir))
        raise DataFileError(
            f"{file.filename} not found in {searched}; run `fmnist data download --dataset {spec.name}`"
        )
    path = download_file(spec, file, progress=progress)
    return ResolvedFile(file, path, "download", read_verified(path, file, ""), path.stat().st_size)


def download_file(
    spec: DatasetSpec,
    file: FileSpec,
    target_dir: Path | None = None,
    progress: ProgressFn | None = None,
    retries: int = 2,
    backoff: float = 1.0,
    timeout: float = 30.0,
) -> Path:
    """Download ``file`` mirror by mirror into ``target_dir`` (default: the cache), verified, atomically.

    Raises:
        DataFileError: every mirror failed; the message lists what each one did.
    """
    target_dir = Path(target_dir) if target_dir is not None else cache_dir() / spec.name
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / file.filename
    failures = []
    for base in mirrors(spec):
        url = base + file.filename
        for attempt in range(1, retries + 1):
            fd, tmp_name = tempfile.mkstemp(prefix=f".{file.filename}.", suffix=".part", dir=target_dir)
            tmp = Path(tmp_name)
            try:
                if hasattr(os, "fchmod"):  # the mode of any file the user creates, not mkstemp's 0o600
                    os.fchmod(fd, 0o666 & ~umask())
                with os.fdopen(fd, "wb") as out:
                    _stream(url, out, file.filename, progress, timeout)
                read_verified(tmp, file, "")
                os.replace(tmp, target)
                return target
            except DataFileError as err:  # wrong bytes: retrying this mirror will not help
                failures.append(f"{url}: rejected ({str(err).split(': ', 1)[-1]})")
                break
            except (OSError, urllib.error.URLError) as err:
                failures.append(f"{url} (attempt {attempt}): {err}")
                if attempt < retries:
                    time.sleep(backoff * attempt)
            finally:
                tmp.unlink(missing_ok=True)
    raise DataFileError(
        f"could not download {file.filename} for {spec.name}:\n  "
        + "\n  ".join(failures)
        + "\nCheck the network, set FMNIST_MIRRORS to a reachable mirror, or pass --data-dir with the files."
    )


def _stream(url: str, out, filename: str, progress: ProgressFn | None, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "fmnist"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        total = response.headers.get("Content-Length")
        total = int(total) if total else None
        done = 0
        while chunk := response.read(CHUNK):
            out.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(filename, done, total)
        if total is not None and done != total:
            raise OSError(f"connection closed after {done} of {total} bytes")


def _fix_for(source: str, path: Path, spec: DatasetSpec) -> str:
    if source == "cache":
        return f"Delete {path} and run `fmnist data download --dataset {spec.name}` to fetch it again."
    if source == "system":
        return "Reinstall the package that provides it (e.g. `apt-get install --reinstall dataset-fashion-mnist`)."
    return f"Replace {path} with a good copy, or remove it so that fmnist uses its cache or downloads it."


@dataclass(frozen=True)
class FileStatus:
    """What ``inspect_files`` found for one file: where, how big, and whether it verified (or the error)."""

    spec: FileSpec
    path: Path | None
    source: str | None
    size: int | None
    error: str | None

    @property
    def verified(self) -> bool:
        return self.path is not None and self.error is None


def inspect_files(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> list[FileStatus]:
    """Locate and verify every file of ``spec`` without downloading or raising (for ``fmnist data info``)."""
    statuses = []
    for file in spec.files:
        try:
            found = resolve_file(spec, file, data_dir=data_dir, download=False)
        except DataFileError as err:
            path = next(
                (d / file.filename for _, d in candidate_dirs(spec, data_dir) if (d / file.filename).is_file()), None
            )
            source = next((s for s, d in candidate_dirs(spec, data_dir) if path and path.parent == d), None)
            size = path.stat().st_size if path else None
            statuses.append(FileStatus(file, path, source, size, str(err)))
        else:
            statuses.append(FileStatus(file, found.path, found.source, found.size, None))
    return statuses
