"""Data layer: IDX validation, file resolution, verified downloads from a local HTTP server, splits and batching."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from fmnist.backend import get_backend
from fmnist.data import (
    FASHION_MNIST,
    MNIST,
    DataFileError,
    DeviceData,
    download_file,
    encode_idx,
    get_dataset_spec,
    load_dataset,
    parse_idx,
    pixel_stats,
    stratified_split,
)

from helpers import dead_url, tiny_arrays, write_tiny_mnist

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Every test gets its own empty cache and no inherited data dir or mirrors."""
    monkeypatch.setenv("FMNIST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FMNIST_DATA_DIR", raising=False)
    monkeypatch.delenv("FMNIST_MIRRORS", raising=False)


# --- IDX parsing -----------------------------------------------------------------------------------------------


def test_idx_round_trip():
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    parsed = parse_idx(encode_idx(images), "x")
    np.testing.assert_array_equal(parsed, images)
    assert parsed.dtype == np.uint8


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw[:-5], "truncated"),
        (lambda raw: raw[:6], "truncated IDX header"),
        (lambda raw: raw + b"\0", "trailing bytes"),
        (lambda raw: b"\x01\x02" + raw[2:], "bad IDX magic"),
        (lambda raw: raw[:2] + b"\x0d" + raw[3:], "not unsigned byte"),
        (lambda raw: b"", "too short"),
    ],
    ids=["truncated", "truncated-header", "trailing", "wrong-magic", "float-type", "empty"],
)
def test_malformed_idx_is_named_and_explained(mutate, message):
    raw = encode_idx(np.zeros((3, 28, 28), dtype=np.uint8))
    with pytest.raises(DataFileError, match=rf"^bad\.idx: .*{message}.*Delete it"):
        parse_idx(mutate(raw), "bad.idx", "Delete it.")


def test_bad_label_is_rejected(tmp_path, monkeypatch):
    arrays = tiny_arrays()
    arrays["train_labels"] = arrays["train_labels"].copy()
    arrays["train_labels"][7] = 12
    spec, _ = write_tiny_mnist(tmp_path / "d", arrays)
    with pytest.raises(DataFileError, match=r"train-labels-idx1-ubyte\.gz: label 12 at index 7 is outside 0\.\.9"):
        load_dataset(spec, data_dir=tmp_path / "d", download=False)


def test_wrong_count_is_rejected(tmp_path):
    arrays = tiny_arrays()
    arrays["test_labels"] = arrays["test_labels"][:-1]
    spec, _ = write_tiny_mnist(tmp_path / "d", arrays)
    spec = dataclasses.replace(spec, sizes={"train": 20, "test": 10})
    with pytest.raises(DataFileError, match="mnist test: 10 images but 9 labels"):
        load_dataset(spec, data_dir=tmp_path / "d", download=False)


def test_wrong_image_shape_is_rejected(tmp_path):
    arrays = tiny_arrays()
    arrays["test_images"] = np.zeros((10, 14, 56), dtype=np.uint8)
    spec, _ = write_tiny_mnist(tmp_path / "d", arrays)
    with pytest.raises(DataFileError, match=r"expected images of shape \(n, 28, 28\), got \(10, 14, 56\)"):
        load_dataset(spec, data_dir=tmp_path / "d", download=False)


def test_truncated_gzip_is_named(tmp_path):
    spec, _ = write_tiny_mnist(tmp_path / "d")
    path = tmp_path / "d" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataFileError, match=r"t10k-images-idx3-ubyte\.gz: cannot be decompressed"):
        load_dataset(spec, data_dir=tmp_path / "d", download=False)


def test_hash_mismatch_in_cache_names_the_entry_and_the_fix(tmp_path):
    spec, arrays = write_tiny_mnist(tmp_path / "src")
    cache = tmp_path / "cache" / "mnist"
    cache.mkdir(parents=True)
    for file in spec.files:
        (cache / file.filename).write_bytes((tmp_path / "src" / file.filename).read_bytes())
    other = gzip.compress(encode_idx(arrays["test_labels"][::-1].copy()), mtime=0)
    (cache / "t10k-labels-idx1-ubyte.gz").write_bytes(other)
    with pytest.raises(DataFileError, match=r"t10k-labels.*SHA-256 of the file .*Delete .*fmnist data download"):
        load_dataset(spec, download=False)


