"""Shared pieces of the HTML reports: reading run files, formatting values, embedding charts, rendering.

Charts are matplotlib figures saved as PNG data URIs (no pyplot state); pages are Jinja2 templates from
``fmnist/training/templates`` rendered with autoescape, so every value is shown as text, never as markup.
"""

from __future__ import annotations

import base64
import io
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

NOT_IN_CONFIG = ("environment", "normalization", "command", "extra", "started")


CHART_STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#9aa5b1",
    "axes.grid": True,
    "grid.color": "#e4e7eb",
    "grid.linewidth": 0.8,
    "xtick.color": "#52606d",
    "ytick.color": "#52606d",
    "legend.frameon": False,
    "savefig.dpi": 144,
}


def differences(config: dict) -> list[tuple[str, str, str]]:
    """(option, value, default) for every option that differs from ``TrainConfig``'s defaults."""
    from fmnist.training.config import TrainConfig

    defaults = TrainConfig().to_dict()
    rows = []
    for name, value in config.items():
        if name in NOT_IN_CONFIG:
            continue
        default = defaults.get(name, None)
        if name in defaults and _same(value, default):
            continue
        rows.append((name, format_value(value), format_value(default) if name in defaults else "(not an option now)"))
    return rows


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    if isinstance(a, str) and isinstance(b, str):
        return a.lower().replace("_", "-") == b.lower().replace("_", "-")
    return a == b


def render(template: str, context: dict[str, Any]) -> str:
    """The named template of ``fmnist/training/templates`` rendered with ``context`` (autoescaped)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("fmnist.training", "templates"),
        autoescape=True,  # every value is user text: run names, paths, config values
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(template).render(**context)


def chart_style() -> Any:
    """A context manager with the reports' matplotlib style."""
    import matplotlib

    return matplotlib.rc_context(CHART_STYLE)


def new_figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` of that size in inches, outside pyplot (nothing to close, no global state)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def png_uri(fig: Any, dpi: int | None = None) -> str:
    """The figure as a PNG data URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or CHART_STYLE["savefig.dpi"], facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def read_json(path: Path) -> Any:
    """The parsed file, or ``None`` when it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict]:
    """Lines that parse as JSON objects (a line being written at the moment is skipped)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def flatten(values: dict, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, shown value) rows of a nested dict."""
    rows = []
    for key, value in values.items():
        if isinstance(value, dict):
            rows += flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", format_value(value)))
    return rows


def file_time(path: Path) -> str:
    """A file's modification time as local date and time."""
    try:
        stamp = datetime.fromtimestamp(path.stat().st_mtime).astimezone()
    except OSError:
        return "unknown"
    return stamp.strftime("%Y-%m-%d %H:%M %Z")


def now_text() -> str:
    """The local date and time now."""
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def to_float(value: Any) -> float:
    """A float, NaN for anything that is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def finite(value: Any) -> bool:
    """Whether ``value`` is a finite number (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def pct(value: Any) -> str:
    """``0.8688`` → ``'86.88%'``; a dash for a missing value."""
    return f"{100 * value:.2f}%" if finite(value) else "—"


def fixed(value: Any) -> str:
    """Four decimals; a dash for a missing value."""
    return f"{value:.4f}" if finite(value) else "—"


def sig(value: Any) -> str:
    """Three significant digits; a dash for a missing value."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.3g}"
    return "—"


def format_value(value: Any) -> str:
    """A config value as people write it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_value(v)}" for k, v in value.items()) or "{}"
    return str(value)


def compact(value: Any) -> str:
    """``171341.4`` → ``'171k'``."""
    if not finite(value):
        return "—"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def duration(seconds: Any) -> str:
    """Seconds as people read them: ``'314 ms'``, ``'3.0 s'``, ``'4 min 05 s'``, ``'1 h 02 min'``."""
    if not finite(seconds):
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
