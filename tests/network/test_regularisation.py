"""Regularisation and schedules: dropout, label smoothing, decoupled weight decay, gradient clipping, step
schedule and on-device augmentation — gradient checks where there is a backward, reference formulas otherwise."""

import numpy as np
import pytest

from fmnist.backend import NoiseStream, get_backend
from fmnist.data.augment import augment_batch
from fmnist.network import MLP, Dropout, get_loss, get_optimizer
from fmnist.training.schedules import lr_factor

from helpers import blobs
from test_gradients import numerical_gradient, relative_error


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_dropout_backward_matches_finite_differences(cpu64, activation):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 6)), rng.integers(0, 4, size=8)
    model = MLP([6, 7, 5, 4], activation=activation, backend=cpu64, seed=1, dropout=0.4)
    for bias in model.biases:
        bias.data[...] = rng.normal(0, 0.1, size=bias.shape)
    loss_fn = get_loss("cross_entropy")

    def loss_value() -> float:  # the same masks every time: a fresh stream with the same seed
        return float(loss_fn(model.forward(x, NoiseStream(5)), y)[0])

    _, dlogits = loss_fn(model.forward(x, NoiseStream(5)), y)
    model.backward(dlogits)
    dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]
    assert all(layer._mask is not None for layer in dropouts), "training forward drew dropout masks"
    for p in model.parameters():
        assert relative_error(p.grad.copy(), numerical_gradient(loss_value, p.data)) < 1e-7, p.name


def test_dropout_is_inverted_and_off_at_evaluation():
    be = get_backend("cpu")
    model = MLP([20, 400, 3], activation="relu", backend=be, seed=0, dropout=0.5)
    plain = MLP([20, 400, 3], activation="relu", backend=be, seed=0)
    x = be.asarray(blobs(n=64, dim=20)[0])
    np.testing.assert_array_equal(model.forward(x), plain.forward(x))  # no noise: evaluation, no dropout
    model.forward(x, NoiseStream(0))
    mask = next(layer for layer in model.layers if isinstance(layer, Dropout))._mask
    assert set(np.unique(mask)) == {0.0, 2.0}
    assert abs(mask.mean() - 1.0) < 0.02  # kept units are scaled by 1/(1-p): the expectation is unchanged
    with pytest.raises(ValueError, match="dropout must be in"):
        MLP([3, 2], dropout=1.0)


def test_label_smoothing_value_and_gradient():
    rng = np.random.default_rng(2)
    logits, y = rng.normal(size=(5, 10)) * 2, rng.integers(0, 10, size=5)
    loss_fn = get_loss("cross_entropy", label_smoothing=0.1)
    loss, dlogits = loss_fn(logits, y)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    target = 0.9 * np.eye(10)[y] + 0.01
    assert float(loss) == pytest.approx(-(target * logp).sum() / 5)
    numeric = numerical_gradient(lambda: float(loss_fn(logits, y)[0]), logits)
    assert relative_error(dlogits, numeric) < 1e-8
    with pytest.raises(ValueError, match="cross_entropy only"):
        get_loss("mean_squared_error", label_smoothing=0.1)


@pytest.mark.parametrize("fast", [True, False])
def test_decoupled_weight_decay_matches_torch_adamw(torch, fast):
    be = get_backend("cpu")
    be.fast = fast
    model = MLP([5, 4, 3], backend=be, seed=0)
    start = model.flat.data.copy()
    opt = get_optimizer("adam", model.parameters(), lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)
    theta = torch.nn.Parameter(torch.tensor(start))
    reference = torch.optim.AdamW([theta], lr=0.01, weight_decay=0.1, eps=1e-8)
    rng = np.random.default_rng(0)
    for _ in range(5):
        g = rng.normal(size=start.shape).astype(np.float32)
        model.flat.grad[...] = g
        opt.step()
        theta.grad = torch.tensor(g)
        reference.step()
    np.testing.assert_allclose(model.flat.data, theta.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fast", [True, False])
def test_gradient_clipping_scales_the_global_norm(fast):
    be = get_backend("cpu")
    be.fast = fast
    model = MLP([4, 3], backend=be, seed=0)
    start = model.flat.data.copy()
    opt = get_optimizer("sgd", model.parameters(), lr=1.0, max_grad_norm=1.0)
    g = np.full(model.flat.size, 10.0 / np.sqrt(model.flat.size), dtype=np.float32)  # norm 10
    model.flat.grad[...] = g
    opt.step()
    np.testing.assert_allclose(start - model.flat.data, g / 10, rtol=1e-5)
    small = g / 100  # norm 0.1: below the threshold, untouched
    before = model.flat.data.copy()
    model.flat.grad[...] = small
    opt.step()
    np.testing.assert_allclose(before - model.flat.data, small, rtol=1e-5)


def test_step_schedule():
    f = lr_factor("step", total_steps=100, step_every=30, gamma=0.5)
    assert [f(t) for t in (1, 30, 31, 60, 61, 91)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]


def test_augmentation_shifts_and_flips_whole_batches(backend):
    x = np.zeros((64, 784), dtype=np.float32)
    x.reshape(64, 28, 28)[:, 10, 5] = 1.0
    out = backend.to_numpy(augment_batch(backend, backend.asarray(x), NoiseStream(0), max_shift=2, flip=True))
    images = out.reshape(64, 28, 28)
    assert images.sum() == pytest.approx(64.0)  # a pixel 2+ away from the border is never lost
    rows, cols = np.nonzero(images)[1:]
    assert set(rows) <= set(range(8, 13))
    flipped = cols > 13
    assert flipped.any()
    assert (~flipped).any()
    assert set(cols[~flipped]) <= set(range(3, 8))
    assert set(cols[flipped]) <= set(range(20, 25))  # 27 - 5 = 22, then shifted by up to 2
    again = backend.to_numpy(augment_batch(backend, backend.asarray(x), NoiseStream(0), max_shift=2, flip=True))
    np.testing.assert_array_equal(out, again)


def test_augmentation_off_is_identity():
    be = get_backend("cpu")
    x = be.asarray(np.random.default_rng(0).random((4, 784), dtype=np.float32))
    np.testing.assert_array_equal(augment_batch(be, x, NoiseStream(0)), x)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_fast_path_with_dropout_and_smoothing_matches_reference(activation):
    results = []
    for fast in (True, False):
        be = get_backend("cpu")
        be.fast = fast
        x_host, y_host = blobs(n=64, dim=20, classes=5)
        model = MLP([20, 16, 12, 5], activation=activation, backend=be, seed=3, dropout=0.25)
        opt = get_optimizer("adam", model.parameters(), lr=0.01)
        noise = NoiseStream(9)
        loss_fn = get_loss("cross_entropy", label_smoothing=0.1)
        for _ in range(4):
            _, dlogits = loss_fn(model.forward(be.asarray(x_host), noise), be.asarray(y_host))
            model.backward(dlogits)
            opt.step()
        results.append(model.flat.data.copy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-6)