def test_missing_files_without_download_say_how_to_get_them(tmp_path):
    spec, _ = write_tiny_mnist(tmp_path / "elsewhere")
    with pytest.raises(DataFileError, match=r"not found in .*fmnist data download --dataset mnist"):
        load_dataset(spec, download=False)


# --- resolution order ------------------------------------------------------------------------------------------


def test_data_dir_wins_over_cache(tmp_path, monkeypatch):
    spec, arrays = write_tiny_mnist(tmp_path / "explicit")
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tmp_path / "explicit"))
    ds = load_dataset(spec, download=False)
    assert {f.source for f in ds.files} == {"data-dir"}
    np.testing.assert_array_equal(ds.test_images, arrays["test_images"])
    np.testing.assert_array_equal(ds.train_labels, arrays["train_labels"])
    assert ds.train_labels.dtype == np.int64


def test_dataset_names():
    assert get_dataset_spec("fashion_mnist") is FASHION_MNIST
    assert get_dataset_spec("MNIST") is MNIST
    with pytest.raises(ValueError, match="valid: fashion-mnist"):
        get_dataset_spec("cifar10")


# --- downloads from a local server -----------------------------------------------------------------------------


def test_download_caches_verified_files_and_reuses_them(tmp_path, http_server, monkeypatch):
    base, www = http_server
    spec, arrays = write_tiny_mnist(www)
    monkeypatch.setenv("FMNIST_MIRRORS", base)
    seen = []
    ds = load_dataset(spec, progress=lambda name, done, total: seen.append((name, done, total)))
    assert {f.source for f in ds.files} == {"download"}
    np.testing.assert_array_equal(ds.train_images, arrays["train_images"])
    cached = sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir())
    assert cached == sorted(f.filename for f in spec.files)  # no temporary files left behind
    assert seen
    assert all(done == total for name, done, total in seen if name == "t10k-labels-idx1-ubyte.gz")
    for file in spec.files:
        (www / file.filename).unlink()  # the server no longer has them: the cache must serve
    again = load_dataset(spec)
    assert {f.source for f in again.files} == {"cache"}


def test_tampered_download_is_rejected_and_leaves_nothing(tmp_path, http_server, monkeypatch):
    base, www = http_server
    spec, _ = write_tiny_mnist(www)
    target = www / "train-labels-idx1-ubyte.gz"
    target.write_bytes(gzip.compress(encode_idx(np.zeros(20, dtype=np.uint8)), mtime=0))
    monkeypatch.setenv("FMNIST_MIRRORS", base)
    file = spec.file("train_labels")
    with pytest.raises(DataFileError, match=r"(?s)could not download train-labels.*rejected \(SHA-256"):
        download_file(spec, file, backoff=0)
    cache = tmp_path / "cache" / "mnist"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_dead_first_mirror_falls_through_to_the_second(tmp_path, http_server, monkeypatch):
    base, www = http_server
    spec, _ = write_tiny_mnist(www)
    monkeypatch.setenv("FMNIST_MIRRORS", f"{dead_url()},{base}")
    path = download_file(spec, spec.file("test_labels"), backoff=0, timeout=5)
    assert path == tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == spec.file("test_labels").sha256


def test_all_mirrors_failing_lists_each(tmp_path, monkeypatch):
    spec, _ = write_tiny_mnist(tmp_path / "x")
    monkeypatch.setenv("FMNIST_MIRRORS", f"{dead_url()},{dead_url()}")
    with pytest.raises(DataFileError, match=r"(?s)could not download.*attempt 1.*attempt 2.*FMNIST_MIRRORS"):
        download_file(spec, spec.file("test_labels"), backoff=0, timeout=5)


def test_mnist_download_from_local_mirror_via_load_dataset(tmp_path, http_server, monkeypatch):
    base, www = http_server
    spec, arrays = write_tiny_mnist(www)
    monkeypatch.setenv("FMNIST_MIRRORS", base.rstrip("/"))  # a base URL without the trailing slash works too
    ds = load_dataset(spec)
    assert ds.class_names == tuple("0123456789")
    np.testing.assert_array_equal(ds.test_labels, arrays["test_labels"])


# --- splits and batching ---------------------------------------------------------------------------------------


