"""Layers and the Sequential model: backprop against central finite differences in float64 for every layer and for
whole small CNNs (with and without padding and stride), PyTorch as an oracle for the same network, batch norm in
training and evaluation, state with buffers, and the architecture rebuilt from its description."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist.backend import NoiseStream, get_backend
from fmnist.network import (
    BatchNorm,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    Unflatten,
    get_loss,
)
from fmnist.network.layers import Identity

from test_gradients import numerical_gradient, relative_error


def check_gradients(model: Sequential, x: np.ndarray, y: np.ndarray, noise_seed: int | None = None) -> None:
    """Every parameter's backprop gradient against central finite differences of the loss (float64)."""
    loss_fn = get_loss("cross_entropy")

    def forward():
        noise = NoiseStream(noise_seed) if noise_seed is not None else None  # the same masks every time
        return model.forward(x, noise)

    def loss_value() -> float:
        return float(loss_fn(forward(), y)[0])

    _, dlogits = loss_fn(forward(), y)
    model.backward(dlogits)
    grads = {p.name: p.grad.copy() for p in model.parameters()}
    running = {name: buf.copy() for name, buf in model.buffers.items()}
    before_norm = {  # a bias just before a batch norm in training has no effect: its gradient is exactly 0
        layer.params["bias"].name
        for layer, after in zip(model.layers, model.layers[1:], strict=False)
        if isinstance(after, BatchNorm) and after.training and "bias" in layer.params
    }
    for p in model.parameters():
        numeric = numerical_gradient(loss_value, p.data)
        if p.name in before_norm:
            np.testing.assert_allclose(grads[p.name], 0.0, atol=1e-12)
            np.testing.assert_allclose(numeric, 0.0, atol=1e-8)
            continue
        assert np.abs(grads[p.name]).max() > 0, f"{p.name}: gradient is all zeros"
        assert relative_error(grads[p.name], numeric) < 1e-6, f"{p.name}: backprop disagrees with finite differences"
    for name, buf in model.buffers.items():  # (each finite-difference pass moved the running statistics)
        buf[...] = running[name]


def images(rng: np.random.Generator, n: int, c: int, h: int) -> np.ndarray:
    return rng.normal(size=(n, c, h, h))


@pytest.mark.parametrize(
    ("stride", "padding", "kernel"), [(1, 0, 3), (1, 1, 3), (2, 0, 3), (2, 1, 3), (1, 2, 5), (3, 1, 2)]
)
def test_conv2d_gradients(cpu64, stride, padding, kernel):
    rng = np.random.default_rng(0)
    conv = Conv2d(2, 3, kernel, stride=stride, padding=padding)
    shape = conv.output_shape((2, 7, 7))
    model = Sequential([conv, Tanh(), Flatten(), Linear(int(np.prod(shape)), 4)], backend=cpu64, seed=1,
                       input_shape=(2, 7, 7))  # fmt: skip
    for p in model.parameters():
        p.data[...] += rng.normal(0, 0.1, size=p.shape)  # non-zero biases
    check_gradients(model, images(rng, 3, 2, 7), rng.integers(0, 4, size=3))


@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_without_bias_gradients(cpu64, stride):
    rng = np.random.default_rng(0)
    conv = Conv2d(2, 3, 3, stride=stride, padding=1, bias=False)
    assert [name for name, _ in conv.param_shapes((2, 7, 7))] == ["weight"]
    shape = conv.output_shape((2, 7, 7))
    model = Sequential([conv, Tanh(), Flatten(), Linear(int(np.prod(shape)), 4)], backend=cpu64, seed=1,
                       input_shape=(2, 7, 7))  # fmt: skip
    check_gradients(model, images(rng, 3, 2, 7), rng.integers(0, 4, size=3))


def test_conv2d_input_gradient_through_two_convolutions(cpu64):
    rng = np.random.default_rng(1)
    model = Sequential(
        [Conv2d(1, 2, 3, padding=1), Sigmoid(), Conv2d(2, 3, 3, stride=2, padding=1), Flatten(), Linear(3 * 4 * 4, 3)],
        backend=cpu64,
        seed=2,
        input_shape=(1, 8, 8),
    )
    check_gradients(model, images(rng, 2, 1, 8), np.array([0, 2]))  # conv 1's grads need conv 2's dx


