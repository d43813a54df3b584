"""Backprop checked against central finite differences in float64, for every activation x loss and several depths."""

import numpy as np
import pytest

from fmnist.backend import get_backend
from fmnist.network import ACTIVATIONS, LOSSES, MLP, get_activation, get_loss
from fmnist.network.losses import softmax

DEPTHS = {"no-hidden": [6, 4], "one-hidden": [6, 5, 4], "three-hidden": [6, 5, 7, 3, 4]}


def numerical_gradient(f, array: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() with respect to every element of ``array`` (modified in place)."""
    grad = np.zeros_like(array)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f()
        flat[i] = old - h
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / (||a|| + ||b||): the usual gradient-check measure, robust to entries that are ~0 in both."""
    return float(np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b)))


@pytest.mark.parametrize("loss_name", list(LOSSES))
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("sizes", list(DEPTHS.values()), ids=list(DEPTHS))
def test_backward_matches_finite_differences(cpu64, sizes, activation, loss_name):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, sizes[0]))
    y = rng.integers(0, sizes[-1], size=9)
    model = MLP(sizes, activation=activation, weight_init="xavier", backend=cpu64, seed=2)
    for bias in model.biases:  # non-zero biases keep ReLU away from its kink at exactly z = 0
        bias.data[...] = rng.normal(0.0, 0.1, size=bias.shape)
    loss_fn = get_loss(loss_name)

    def loss_value() -> float:
        return float(loss_fn(model.forward(x), y)[0])

    _, dlogits = loss_fn(model.forward(x), y)
    model.backward(dlogits)
    for p in model.parameters():
        analytic = p.grad.copy()
        numeric = numerical_gradient(loss_value, p.data)
        assert analytic.shape == p.data.shape
        assert np.abs(analytic).max() > 0, f"{p.name}: gradient is all zeros"
        assert relative_error(analytic, numeric) < 1e-7, f"{p.name}: backprop disagrees with finite differences"


@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_loss_gradient_matches_finite_differences(loss_name):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 10)) * 3
    y = rng.integers(0, 10, size=5)
    loss_fn = get_loss(loss_name)
    _, dlogits = loss_fn(logits, y)
    numeric = numerical_gradient(lambda: float(loss_fn(logits, y)[0]), logits)
    assert relative_error(dlogits, numeric) < 1e-8


def test_mse_gradient_uses_the_full_softmax_jacobian():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 10))
    y = rng.integers(0, 10, size=4)
    _, dlogits = get_loss("mean_squared_error")(logits, y)
    p = softmax(logits)
    dl_dp = 2.0 * (p - np.eye(10)[y]) / 4
    full = np.stack([(np.diag(pi) - np.outer(pi, pi)) @ gi for pi, gi in zip(p, dl_dp, strict=True)])
    diagonal_only = p * (1 - p) * dl_dp
    np.testing.assert_allclose(dlogits, full, rtol=1e-12, atol=1e-15)
    assert not np.allclose(dlogits, diagonal_only)


def test_losses_have_documented_values():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    y = np.array([0, 2])
    ce, _ = get_loss("cross_entropy")(logits, y)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert float(ce) == pytest.approx(-(np.log(p[0, 0]) + np.log(p[1, 2])) / 2)
    mse, _ = get_loss("mean_squared_error")(logits, y)
    assert float(mse) == pytest.approx(((p - np.eye(3)[y]) ** 2).sum() / 2)  # mean over batch of sum over classes


def test_losses_are_stable_for_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]], dtype=np.float32)
    y = np.array([1, 0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for name in LOSSES:
            loss, dlogits = get_loss(name)(logits, y)
            assert np.isfinite(loss)
            assert np.all(np.isfinite(dlogits))
    assert float(get_loss("cross_entropy")(logits, y)[0]) == pytest.approx(2e4, rel=1e-6)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_derivative_from_its_output(cpu64, name):
    act, ops = get_activation(name), cpu64.ops
    z = np.linspace(-4, 4, 41) + 0.01  # avoid ReLU's kink at 0
    a = act.forward(ops, z)
    h = 1e-6
    numeric = (act.forward(ops, z + h) - act.forward(ops, z - h)) / (2 * h)
    np.testing.assert_allclose(act.backward(ops, a, np.ones_like(z)), numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("fast", [True, False], ids=["NumpyOps", "Ops"])
def test_sigmoid_is_stable_and_exact_at_the_extremes(fast):
    be = get_backend("cpu")
    be.fast = fast
    z = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        a = get_activation("sigmoid").forward(be.ops, z)
    assert a.dtype == np.float32
    np.testing.assert_allclose(a, [0.0, np.exp(-50.0), 0.5, 1.0, 1.0], atol=1e-30)
