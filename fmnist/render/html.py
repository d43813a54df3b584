"""HTML pages from Jinja2 templates, and values formatted as people read them.

Pages are the templates of ``fmnist/render/templates`` rendered with autoescape, so every value (run names, paths,
config values: user text) is shown as text, never as markup.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any


def render(template: str, context: dict[str, Any]) -> str:
    """The named template of ``fmnist/render/templates`` rendered with ``context`` (autoescaped)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("fmnist.render", "templates"),
        autoescape=True,  # every value is user text: run names, paths, config values
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(template).render(**context)


def differences(config: Mapping[str, Any], defaults: Mapping[str, Any], skip: Iterable[str] = ()) -> list[tuple]:
    """(option, value, default) for every option of ``config`` that differs from ``defaults`` (keys in ``skip``
    are records beside the options, not options)."""
    skipped = set(skip)
    rows = []
    for name, value in config.items():
        if name in skipped:
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