@pytest.mark.parametrize(("kernel", "stride"), [(2, 2), (3, 2), (2, 1)])
def test_max_pool_gradients(cpu64, kernel, stride):
    rng = np.random.default_rng(2)
    pool = MaxPool2d(kernel, stride)
    shape = pool.output_shape((3, 6, 6))
    model = Sequential([Conv2d(2, 3, 3, padding=1), pool, Flatten(), Linear(int(np.prod(shape)), 3)], backend=cpu64,
                       seed=3, input_shape=(2, 6, 6))  # fmt: skip
    check_gradients(model, images(rng, 3, 2, 6), np.array([0, 1, 2]))


@pytest.mark.parametrize("images_in", [True, False], ids=["channels", "features"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm_gradients(cpu64, images_in, training):
    rng = np.random.default_rng(3)
    if images_in:
        layers = [Conv2d(2, 3, 3, padding=1), BatchNorm(3), ReLU(), Flatten(), Linear(3 * 5 * 5, 4)]
        model = Sequential(layers, backend=cpu64, seed=4, input_shape=(2, 5, 5))
        x = images(rng, 4, 2, 5)
    else:
        model = Sequential([Linear(6, 5), BatchNorm(5), Tanh(), Linear(5, 4)], backend=cpu64, seed=4)
        x = rng.normal(size=(6, 6))
    for p in model.parameters():
        p.data[...] += rng.normal(0, 0.2, size=p.shape)  # γ away from 1, β away from 0
    for buf in model.buffers.values():
        buf[...] += rng.uniform(0.1, 0.5, size=buf.shape)
    model.train(training)
    check_gradients(model, x, rng.integers(0, 4, size=x.shape[0]))


def small_cnn(backend, seed: int = 0) -> Sequential:
    layers = [
        Unflatten((1, 8, 8)),
        Conv2d(1, 4, 3, padding=1),
        BatchNorm(4),
        ReLU(),
        MaxPool2d(2),
        Conv2d(4, 6, 3, stride=2, padding=1),
        BatchNorm(6),
        ReLU(),
        Flatten(),
        Linear(6 * 2 * 2, 8),
        BatchNorm(8),
        Tanh(),
        Dropout(0.3),
        Linear(8, 3),
    ]
    return Sequential(layers, backend=backend, seed=seed, input_shape=(64,))


def test_whole_small_cnn_gradients_with_dropout(cpu64):
    rng = np.random.default_rng(4)
    model = small_cnn(cpu64)
    for p in model.parameters():
        p.data[...] += rng.normal(0, 0.05, size=p.shape)
    check_gradients(model, rng.normal(size=(5, 64)), rng.integers(0, 3, size=5), noise_seed=7)


def test_cnn_matches_pytorch_forward_and_backward(torch):
    rng = np.random.default_rng(5)
    be = get_backend("cpu", dtype="float64")
    model = small_cnn(be)
    model.layers[-2].p = 0.0  # no dropout: the two libraries draw different masks
    reference = torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 8, 8)),
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 6, 3, stride=2, padding=1),
        torch.nn.BatchNorm2d(6),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(24, 8),
        torch.nn.BatchNorm1d(8),
        torch.nn.Tanh(),
        torch.nn.Linear(8, 3),
    ).double()
    ours = [layer for layer in model.layers if layer.params]
    theirs = [m for m in reference if any(True for _ in m.parameters())]
    for mine, other in zip(ours, theirs, strict=True):
        weight = mine.params["weight"].data
        other.weight.data = torch.tensor(weight.T.copy() if isinstance(mine, Linear) else weight.copy())
        other.bias.data = torch.tensor(mine.params["bias"].data.copy())
    x, y = rng.normal(size=(6, 64)), rng.integers(0, 3, size=6)
    for step in range(2):  # a second pass also checks the running statistics moved the same way
        logits = model.forward(x)
        _, dlogits = get_loss("cross_entropy")(logits, y)
        model.backward(dlogits)
        xt = torch.tensor(x)
        expected = reference(xt)
        torch.nn.functional.cross_entropy(expected, torch.tensor(y)).backward()
        np.testing.assert_allclose(logits, expected.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"pass {step}")
        for mine, other in zip(ours, theirs, strict=True):
            grad = mine.params["weight"].grad
            np.testing.assert_allclose(grad.T if isinstance(mine, Linear) else grad, other.weight.grad.numpy(),
                                       rtol=1e-8, atol=1e-12)  # fmt: skip
            np.testing.assert_allclose(mine.params["bias"].grad, other.bias.grad.numpy(), rtol=1e-8, atol=1e-12)
            other.zero_grad()
    for mine, other in zip([m for m in ours if isinstance(m, BatchNorm)], [m for m in theirs if "BatchNorm" in
                                                                           type(m).__name__], strict=True):  # fmt: skip
        np.testing.assert_allclose(mine.buffers["running_mean"], other.running_mean.numpy(), rtol=1e-10)
        np.testing.assert_allclose(mine.buffers["running_var"], other.running_var.numpy(), rtol=1e-10)
    model.eval()
    reference.eval()
    np.testing.assert_allclose(model.forward(x), reference(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-12)


def test_batch_norm_train_and_eval_behaviour():
    be = get_backend("cpu", dtype="float64")
    rng = np.random.default_rng(6)
    bn = BatchNorm(3, momentum=0.25)
    model = Sequential([Linear(4, 3), bn, Identity()], backend=be, seed=0)
    x = rng.normal(2.0, 3.0, size=(50, 4))
    z = x @ model.layers[0].params["weight"].data
    y = model.forward(x)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)  # training: batch statistics
    np.testing.assert_allclose(y.std(axis=0), 1.0, rtol=1e-4)
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.25 * z.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_var"], 0.75 + 0.25 * z.var(axis=0, ddof=1), rtol=1e-12)
    model.eval()
    before = {k: v.copy() for k, v in bn.buffers.items()}
    y_eval = model.forward(x)
    expected = (z - before["running_mean"]) / np.sqrt(before["running_var"] + bn.eps)
    np.testing.assert_allclose(y_eval, expected, rtol=1e-10)  # evaluation: running statistics, left unchanged
    for name, value in bn.buffers.items():
        np.testing.assert_array_equal(value, before[name])


