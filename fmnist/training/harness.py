"""The throughput harness shared by ``fmnist bench`` and ``bench/``: the same MLP trained by fmnist on each
backend and by its peers (PyTorch eager with default and fused Adam; typical float64 student NumPy code), timed
over whole epochs after a warm-up, with the device synchronised around the timed region.

Peers are measured here only; fmnist's own code never imports PyTorch.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fmnist.backend import Backend, get_backend
from fmnist.data import DeviceData
from fmnist.network import MLP, conv_net, get_loss, get_optimizer
from fmnist.training.fit import Trainer


@dataclass(frozen=True)
class BenchCase:
    """One benchmark configuration: a network, an optimizer and a batch size over ``samples`` training samples.

    ``model="mlp"``: the MLP of ``sizes``. ``model="cnn"``: the CNN of ``conv_net`` with ``conv_channels``
    blocks (3x3 convolution, batch norm, ReLU, 2x2 max pool) and a dense head of ``sizes[1:-1]`` (batch norm,
    ReLU), on 28x28 images of ``sizes[0]`` pixels.
    """

    sizes: tuple[int, ...] = (784, 128, 128, 128, 128, 128, 10)
    batch_size: int = 64
    optimizer: str = "adam"
    activation: str = "relu"
    samples: int = 60000
    model: str = "mlp"
    conv_channels: tuple[int, ...] = (32, 64)

    @property
    def label(self) -> str:
        net = f"cnn {'-'.join(map(str, self.conv_channels))}" if self.model == "cnn" else "-".join(map(str, self.sizes))
        return f"{net} {self.optimizer} b{self.batch_size}"

    def build(self, backend: Backend) -> Any:
        """The fmnist network of this case."""
        if self.model == "cnn":
            side = math.isqrt(self.sizes[0])
            head = {"hidden": self.sizes[1:-1], "num_classes": self.sizes[-1], "activation": self.activation}
            return conv_net((1, side, side), backend=backend, seed=0, conv_channels=self.conv_channels, **head)
        return MLP(list(self.sizes), activation=self.activation, weight_init="he", backend=backend, seed=0)

    def torch_model(self, torch: Any) -> Any:
        """The same network in PyTorch (its own initialisation: throughput does not depend on the weights)."""
        nn = torch.nn
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[self.activation]
        layers: list[Any] = []
        features = self.sizes[0]
        if self.model == "cnn":
            side = math.isqrt(self.sizes[0])
            layers.append(nn.Unflatten(1, (1, side, side)))
            channels = 1
            for out in self.conv_channels:
                layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.MaxPool2d(2), act()]
                channels, side = out, side // 2
            layers.append(nn.Flatten())
            features = channels * side * side
        for width in self.sizes[1:-1]:
            layers.append(nn.Linear(features, width))
            if self.model == "cnn":
                layers.append(nn.BatchNorm1d(width))
            layers.append(act())
            features = width
        layers.append(nn.Linear(features, self.sizes[-1]))
        return nn.Sequential(*layers)

    def gemm_flops_per_sample(self) -> int:
        """Multiply-adds x 2 of forward (1 GEMM) and backward (2 GEMMs) per sample."""
        if self.model == "cnn":
            return self.build(get_backend("cpu")).gemm_flops_per_sample
        return 6 * sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True))


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
    images, labels = synthetic_data(case.samples, case.sizes[0], case.sizes[-1])
    data = DeviceData(backend, images, labels)
    model = case.build(backend)
    trainer = Trainer(
        model=model,
        optimizer=get_optimizer(case.optimizer, model.parameters(), lr=1e-3),
        loss_fn=get_loss("cross_entropy"),
        train=data,
        val=None,
        batch_size=case.batch_size,
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
    opt_cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "momentum": torch.optim.SGD}[case.optimizer]
    kwargs: dict[str, Any] = {"lr": 1e-3}
    if case.optimizer == "momentum":
        kwargs["momentum"] = 0.9
    if fused:
        kwargs["fused"] = True
    optimizer = opt_cls(model.parameters(), **kwargs)
    loss_fn = torch.nn.CrossEntropyLoss()
    images, labels = synthetic_data(case.samples, case.sizes[0], case.sizes[-1])
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
    images, labels = synthetic_data(case.samples, sizes[0], sizes[-1])
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
    sizes: tuple[int, ...]
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


def blas_info() -> list[dict[str, Any]]:
    """The BLAS libraries NumPy loaded, with the kernel (architecture) and thread count threadpoolctl reports."""
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "architecture", "num_threads")
    return [{k: pool.get(k) for k in keys} for pool in threadpool_info() if pool.get("user_api") == "blas"]


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
    sizes: tuple[int, ...],
    samples: int = 60000,
    epochs: int = 2,
    peers: bool = True,
    student: bool = False,
    on_result: Callable[[BenchResult], None] | None = None,
    isolate: bool = True,
    model: str = "mlp",
    conv_channels: tuple[int, ...] = (32, 64),
) -> tuple[list[BenchResult], dict[str, float]]:
    """Measure fmnist on each device (and its peers on the same device) at each batch size.

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
            case = BenchCase(sizes, batch, samples=samples, model=model, conv_channels=conv_channels)
            row: list[BenchResult] = []
            measures: list[tuple[str, Callable[..., float], tuple]] = [
                ("fmnist", fmnist_throughput, (case, device, epochs))
            ]
            if with_torch:
                measures.append(("torch", torch_throughput, (case, device, False, epochs)))
                measures.append(("torch-fused", torch_throughput, (case, device, True, epochs)))
            if student and device == "cpu" and model == "mlp":
                measures.append(("student-float64", student_throughput, (case,)))
            for name, measure, args in measures:
                speed = isolated(measure, *args) if isolate else measure(*args)
                roof = roofline_samples_per_second(case, gflops[device])
                row.append(BenchResult(name, device, sizes, batch, speed, speed / roof))
            best_peer = max((r.samples_per_second for r in row if r.implementation != "fmnist"), default=math.nan)
            for r in row:
                r.ratio_to_best_peer = r.samples_per_second / best_peer if best_peer == best_peer else math.nan
                results.append(r)
                if on_result is not None:
                    on_result(r)
    return results, gflops
