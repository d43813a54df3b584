"""Optimizer steps against the reference formulas (written out here in NumPy float64) and against torch.optim."""

import numpy as np
import pytest

from fmnist.backend import get_backend
from fmnist.network import MLP, OPTIMIZERS, get_optimizer

HYPER = {"lr": 0.05, "momentum": 0.8, "beta": 0.85, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6, "weight_decay": 0.01}
STEPS = 6


def reference_steps(name: str, theta: np.ndarray, grads: list[np.ndarray], h: dict) -> np.ndarray:
    """The textbook update rules, one line of maths each, in float64."""
    theta = theta.astype(np.float64).copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t, grad in enumerate(grads, start=1):
        g = grad + h["weight_decay"] * theta
        if name == "sgd":
            theta -= h["lr"] * g
        elif name in ("momentum", "nag"):
            m = h["momentum"] * m + g
            theta -= h["lr"] * (m if name == "momentum" else g + h["momentum"] * m)
        elif name == "rmsprop":
            v = h["beta"] * v + (1 - h["beta"]) * g**2
            theta -= h["lr"] * g / (np.sqrt(v) + h["eps"])
        else:
            m = h["beta1"] * m + (1 - h["beta1"]) * g
            v = h["beta2"] * v + (1 - h["beta2"]) * g**2
            m_hat, v_hat = m / (1 - h["beta1"] ** t), v / (1 - h["beta2"] ** t)
            if name == "adam":
                theta -= h["lr"] * m_hat / (np.sqrt(v_hat) + h["eps"])
            else:  # nadam
                nesterov = h["beta1"] * m_hat + (1 - h["beta1"]) * g / (1 - h["beta1"] ** t)
                theta -= h["lr"] * nesterov / (np.sqrt(v_hat) + h["eps"])
    return theta


