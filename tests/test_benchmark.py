"""The benchmark harness and `fmnist bench` (tiny sizes, no timing assertions: speed targets live in bench/ and the
README): the same data on both sides, the same network, the record, the time split, the options."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fmnist.backend import _numba_loops as loops
from fmnist.backend import get_backend
from fmnist.backend.numpy_ops import NumpyOps
from fmnist.backend.profile import Profiler, credit, profiled, profiling, span
from fmnist.benchmark import (
    BenchCase,
    bench_case,
    bench_data,
    fmnist_throughput,
    profile_pass,
    roofline_samples_per_second,
    run_bench,
    student_throughput,
    synthetic_data,
)
from fmnist.benchmark.split import CATEGORIES, category
from fmnist.benchmark.torch_peer import copy_weights, torch_augment, torch_network, torch_throughput
from fmnist.cli import app
from fmnist.data import FASHION_MNIST, registry
from fmnist.training.config import PRESETS, TrainConfig

TESTS = Path(__file__).resolve().parent
TINY = BenchCase.mlp((784, 32, 10), batch_size=64, samples=256)
TINY_CNN = bench_case(model="cnn", conv_channels=(4, 8), convs_per_block=(1, 2), sizes=(784, 16, 10),
                      batch_size=32, samples=64)  # fmt: skip


def _cpu_convolutions_split() -> bool:
    """Whether the CPU tells its convolutions' GEMMs apart: the owned kernels time them where libc's clock is found
    (Linux, macOS); the im2col + np.matmul path (no cblas_sgemm) opens spans around its products."""
    return loops.clock()[1] or NumpyOps(get_backend("cpu"))._owned_gemm() is None


@pytest.fixture
def no_fashion(tmp_path, monkeypatch):
    """Fashion-MNIST nowhere: no data dir, an empty cache, no system directory, no mirror."""
    monkeypatch.setenv("FMNIST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FMNIST_DATA_DIR", raising=False)
    monkeypatch.delenv("FMNIST_MIRRORS", raising=False)
    spec = dataclasses.replace(FASHION_MNIST, system_dirs=(), mirrors=())
    monkeypatch.setitem(registry.DATASETS, "fashion-mnist", spec)


@pytest.fixture
def torch_state(torch):
    """PyTorch with its process-wide settings (threads, subnormals) put back after the test."""
    threads = torch.get_num_threads()
    yield torch
    torch.set_num_threads(threads)
    torch.set_flush_denormal(False)


# --- the data -----------------------------------------------------------------------------------------------------


def test_the_real_images_are_used_where_they_are(tiny_fashion):
    data = bench_data(700)
    assert data.real
    assert data.source == "fashion-mnist"
    assert data.distinct == 600  # the tiny set's 600 training images, repeated to 700
    np.testing.assert_array_equal(data.images[:600], tiny_fashion["train_images"].reshape(600, -1))
    np.testing.assert_array_equal(data.images[600:], data.images[:100])
    np.testing.assert_array_equal(data.labels[:600], tiny_fashion["train_labels"])
    assert "real training images" in data.note
    assert "repeated to 700" in data.note


def test_synthetic_images_where_the_real_ones_are_absent_say_so_and_can_be_learned(no_fashion):
    data = bench_data(2000)
    assert data.source == "synthetic"
    assert not data.real
    assert "synthetic" in data.note
    assert "not here" in data.note
    assert np.bincount(data.labels, minlength=10).min() == 200  # every class, evenly
    # learnable: the nearest class mean of one half classifies the other half
    x, y = data.images.astype(np.float32), data.labels
    means = np.stack([x[:1000][y[:1000] == k].mean(axis=0) for k in range(10)])
    nearest = np.argmin(((x[1000:, None, :] - means[None]) ** 2).sum(axis=2), axis=1)
    assert (nearest == y[1000:]).mean() > 0.95
    images, labels = synthetic_data(300, seed=1)
    assert images.dtype == np.uint8
    assert images.shape == (300, 784)
    assert labels.dtype == np.int64


def test_the_bench_command_says_when_its_data_is_synthetic(no_fashion, tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "--device", "cpu", "--batch-sizes", "64", "--sizes", "784,16,10", "--samples", "256"]
    result = CliRunner().invoke(app, [*args, "--epochs", "1", "--no-peers", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "data: synthetic images" in result.output
    assert json.loads(out.read_text())["data"]["source"] == "synthetic"


# --- the same network on both sides ----------------------------------------------------------------------------

# PyTorch's module of each fmnist layer type (batch norm: 2-D for images, 1-D for features)
TORCH_KIND = {"BatchNorm2d": "BatchNorm", "BatchNorm1d": "BatchNorm", "ChannelsLastImages": "Unflatten"}


@pytest.mark.parametrize(
    "case",
    [
        bench_case(preset="cnn-best"),
        bench_case(model="cnn"),  # the two-conv CNN (32, 64)
        bench_case(),  # the MLP 784-5x128-10
        bench_case(preset="best"),
        bench_case(model="cnn", conv_channels=(8, 16, 16), convs_per_block=(2,), sizes=(784, 32, 16, 10)),
    ],
    ids=["cnn-best", "cnn-32-64", "mlp", "best", "cnn-3-blocks"],
)
def test_the_torch_network_is_fmnists_layer_for_layer(torch, case):
    model = case.build(get_backend("cpu"))
    network = torch_network(torch, case)
    ours = sum(int(np.prod(p.shape)) for p in model.parameters())
    assert ours == sum(p.numel() for p in network.parameters())
    assert [type(layer).__name__ for layer in model.layers] == [
        TORCH_KIND.get(type(m).__name__, type(m).__name__) for m in network
    ]
    biases = [layer.bias for layer in model.layers if type(layer).__name__ in ("Linear", "Conv2d")]
    assert biases == [m.bias is not None for m in network if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    assert [getattr(layer, "p", None) for layer in model.layers] == [getattr(m, "p", None) for m in network]
    # the same weights give the same logits (evaluation mode: running statistics, no dropout)
    copy_weights(torch, network, model)
    x = np.random.default_rng(0).random((4, 784), dtype=np.float32)
    model.eval()
    network.eval()
    with torch.no_grad():
        theirs_out = network(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.backend.to_numpy(model.forward(x)), theirs_out, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("shift", "flip"), [(2, True), (1, False), (0, True)])
def test_the_torch_augmentation_is_fmnists_shift_flip(torch, shift, flip):
    ops = get_backend("cpu").ops
    x = np.random.default_rng(1).random((16, 784), dtype=np.float32)
    want = ops.shift_flip(x, shift, flip, seed=3, counter=5, fill=-0.8)
    u = torch.from_numpy(np.asarray(ops.uniform((16, 3), 3, 5)))
    got = torch_augment(torch, torch.from_numpy(x), u, shift, flip, fill=-0.8)
    np.testing.assert_array_equal(got.numpy(), want)


def test_a_torch_peer_trains_the_cases_recipe(torch_state, tiny_fashion):
    case = bench_case(model="cnn", preset="cnn-best", conv_channels=(4, 8), sizes=(784, 16, 10), samples=64)
    data = bench_data(64)
    got = torch_throughput(case, data, "cpu", "torch-fused-cl", epochs=1, warmup=0, threads=1)
    assert got["samples_per_second"] > 0
    settings = got["settings"]
    assert settings["optimizer"] == "AdamW"  # cnn-best's decoupled weight decay
    assert settings["fused"]
    assert settings["channels_last"]
    assert settings["threads"] == 1
    assert settings["flush_denormal"] in (True, False)  # True where the CPU can flush
    assert "shift ±2 + flip" in settings["augment"]


# --- the profiler (fmnist.backend.profile) ------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_spans_count_exclusive_time_and_credits_move_time_without_changing_the_total():
    clock = FakeClock()
    profiler = Profiler(clock=clock)
    assert span("conv_gemm") is span("other")  # the one idle context while no profiler is active
    with profiler.active():
        assert profiling()
        with span("other"):
            clock.now += 1.0
            with span("conv2d"):
                clock.now += 2.0
                with span("conv_gemm"):
                    clock.now += 4.0
                credit("conv_gemm", 0.5)  # measured by the kernel itself, inside conv2d
            clock.now += 8.0
    assert not profiling()
    credit("conv_gemm", 9.0)  # no active profiler: nothing happens
    assert profiler.seconds == {"conv_gemm": 4.5, "conv2d": 1.5, "other": 9.0}
    assert profiler.calls == {"conv_gemm": 2, "conv2d": 1, "other": 1}
    assert sum(profiler.seconds.values()) == clock.now


def test_a_profiled_backend_times_each_ops_call_and_leaves_the_original_alone():
    backend = get_backend("cpu")
    profiler = Profiler()
    copy = profiled(backend, profiler)
    assert copy.ops.name == backend.ops.name == "NumpyOps"
    assert copy.ops.layout == backend.ops.layout
    x = np.ones((4, 3), dtype=np.float32)
    np.testing.assert_array_equal(copy.ops.relu(x), backend.ops.relu(x))
    assert profiler.calls == {"relu": 1}
    assert copy.ops._ops is not backend.ops  # its own workspaces


# --- fmnist's side, the time split, the record ---------------------------------------------------------------------


def test_throughputs_are_positive(tiny_fashion):
    data = bench_data(TINY.samples)
    got = fmnist_throughput(TINY, data, "cpu", epochs=1, warmup=0, profile=False)
    assert got["samples_per_second"] > 0
    assert got["launches_per_step"] is None
    assert got["profile"] is None
    assert student_throughput(TINY, data)["samples_per_second"] > 0


def test_roofline_counts_three_gemms_per_layer():
    case = BenchCase.mlp((784, 128, 10))
    assert case.gemm_flops_per_sample() == 6 * (784 * 128 + 128 * 10)
    assert roofline_samples_per_second(case, 100.0) == pytest.approx(100e9 / case.gemm_flops_per_sample())


@pytest.mark.parametrize("case", [TINY, TINY_CNN], ids=["mlp", "cnn"])
def test_the_time_split_adds_up_to_the_profiled_step(tiny_fashion, case):
    profile = profile_pass(case, bench_data(128), "cpu")
    parts = profile["categories_ms"]
    assert set(parts) == set(CATEGORIES)
    assert all(ms >= 0 for ms in parts.values())
    assert sum(parts.values()) == pytest.approx(profile["step_ms"], rel=1e-9)
    assert sum(op["ms"] for op in profile["ops"].values()) == pytest.approx(profile["step_ms"], rel=1e-9)
    assert sum(profile["shares"].values()) == pytest.approx(1.0)
    assert parts["optimizer"] > 0
    assert parts["data"] > 0
    assert parts["elementwise"] > 0
    calls = {name: op["calls"] for name, op in profile["ops"].items()}
    assert calls["adam_update"] == 1  # one update a step, over the flat buffer
    if case.config.model == "cnn" and _cpu_convolutions_split():
        assert profile["conv_split"]
        assert parts["conv_gemm"] > 0
        assert parts["conv_data"] > 0  # the convolution calls besides their GEMMs, and the layout changes
        assert parts["conv"] == 0
        assert calls["conv2d"] == 3
        assert calls["conv2d_backward"] == 3
    elif case.config.model == "cnn":
        assert parts["conv"] > 0
        assert not profile["conv_split"]
    else:
        assert parts["gemm"] > 0
        assert parts["conv"] == 0


def test_the_categories_of_ops_methods_and_spans():
    assert category("conv2d_backward") == "conv"
    assert category("linear_relu_backward") == "gemm"
    assert category("adam_update") == category("clip_grad_norm") == "optimizer"
    assert category("gather_scale") == category("shift_flip") == "data"
    assert category("batch_norm_pool_relu") == category("softmax_cross_entropy") == "elementwise"
    assert category("conv_gemm") == "conv_gemm"
    assert category("other") == "other"


def test_the_record_holds_every_figure_and_setting(torch_state, tiny_fashion):
    run = run_bench(["cpu"], [64, 128], TINY, epochs=1, student=True, isolate=False, threads=1,
                    data=bench_data(TINY.samples))  # fmt: skip
    record = json.loads(json.dumps(run.record()))  # plain JSON: no NaN
    assert record["config"] == TINY.config.to_dict()
    assert record["data"]["source"] == "fashion-mnist"
    assert record["data"]["samples"] == 256
    assert record["threads"] == 1
    assert record["epochs"] == 1
    assert record["warmup_epochs"] == 1
    assert record["blas"]
    assert record["sgemm_gflops"]["cpu"] > 0
    assert len(record["sgemm_gflops_runs"]["cpu"]) == 2
    assert record["environment"]["cpu"]["ops"] == "NumpyOps"
    assert record["environment"]["cpu"]["torch"]["threads"] == 1
    assert set(record["peers"]) == {"torch", "torch-fused", "student-float64"}
    fused = record["peers"]["torch-fused"]
    assert fused["fused"]
    assert not fused["channels_last"]
    assert fused["optimizer"] == "Adam"
    assert "flush_denormal" in fused
    assert "recipe" in record["peers"]["student-float64"]
    names = {(r["implementation"], r["batch_size"]) for r in record["results"]}
    assert names == {(n, b) for n in ("fmnist", "torch", "torch-fused", "student-float64") for b in (64, 128)}
    for r in record["results"]:
        assert r["samples_per_second"] > 0
        assert r["step_ms"] > 0
        assert r["roofline_fraction"] > 0
        assert len(r["epoch_seconds"]) == 1
        assert r["ratio_to_best_peer"] > 0
        assert (r["profile"] is not None) == (r["implementation"] == "fmnist")
    ours = next(r for r in record["results"] if r["implementation"] == "fmnist")
    assert set(ours["profile"]["categories_ms"]) == set(record["categories"])


# --- the command --------------------------------------------------------------------------------------------------


def test_bench_command_writes_json_and_plot(tmp_path, torch, tiny_fashion):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    args = ["bench", "--device", "cpu", "--batch-sizes", "64,128", "--sizes", "784,32,10", "--samples", "256"]
    result = CliRunner().invoke(app, [*args, "--epochs", "1", "--json", str(out), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    names = {(r["implementation"], r["batch_size"]) for r in record["results"]}
    assert names == {(n, b) for n in ("fmnist", "torch", "torch-fused") for b in (64, 128)}
    assert png.read_bytes()[:4] == b"\x89PNG"
    for words in ("vs best", "roofline", "where fmnist's step goes", "GEMM", "optim", "subnormals", "real"):
        assert words in result.output


def test_presets_and_convs_per_block():
    assert bench_case(preset="cnn-best").config == TrainConfig(**PRESETS["cnn-best"])
    assert bench_case(model="cnn", preset="cnn-best").samples == 12800
    assert bench_case(preset="best").config == TrainConfig(**PRESETS["best"])
    assert bench_case(preset="best").sizes == (784, 1024, 512, 10)
    wider = bench_case(preset="cnn-best", convs_per_block=(2,), conv_channels=(48, 96), batch_size=256)
    assert (wider.config.convs_per_block, wider.config.conv_channels, wider.batch_size) == ((2,), (48, 96), 256)
    assert wider.config.learning_rate == 3e-3
    assert wider.config.augment_flip
    plain = bench_case(model="cnn")
    assert plain.config.hidden == (128,)
    assert plain.config.weight_decay == 0
    assert plain.config.lr_schedule == "constant"
    assert bench_case().sizes == (784, 128, 128, 128, 128, 128, 10)
    assert bench_case().batch_size == 64


def test_the_command_takes_a_preset_and_convs_per_block(tmp_path, tiny_fashion):
    out = tmp_path / "bench.json"
    args = ["bench", "--device", "cpu", "--preset", "cnn-best", "--conv-channels", "4,8", "--convs-per-block", "1,2"]
    args += ["--sizes", "784,16,10", "--batch-sizes", "32", "--samples", "64", "--epochs", "1", "--no-peers"]
    result = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["config"]["convs_per_block"] == [1, 2]
    assert record["config"]["augment_flip"]
    assert record["network"] == "cnn 4-8x2 + fc 16"
    assert "preset cnn-best" in result.output
    assert "conv" in result.output
    if _cpu_convolutions_split():
        assert "conv GEMM: convolutions' GEMMs" in result.output
        assert "whole convolution calls" not in result.output
    else:
        assert "whole convolution calls" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--batch-sizes", "64,zero"],
        ["--batch-sizes", "0"],
        ["--preset", "fastest"],
        ["--model", "rnn"],
        ["--model", "cnn", "--convs-per-block", "1,2,3"],
        ["--model", "cnn", "--conv-channels", "8,16,32,64,128"],
        ["--sizes", "100,10"],
        ["--epochs", "0"],
        ["--samples", "0"],
        ["--threads", "0"],
        ["--plot", "bench.svg"],
        ["--device", "tpu"],
    ],
)
def test_bench_rejects_bad_options_in_one_line(args):
    result = CliRunner().invoke(app, ["bench", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:"), result.output


# --- the GPU: launches per step beside samples/s ------------------------------------------------------------------


@pytest.mark.gpu
def test_launches_per_step_are_counted_on_the_simulated_gpu(simulated_gpu_backend, tiny_fashion):
    got = fmnist_throughput(TINY_CNN, bench_data(TINY_CNN.samples), "gpu", epochs=1, warmup=1)
    assert isinstance(got["launches_per_step"], int)
    assert got["launches_per_step"] > 0
    profile = got["profile"]
    assert profile["ops"]["conv2d"]["calls"] == 3
    assert sum(profile["categories_ms"].values()) == pytest.approx(profile["step_ms"], rel=1e-9)


@pytest.mark.gpu
@pytest.mark.slow
def test_the_gpu_table_shows_launches_per_step(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS / "simgpu" / "site"), str(TESTS)]),
           "FMNIST_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "80"}  # fmt: skip
    args = ["bench", "--device", "gpu", "--sizes", "784,32,10", "--batch-sizes", "64", "--samples", "256"]
    command = [sys.executable, "-m", "fmnist", *args, "--epochs", "1", "--no-peers", "--json", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "launches" in proc.stdout
    assert "where fmnist's step goes" in proc.stdout
    record = json.loads(out.read_text())
    ours = record["results"][0]
    assert ours["device"] == "gpu"
    assert ours["launches_per_step"] > 0
    assert record["environment"]["gpu"]["ops"] == "CupyOps"
