"""Short fits on a small synthetic problem: every optimizer, both losses, really learn."""

import numpy as np
import pytest

from fmnist.backend import get_backend
from fmnist.network import LOSSES, MLP, OPTIMIZERS, get_loss, get_optimizer

from helpers import blobs

LR = {"sgd": 0.5, "momentum": 0.1, "nag": 0.1, "rmsprop": 0.01, "adam": 0.01, "nadam": 0.01}


def fit(be, optimizer: str, loss_name: str, activation: str = "tanh", steps: int = 60, seed: int = 0):
    x_host, y_host = blobs(seed=seed)
    x, y = be.asarray(x_host), be.asarray(y_host)
    model = MLP([20, 16, 3], activation=activation, weight_init="xavier", backend=be, seed=seed)
    opt = get_optimizer(optimizer, model.parameters(), lr=LR[optimizer])
    loss_fn = get_loss(loss_name)
    losses = []
    for step in range(steps):
        batch = slice((step * 50) % 300, (step * 50) % 300 + 50)
        loss, dlogits = loss_fn(model.forward(x[batch]), y[batch])
        model.backward(dlogits)
        opt.step()
        losses.append(be.to_float(loss))
    accuracy = float(np.mean(be.to_numpy(model.predict(x)) == y_host))
    return losses, accuracy, model


@pytest.mark.parametrize("loss_name", list(LOSSES))
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_every_optimizer_learns(optimizer, loss_name):
    losses, accuracy, _ = fit(get_backend("cpu"), optimizer, loss_name)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert accuracy > 0.95


@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "ReLU"])
def test_every_activation_learns(activation):
    _, accuracy, _ = fit(get_backend("cpu"), "adam", "cross_entropy", activation=activation)
    assert accuracy > 0.95


def test_cpu_training_is_identical_run_to_run():
    _, _, a = fit(get_backend("cpu"), "adam", "cross_entropy", steps=20)
    _, _, b = fit(get_backend("cpu"), "adam", "cross_entropy", steps=20)
    np.testing.assert_array_equal(a.flat.data, b.flat.data)
    _, _, c = fit(get_backend("cpu"), "adam", "cross_entropy", steps=20, seed=1)
    assert not np.array_equal(a.flat.data, c.flat.data)
