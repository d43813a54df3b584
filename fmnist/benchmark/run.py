"""A benchmark run: fmnist and its peers on each device and batch size, each measurement in a fresh process, with
ratios to the best peer, fractions of the sgemm roofline, and the record ``fmnist bench --json`` writes."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fmnist.backend import get_backend
from fmnist.backend.threads import blas_info, cores
from fmnist.benchmark.case import BenchCase
from fmnist.benchmark.data import BenchData, bench_data
from fmnist.benchmark.measure import fmnist_throughput, roofline_samples_per_second, sgemm_gflops
from fmnist.benchmark.split import CATEGORIES
from fmnist.benchmark.student import student_throughput
from fmnist.benchmark.torch_peer import FLUSH_DENORMAL, PeerUnavailableError, peer_names, torch_throughput

WARMUP_EPOCHS = 1
METHOD = (
    "each measurement in a fresh process; samples/s of the median of the timed epochs after the warm-up; fmnist's "
    "time split from a separate profiled pass (each Ops call timed, the device synchronised around each)"
)
TORCH_ENVIRONMENT = ("torch", "threads", "flush_denormal", "tf32", "float32_matmul_precision", "cudnn", "gpu", "mkldnn")
RESULT_FIELDS = ("step_ms", "epoch_seconds", "launches_per_step", "profile", "settings")  # what a measurement returns


@dataclass
class BenchResult:
    """One implementation measured on one case and device (``samples_per_second`` is NaN where it could not run:
    ``note`` says why)."""

    implementation: str  # "fmnist", "torch", "torch-fused", "torch-fused-cl", "student-float64"
    device: str
    batch_size: int
    samples_per_second: float
    step_ms: float = math.nan
    roofline_fraction: float = math.nan
    ratio_to_best_peer: float = math.nan
    epoch_seconds: list[float] = field(default_factory=list)
    launches_per_step: int | None = None  # fmnist on a device that counts them (the simulated GPU)
    profile: dict[str, Any] | None = None  # fmnist: where a step's time goes (``split.summarize``)
    settings: dict[str, Any] = field(default_factory=dict)  # a peer's: fused, channels_last, flush_denormal...
    note: str = ""

    @property
    def is_peer(self) -> bool:
        return self.implementation != "fmnist"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def isolated(function: Callable[..., Any], *args: Any) -> Any:
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


def implementations(case: BenchCase, device: str, peers: bool, student: bool) -> list[str]:
    """What is measured for ``case`` on ``device``: fmnist, the PyTorch peers (when ``peers`` and PyTorch can run
    there) and the float64 student code (``student``, on the CPU, for MLPs)."""
    names = ["fmnist"]
    names += peer_names(case) if peers and peers_available(device) else []
    names += ["student-float64"] if student and device == "cpu" and case.config.model == "mlp" else []
    return names


@dataclass
class BenchRun:
    """A whole run: the results of every device and batch size, the sgemm ceilings (each device measured before
    and after its rows; the roofline takes the higher: a busy machine only lowers it), and what was measured."""

    base: BenchCase
    devices: list[str]
    data: BenchData
    epochs: int
    threads: int | None
    results: list[BenchResult] = field(default_factory=list)
    sgemm: dict[str, list[float]] = field(default_factory=dict)  # GFLOP/s per device: before, after

    @property
    def gflops(self) -> dict[str, float]:
        """The sgemm ceiling of each device: the higher of its measurements."""
        return {device: max(runs) for device, runs in self.sgemm.items()}

    def record(self) -> dict[str, Any]:
        """What ``fmnist bench --json`` writes (``bench_record``)."""
        return bench_record(self)


def run_bench(
    devices: list[str],
    batch_sizes: list[int],
    base: BenchCase,
    epochs: int = 2,
    peers: bool = True,
    student: bool = False,
    on_result: Callable[[BenchResult], None] | None = None,
    isolate: bool = True,
    threads: int | None = None,
    data: BenchData | None = None,
    profile: bool = True,
) -> BenchRun:
    """Measure fmnist and its peers on each device at each batch size, with the network and recipe of ``base``,
    all on the same ``data`` (default ``bench_data``: the real images where they are here); ``on_result`` sees
    each result as it comes.

    With ``isolate`` each measurement runs in a fresh process, so that no implementation pays for another's
    thread pools (OpenBLAS and PyTorch's OpenMP threads spin for a while after use) or warmed-up state. Each
    result gets its ratio to the best peer of its row and its fraction of the device's sgemm roofline.
    """
    data = data if data is not None else bench_data(base.samples, base.config.standardize)
    run = BenchRun(base, list(devices), data, epochs, threads)
    for device in devices:
        size = 2048 if device == "gpu" else 1024
        run.sgemm[device] = [sgemm_gflops(device, n=size)]
        rows: list[BenchResult] = []
        for batch in batch_sizes:
            case = base.at_batch(batch)
            names = implementations(case, device, peers, student)
            for r in measure_row(case, device, data, names, epochs, isolate, threads, profile):
                rows.append(r)
                if on_result is not None:
                    on_result(r)
        run.sgemm[device].append(sgemm_gflops(device, n=size))
        for r in rows:
            r.roofline_fraction = r.samples_per_second / roofline_samples_per_second(
                base.at_batch(r.batch_size), run.gflops[device]
            )
        run.results += rows
    return run


def measure_row(
    case: BenchCase,
    device: str,
    data: BenchData,
    names: list[str],
    epochs: int,
    isolate: bool = True,
    threads: int | None = None,
    profile: bool = True,
) -> list[BenchResult]:
    """Each implementation of ``names`` on one case and device, with the ratios to the best peer."""
    row = []
    for name in names:
        function, args = _measurement(name, case, device, data, epochs, threads, profile)
        try:
            got = isolated(function, *args) if isolate else function(*args)
        except PeerUnavailableError as err:
            row.append(BenchResult(name, device, case.batch_size, math.nan, note=str(err)))
            continue
        fields = {k: got[k] for k in RESULT_FIELDS if k in got}
        row.append(BenchResult(name, device, case.batch_size, got["samples_per_second"], **fields))
    best_peer = max((r.samples_per_second for r in row if r.is_peer and r.samples_per_second > 0), default=math.nan)
    for r in row:
        r.ratio_to_best_peer = r.samples_per_second / best_peer
    return row


def _measurement(name: str, case: BenchCase, device: str, data: BenchData, epochs: int, threads: int | None,
                 profile: bool) -> tuple[Callable[..., dict[str, Any]], tuple]:  # fmt: skip
    if name == "fmnist":
        return fmnist_throughput, (case, data, device, epochs, WARMUP_EPOCHS, profile)
    if name == "student-float64":
        return student_throughput, (case, data)
    return torch_throughput, (case, data, device, name, epochs, WARMUP_EPOCHS, threads or cores())


def bench_record(run: BenchRun) -> dict[str, Any]:
    """What ``fmnist bench --json`` writes: the case (its whole configuration), the data, the method, the
    environment of each device (fmnist's and PyTorch's), the BLAS and its kernel, the sgemm ceilings, the peers'
    settings, and every result with its time split."""
    from fmnist.rundir.layout import environment

    base, config = run.base, run.base.config
    envs = {d: environment(get_backend(d)) for d in run.devices}
    peers: dict[str, dict[str, Any]] = {}
    for r in run.results:
        if r.settings and r.implementation not in peers:
            peers[r.implementation] = r.settings
        if r.implementation.startswith("torch") and r.settings and "torch" not in envs[r.device]:
            envs[r.device]["torch"] = {k: r.settings[k] for k in TORCH_ENVIRONMENT if k in r.settings}
    return _finite(
        {
            "model": config.model,
            "network": base.network,
            "recipe": base.recipe,
            "conv_channels": list(config.conv_channels) if config.model == "cnn" else None,
            "config": config.to_dict(),
            "sizes": list(base.sizes),
            "gemm_flops_per_sample": base.gemm_flops_per_sample(),
            "samples": base.samples,
            "data": run.data.to_dict(),
            "epochs": run.epochs,
            "warmup_epochs": WARMUP_EPOCHS,
            "method": METHOD,
            "threads": run.threads if run.threads is not None else cores(),
            "sgemm_gflops": run.gflops,
            "sgemm_gflops_runs": run.sgemm,
            "blas": blas_info(),
            "environment": envs,
            "peers": peers,
            "flush_denormal": FLUSH_DENORMAL,
            "categories": {k: {"column": column, "meaning": meaning} for k, (column, meaning) in CATEGORIES.items()},
            "results": [r.to_dict() for r in run.results],
        }
    )


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinite floats as ``None`` (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
