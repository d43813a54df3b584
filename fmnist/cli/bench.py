"""``fmnist bench``: fmnist against PyTorch eager (and typical NumPy code) on the same network, recipe and images,
per batch size, with where fmnist's step time goes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from fmnist.cli.bench_tables import legend, speed_table, split_table, wrap
from fmnist.cli.common import console, fail


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)


def bench(
    device: Annotated[str, typer.Option("--device", help="cpu, gpu, or all (every available device).")] = "all",
    model: Annotated[str | None, typer.Option("--model", help="mlp or cnn (default: the preset's, else mlp).")] = None,
    preset: Annotated[
        str | None, typer.Option("--preset", help="A preset's network and recipe (e.g. cnn-best); options win.")
    ] = None,
    batch_sizes: Annotated[
        str | None,
        typer.Option("--batch-sizes", help="Comma-separated batch sizes (MLP 64,256,1024,4096; cnn or preset: 128)."),
    ] = None,
    sizes: Annotated[
        str | None,
        typer.Option("--sizes", help="Dense widths, 784 first, 10 last (MLP 784,5x128,10; cnn head 784,128,10)."),
    ] = None,
    conv_channels: Annotated[
        str | None, typer.Option("--conv-channels", help="cnn: channels of each conv block (default 32,64).")
    ] = None,
    convs_per_block: Annotated[
        str | None, typer.Option("--convs-per-block", help="cnn: convolutions per block, one count or one per block.")
    ] = None,
    samples: Annotated[
        int | None, typer.Option("--samples", help="Training samples per epoch (default 60000; cnn: 12800).")
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Timed epochs per measurement (median).")] = 2,
    peers: Annotated[bool, typer.Option("--peers/--no-peers", help="Also time PyTorch eager when installed.")] = True,
    student: Annotated[bool, typer.Option("--student", help="Also time typical float64 NumPy course code.")] = False,
    threads: Annotated[
        int | None, typer.Option("--threads", help="Threads of every side (default: all cores).")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every figure as JSON.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write throughput vs batch size as PNG.")] = None,
) -> None:
    """Training throughput (samples/s) of fmnist and PyTorch eager on the same images, network and recipe, with
    ratios to the best peer, % of the sgemm roofline, and where fmnist's step time goes."""
    base, batches = _case(model, preset, batch_sizes, sizes, conv_channels, convs_per_block, samples)
    if epochs <= 0:
        fail("--epochs must be > 0", 2)
    if threads is not None and threads <= 0:
        fail("--threads must be > 0", 2)
    if device not in ("cpu", "gpu", "all"):
        fail(f"--device must be cpu, gpu or all, got {device!r}", 2)
    if plot is not None and plot.suffix.lower() != ".png":
        fail("--plot must name a .png file", 2)

    from fmnist.backend.threads import cores, thread_budget
    from fmnist.benchmark import bench_data, run_bench

    devices = _devices(device, peers)
    data = bench_data(base.samples, base.config.standardize)
    _header(base, preset, data, devices, threads or cores(), epochs)

    def show(r: Any) -> None:
        speed = "not run" if math.isnan(r.samples_per_second) else f"{r.samples_per_second:>10,.0f} samples/s"
        console.print(f"  {r.device} b{r.batch_size:<5} {r.implementation:<16} {speed}", highlight=False)

    with thread_budget(threads):  # the measuring processes read it when their libraries load
        run = run_bench(devices, batches, base, epochs, peers, student, show, threads=threads, data=data)
    for d in devices:
        rows = [r for r in run.results if r.device == d]
        console.print()
        console.print(speed_table(d, rows, run.gflops[d]))
        console.print()
        console.print(split_table(d, rows))
        console.print()
        for line in legend(rows):
            console.print(line, highlight=False, style="dim")
    _write(json_out, plot, run)


