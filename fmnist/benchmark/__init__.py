"""The benchmark behind ``fmnist bench`` and ``bench/``: the same network and recipe (any configuration
``fmnist train`` reads, presets included) trained on the same images by fmnist and by its peers (PyTorch eager:
default and fused optimizers, channels-last for CNNs; typical float64 student code), timed over whole epochs after
a warm-up, each in a fresh process; with where fmnist's step time goes, measured in a separate profiled pass.

Modules: ``case`` (what is measured), ``data`` (the images), ``measure`` (fmnist's side, the sgemm ceiling),
``split`` (the time categories), ``torch_peer`` and ``student`` (the peers), ``run`` (a whole run and its record).
Peers are measured here only; fmnist's own code never imports PyTorch.
"""

from fmnist.benchmark.case import PLAIN, BenchCase, bench_case
from fmnist.benchmark.data import BenchData, bench_data, synthetic_data
from fmnist.benchmark.measure import (
    fmnist_throughput,
    profile_pass,
    roofline_samples_per_second,
    sgemm_gflops,
)
from fmnist.benchmark.run import BenchResult, BenchRun, bench_record, isolated, measure_row, peers_available, run_bench
from fmnist.benchmark.student import student_throughput
from fmnist.benchmark.torch_peer import PEERS, peer_names, torch_throughput

__all__ = [
    "PEERS",
    "PLAIN",
    "BenchCase",
    "BenchData",
    "BenchResult",
    "BenchRun",
    "bench_case",
    "bench_data",
    "bench_record",
    "fmnist_throughput",
    "isolated",
    "measure_row",
    "peer_names",
    "peers_available",
    "profile_pass",
    "roofline_samples_per_second",
    "run_bench",
    "sgemm_gflops",
    "student_throughput",
    "synthetic_data",
    "torch_throughput",
]
