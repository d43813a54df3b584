"""The benchmark behind ``fmnist bench`` and ``bench/``: the same network (any configuration ``fmnist train``
reads) trained by fmnist on each backend and by its peers (PyTorch eager with default and fused Adam; typical
float64 student NumPy code), timed over whole epochs after a warm-up, with the device synchronised around the timed
region.

Peers are measured here only; fmnist's own code never imports PyTorch.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fmnist.backend import Backend, get_backend
from fmnist.backend.threads import blas_info
from fmnist.data import DeviceData
from fmnist.network import get_loss, get_optimizer
from fmnist.training.assemble import build_model
from fmnist.training.config import TrainConfig
from fmnist.training.fit import Trainer


@dataclass(frozen=True)
class BenchCase:
    """One benchmark configuration: a network, its optimizer and batch size (``config``: the same configuration
    ``fmnist train`` reads, so any preset's network can be measured), over ``samples`` training samples of
    ``features`` pixels (28x28) and ``classes`` classes."""

    config: TrainConfig
    samples: int = 60000
    features: int = 784
    classes: int = 10

    @classmethod
    def mlp(
        cls,
        sizes: tuple[int, ...] = (784, 128, 128, 128, 128, 128, 10),
        batch_size: int = 64,
        optimizer: str = "adam",
        activation: str = "relu",
        samples: int = 60000,
    ) -> BenchCase:
        """The MLP of ``sizes`` (input first), trained with ``optimizer`` at lr 1e-3 and no weight decay."""
        config = TrainConfig(
            hidden_sizes=tuple(sizes[1:-1]) or None,
            num_layers=len(sizes) - 2,
            batch_size=batch_size,
            optimizer=optimizer,
            activation=activation,
            **PLAIN,
        )
        return cls(config, samples, sizes[0], sizes[-1])

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    @property
    def sizes(self) -> tuple[int, ...]:
        """The dense layers' widths, input first (a CNN's: its head's, from the pixels)."""
        return (self.features, *self.config.hidden, self.classes)

    @property
    def label(self) -> str:
        c = self.config
        net = "-".join(map(str, self.sizes))
        if c.model == "cnn":
            net = f"cnn {'-'.join(map(str, c.conv_channels))} + {net}"
        return f"{net} {c.optimizer} b{c.batch_size}"

    def build(self, backend: Backend) -> Any:
        """The fmnist network of this case (``fmnist.training.assemble.build_model``)."""
        return build_model(self.config, backend, self.features, self.classes)

    def torch_model(self, torch: Any) -> Any:
        """The same network in PyTorch (its own initialisation: throughput does not depend on the weights)."""
        nn, c = torch.nn, self.config
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity}[c.activation]
        layers: list[Any] = []
        features = self.features
        if c.model == "cnn":
            side = math.isqrt(self.features)
            layers.append(nn.Unflatten(1, (1, side, side)))
            channels = 1
            counts = c.convs_per_block * len(c.conv_channels) if len(c.convs_per_block) == 1 else c.convs_per_block
            for out, count in zip(c.conv_channels, counts, strict=True):
                for i in range(count):
                    layers.append(
                        nn.Conv2d(channels, out, c.kernel_size, padding=c.kernel_size // 2, bias=not c.batch_norm)
                    )
                    layers += [nn.BatchNorm2d(out)] if c.batch_norm else []
                    layers += [act()] if i < count - 1 else []
                    channels = out
                layers += [nn.MaxPool2d(2), act()]
                side //= 2
            layers += [nn.Dropout(c.conv_dropout)] if c.conv_dropout else []
            layers.append(nn.Flatten())
            features = channels * side * side
        for width in c.hidden:
            layers.append(nn.Linear(features, width, bias=not (c.model == "cnn" and c.batch_norm)))
            layers += [nn.BatchNorm1d(width)] if c.model == "cnn" and c.batch_norm else []
            layers.append(act())
            layers += [nn.Dropout(c.dropout)] if c.dropout else []
            features = width
        layers.append(nn.Linear(features, self.classes))
        return nn.Sequential(*layers)

    def gemm_flops_per_sample(self) -> int:
        """Multiply-adds x 2 of forward (1 GEMM) and backward (2 GEMMs) per sample."""
        if self.config.model == "cnn":
            return self.build(get_backend("cpu")).gemm_flops_per_sample
        return 6 * sum(a * b for a, b in itertools.pairwise(self.sizes))


# The benchmark's plain recipe: a constant learning rate of 1e-3 and no weight decay (as PyTorch's defaults).
PLAIN: dict[str, Any] = {"learning_rate": 1e-3, "weight_decay": 0.0, "lr_schedule": "constant"}


def synthetic_data(samples: int, features: int = 784, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, ...]:
    """uint8 images and int64 labels, shaped like Fashion-MNIST (throughput does not depend on the pixels)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(samples, features), dtype=np.uint8), rng.integers(0, classes, size=samples)


def _time_epochs(run_epoch: Callable[[], None], sync: Callable[[], None], epochs: int, warmup: int) -> float:
    """Median seconds of ``epochs`` timed epochs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run_epoch()
    sync()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        run_epoch()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fmnist_throughput(case: BenchCase, backend: Backend | str, epochs: int = 2, warmup: int = 1) -> float:
    """Training samples per second of fmnist's fit loop on ``backend``."""
    backend = get_backend(backend)
    images, labels = synthetic_data(case.samples, case.features, case.classes)
    data = DeviceData(backend, images, labels)
    model = case.build(backend)
    config = case.config
    trainer = Trainer(
        model=model,
        optimizer=get_optimizer(config.optimizer, model.parameters(), **config.optimizer_kwargs()),
        loss_fn=get_loss(config.loss, label_smoothing=config.label_smoothing),
        train=data,
        val=None,
        batch_size=config.batch_size,
        rng=backend.rng(0),
    )
    epoch = {"n": 0}

    def run_epoch() -> None:
        epoch["n"] += 1
        trainer.fit(epoch["n"])

    return case.samples / _time_epochs(run_epoch, backend.synchronize, epochs, warmup)


def torch_throughput(
    case: BenchCase, device: str = "cpu", fused: bool = False, epochs: int = 2, warmup: int = 1
) -> float:
    """Samples per second of the same network in PyTorch eager (``fused``: ``Adam(fused=True)``)."""
    import torch

    torch.manual_seed(0)
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    model = case.torch_model(torch).to(dev)
    optimizer_name = case.config.optimizer
    opt_cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "momentum": torch.optim.SGD}[optimizer_name]
    kwargs: dict[str, Any] = {"lr": case.config.learning_rate}
    if optimizer_name == "momentum":
        kwargs["momentum"] = case.config.momentum
    if fused:
        kwargs["fused"] = True
    optimizer = opt_cls(model.parameters(), **kwargs)
    loss_fn = torch.nn.CrossEntropyLoss()
    images, labels = synthetic_data(case.samples, case.features, case.classes)
    x_all = torch.from_numpy(images).to(dev)
    y_all = torch.from_numpy(labels).to(dev)
    generator = torch.Generator(device="cpu").manual_seed(0)

    def run_epoch() -> None:
        order = torch.randperm(case.samples, generator=generator).to(dev)
        for start in range(0, case.samples, case.batch_size):
            rows = order[start : start + case.batch_size]
            x = x_all[rows].float().mul_(1.0 / 255.0)
            loss = loss_fn(model(x), y_all[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    return case.samples / _time_epochs(run_epoch, sync, epochs, warmup)


def student_throughput(case: BenchCase, epochs: int = 1, warmup: int = 0) -> float:
    """Samples per second of typical from-scratch course code: float64, dicts of 'W1'/'b1', fresh arrays
    everywhere, Adam written as separate whole-array expressions per parameter."""
    rng = np.random.default_rng(0)
    sizes = case.sizes
    params = {}
    for i in range(1, len(sizes)):
        params[f"W{i}"] = rng.standard_normal((sizes[i], sizes[i - 1])) * np.sqrt(2 / sizes[i - 1])
        params[f"b{i}"] = np.zeros((sizes[i], 1))
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    images, labels = synthetic_data(case.samples, case.features, case.classes)
    x_all = images.astype(np.float64) / 255.0
    eye = np.eye(sizes[-1])
    layers = len(sizes) - 1
    state = {"t": 0}

    def run_epoch() -> None:
        order = rng.permutation(case.samples)
        for start in range(0, case.samples, case.batch_size):
            rows = order[start : start + case.batch_size]
            a = {0: x_all[rows].T}
            h = {}
            for i in range(1, layers + 1):
                a[i] = params[f"W{i}"] @ a[i - 1] + params[f"b{i}"]
                h[i] = np.maximum(0, a[i]) if i < layers else a[i]
                a[i] = h[i]
            exp = np.exp(a[layers] - a[layers].max(axis=0))
            probs = exp / exp.sum(axis=0)
            grads = {}
            da = probs - eye[labels[rows]].T
            for i in range(layers, 0, -1):
                grads[f"W{i}"] = da @ a[i - 1].T / len(rows)
                grads[f"b{i}"] = da.sum(axis=1, keepdims=True) / len(rows)
                if i > 1:
                    da = (params[f"W{i}"].T @ da) * (a[i - 1] > 0)
            state["t"] += 1
            t = state["t"]
            for k in params:
                m[k] = 0.9 * m[k] + 0.1 * grads[k]
                v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
                m_hat = m[k] / (1 - 0.9**t)
                v_hat = v[k] / (1 - 0.999**t)
                params[k] = params[k] - 1e-3 * m_hat / (np.sqrt(v_hat) + 1e-8)

    return case.samples / _time_epochs(run_epoch, lambda: None, epochs, warmup)


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


@dataclass
class BenchResult:
    """One measured row of ``fmnist bench``."""

    implementation: str  # e.g. "fmnist", "torch", "torch-fused", "student-float64"
    device: str
    sizes: tuple[int, ...]  # the dense layers' widths, input first
    batch_size: int
    samples_per_second: float
    roofline_fraction: float = math.nan
    ratio_to_best_peer: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "sizes": list(self.sizes)}


def isolated(function: Callable[..., float], *args: Any) -> float:
    """``function(*args)`` in a fresh spawned process (the measurement's own interpreter and thread pools)."""
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def peers_available(device: str = "cpu") -> bool:
    """True when PyTorch is installed (the peers' implementation) and, for the GPU, built with CUDA and seeing it."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    if device == "gpu":
        import torch

        return bool(torch.cuda.is_available())
    return True


def run_bench(
    devices: list[str],
    batch_sizes: list[int],
    base: BenchCase,
    epochs: int = 2,
    peers: bool = True,
    student: bool = False,
    on_result: Callable[[BenchResult], None] | None = None,
    isolate: bool = True,
) -> tuple[list[BenchResult], dict[str, float]]:
    """Measure fmnist on each device (and its peers on the same device) at each batch size, with the network
    and recipe of ``base``.

    With ``isolate`` each measurement runs in a fresh process, so that no implementation pays for another's
    thread pools (OpenBLAS and PyTorch's OpenMP threads spin for a while after use) or warmed-up state.

    Returns the results (with ratios to the best peer measured in the same run and fractions of the device's
    measured sgemm roofline) and the measured GFLOP/s per device.
    """
    results: list[BenchResult] = []
    gflops: dict[str, float] = {}
    for device in devices:
        with_torch = peers and peers_available(device)
        gflops[device] = sgemm_gflops(device, n=2048 if device == "gpu" else 1024)
        for batch in batch_sizes:
            case = dataclasses.replace(base, config=base.config.replace(batch_size=batch))
            for r in measure_row(case, device, gflops[device], epochs, with_torch, student, isolate):
                results.append(r)
                if on_result is not None:
                    on_result(r)
    return results, gflops


def measure_row(case: BenchCase, device: str, gflops: float, epochs: int, with_torch: bool, student: bool,
                isolate: bool) -> list[BenchResult]:  # fmt: skip
    """fmnist and each peer on one case and device, with ratios to the best peer and roofline fractions."""
    measures: list[tuple[str, Callable[..., float], tuple]] = [("fmnist", fmnist_throughput, (case, device, epochs))]
    if with_torch:
        measures.append(("torch", torch_throughput, (case, device, False, epochs)))
        measures.append(("torch-fused", torch_throughput, (case, device, True, epochs)))
    if student and device == "cpu" and case.config.model == "mlp":
        measures.append(("student-float64", student_throughput, (case,)))
    row = []
    roof = roofline_samples_per_second(case, gflops)
    for name, measure, args in measures:
        speed = isolated(measure, *args) if isolate else measure(*args)
        row.append(BenchResult(name, device, case.sizes, case.batch_size, speed, speed / roof))
    best_peer = max((r.samples_per_second for r in row if r.implementation != "fmnist"), default=math.nan)
    for r in row:
        r.ratio_to_best_peer = r.samples_per_second / best_peer if best_peer == best_peer else math.nan
    return row


def bench_record(base: BenchCase, devices: list[str], results: list[BenchResult], gflops: dict[str, float],
                 epochs: int, threads: int | None) -> dict[str, Any]:  # fmt: skip
    """What ``fmnist bench --json`` writes: the case, the environment of each measured device, the BLAS and its
    kernel, and every result."""
    from fmnist.rundir.layout import environment

    return {
        "model": base.config.model,
        "conv_channels": list(base.config.conv_channels) if base.config.model == "cnn" else None,
        "config": base.config.to_dict(),
        "sizes": list(base.sizes),
        "samples": base.samples,
        "epochs": epochs,
        "threads": threads,
        "sgemm_gflops": gflops,
        "environment": {d: environment(get_backend(d)) for d in devices},
        "blas": blas_info(),
        "results": [r.to_dict() for r in results],
    }
