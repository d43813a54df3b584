"""What a GPU training step costs in launches, counted on the simulated GPU by the rule of DECISIONS: every device
operation that is not a view counts one (elementwise, reduction, copy, fill, GEMM, advanced indexing), each raw
kernel launch counts one; reshape, transpose, basic slicing and ``empty`` count nothing. One step after warm-up:
forward, loss, backward, optimizer (``Trainer.step``, which also counts the correct predictions).

On a GPU a small step waits for Python, not for arithmetic (5-10 µs of host time per launch), so these budgets are
the GPU path's speed limit that CPU-only CI can hold. Measured with the readable image ops (commit bbed662):
``cnn-best`` 281, the two-conv CNN 249, the default MLP 28.
"""

from __future__ import annotations

import numpy as np
import pytest

from fmnist.backend import get_backend
from fmnist.backend.launches import count_launches
from fmnist.data import DeviceData
from fmnist.network import get_loss, get_optimizer
from fmnist.training.assemble import build_model
from fmnist.training.config import PRESETS, TrainConfig
from fmnist.training.fit import Trainer

BUDGETS = {  # network: (configuration, batch size, launches allowed per step)
    "cnn-best": (TrainConfig(**PRESETS["cnn-best"]), 128, 60),
    "two-conv CNN": (TrainConfig(model="cnn", batch_size=128), 128, 40),
    "default MLP": (TrainConfig(), 64, 24),
}


def _trainer_and_batch(backend, config: TrainConfig, batch: int):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2 * batch, 784), dtype=np.uint8)
    data = DeviceData(backend, images, rng.integers(0, 10, size=2 * batch)).normalized(0.3, 0.35)
    model = build_model(config, backend, 784, 10)
    trainer = Trainer(
        model=model,
        optimizer=get_optimizer(config.optimizer, model.parameters(), **config.optimizer_kwargs()),
        loss_fn=get_loss(config.loss, label_smoothing=config.label_smoothing),
        train=data,
        val=None,
        batch_size=batch,
        rng=backend.rng(0),
    )
    rows = backend.asarray(np.arange(batch, dtype=np.int64))
    return trainer, data.features(rows), backend.xp.take(data.labels, rows, axis=0)


@pytest.mark.gpu
@pytest.mark.parametrize("network", list(BUDGETS))
def test_a_training_step_fits_its_launch_budget_without_host_syncs(simulated_gpu_backend, network):
    import simgpu

    config, batch, budget = BUDGETS[network]
    trainer, x, y = _trainer_and_batch(simulated_gpu_backend, config, batch)
    for _ in range(2):  # warm-up: workspaces allocated, scratch made
        trainer.step(x, y)
    with simgpu.count_launches() as log, simgpu.count_syncs() as syncs:
        counted = count_launches(simulated_gpu_backend, lambda: trainer.step(x, y))
    assert counted == log.count
    assert log.count <= budget, str(log)
    assert syncs.count == 0, str(syncs)
    assert log.kinds["matmul(batched)"] == 0, "a broadcast matmul runs as a batched GEMM: one 2-D GEMM per layer"


def test_count_launches_is_none_where_nothing_counts_but_the_call_runs():
    calls = []
    assert count_launches(get_backend("cpu"), lambda: calls.append(1)) is None
    assert calls == [1]


@pytest.mark.gpu
def test_count_launches_counts_one_call_on_the_simulated_gpu(simulated_gpu_backend):
    be = simulated_gpu_backend
    x = be.zeros((4, 3))
    assert count_launches(be, lambda: be.xp.reshape(x, (3, 4))) == 0
    assert count_launches(be, lambda: be.ops.relu(x * 2.0)) == 2
