"""``fmnist bench``: fmnist against PyTorch eager (and typical NumPy code) on the same network, per batch size."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
    base, batches = _case(model, batch_sizes, sizes, conv_channels, samples)
    if epochs <= 0:
        fail("--epochs must be > 0", 2)
    if device not in ("cpu", "gpu", "all"):
        fail(f"--device must be cpu, gpu or all, got {device!r}", 2)
    if plot is not None and plot.suffix.lower() != ".png":
        fail("--plot must name a .png file", 2)

    from fmnist.backend.threads import blas_info, thread_budget
    from fmnist.benchmark import run_bench

    devices = _devices(device, peers)
    network = base.label.rsplit(" ", 2)[0]
    console.print(f"{network} · Adam · {base.samples} samples/epoch · median of {epochs} epochs after a warm-up")
    for pool in blas_info():
        console.print(f"NumPy BLAS: {pool['internal_api']} {pool['version']}, kernel {pool['architecture']}")

    def show(r: Any) -> None:
        console.print(
            f"  {r.device:>3} b{r.batch_size:<5} {r.implementation:<16} {r.samples_per_second:>12,.0f} samples/s"
        )

    with thread_budget(threads):  # the measuring processes read it when their libraries load
        results, gflops = run_bench(devices, batches, base, epochs, peers, student, show)
    console.print(_table(results))
    console.print("measured sgemm: " + ", ".join(f"{d} {g:,.0f} GFLOP/s" for d, g in gflops.items()))
    _write(json_out, plot, base, devices, results, gflops, epochs, threads)


def _case(model: str, batch_sizes: str | None, sizes: str | None, conv_channels: str, samples: int | None) -> Any:
    """The base case and batch sizes the options describe, or a one-line failure (exit 2)."""
    from fmnist import names
    from fmnist.benchmark import PLAIN, BenchCase
    from fmnist.training.config import ConfigError, TrainConfig

    try:
        cnn = names.canonical("model", model) == "cnn"
    except names.UnknownNameError as err:
        fail(f"--model: {err}", 2)
    batches, widths, channels = _integers(
        batch_sizes or ("128" if cnn else "64,256,1024,4096"),
        sizes or ("784,128,10" if cnn else "784,128,128,128,128,128,10"),
        conv_channels,
    )
    if cnn and (widths[0] != 784 or not 1 <= len(channels) <= 4):
        fail("--model cnn takes 28x28 images (--sizes starting with 784) and 1 to 4 conv blocks", 2)
    samples = samples if samples is not None else (12800 if cnn else 60000)
    if samples <= 0:
        fail("--samples must be > 0", 2)
    if not cnn:
        return BenchCase.mlp(widths, batches[0], samples=samples), batches
    try:
        head = {"hidden_sizes": widths[1:-1] or None, "num_layers": len(widths) - 2}
        config = TrainConfig(model="cnn", conv_channels=channels, batch_size=batches[0], **head, **PLAIN)
    except ConfigError as err:
        fail(str(err), 2)
    return BenchCase(config, samples, widths[0], widths[-1]), batches


def _integers(batch_sizes: str, sizes: str, conv_channels: str) -> tuple[list[int], tuple[int, ...], tuple[int, ...]]:
    """The comma-separated integers of --batch-sizes, --sizes and --conv-channels, or a failure (exit 2)."""
    try:
        batches = [int(b) for b in batch_sizes.split(",")]
        widths = tuple(int(s) for s in sizes.split(","))
        channels = tuple(int(c) for c in conv_channels.split(","))
    except ValueError:
        fail("--batch-sizes, --sizes and --conv-channels take comma-separated integers", 2)
    if any(b <= 0 for b in batches) or len(widths) < 2 or any(s <= 0 for s in (*widths, *channels)):
        fail("--batch-sizes, --sizes and --conv-channels must be positive (and --sizes at least two widths)", 2)
    return batches, widths, channels


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


def _table(results: list[Any]) -> Any:
    from rich.table import Table

    table = Table(title="training throughput (samples/s)")
    for column in ("device", "batch", "implementation", "samples/s", "x best peer", "% sgemm roofline"):
        table.add_column(column, justify="left" if column in ("device", "implementation") else "right")
    for r in results:
        ratio = "" if r.ratio_to_best_peer != r.ratio_to_best_peer else f"{r.ratio_to_best_peer:.2f}x"
        name = f"[bold]{r.implementation}[/]" if r.implementation == "fmnist" else r.implementation
        row = (r.device, str(r.batch_size), name, f"{r.samples_per_second:,.0f}", ratio)
        table.add_row(*row, f"{100 * r.roofline_fraction:.1f}%")
    return table


def _write(json_out: Path | None, plot: Path | None, base: Any, devices: list[str], results: list[Any],
           gflops: dict[str, float], epochs: int, threads: int | None) -> None:  # fmt: skip
    """``--json`` and ``--plot``."""
    if json_out is not None:
        from fmnist.benchmark import bench_record
        from fmnist.files import write_json

        write_json(json_out, bench_record(base, devices, results, gflops, epochs, threads))
        console.print(f"wrote {json_out}")
    if plot is not None:
        from fmnist.render.charts import save_png, throughput_figure

        network = base.label.rsplit(" ", 2)[0]
        save_png(throughput_figure([r.to_dict() for r in results], title=f"{network}, Adam"), plot)
        console.print(f"wrote {plot}")
