"""The network code runs unchanged on every backend: array-api-strict on a simulated device proves that it never
leaves the device or calls NumPy-only functions; CuPy (when a GPU is lent) must agree with NumPy."""

import ast
import pathlib

import numpy as np
import pytest

from fmnist.backend import get_backend
from fmnist.network import LOSSES, MLP, OPTIMIZERS, get_loss, get_optimizer

from helpers import blobs

NETWORK = pathlib.Path(__file__).resolve().parents[2] / "fmnist" / "network"


def train_steps(be, optimizer="adam", loss_name="cross_entropy", activation="relu", steps=5):
    x_host, y_host = blobs(n=64, dim=12, classes=4)
    x, y = be.asarray(x_host), be.asarray(y_host)
    model = MLP([12, 10, 8, 4], activation=activation, weight_init="he", backend=be, seed=3)
    opt = get_optimizer(optimizer, model.parameters(), lr=0.01, weight_decay=1e-3)
    loss_fn = get_loss(loss_name)
    loss = None
    for _ in range(steps):
        loss, dlogits = loss_fn(model.forward(x), y)
        model.backward(dlogits)
        opt.step()
    return be.to_float(loss), be.to_numpy(model.flat.data), model


@pytest.mark.parametrize("loss_name", list(LOSSES))
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_training_step_matches_numpy_on_every_backend(backend, optimizer, loss_name):
    ref_loss, ref_params, _ = train_steps(get_backend("cpu"), optimizer, loss_name)
    loss, params, model = train_steps(backend, optimizer, loss_name)
    assert model.flat.data.dtype == backend.dtype
    assert loss == pytest.approx(ref_loss, rel=1e-4)
    np.testing.assert_allclose(params, ref_params, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "relu"])
def test_every_activation_runs_on_every_backend(backend, activation):
    _, ref, _ = train_steps(get_backend("cpu"), activation=activation, steps=2)
    _, params, _ = train_steps(backend, activation=activation, steps=2)
    np.testing.assert_allclose(params, ref, rtol=1e-4, atol=1e-5)


def test_parameters_stay_on_the_strict_device(strict_backend):
    _, _, model = train_steps(strict_backend, steps=1)
    for p in model.parameters():
        assert p.data.device == strict_backend.device
        assert p.grad.device == strict_backend.device
    assert model.predict(strict_backend.asarray(blobs(n=8, dim=12)[0])).device == strict_backend.device


def test_weights_are_identical_across_backends_for_a_seed(backend):
    cpu = MLP([784, 32, 10], weight_init="xavier", backend="cpu", seed=11)
    other = MLP([784, 32, 10], weight_init="xavier", backend=backend, seed=11)
    np.testing.assert_array_equal(backend.to_numpy(other.flat.data), cpu.flat.data)


def test_network_package_never_imports_numpy_or_cupy():
    offenders = []
    for path in NETWORK.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("numpy", "cupy")]
    assert offenders == []
