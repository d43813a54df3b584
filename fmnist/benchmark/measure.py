"""fmnist's side of the benchmark: its own training loop (``build_trainer``, exactly what ``fmnist train`` runs for
the configuration: schedule, augmentation, noise) timed over whole epochs, its launches per step where they can be
counted, and a separate profiled pass that times every ``Ops`` call; and the device's sgemm ceiling."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from fmnist.backend import Backend, get_backend
from fmnist.backend.launches import count_launches
from fmnist.backend.profile import Profiler, profiled
from fmnist.benchmark.case import BenchCase
from fmnist.benchmark.data import BenchData
from fmnist.benchmark.split import summarize
from fmnist.data import FASHION_MNIST, Dataset, DeviceData
from fmnist.training.assemble import build_trainer
from fmnist.training.fit import Trainer
from fmnist.training.splits import Splits

PROFILE_SECONDS = 1.0  # about this long a profiled pass (at least 8 steps, at most an epoch)


def time_epochs(run_epoch: Callable[[], None], sync: Callable[[], None], epochs: int, warmup: int) -> list[float]:
    """Seconds of each of ``epochs`` timed epochs after ``warmup`` untimed ones, the device synchronised around
    each."""
    for _ in range(warmup):
        run_epoch()
    sync()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        run_epoch()
        sync()
        times.append(time.perf_counter() - start)
    return times


def fmnist_trainer(case: BenchCase, backend: Backend, data: BenchData) -> Trainer:
    """The trainer ``fmnist train`` builds for ``case.config``, on ``data`` (no validation split)."""
    train = DeviceData(backend, data.images, data.labels).normalized(data.mean, data.std)
    empty = data.images[:0]
    dataset = Dataset("bench", FASHION_MNIST.class_names, data.images, data.labels, empty, data.labels[:0])
    return build_trainer(case.config, backend, Splits(train, None, train, data.mean, data.std, dataset))


def _batch(trainer: Trainer) -> tuple[Any, Any]:
    """One training batch as the loop makes it (gathered, scaled, augmented)."""
    xp = trainer.model.backend.xp
    rows = trainer.train.order()[: trainer.batch_size]
    x = trainer.train.features(rows)
    if trainer.augment is not None:
        x = trainer.augment(x, trainer.noise)
    return x, xp.take(trainer.train.labels, rows, axis=0)


def fmnist_throughput(case: BenchCase, data: BenchData, device: str | Backend = "cpu", epochs: int = 2,
                      warmup: int = 1, profile: bool = True) -> dict[str, Any]:  # fmt: skip
    """fmnist's training throughput on ``device``: ``samples_per_second`` (the median timed epoch), every
    ``epoch_seconds``, ``step_ms``, ``launches_per_step`` (``None`` where the array library cannot count them) and,
    with ``profile``, where a step's time goes (``profile_pass``)."""
    times, launches = _timed_epochs(case, data, get_backend(device), epochs, warmup)
    seconds, steps = statistics.median(times), math.ceil(data.samples / case.batch_size)
    result = {
        "samples_per_second": data.samples / seconds,
        "epoch_seconds": times,
        "step_ms": 1000.0 * seconds / steps,
        "launches_per_step": launches,
        "profile": None,
    }
    if profile:
        wanted = max(8, round(PROFILE_SECONDS / (seconds / steps)))
        result["profile"] = profile_pass(case, data.head(min(steps, wanted) * case.batch_size), device)
    return result


def _timed_epochs(case: BenchCase, data: BenchData, backend: Backend, epochs: int,
                  warmup: int) -> tuple[list[float], int | None]:  # fmt: skip
    """The timed epochs of fmnist's trainer, then the launches of one more step (where they can be counted)."""
    trainer = fmnist_trainer(case, backend, data)
    done = {"epochs": 0}

    def run_epoch() -> None:
        done["epochs"] += 1
        trainer.fit(done["epochs"])

    times = time_epochs(run_epoch, backend.synchronize, epochs, warmup)
    x, y = _batch(trainer)
    launches = count_launches(backend, lambda: trainer.step(x, y))
    backend.synchronize()
    return times, launches


def profile_pass(case: BenchCase, data: BenchData, device: str | Backend = "cpu") -> dict[str, Any]:
    """Where fmnist's step time goes: a fresh trainer on a profiled copy of the backend (``fmnist.backend.profile``)
    trains one warm-up epoch over ``data``, then one epoch in which every ``Ops`` call (and every span a device's
    ``Ops`` opens) is timed, the device synchronised at each boundary; the time outside them is ``other``. Returns
    ``split.summarize`` of that epoch, per step."""
    backend = get_backend(device)
    profiler = Profiler(sync=backend.synchronize)
    trainer = fmnist_trainer(case, profiled(backend, profiler), data)
    trainer.loss_fn = profiler.timed("softmax_cross_entropy", trainer.loss_fn)  # losses find their Ops themselves
    trainer.fit(1)  # the warm-up: workspaces made, first touches paid
    profiler.reset()
    with profiler.active(), profiler.span("other"):
        trainer.fit(2)
    return summarize(profiler.seconds, profiler.calls, math.ceil(data.samples / case.batch_size))


def sgemm_gflops(backend: Backend | str, n: int = 1024, repeats: int = 10, rounds: int = 5) -> float:
    """Measured float32 matrix-multiply rate of ``backend`` in GFLOP/s (the roofline's ceiling): the best of
    ``rounds`` rounds of ``repeats`` products, so that a busy moment does not lower the ceiling."""
    backend = get_backend(backend)
    rng = backend.rng(0)
    a, b = rng.normal((n, n)), rng.normal((n, n))
    xp = backend.xp
    xp.matmul(a, b)
    backend.synchronize()
    best = math.inf
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            xp.matmul(a, b)
        backend.synchronize()
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * n**3 / best / 1e9


def roofline_samples_per_second(case: BenchCase, gflops: float) -> float:
    """Samples per second if every GEMM of the step ran at ``gflops`` and nothing else cost anything."""
    return gflops * 1e9 / case.gemm_flops_per_sample() if gflops > 0 else math.nan
