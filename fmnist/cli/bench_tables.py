"""The tables ``fmnist bench`` prints, within 80 columns: samples/s per batch size (fmnist, each peer, the ratio
to the best peer, % of the sgemm roofline, launches per step on a GPU) and where fmnist's step time goes."""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.table import Table

# Column headings of the implementations, in table order.
HEADINGS = {
    "fmnist": "fmnist",
    "torch": "torch",
    "torch-fused": "fused",
    "torch-fused-cl": "fused-CL",
    "student-float64": "student",
}


def _table(title: str) -> Table:
    return Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 0, 0, 1),
        pad_edge=False,
        title_justify="left",
        title_style="bold",
    )


def _number(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:,.0f}"


def speed_table(device: str, results: list[Any], gflops: float) -> Table:
    """Training samples/s on ``device``: one row per batch size, one column per implementation, then fmnist's
    ratio to the best peer, its % of the sgemm roofline and (where counted) its launches per step."""
    names = [n for n in HEADINGS if any(r.implementation == n for r in results)]
    launches = any(r.launches_per_step is not None for r in results)
    table = _table(f"{device}: training samples/s (sgemm {gflops:,.0f} GFLOP/s)")
    table.add_column("batch", justify="right")
    for name in names:
        table.add_column(HEADINGS[name], justify="right", style="bold" if name == "fmnist" else None)
    table.add_column("vs best", justify="right")
    table.add_column("roofline", justify="right")
    if launches:
        table.add_column("launches", justify="right")
    for batch in dict.fromkeys(r.batch_size for r in results):
        row = {r.implementation: r for r in results if r.batch_size == batch}
        ours = row["fmnist"]
        ratio = "" if math.isnan(ours.ratio_to_best_peer) else f"{ours.ratio_to_best_peer:.2f}x"
        cells = [str(batch), *(_number(row[n].samples_per_second) if n in row else "" for n in names)]
        cells += [ratio, f"{100 * ours.roofline_fraction:.0f}%"]
        if launches:
            cells.append("" if ours.launches_per_step is None else str(ours.launches_per_step))
        table.add_row(*cells)
    return table


def _columns(profiles: list[dict[str, Any]]) -> list[str]:
    from fmnist.benchmark.split import CATEGORIES

    return [k for k in CATEGORIES if any(p["categories_ms"].get(k, 0.0) > 0 for p in profiles)]


def split_table(device: str, results: list[Any]) -> Table | str:
    """Where fmnist's step goes on ``device``: per batch size the timed step (ms), the profiled step (ms: the
    profiler's synchronisations and clock readings make it longer) and each category's share of the profiled
    step."""
    from fmnist.benchmark.split import CATEGORIES

    ours = [r for r in results if r.implementation == "fmnist" and r.profile]
    if not ours:
        return ""
    columns = _columns([r.profile for r in ours])
    table = _table(f"{device}: where fmnist's step goes (% of a profiled step)")
    for heading in ("batch", "step ms", "profiled"):
        table.add_column(heading, justify="right")
    for key in columns:
        table.add_column(CATEGORIES[key][0], justify="right")
    for r in ours:
        shares = r.profile["shares"]
        cells = [str(r.batch_size), f"{r.step_ms:.2f}", f"{r.profile['step_ms']:.2f}"]
        table.add_row(*cells, *(f"{100 * shares[key]:.0f}%" for key in columns))
    return table


def legend(results: list[Any]) -> list[str]:
    """A few lines under the tables: what the split's columns hold, and the peers' settings."""
    profiles = [r.profile for r in results if r.implementation == "fmnist" and r.profile]
    columns = _columns(profiles)
    words = {
        "conv_gemm": "conv GEMM: convolutions' GEMMs (timed apart)",
        "conv_data": "conv data: the rest of them (im2col, col2im, Winograd transforms, layouts)"
        if "conv_gemm" in columns
        else "conv data: layout changes",
        "conv": "conv: whole convolution calls (this device's Ops does not time its GEMMs apart)",
        "gemm": "GEMM: dense layers",
        "elementwise": "elem: activations, batch norm, pooling, dropout, loss",
        "optimizer": "optim: the update",
        "data": "data: gather, scale, augment",
        "other": "other: Python, loop, profiler",
    }
    lines = wrap([words[k] for k in columns])
    settings = next((r.settings for r in results if r.implementation.startswith("torch") and r.settings), None)
    if settings:
        flush = "subnormals flushed" if settings.get("flush_denormal") else "subnormals not flushed"
        tf32 = [] if "tf32" not in settings else [f"TF32 {'on' if settings['tf32'] else 'off'}"]
        peer = f"peers: PyTorch {settings['torch']} eager, {settings['optimizer']}, {settings['threads']} threads"
        variants = ["fused: fused=True"]
        variants += (
            ["fused-CL: fused + channels_last"] if any(r.implementation == "torch-fused-cl" for r in results) else []
        )
        lines += wrap([peer, flush, *tf32, *variants])
    notes = {r.implementation: r.note for r in results if r.note}
    lines += [f"{name}: {note}" for name, note in notes.items()]
    return lines


def wrap(parts: list[str], width: int = 80, separator: str = " · ") -> list[str]:
    """``parts`` joined with ``separator`` into lines of at most ``width`` characters (a part longer stays whole)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + len(separator) + len(part) <= width:
            lines[-1] += separator + part
        else:
            lines.append(part)
    return lines
