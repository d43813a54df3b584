"""pytest-benchmark suite: forward pass, training step and whole epoch, per backend and batch size.

Disabled in the plain test run (``--benchmark-disable`` in pyproject's addopts; bench/ is outside testpaths).
Run it with:  python -m pytest bench --benchmark-enable --benchmark-group-by=group
"""

from __future__ import annotations

import pytest

from fmnist.backend import BackendUnavailableError, get_backend
from fmnist.benchmark import BenchCase, bench_data, fmnist_throughput
from fmnist.data import DeviceData
from fmnist.network import MLP, get_loss, get_optimizer

SIZES = (784, 128, 128, 128, 128, 128, 10)
BATCHES = [64, 256, 1024, 4096]


@pytest.fixture(params=["cpu", "gpu"])
def backend(request):
    try:
        return get_backend(request.param)
    except BackendUnavailableError as err:
        pytest.skip(str(err))


def _setup(backend, batch: int):
    sample = bench_data(batch)  # the real images where they are here, else learnable synthetic ones
    data = DeviceData(backend, sample.images, sample.labels).normalized(sample.mean, sample.std)
    x = data.features(data.order())
    x = backend.copy(x)
    y = data.labels
    model = MLP(list(SIZES), backend=backend, seed=0)
    return model, x, y


@pytest.mark.parametrize("batch", BATCHES)
def test_forward(benchmark, backend, batch):
    benchmark.group = f"forward {backend.name}"
    model, x, _ = _setup(backend, batch)

    def forward():
        model.forward(x)
        backend.synchronize()

    benchmark(forward)


@pytest.mark.parametrize("batch", BATCHES)
def test_train_step(benchmark, backend, batch):
    benchmark.group = f"train step {backend.name}"
    model, x, y = _setup(backend, batch)
    optimizer = get_optimizer("adam", model.parameters(), lr=1e-3)
    loss = get_loss("cross_entropy")

    def step():
        _, dlogits = loss(model.forward(x), y)
        model.backward(dlogits)
        optimizer.step()
        backend.synchronize()

    benchmark(step)


@pytest.mark.parametrize("batch", [64, 1024])
def test_epoch(benchmark, backend, batch):
    benchmark.group = f"epoch {backend.name}"
    case = BenchCase.mlp(SIZES, batch_size=batch, samples=60000)
    data = bench_data(case.samples)
    kwargs = {"epochs": 1, "profile": False}
    measured = benchmark.pedantic(fmnist_throughput, args=(case, data, backend), kwargs=kwargs, rounds=1)
    benchmark.extra_info["samples_per_second"] = measured["samples_per_second"]
    benchmark.extra_info["data"] = data.source
