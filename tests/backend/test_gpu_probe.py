"""No false GPU: choosing the GPU compiles fmnist's kernels and runs one first. On a machine where CuPy imports and
sees the device but cannot compile (only the NVIDIA driver: ``pip install cupy-cuda12x`` without ``[ctk]``),
``--device auto`` trains on the CPU and says why in one line, ``--device gpu`` stops with one line naming the fix,
and ``fmnist info`` shows the same. Checked on the simulated CuPy (tests/simgpu, ``driver_only``), as CuPy 13.6 and
14.0.1 fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import fmnist.backend.cupy_ops as cupy_ops
import fmnist.backend.devices as devices
from fmnist.backend import BackendUnavailableError, get_backend
from fmnist.cli import app
from fmnist.data import DeviceData
from fmnist.network import MLP, get_loss, get_optimizer
from fmnist.training.fit import Trainer

TESTS = Path(__file__).resolve().parents[1]
FIXES = {"13.6.0": "install the CUDA Toolkit", "14.0.1": '[ctk]"'}  # pip install "cupy-cuda12x[ctk]" (or 13x)
CAUSES = {"nvrtc": "NVRTC is not installed", "headers": "CUDA headers are not found", "cublas": "cuBLAS is not"}


@pytest.fixture
def fresh_probe(monkeypatch):
    """The simulated CuPy installed, as a process that has not probed the GPU nor compiled fmnist's kernels yet."""
    import simgpu

    monkeypatch.setattr(devices, "_PROBED", {})
    monkeypatch.setattr(cupy_ops, "_MODULES", {})
    monkeypatch.setattr(devices, "_OPS_FOR", {})
    simgpu.install()
    yield simgpu
    simgpu.uninstall()


@pytest.mark.gpu
def test_the_probe_compiles_the_kernels_so_that_training_compiles_nothing(fresh_probe):
    before = fresh_probe.compilations()
    be = get_backend("gpu")
    assert fresh_probe.compilations() == before + 1  # fmnist's whole source, once
    rng = np.random.default_rng(0)
    data = DeviceData(be, rng.integers(0, 256, size=(256, 784), dtype=np.uint8), rng.integers(0, 10, size=256))
    model = MLP([784, 32, 10], backend=be, seed=0, activation="sigmoid", dropout=0.2)
    trainer = Trainer(
        model=model,
        optimizer=get_optimizer("adam", model.parameters()),
        loss_fn=get_loss("cross_entropy"),
        train=data,
        val=data,
        batch_size=64,
        rng=be.rng(0),
    )
    trainer.fit(1)
    assert fresh_probe.compilations() == before + 1  # nothing compiled inside the first epoch


@pytest.mark.gpu
@pytest.mark.parametrize("version", list(FIXES))
@pytest.mark.parametrize("missing", list(CAUSES))
def test_a_gpu_that_cannot_compile_is_not_chosen(fresh_probe, version, missing):
    with fresh_probe.cupy_version(version), fresh_probe.driver_only(missing):
        auto = get_backend("auto")
        assert auto.name == "cpu"
        assert auto.note.startswith("auto: using the CPU (CuPy ")
        assert CAUSES[missing] in auto.note
        assert FIXES[version] in auto.note
        assert "\n" not in auto.note
        with pytest.raises(BackendUnavailableError) as stop:
            get_backend("gpu")
    message = str(stop.value)
    assert "\n" not in message
    assert message.startswith(f"GPU requested but CuPy {version}")
    assert FIXES[version] in message
    assert message.endswith("or run with --device cpu")
    assert devices.gpu_status() == (False, message)


@pytest.mark.gpu
def test_auto_trains_on_the_cpu_and_says_why(fresh_probe, tiny_fashion, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--device", "auto", "-e", "1", "-b", "32", "-sz", "16", "-nhl", "1", "--out", str(out)]
    with fresh_probe.driver_only("nvrtc"):
        result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "auto: using the CPU (CuPy 13.6.0 cannot compile CUDA kernels: NVRTC is not installed." in result.output
    assert "Traceback" not in result.output
    assert json.loads((out / "config.json").read_text())["environment"]["device"] == "cpu"


def _fmnist(tmp_path: Path, *args: str, missing: str = "nvrtc", version: str = "13.6.0"):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS / "simgpu" / "site"), str(TESTS)]),
        "FMNIST_CACHE_DIR": str(tmp_path / "cache"),
        "SIMGPU_DRIVER_ONLY": missing,
        "SIMGPU_CUPY_VERSION": version,
        "COLUMNS": "100",
    }
    command = [sys.executable, "-m", "fmnist", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path, check=False)


@pytest.mark.gpu
def test_device_gpu_stops_with_one_line_naming_the_fix(tmp_path):
    proc = _fmnist(tmp_path, "train", "--device", "gpu", "-e", "1", "--out", str(tmp_path / "run"), version="14.0.1")
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: GPU requested but CuPy 14.0.1 cannot compile CUDA kernels")
    assert re.search(r'Fix: pip install "cupy-cuda1\dx\[ctk\]"; or run with --device cpu$', lines[0]), lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.gpu
def test_device_gpu_that_cannot_run_exits_2(tmp_path):
    assert _fmnist(tmp_path, "train", "--device", "gpu", "-e", "1", "--out", str(tmp_path / "run")).returncode == 2


@pytest.mark.gpu
def test_info_shows_why_the_gpu_is_unavailable(tmp_path):
    proc = _fmnist(tmp_path, "info", missing="headers")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.replace("│", " ").split())
    assert "unavailable: CuPy 13.6.0 cannot compile CUDA kernels: the CUDA headers are not found" in text
    assert "set CUDA_PATH to a CUDA Toolkit" in text