def test_state_has_parameters_and_buffers_and_the_architecture_rebuilds():
    be = get_backend("cpu")
    model = small_cnn(be, seed=3)
    model.forward(np.random.default_rng(0).random((4, 64), dtype=np.float32))  # moves the running statistics
    state = {name: np.array(value) for name, value in model.state_dict().items()}
    assert "2.running_mean" in state
    assert "1.weight" in state
    assert state["1.weight"].shape == (4, 1, 3, 3)
    rebuilt = Sequential.from_spec(model.spec(), backend=be)
    rebuilt.load_state_dict(state)
    x = np.random.default_rng(1).random((5, 64), dtype=np.float32)
    model.eval()
    rebuilt.eval()
    np.testing.assert_array_equal(rebuilt.forward(x), model.forward(x))
    with pytest.raises(ValueError, match="does not match"):
        rebuilt.load_state_dict({k: v for k, v in state.items() if "running" not in k})


def test_layers_refuse_shapes_that_do_not_fit():
    with pytest.raises(ValueError, match=r"Linear\(10, 3\) got inputs of shape \(4,\)"):
        Sequential([Linear(8, 4), ReLU(), Linear(10, 3)])
    with pytest.raises(ValueError, match=r"needs \(3, H, W\) images"):
        Sequential([Conv2d(3, 4, 3), Flatten(), Linear(4, 2)], input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="does not fit"):
        Sequential([Conv2d(1, 4, 5), Flatten(), Linear(4, 2)], input_shape=(1, 3, 3))


def test_the_logits_are_a_fresh_array_every_call():
    be = get_backend("cpu")
    model = small_cnn(be)
    rng = np.random.default_rng(2)
    first = model.forward(rng.random((4, 64), dtype=np.float32))
    kept = first.copy()
    model.forward(rng.random((4, 64), dtype=np.float32))
    np.testing.assert_array_equal(first, kept)
