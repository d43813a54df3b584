"""`fmnist data download|info|show` through Typer's CliRunner, on tiny files served from 127.0.0.1."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from fmnist.cli import app
from fmnist.data import registry

from helpers import write_tiny_mnist

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FMNIST_DATA_DIR", raising=False)
    monkeypatch.delenv("FMNIST_MIRRORS", raising=False)


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch, http_server):
    """Serve tiny MNIST files locally and pin the registry's MNIST hashes to them."""
    base, www = http_server
    spec, arrays = write_tiny_mnist(www)
    spec = dataclasses.replace(spec, mirrors=(base,))
    monkeypatch.setitem(registry.DATASETS, "mnist", spec)
    return spec, arrays


def test_download_fetches_into_the_cache_verified(tmp_path, tiny_mnist):
    result = runner.invoke(app, ["data", "download", "--dataset", "mnist"])
    assert result.exit_code == 0, result.output
    assert result.output.count("SHA-256 verified") == 4
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(
        f.filename for f in tiny_mnist[0].files
    )


def test_info_reports_sources_and_class_counts(tiny_mnist):
    runner.invoke(app, ["data", "download", "-d", "mnist"])
    result = runner.invoke(app, ["data", "info", "-d", "mnist"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.output.count("cache") >= 4
    total_row = next(line for line in result.output.splitlines() if "total" in line)
    assert [cell.strip() for cell in total_row.split("│") if cell.strip()] == ["total", "20", "10"]


def test_info_without_files_fails_and_says_how_to_fix(tiny_mnist):
    result = runner.invoke(app, ["data", "info", "-d", "mnist"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "missing" in result.output
    assert "fmnist data download --dataset mnist" in result.output


def test_show_writes_a_png(tmp_path, tiny_mnist):
    out = tmp_path / "samples.png"
    result = runner.invoke(app, ["data", "show", "-d", "mnist", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_rejects_bad_options_before_loading(tmp_path):
    result = runner.invoke(app, ["data", "show", "--split", "holdout"])
    assert result.exit_code == 2
    assert "--split must be train or test" in result.output
    result = runner.invoke(app, ["data", "show", "--dataset", "cifar"])
    assert result.exit_code == 2