def _header(base: Any, preset: str | None, data: Any, devices: list[str], threads: int, epochs: int) -> None:
    """What is measured, on what, how: the lines above the measurements."""
    from fmnist.backend import get_backend
    from fmnist.backend.threads import blas_info

    named = f" (preset {preset})" if preset else ""
    console.print(f"network: {base.network}{named}", highlight=False)
    recipe = wrap([f"recipe: {base.recipe_parts()[0]}", *base.recipe_parts()[1:]], width=78, separator=", ")
    console.print("\n  ".join(recipe), highlight=False)
    console.print(f"data: {data.note}", style=None if data.real else "yellow", highlight=False)
    for d in devices:
        where = f"{d}: fmnist {get_backend(d).ops.name}"
        if d == "cpu":
            kernels = ", ".join(f"{p['internal_api']} {p['version']} kernel {p['architecture']}" for p in blas_info())
            where += f" · {kernels or 'BLAS unknown'} · {threads} threads"
        console.print(where, highlight=False)
    plural = "s" if epochs > 1 else ""
    console.print(f"median of {epochs} timed epoch{plural} after a warm-up, each run in a fresh process")


def _case(
    model: str | None,
    preset: str | None,
    batch_sizes: str | None,
    sizes: str | None,
    conv_channels: str | None,
    convs_per_block: str | None,
    samples: int | None,
) -> tuple[Any, list[int]]:
    """The base case and batch sizes the options describe, or a one-line failure (exit 2)."""
    from fmnist import names
    from fmnist.benchmark import bench_case
    from fmnist.benchmark.case import CNN_BATCHES, MLP_BATCHES
    from fmnist.training.config import ConfigError

    try:
        model = names.canonical("model", model) if model is not None else None
    except names.UnknownNameError as err:
        fail(f"--model: {err}", 2)
    lists = {
        "--batch-sizes": batch_sizes,
        "--sizes": sizes,
        "--conv-channels": conv_channels,
        "--convs-per-block": convs_per_block,
    }
    batches, widths, channels, counts = (_integers(flag, text) for flag, text in lists.items())
    try:
        base = bench_case(model, preset, widths, channels, counts, batches[0] if batches else None, samples)
    except ConfigError as err:
        fail(str(err), 2)
    if batches is None:
        batches = [base.batch_size] if preset else list(CNN_BATCHES if base.config.model == "cnn" else MLP_BATCHES)
        base = base.at_batch(batches[0])
    return base, batches


def _integers(flag: str, text: str | None) -> tuple[int, ...] | None:
    """The comma-separated positive integers of an option (``None`` when not given), or a failure (exit 2)."""
    if text is None:
        return None
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        fail(f"{flag} takes comma-separated integers such as 64,256, got {text!r}", 2)
    if any(v <= 0 for v in values):
        fail(f"{flag} must be positive, got {text!r}", 2)
    return values


def _devices(device: str, peers: bool) -> list[str]:
    """The devices to measure (a GPU asked for where none works: exit 1 with the reason), saying which peers
    cannot be measured."""
    from fmnist.backend import gpu_status
    from fmnist.benchmark import peers_available

    usable, reason = gpu_status()
    if device == "gpu" and not usable:
        fail(reason)
    devices = ["cpu", "gpu"] if device == "all" and usable else ["gpu"] if device == "gpu" else ["cpu"]
    if peers and not peers_available():
        console.print("[yellow]PyTorch is not installed: no peers (pip install torch)[/]")
    elif peers and "gpu" in devices and not peers_available("gpu"):
        console.print("[yellow]PyTorch sees no CUDA device: no GPU peers (a CUDA build of torch is needed)[/]")
    return devices


def _write(json_out: Path | None, plot: Path | None, run: Any) -> None:
    """``--json`` and ``--plot``."""
    if json_out is not None:
        from fmnist.files import write_json

        write_json(json_out, run.record())
        console.print(f"wrote {json_out}")
    if plot is not None:
        from fmnist.render.charts import save_png, throughput_figure

        measured = [r.to_dict() for r in run.results if not math.isnan(r.samples_per_second)]
        save_png(throughput_figure(measured, title=f"{run.base.network} · {run.data.source}"), plot)
        console.print(f"wrote {plot}")
