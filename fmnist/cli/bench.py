"""``fmnist bench``: fmnist against PyTorch eager (and typical NumPy code) on the same network, per batch size."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from fmnist.cli.common import console, fail


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)


def bench(
    device: Annotated[str, typer.Option("--device", help="cpu, gpu, or all (every available device).")] = "all",
    model: Annotated[str, typer.Option("--model", help="mlp or cnn (conv blocks, then the --sizes head).")] = "mlp",
    batch_sizes: Annotated[
        str | None,
        typer.Option("--batch-sizes", help="Comma-separated batch sizes (default 64,256,1024,4096; cnn: 128)."),
    ] = None,
    sizes: Annotated[
        str | None,
        typer.Option("--sizes", help="Layer widths, input first (MLP default 784,5x128,10; cnn head: 784,128,10)."),
    ] = None,
    conv_channels: Annotated[
        str, typer.Option("--conv-channels", help="cnn: channels of each conv block (3x3, BN, ReLU, 2x2 pool).")
    ] = "32,64",
    samples: Annotated[
        int | None, typer.Option("--samples", help="Training samples per epoch (default 60000; cnn: 12800).")
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Timed epochs per measurement (median).")] = 2,
    peers: Annotated[bool, typer.Option("--peers/--no-peers", help="Also time PyTorch eager when installed.")] = True,
    student: Annotated[bool, typer.Option("--student", help="Also time typical float64 NumPy course code.")] = False,
    threads: Annotated[int | None, typer.Option("--threads", help="BLAS threads (default: all cores).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write throughput vs batch size as PNG.")] = None,
) -> None:
    """Training throughput (samples/s) of one epoch, with ratios to the best peer and % of the sgemm roofline."""
    from fmnist import names

    try:
        model = names.canonical("model", model)
    except names.UnknownNameError as err:
        fail(f"--model: {err}", 2)
    cnn = model == "cnn"
    batch_sizes = batch_sizes or ("128" if cnn else "64,256,1024,4096")
    sizes = sizes or ("784,128,10" if cnn else "784,128,128,128,128,128,10")
    samples = samples if samples is not None else (12800 if cnn else 60000)
    try:
        batches = [int(b) for b in batch_sizes.split(",")]
        layer_sizes = tuple(int(s) for s in sizes.split(","))
        channels = tuple(int(c) for c in conv_channels.split(","))
    except ValueError:
        fail("--batch-sizes, --sizes and --conv-channels take comma-separated integers", 2)
    if any(b <= 0 for b in batches) or len(layer_sizes) < 2 or any(s <= 0 for s in (*layer_sizes, *channels)):
        fail("--batch-sizes, --sizes and --conv-channels must be positive (and --sizes at least two widths)", 2)
    if cnn and (layer_sizes[0] != 784 or not 1 <= len(channels) <= 4):
        fail("--model cnn takes 28x28 images (--sizes starting with 784) and 1 to 4 conv blocks", 2)
    if samples <= 0 or epochs <= 0:
        fail("--samples and --epochs must be > 0", 2)
    if device not in ("cpu", "gpu", "all"):
        fail(f"--device must be cpu, gpu or all, got {device!r}", 2)
    if plot is not None and plot.suffix.lower() != ".png":
        fail("--plot must name a .png file", 2)

    from rich.table import Table
    from threadpoolctl import threadpool_limits

    from fmnist.backend import gpu_status
    from fmnist.training.harness import peers_available, run_bench

    usable, reason = gpu_status()
    if device == "gpu" and not usable:
        fail(reason)
    devices = ["cpu", "gpu"] if device == "all" and usable else ["gpu"] if device == "gpu" else ["cpu"]
    if peers and not peers_available():
        console.print("[yellow]PyTorch is not installed: no peers (pip install torch)[/]")
    elif peers and "gpu" in devices and not peers_available("gpu"):
        console.print("[yellow]PyTorch sees no CUDA device: no GPU peers (a CUDA build of torch is needed)[/]")
    from fmnist.training.harness import blas_info

    network = f"CNN conv {conv_channels} + head {sizes}" if cnn else f"MLP {sizes}"
    console.print(f"{network} · Adam · {samples} samples/epoch · median of {epochs} epochs after a warm-up")
    for pool in blas_info():
        console.print(f"NumPy BLAS: {pool['internal_api']} {pool['version']}, kernel {pool['architecture']}")

    def show(r) -> None:
        console.print(
            f"  {r.device:>3} b{r.batch_size:<5} {r.implementation:<16} {r.samples_per_second:>12,.0f} samples/s"
        )

    if threads is not None:  # the fresh processes that measure read these at start-up (BLAS, OpenMP, PyTorch)
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ[name] = str(threads)
    with threadpool_limits(threads):
        results, gflops = run_bench(
            devices, batches, layer_sizes, samples, epochs, peers, student, show, model=model, conv_channels=channels
        )

    table = Table(title="training throughput (samples/s)")
    for column in ("device", "batch", "implementation", "samples/s", "x best peer", "% sgemm roofline"):
        table.add_column(column, justify="left" if column in ("device", "implementation") else "right")
    for r in results:
        ratio = "" if r.ratio_to_best_peer != r.ratio_to_best_peer else f"{r.ratio_to_best_peer:.2f}x"
        style = "bold" if r.implementation == "fmnist" else ""
        table.add_row(
            r.device,
            str(r.batch_size),
            f"[{style}]{r.implementation}[/]" if style else r.implementation,
            f"{r.samples_per_second:,.0f}",
            ratio,
            f"{100 * r.roofline_fraction:.1f}%",
        )
    console.print(table)
    console.print("measured sgemm: " + ", ".join(f"{d} {g:,.0f} GFLOP/s" for d, g in gflops.items()))
    if json_out is not None:
        from fmnist.backend import get_backend
        from fmnist.training.atomic import atomic_write
        from fmnist.training.harness import blas_info
        from fmnist.training.rundir import environment

        record = {
            "model": model,
            "conv_channels": list(channels) if cnn else None,
            "sizes": list(layer_sizes),
            "samples": samples,
            "epochs": epochs,
            "threads": threads,
            "sgemm_gflops": gflops,
            "environment": {d: environment(get_backend(d)) for d in devices},  # per measured device
            "blas": blas_info(),
            "results": [r.to_dict() for r in results],
        }
        atomic_write(json_out, json.dumps(record, indent=2) + "\n")
        console.print(f"wrote {json_out}")
    if plot is not None:
        from fmnist.training.plots import plot_throughput

        plot_throughput([r.to_dict() for r in results], plot, title=f"{network}, Adam")
        console.print(f"wrote {plot}")
