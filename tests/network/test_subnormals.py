"""No parameter is left subnormal: every optimizer rule, on every ``Ops``, sets parameters below float32's smallest
normal (1.18e-38) to exactly 0. A network that learns nothing drifts its weights there, and CPUs without
flush-to-zero run about 10x slower on such floats."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist.backend import get_backend
from fmnist.network import MLP, OPTIMIZERS, get_loss, get_optimizer

TINY = np.finfo(np.float32).tiny


def _subnormal(values: np.ndarray) -> int:
    return int(np.count_nonzero((np.abs(values) < TINY) & (values != 0)))


@pytest.fixture(params=["Ops", "NumpyOps", "CupyOps (simulated GPU)"])
def backend(request):
    if request.param == "CupyOps (simulated GPU)":
        return request.getfixturevalue("simulated_gpu_backend")
    be = get_backend("cpu")
    be.fast = request.param == "NumpyOps"
    return be


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_rule_sets_subnormal_parameters_to_zero(backend, name):
    model = MLP([6, 5, 3], backend=backend, seed=0)
    start = np.where(np.arange(model.flat.data.size) % 2 == 0, np.float32(3e-39), np.float32(0.5)).astype(np.float32)
    model.flat.data[...] = backend.asarray(start)
    opt = get_optimizer(name, model.parameters(), lr=1e-4, weight_decay=5e-4)
    for _ in range(2):
        model.flat.grad[...] = 0.0  # a unit that learns nothing
        opt.step()
    final = backend.to_numpy(model.flat.data)
    assert _subnormal(final) == 0
    assert np.all(np.abs(final[0::2]) < 1e-37)  # 0, or a normal float that a subnormal state made of them
    np.testing.assert_allclose(final[1::2], 0.5, rtol=1e-2)


def test_a_network_that_learns_nothing_keeps_no_subnormal_weight():
    """identity activations, `random` init, Nadam at lr 1e-4 with L2 5e-4, 784-5x128-10, on data it cannot learn
    (random pixels and labels): without the flush, about 4,500 weights are subnormal after these 1,750 steps."""
    be = get_backend("cpu")
    model = MLP([784] + [128] * 5 + [10], activation="identity", weight_init="random", backend=be, seed=0)
    opt = get_optimizer("nadam", model.parameters(), lr=1e-4, weight_decay=5e-4)
    loss = get_loss("cross_entropy")
    rng = np.random.default_rng(0)
    for _ in range(1750):
        x, y = rng.standard_normal((64, 784), dtype=np.float32), rng.integers(0, 10, 64)
        _, dlogits = loss(model.forward(x), y)
        model.backward(dlogits)
        opt.step()
    data = be.to_numpy(model.flat.data)
    assert _subnormal(data) == 0
    assert np.count_nonzero(data == 0) > 100  # where the weights drifted below the normal floats
