"""The GPU path, proven without a GPU: on the simulated CuPy (tests/simgpu) in CI, on a real GPU where there is
one. Host synchronisations per epoch, bit-exact resume with dropout and augmentation, the same dropout masks as the
CPU for images (both keep them channels-last), the CUDA source compiling for real GPUs (nvcc here; the real NVRTC
in test_nvrtc.py), and the CLI with ``--device gpu``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmnist.backend import NoiseStream, get_backend
from fmnist.backend.cupy_ops import SOURCE
from fmnist.data import DeviceData
from fmnist.network import MLP, get_loss, get_optimizer
from fmnist.rundir.driver import train_run
from fmnist.training.config import TrainConfig
from fmnist.training.fit import Trainer, TrainingInterrupted
from fmnist.training.inference import evaluate

from helpers import StopWhen

TESTS = Path(__file__).resolve().parents[1]
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("arch", ["sm_75", "sm_90"])
def test_cuda_source_compiles_for_real_gpus(tmp_path, arch):
    nvcc = shutil.which("nvcc") or shutil.which("nvcc", path="/usr/local/cuda/bin")
    if nvcc is None:
        pytest.skip("nvcc is not installed here")
    source = tmp_path / "fmnist_kernels.cu"
    source.write_text(SOURCE)
    proc = subprocess.run(  # without -Werror, nvcc exits 0 on a warning
        [nvcc, f"-arch={arch}", "-Werror", "all-warnings", "-c", str(source), "-o", str(tmp_path / "kernels.o")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def _trainer(be, n_train: int, n_val: int, batch_size: int = 64, dropout: float = 0.0) -> Trainer:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n_train + n_val, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n_train + n_val)
    data = DeviceData(be, images, labels).normalized(0.3, 0.35)
    model = MLP([784, 64, 32, 10], backend=be, seed=0, dropout=dropout)
    return Trainer(
        model=model,
        optimizer=get_optimizer("adam", model.parameters(), lr=1e-3, max_grad_norm=5.0),
        loss_fn=get_loss("cross_entropy", label_smoothing=0.1),
        train=data.subset(np.arange(n_train)),
        val=data.subset(np.arange(n_train, n_train + n_val)),
        batch_size=batch_size,
        rng=be.rng(0),
        noise=NoiseStream(0),
        lr_factor=lambda t: 1.0 / math.sqrt(t),
    )


@pytest.mark.gpu
def test_a_training_epoch_syncs_once_per_report_plus_validation(simulated_gpu_backend):
    import simgpu

    trainer = _trainer(simulated_gpu_backend, n_train=64 * 300, n_val=3000, dropout=0.2)
    trainer.augment = lambda x, noise: simulated_gpu_backend.ops.shift_flip(x, 1, True, *noise.next(), key="a")
    steps = 300
    with simgpu.count_syncs() as syncs:
        trainer.fit(1)
    budget = math.ceil(steps / trainer.report_every) + 1  # one read per report, one for the validation pass
    assert syncs.count <= budget, str(syncs)
    assert syncs.count / steps < 0.1  # DECISIONS: under 0.1 per step at batch 64, validation included
    with simgpu.count_syncs() as syncs:
        evaluate(trainer.model, trainer.val, trainer.loss_fn)
    assert syncs.count == 1, str(syncs)


def _weights(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / "model.npz") as archive:
        return {name: archive[name] for name in archive.files if name != "__meta__"}


@pytest.mark.gpu
def test_interrupted_and_resumed_gpu_run_equals_a_straight_one_bit_for_bit(gpu_backend, tiny_fashion, tmp_path):
    config = TrainConfig(
        device="gpu", epochs=2, batch_size=32, hidden_size=32, num_layers=2, dropout=0.3, augment_shift=2,
        augment_flip=True,
    )  # fmt: skip
    train_run(config, tmp_path / "straight")
    calls = {"n": 0}

    def stop() -> bool:  # 540 / 32 = 17 steps per epoch: stop after 3 steps of epoch 2
        calls["n"] += 1
        return calls["n"] == 17 + 4

    with pytest.raises(TrainingInterrupted):
        train_run(config, tmp_path / "resumed", [StopWhen(stop)])
    shutil.copytree(tmp_path / "resumed", tmp_path / "on-cpu")
    train_run(config, tmp_path / "resumed", resume=True)
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    for name, value in straight.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)

    # the same GPU checkpoint continues on the CPU: the noise is counter-based, the state is host arrays
    cpu = TrainConfig(**{**config.to_dict(), "device": "cpu", "hidden_sizes": None})
    train_run(cpu, tmp_path / "on-cpu", resume=True)
    for name, value in _weights(tmp_path / "on-cpu").items():
        np.testing.assert_allclose(value, straight[name], rtol=1e-3, atol=1e-4, err_msg=name)


def _fmnist_on_simulated_gpu(tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS / "simgpu" / "site"), str(TESTS)]),
        "FMNIST_CACHE_DIR": str(tmp_path / "cache"),
        "COLUMNS": "100",
    }
    env.pop("FMNIST_DATA_DIR", None)
    command = [sys.executable, "-m", "fmnist", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path, check=False)


@pytest.mark.gpu
@pytest.mark.slow
def test_cli_train_evaluate_predict_and_bench_with_device_gpu(tmp_path):
    if not (SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed here (apt-get install dataset-fashion-mnist)")
    run = tmp_path / "run"
    train = _fmnist_on_simulated_gpu(
        tmp_path, "train", "--device", "gpu", "-e", "1", "-nhl", "1", "-sz", "64", "-b", "128", "--dropout", "0.1",
        "--augment-shift", "1", "--out", str(run),
    )  # fmt: skip
    assert train.returncode == 0, train.stdout + train.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["environment"]["device"] == "gpu"
    assert config["environment"]["ops"] == "CupyOps"
    assert config["environment"]["cupy"].startswith("13.")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["device"] == "gpu"
    assert summary["test_accuracy"] > 0.75  # one epoch of a small MLP on the real data

    evaluation = _fmnist_on_simulated_gpu(tmp_path, "evaluate", str(run), "--device", "gpu")
    assert evaluation.returncode == 0, evaluation.stdout + evaluation.stderr
    assert f"accuracy {summary['test_accuracy']:.2%}" in evaluation.stdout

    prediction = _fmnist_on_simulated_gpu(tmp_path, "predict", str(run), "--index", "0", "--device", "gpu")
    assert prediction.returncode == 0, prediction.stdout + prediction.stderr
    assert "predicted" in prediction.stdout

    record = tmp_path / "bench.json"
    bench = _fmnist_on_simulated_gpu(
        tmp_path, "bench", "--device", "gpu", "--batch-sizes", "256", "--samples", "4096", "--epochs", "1",
        "--no-peers", "--json", str(record),
    )  # fmt: skip
    assert bench.returncode == 0, bench.stdout + bench.stderr
    measured = json.loads(record.read_text())
    assert measured["environment"]["gpu"]["ops"] == "CupyOps"
    assert measured["results"][0]["device"] == "gpu"
    assert measured["results"][0]["samples_per_second"] > 0


@pytest.mark.gpu
def test_a_cnn_trains_on_the_gpu_as_on_the_cpu_without_host_syncs(gpu_backend):
    from fmnist.network import conv_net

    cpu = get_backend("cpu")
    cpu.fast = False
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 784), dtype=np.float32), rng.integers(0, 10, 16)
    weights = []
    for be in (gpu_backend, cpu):
        model = conv_net(backend=be, conv_channels=(4, 8), hidden=(16,), dropout=0.2, seed=1)
        optimizer = get_optimizer("sgd", model.parameters(), lr=0.1)
        loss_fn = get_loss("cross_entropy", label_smoothing=0.1)
        noise = NoiseStream(3)
        with _sync_counter(be) as syncs:
            for _ in range(3):
                _, dlogits = loss_fn(model.forward(be.asarray(x), noise), be.asarray(y))
                model.backward(dlogits)
                optimizer.step()
        assert syncs() == 0
        weights.append({name: be.to_numpy(value) for name, value in model.state_dict().items()})
    for name, value in weights[1].items():
        np.testing.assert_allclose(weights[0][name], value, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.gpu
def test_a_cnn_with_dropout_on_images_trains_on_the_gpu_as_on_the_cpu(gpu_backend):
    """Dropout on convolution features draws its mask in the arrays' element order: channels-last on both devices,
    so a run resumed on the other device goes on with the same masks."""
    from fmnist.network import conv_net

    rng = np.random.default_rng(1)
    x, y = rng.random((8, 784), dtype=np.float32), rng.integers(0, 10, 8)
    weights = []
    for be in (gpu_backend, get_backend("cpu")):
        model = conv_net(backend=be, conv_channels=(4, 8), hidden=(16,), conv_dropout=0.5, dropout=0.3, seed=2)
        optimizer = get_optimizer("sgd", model.parameters(), lr=0.1)
        noise = NoiseStream(5)
        for _ in range(3):
            _, dlogits = get_loss("cross_entropy")(model.forward(be.asarray(x), noise), be.asarray(y))
            model.backward(dlogits)
            optimizer.step()
        weights.append({name: be.to_numpy(value) for name, value in model.state_dict().items()})
    for name, value in weights[1].items():
        np.testing.assert_allclose(weights[0][name], value, rtol=1e-4, atol=1e-5, err_msg=name)


@contextlib.contextmanager
def _sync_counter(backend):
    """Counts host syncs on the simulated GPU (a real GPU or the CPU: nothing to count, 0)."""
    simulation = sys.modules.get("simgpu")
    if backend.name == "gpu" and simulation is not None and sys.modules.get("cupy") is simulation.cupy:
        with simulation.count_syncs() as log:
            yield lambda: log.count
    else:
        yield lambda: 0


def test_the_gpu_check_script_is_valid_bash_and_runs_the_stages_in_order():
    script = TESTS.parent / "bench" / "gpu_check.sh"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    stages = [line.split()[1] for line in script.read_text().splitlines() if line.startswith("stage ")]
    assert stages == ["env", "install", "probe", "tests", "train_mlp", "train_cnn", "bench_mlp", "bench_cnn"]