def run_optimizer(name: str, be, sizes=(4, 3, 2), steps: int = STEPS, seed: int = 0, **overrides):
    """Apply ``steps`` updates with fixed pseudo-random gradients written into .grad; return the flat history."""
    model = MLP(list(sizes), backend=be, seed=seed)
    start = be.to_numpy(model.flat.data).copy()
    opt = get_optimizer(name, model.parameters(), **{**HYPER, **overrides})
    rng = np.random.default_rng(seed + 1)
    grads = [rng.normal(size=start.shape).astype(np.float32) for _ in range(steps)]
    for g in grads:
        for p in model.parameters():  # users may write gradients in place; step() must use them
            lo = sum(q.data.size for q in model.parameters()[: model.parameters().index(p)])
            p.grad[...] = be.asarray(g[lo : lo + p.data.size].reshape(p.shape))
        opt.step()
    return start, grads, be.to_numpy(model.flat.data), opt


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_steps_match_reference_formulas(name):
    start, grads, final, opt = run_optimizer(name, get_backend("cpu"))
    assert opt.t == STEPS
    np.testing.assert_allclose(final, reference_steps(name, start, grads, HYPER), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nag", "rmsprop", "adam"])
def test_steps_match_torch_optim(name, torch):
    start, grads, final, _ = run_optimizer(name, get_backend("cpu"))
    theta = torch.nn.Parameter(torch.tensor(start))
    h = HYPER
    common = {"lr": h["lr"], "weight_decay": h["weight_decay"]}
    make = {
        "sgd": lambda: torch.optim.SGD([theta], **common),
        "momentum": lambda: torch.optim.SGD([theta], momentum=h["momentum"], **common),
        "nag": lambda: torch.optim.SGD([theta], momentum=h["momentum"], nesterov=True, **common),
        "rmsprop": lambda: torch.optim.RMSprop([theta], alpha=h["beta"], eps=h["eps"], **common),
        "adam": lambda: torch.optim.Adam([theta], betas=(h["beta1"], h["beta2"]), eps=h["eps"], **common),
    }[name]
    opt = make()
    for g in grads:
        theta.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(final, theta.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_nadam_differs_from_adam():
    _, _, adam, _ = run_optimizer("adam", get_backend("cpu"))
    _, _, nadam, _ = run_optimizer("nadam", get_backend("cpu"))
    assert not np.allclose(adam, nadam)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fused_flat_update_equals_per_parameter_update(name):
    be = get_backend("cpu")
    fused, split = MLP([5, 4, 3], backend=be, seed=1), MLP([5, 4, 3], backend=be, seed=1)
    opt_fused = get_optimizer(name, fused.parameters(), **HYPER)
    opt_split = get_optimizer(name, split.parameters()[::-1], **HYPER)  # not the flat order: per-parameter path
    assert len(opt_fused.slots) == 1
    assert len(opt_split.slots) == 4
    rng = np.random.default_rng(0)
    for _ in range(4):
        g = rng.normal(size=fused.flat.size).astype(np.float32)
        fused.flat.grad[...] = g
        split.flat.grad[...] = g
        opt_fused.step()
        opt_split.step()
    np.testing.assert_allclose(fused.flat.data, split.flat.data, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["momentum", "adam", "rmsprop"])
def test_state_is_created_once_and_updated_in_place(name):
    be = get_backend("cpu")
    model = MLP([4, 3, 2], backend=be, seed=0)
    opt = get_optimizer(name, model.parameters(), lr=0.01)
    before = [id(a) for state in opt.state for a in state.values()]
    data_id = id(model.flat.data)
    model.flat.grad[...] = 1.0
    opt.step()
    opt.step()
    assert [id(a) for state in opt.state for a in state.values()] == before
    assert id(model.flat.data) == data_id
    assert all(np.abs(a).max() > 0 for state in opt.state for a in state.values())


def test_weight_decay_shrinks_weights_with_zero_gradient():
    be = get_backend("cpu")
    model = MLP([4, 3], backend=be, seed=0)
    w0 = model.flat.data.copy()
    get_optimizer("sgd", model.parameters(), lr=0.1, weight_decay=0.5).step()
    np.testing.assert_allclose(model.flat.data, w0 * (1 - 0.1 * 0.5), rtol=1e-6)


def test_state_dict_round_trip_resumes_exactly():
    be = get_backend("cpu")
    *_, opt = run_optimizer("adam", be, steps=3)
    saved = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in opt.state_dict().items()}
    assert saved["t"] == 3
    model = MLP([4, 3, 2], backend=be, seed=0)
    fresh = get_optimizer("adam", model.parameters(), **HYPER)
    fresh.load_state_dict(saved)
    assert fresh.t == 3
    for name, arr in fresh.state[0].items():
        np.testing.assert_array_equal(arr, saved[f"0.{name}"])


def test_get_optimizer_validates_names_and_values():
    params = MLP([3, 2], seed=0).parameters()
    with pytest.raises(ValueError, match="sgd, momentum, nag, rmsprop, adam, nadam"):
        get_optimizer("adagrad", params)
    with pytest.raises(TypeError, match="unknown optimizer hyperparameter"):
        get_optimizer("adam", params, betas=0.9)
    with pytest.raises(ValueError, match="lr must be > 0"):
        get_optimizer("sgd", params, lr=0.0)
    with pytest.raises(ValueError, match="beta2"):
        get_optimizer("adam", params, beta2=1.0)
    opt = get_optimizer("SGD", params, lr=0.1, beta1=0.9, epsilon=1e-3)  # unused hyperparameters are ignored
    assert opt.hyperparameters() == {
        "lr": 0.1,
        "weight_decay": 0.0,
        "decoupled_weight_decay": False,
        "max_grad_norm": None,
    }
    assert get_optimizer("rmsprop", params, epsilon=1e-4).eps == 1e-4


@pytest.mark.parametrize("name", ["momentum", "rmsprop", "adam"])
def test_compiled_state_never_sticks_in_the_subnormal_range(name):
    """A unit whose gradient stays 0 (a dead ReLU) lets its momentum decay towards 0: stored subnormal, it would
    stick at the smallest one and send every later step down the CPU's slow path. NumpyOps flushes it to 0."""
    be = get_backend("cpu")
    model = MLP([4, 3], backend=be, seed=0)
    opt = get_optimizer(name, model.parameters(), lr=1e-3)
    model.flat.grad[...] = 1.0
    opt.step()
    model.flat.grad[...] = 0.0
    for _ in range(2000):
        opt.step()
    tiny = np.finfo(np.float32).tiny
    for state in opt.state:
        for arr in state.values():
            assert not np.any((arr != 0) & (np.abs(arr) < tiny)), "a subnormal value is stored"
