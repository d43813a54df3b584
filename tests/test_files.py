"""Files fmnist writes get the user's umask (0o666 & ~umask), as a plain open() would give them, not mkstemp's 0o600."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager

import pytest
from typer.testing import CliRunner

from fmnist.cli import app
from fmnist.data import FASHION_MNIST, registry
from fmnist.files import atomic_open, atomic_write, umask

from helpers import learnable_arrays, write_tiny_mnist


@contextmanager
def umask_set(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o027])
def test_atomic_writes_follow_the_umask(tmp_path, mask):
    with umask_set(mask):
        assert umask() == mask
        assert umask() == mask  # reading it does not change it
        atomic_write(tmp_path / "a.json", "{}")
        with atomic_open(tmp_path / "b.npz") as handle:
            handle.write(b"data")
        (tmp_path / "plain.txt").write_text("")
    expected = 0o666 & ~mask
    assert mode(tmp_path / "plain.txt") == expected
    assert mode(tmp_path / "a.json") == expected
    assert mode(tmp_path / "b.npz") == expected
    assert (tmp_path / "b.npz").read_bytes() == b"data"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_replaced_file_takes_the_umask_too(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")
    target.chmod(0o600)
    with umask_set(0o022):
        atomic_write(target, "new")
    assert mode(target) == 0o644
    assert target.read_text() == "new"


def test_every_file_of_a_run_is_readable_by_others_under_umask_022(tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_CACHE_DIR", str(tmp_path / "cache"))
    spec, _ = write_tiny_mnist(tmp_path / "data", learnable_arrays(), base=FASHION_MNIST)
    monkeypatch.setitem(registry.DATASETS, "fashion-mnist", spec)
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "run"
    with umask_set(0o022):
        result = CliRunner().invoke(app, ["train", "-e", "1", "-b", "64", "-sz", "16", "-nhl", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"config.json", "checkpoint.npz", "model.npz", "summary.json", "metrics.jsonl"} <= {p.name for p in files}
    assert {p.name: oct(mode(p)) for p in files} == {p.name: oct(0o644) for p in files}
