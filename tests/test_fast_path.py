"""The fused kernels (fast path) against the readable reference path: same parameters after several steps."""

import shutil
import subprocess

import numpy as np
import pytest

from fmnist.backend import get_backend
from fmnist.backend.cuda_kernels import OPTIMIZER_SOURCE
from fmnist.backend.kernels import RULES, _compiled_step, _numpy_step
from fmnist.data import DeviceData
from fmnist.network import ACTIVATIONS, LOSSES, MLP, OPTIMIZERS, get_loss, get_optimizer

from helpers import blobs

HYPER = {"lr": 0.01, "momentum": 0.8, "beta": 0.9, "beta1": 0.85, "beta2": 0.99, "eps": 1e-7, "weight_decay": 1e-3}


def backend_pair(device: str = "cpu"):
    fast = get_backend(device)
    reference = get_backend(device)
    reference.fast = False
    assert fast.kernels is not None
    assert reference.kernels is None
    return fast, reference


def run(be, optimizer: str, loss: str, activation: str, steps: int = 5):
    x_host, y_host = blobs(n=96, dim=20, classes=5)
    x, y = be.asarray(x_host), be.asarray(y_host)
    model = MLP([20, 16, 12, 5], activation=activation, weight_init="xavier", backend=be, seed=4)
    opt = get_optimizer(optimizer, model.parameters(), **HYPER)
    losses, corrects = [], []
    for step in range(steps):
        rows = slice(32 * (step % 3), 32 * (step % 3) + 32)
        loss_value, correct = model.train_step(x[rows], y[rows], get_loss(loss), opt)
        losses.append(be.to_float(loss_value))
        corrects.append(int(be.to_numpy(correct)))
    return be.to_numpy(model.flat.data), losses, corrects


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_fast_train_step_matches_the_reference(optimizer, activation, loss):
    fast, reference = backend_pair()
    params_fast, losses_fast, correct_fast = run(fast, optimizer, loss, activation)
    params_ref, losses_ref, correct_ref = run(reference, optimizer, loss, activation)
    np.testing.assert_allclose(params_fast, params_ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(losses_fast, losses_ref, rtol=1e-5)
    assert correct_fast == correct_ref


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("step_fn", [_compiled_step(), _numpy_step], ids=["compiled", "numpy"])
def test_optimizer_kernels_match_the_reference_rule(rule, step_fn):
    fast, reference = backend_pair()
    models = [MLP([6, 5, 3], backend=be, seed=0) for be in (fast, reference)]
    opts = [get_optimizer(rule, m.parameters(), **HYPER) for m in models]
    opts[0].kernels._step = step_fn
    rng = np.random.default_rng(0)
    for _ in range(4):
        g = rng.normal(size=models[0].flat.size).astype(np.float32)
        for model, opt in zip(models, opts, strict=True):
            model.flat.grad[...] = g
            opt.step()
    np.testing.assert_allclose(models[0].flat.data, models[1].flat.data, rtol=1e-5, atol=1e-7)


def test_fused_batches_equal_reference_batches():
    fast, reference = backend_pair()
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, size=(50, 784), dtype=np.uint8), rng.integers(0, 10, size=50)
    a = DeviceData(fast, images, labels).normalized(0.3, 0.35)
    b = DeviceData(reference, images, labels).normalized(0.3, 0.35)
    for (xa, ya), (xb, yb) in zip(a.batches(16, fast.rng(1)), b.batches(16, reference.rng(1)), strict=True):
        np.testing.assert_allclose(xa, xb, rtol=1e-6)
        np.testing.assert_array_equal(ya, yb)


def test_sigmoid_kernel_is_stable_at_the_extremes():
    fast, _ = backend_pair()
    z = np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]], dtype=np.float32)
    with np.errstate(all="raise"):
        fast.kernels.activate("sigmoid", z)
    np.testing.assert_allclose(z[0], [0.0, np.exp(-50.0), 0.5, 1.0, 1.0], atol=1e-30)


@pytest.mark.parametrize("arch", ["sm_75", "sm_90"])
def test_cuda_optimizer_kernel_compiles(tmp_path, arch):
    nvcc = shutil.which("nvcc") or shutil.which("nvcc", path="/usr/local/cuda/bin")
    if nvcc is None:
        pytest.skip("nvcc is not installed here")
    source = tmp_path / "optimizer.cu"
    source.write_text(OPTIMIZER_SOURCE)
    proc = subprocess.run(
        [nvcc, f"-arch={arch}", "-c", str(source), "-o", str(tmp_path / "optimizer.o")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.gpu
def test_gpu_fast_path_matches_cpu_reference(gpu_backend):
    _, reference = backend_pair()
    params_gpu, losses_gpu, _ = run(gpu_backend, "adam", "cross_entropy", "relu")
    params_ref, losses_ref, _ = run(reference, "adam", "cross_entropy", "relu")
    np.testing.assert_allclose(params_gpu, params_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(losses_gpu, losses_ref, rtol=1e-4)