def test_stratified_split_is_seeded_and_balanced():
    labels = np.repeat(np.arange(10), 100)
    tr, va = stratified_split(labels, 0.1, seed=3)
    assert len(va) == 100
    assert len(tr) == 900
    assert np.intersect1d(tr, va).size == 0
    assert np.bincount(labels[va]).tolist() == [10] * 10
    np.testing.assert_array_equal(stratified_split(labels, 0.1, seed=3)[1], va)
    assert not np.array_equal(stratified_split(labels, 0.1, seed=4)[1], va)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        stratified_split(labels, 1.0)
    everything, none = stratified_split(labels, 0.0)  # --val-fraction 0: train on the whole training split
    assert everything.tolist() == list(range(1000))
    assert none.size == 0


def test_batches_cover_the_set_once_and_match_the_host(backend):
    arrays = tiny_arrays(n_train=50)
    arrays["train_images"][:, 0, 0] = np.arange(50)  # first pixel = row number, to recover the order
    data = DeviceData(backend, arrays["train_images"], arrays["train_labels"])
    subset = data.subset(np.arange(5, 45))
    seen_x, seen_y = [], []
    for x, y in subset.batches(16, backend.rng(0)):
        assert x.dtype == backend.dtype
        seen_x.append(np.array(backend.to_numpy(x)))  # a copy: fused kernels reuse the batch workspace
        seen_y.append(backend.to_numpy(y))
    assert [len(y) for y in seen_y] == [16, 16, 8]
    xs, ys = np.concatenate(seen_x), np.concatenate(seen_y)
    host = arrays["train_images"].reshape(50, -1)[5:45].astype(np.float32) / 255
    rows = np.rint(xs[:, 0] * 255).astype(int)
    assert sorted(rows.tolist()) == list(range(5, 45))  # every row of the subset exactly once
    assert rows.tolist() != list(range(5, 45))  # shuffled
    np.testing.assert_allclose(xs, host[rows - 5], rtol=1e-6)
    np.testing.assert_array_equal(ys, arrays["train_labels"][rows])
    assert subset.labels_host().tolist() == arrays["train_labels"][5:45].tolist()


def test_shuffle_is_identical_on_every_device(backend):
    arrays = tiny_arrays(n_train=30)
    cpu = DeviceData(get_backend("cpu"), arrays["train_images"], arrays["train_labels"])
    other = DeviceData(backend, arrays["train_images"], arrays["train_labels"])
    for (x1, y1), (x2, y2) in zip(
        cpu.batches(8, get_backend("cpu").rng(5)), other.batches(8, backend.rng(5)), strict=True
    ):
        np.testing.assert_array_equal(y1, backend.to_numpy(y2))
        np.testing.assert_allclose(x1, backend.to_numpy(x2), rtol=1e-6)


def test_standardisation_uses_train_statistics():
    arrays = tiny_arrays(n_train=40)
    mean, std = pixel_stats(arrays["train_images"])
    host = arrays["train_images"].astype(np.float64) / 255
    assert mean == pytest.approx(host.mean())
    assert std == pytest.approx(host.std())
    data = DeviceData(get_backend("cpu"), arrays["train_images"], arrays["train_labels"]).normalized(mean, std)
    x = np.concatenate([x.copy() for x, _ in data.batches(64)])
    assert abs(x.mean()) < 1e-5
    assert x.std() == pytest.approx(1.0, rel=1e-4)


# --- the real Fashion-MNIST (Debian package dataset-fashion-mnist) ---------------------------------------------

needs_real_data = pytest.mark.skipif(
    not (SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST is not installed here (apt-get install dataset-fashion-mnist)",
)


@needs_real_data
def test_real_fashion_mnist_loads_verified_from_the_system_dir():
    ds = load_dataset("fashion-mnist")
    assert {f.source for f in ds.files} == {"system"}
    assert {f.path.parent for f in ds.files} == {SYSTEM_DIR}
    assert ds.train_images.shape == (60000, 28, 28)
    assert ds.test_images.shape == (10000, 28, 28)
    assert np.bincount(ds.train_labels).tolist() == [6000] * 10
    assert np.bincount(ds.test_labels).tolist() == [1000] * 10
    for f in ds.files:  # the pinned hashes are of the decompressed content
        assert hashlib.sha256(f.content).hexdigest() == f.spec.sha256
    # one uint8 copy (~55 MB): the arrays are views of the decompressed file bytes, not float copies
    assert ds.train_images.dtype == np.uint8
    assert ds.train_images.nbytes + ds.test_images.nbytes == 54_880_000
    assert not ds.train_images.flags.owndata
    assert ds.class_names[0] == "T-shirt/top"
    assert ds.class_names[9] == "Ankle boot"
