"""Smoke tests of the benchmark harness and `fmnist bench` (tiny sizes; speed targets live in bench/)."""

import json

import pytest
from typer.testing import CliRunner

from fmnist.benchmark import BenchCase, fmnist_throughput, roofline_samples_per_second, student_throughput
from fmnist.cli import app

TINY = BenchCase.mlp((784, 32, 10), batch_size=64, samples=512)


def test_throughputs_are_positive():
    assert fmnist_throughput(TINY, "cpu", epochs=1, warmup=0) > 0
    assert student_throughput(TINY) > 0


def test_roofline_counts_three_gemms_per_layer():
    case = BenchCase.mlp((784, 128, 10))
    assert case.gemm_flops_per_sample() == 6 * (784 * 128 + 128 * 10)
    assert roofline_samples_per_second(case, 100.0) == pytest.approx(100e9 / case.gemm_flops_per_sample())


def test_bench_command_writes_json_and_plot(tmp_path, torch):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    args = ["bench", "--device", "cpu", "--batch-sizes", "64,128", "--sizes", "784,32,10", "--samples", "512"]
    result = CliRunner().invoke(app, [*args, "--epochs", "1", "--json", str(out), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    names = {(r["implementation"], r["batch_size"]) for r in record["results"]}
    assert names == {(n, b) for n in ("fmnist", "torch", "torch-fused") for b in (64, 128)}
    assert all(r["samples_per_second"] > 0 for r in record["results"])
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "x best peer" in result.output


def test_bench_rejects_bad_options():
    result = CliRunner().invoke(app, ["bench", "--batch-sizes", "64,zero"])
    assert result.exit_code == 2
