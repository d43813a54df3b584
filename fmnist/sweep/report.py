"""The HTML report of a sweep: ``report.html`` in the sweep directory, linking every trial's run report.

The study is reopened from the storage that ``sweep.json`` names (else ``sweep.db`` beside it) for the leaderboard
and Optuna's matplotlib plots; where it cannot be opened, ``leaderboard.csv`` and the PNGs the sweep saved stand in.
``sweep.json``: ``{"format": "fmnist-sweep", "version": 1, "study_name": ..., "storage": null | URL | journal path,
"metric": {"name": ..., "goal": ...}, "method": ..., "sweep_file": ..., "spec": {...}}`` (all optional).
"""

from __future__ import annotations

import base64
import csv
import json
import os
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import numpy as np

from fmnist import __version__
from fmnist.files import atomic_write, read_json, read_jsonl
from fmnist.render.charts import png_uri
from fmnist.render.html import differences, duration, finite, format_value, now_text, pct, render, sig, to_float
from fmnist.rundir.layout import FILES, RunDirError
from fmnist.rundir.report import write_run_report
from fmnist.sweep import SWEEP_FILES, sweep_link
from fmnist.training.config import NOT_OPTIONS, TrainConfig


class ReportError(ValueError):
    """The directory is not something a sweep report can be built from; the message is one line."""


def write_sweep_report(sweep_dir: str | os.PathLike, build_trial_reports: bool = True) -> Path:
    """Build ``sweep_dir/report.html`` and return its path.

    The study is reopened from the storage named in ``sweep.json`` (else ``sweep.db`` beside it) for the
    leaderboard and Optuna's plots; where it cannot be opened, ``leaderboard.csv`` and the saved PNGs stand in.

    Args:
        sweep_dir: a directory written by ``fmnist sweep``.
        build_trial_reports: also build the missing ``report.html`` of every finished trial, so each link works.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ReportError(f"{sweep_dir}: not a directory")
    info = read_json(sweep_dir / SWEEP_FILES["info"])
    info = info if isinstance(info, dict) else {}
    study, why = _open_study(sweep_dir, info)
    metric, goal = _metric(info, study)
    rows, metric = _rows(sweep_dir, study, metric)
    datasets: dict[Any, Any] = {}
    params: list[str] = []
    for row in rows:
        params += [p for p in row["params"] if p not in params]
        _add_trial_files(sweep_dir, row, build_trial_reports, datasets)
    best = next((r for r in rows if r["state"] == "complete"), None)
    context = {
        "title": info.get("study_name") or sweep_dir.resolve().name,
        "sweep_dir": str(sweep_dir.resolve()),
        "metric": metric,
        "goal": goal,
        "info": _sweep_facts(sweep_dir, info, study, why),
        "cards": _sweep_cards(rows, metric, goal, best),
        "params": params,
        "rows": [_leaderboard_cells(r, params) for r in rows],
        "has_reasons": any(r["reason"] for r in rows),
        "best": best and _leaderboard_cells(best, params),
        "best_config": _best_config(sweep_dir),
        "plots": _sweep_plots(sweep_dir, study, metric),
        "spec": json.dumps(info["spec"], indent=2, sort_keys=False) if info.get("spec") else None,
        "generated": now_text(),
        "version": __version__,
    }
    out = sweep_dir / SWEEP_FILES["report"]
    atomic_write(out, render("sweep_report.html.j2", context))
    return out


def _rows(sweep_dir: Path, study: Any, metric: str | None) -> tuple[list[dict[str, Any]], str]:
    """The leaderboard's rows from the study, else from ``leaderboard.csv``; and the metric's name."""
    if study is not None:
        return _rows_from_study(study, metric), metric or "value"
    rows = _rows_from_csv(sweep_dir / SWEEP_FILES["leaderboard"])
    return rows, metric or (rows[0]["metric_name"] if rows else "value")


def _add_trial_files(sweep_dir: Path, row: dict[str, Any], build: bool, datasets: dict) -> None:
    """A leaderboard row's run directory, the link to its report (built where missing and ``build``), its epochs
    and its time."""
    row["run_dir"] = _trial_dir(sweep_dir, row["run_dir"])
    row["link"], row["report_note"] = _trial_link(sweep_dir, row, build, datasets)
    run_dir = row["run_dir"]
    history = read_jsonl(run_dir / FILES["metrics"]) if run_dir else []
    row["epochs"] = len(history) if run_dir else None
    summary = (read_json(run_dir / FILES["summary"]) if run_dir else None) or {}
    seconds = summary.get("total_seconds") if isinstance(summary, dict) else None
    row["seconds"] = seconds if finite(seconds) else sum(to_float(h.get("seconds")) for h in history)


def _open_study(sweep_dir: Path, info: dict) -> tuple[Any, str | None]:
    """(study, None), or (None, why not): never creates a database or a study."""
    try:
        import optuna
    except ImportError:
        return None, "Optuna is not installed (pip install 'fmnist[sweep]')"
    url = info.get("storage")
    local = sweep_dir / SWEEP_FILES["database"]
    if url and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        url = None  # a moved sweep directory: its database travelled with it
    if not url:
        if not local.is_file():
            return None, f"no study storage ({SWEEP_FILES['info']} names none and there is no {local.name})"
        url = f"sqlite:///{local.resolve()}"
    try:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        if "://" in url:
            # a database server that does not answer fails in seconds rather than minutes
            engine = {"connect_args": {"connect_timeout": 10}} if url.startswith("postgres") else None
            storage: Any = optuna.storages.RDBStorage(url, engine_kwargs=engine, skip_table_creation=True)
        else:
            from optuna.storages.journal import JournalFileBackend

            if not Path(url).is_file():
                return None, f"the journal {url} does not exist"
            storage = optuna.storages.JournalStorage(JournalFileBackend(url))
        return optuna.load_study(study_name=info.get("study_name"), storage=storage), None
    except Exception as err:  # any storage failure (driver, network, schema, name) leaves the saved files
        return None, f"the study could not be opened ({type(err).__name__}: {err})"


def _metric(info: dict, study: Any) -> tuple[str | None, str]:
    metric = info.get("metric")
    goal = info.get("goal")
    if isinstance(metric, dict):
        metric, goal = metric.get("name"), metric.get("goal", goal)
    if goal is None and study is not None:
        goal = study.direction.name.lower()
    return metric, goal or "maximize"


def _rows_from_study(study: Any, metric: str | None) -> list[dict[str, Any]]:
    """Counted trials, best first (completed by value, then pruned, running, failed)."""
    from optuna.trial import TrialState

    from fmnist.sweep.results import STATE_NAMES
    from fmnist.sweep.retry import NOT_COUNTED

    rank = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.RUNNING: 2, TrialState.FAIL: 3}
    sign = -1.0 if study.direction.name.lower() == "maximize" else 1.0
    trials = [  # as the leaderboard: running trials, and the latest state of every point
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.RUNNING or (t.state in rank and not t.user_attrs.get(NOT_COUNTED))
    ]
    trials.sort(key=lambda t: (rank[t.state], sign * t.value if t.value is not None else 0.0, t.number))
    return [
        {
            "trial": t.number,
            "state": STATE_NAMES[t.state.name],
            "value": t.value,
            "params": dict(t.params),
            "reason": str(t.user_attrs.get("reason", "")),
            "run_dir": str(t.user_attrs.get("run_dir", "")),
            "metric_name": metric,
        }
        for t in trials
    ]


def _rows_from_csv(path: Path) -> list[dict[str, Any]]:
    """The rows of ``leaderboard.csv`` (trial, state, METRIC, params..., reason, run_dir)."""
    try:
        with path.open(newline="") as handle:
            records = list(csv.DictReader(handle))
    except OSError:
        return []
    rows = []
    for record in records:
        keys = list(record)
        metric = keys[2] if len(keys) > 2 else "value"
        params = {k: _parse(v) for k, v in record.items() if k not in ("trial", "state", metric, "reason", "run_dir")}
        rows.append(
            {
                "trial": int(record.get("trial") or 0),
                "state": record.get("state", ""),
                "value": _parse(record.get(metric, "")),
                "params": params,
                "reason": record.get("reason", ""),
                "run_dir": record.get("run_dir", ""),
                "metric_name": metric,
            }
        )
    return rows


def _trial_dir(sweep_dir: Path, recorded: str) -> Path | None:
    """A trial's run directory: by its name under ``sweep_dir/runs`` (where it travels with a copied or moved
    sweep), else where it was recorded (a sweep run with its trials elsewhere)."""
    if not recorded:
        return None
    for candidate in (sweep_dir / "runs" / Path(recorded).name, Path(recorded)):
        if (candidate / FILES["config"]).is_file():
            return candidate
    return None


def _trial_link(sweep_dir: Path, row: dict, build: bool, datasets: dict) -> tuple[str | None, str]:
    run_dir = row["run_dir"]
    if run_dir is None:
        return None, "no run directory"
    report = run_dir / FILES["report"]
    if build and row["state"] != "running" and not report.is_file():
        try:
            write_run_report(run_dir, datasets=datasets, links={"sweep": sweep_link(sweep_dir, run_dir)})
        except (RunDirError, OSError, ValueError) as err:
            return None, f"report not built: {err}"
    if not report.is_file():
        return None, "no report yet"
    return quote(Path(os.path.relpath(report, sweep_dir)).as_posix(), safe="/"), ""


def _sweep_facts(sweep_dir: Path, info: dict, study: Any, why: str | None) -> list[tuple[str, str]]:
    rows = [("sweep directory", str(sweep_dir.resolve()))]
    if study is not None:
        rows.append(("study", f"{study.study_name} ({study.direction.name.lower()})"))
    for key, label in (("sweep_file", "sweep file"), ("method", "method"), ("storage", "storage")):
        if info.get(key):
            rows.append((label, _hide_password(str(info[key]))))
    if why:
        rows.append(("study", f"not opened: {why}; showing leaderboard.csv and the saved plots"))
    return rows


def _sweep_cards(rows: list[dict], metric: str | None, goal: str, best: dict | None) -> list[dict[str, str]]:
    counts = {state: sum(r["state"] == state for r in rows) for state in ("complete", "pruned", "failed", "running")}
    detail = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    cards = [{"label": "trials", "value": str(len(rows)), "note": detail or "none yet"}]
    if best is not None:
        cards.append({"label": f"best {metric}", "value": _metric_value(best["value"], metric), "note": goal})
        name = best["run_dir"].name if best["run_dir"] else ""
        cards.append({"label": "best trial", "value": f"#{best['trial']}", "note": name})
    else:
        cards.append({"label": f"best {metric}", "value": "—", "note": "no completed trial"})
    seconds = [r["seconds"] for r in rows if finite(r["seconds"])]
    note = f"all trials, {duration(max(seconds))} the longest" if seconds else "no epoch finished"
    cards.append({"label": "training time", "value": duration(sum(seconds)) if seconds else "—", "note": note})
    return cards


def _leaderboard_cells(row: dict, params: list[str]) -> dict[str, Any]:
    return {
        "trial": row["trial"],
        "state": row["state"],
        "value": _metric_value(row["value"], row.get("metric_name")),
        "params": [
            sig(v) if isinstance(v, float) else format_value(v) for v in (row["params"].get(p, "") for p in params)
        ],
        "epochs": "" if row["epochs"] is None else str(row["epochs"]),
        "time": duration(row["seconds"]),
        "link": row["link"],
        "report_note": row["report_note"],
        "reason": row["reason"],
        "name": row["run_dir"].name if row["run_dir"] else "",
    }


def _best_config(sweep_dir: Path) -> dict[str, Any] | None:
    """``best_config.json``: the command that replays it, its options that differ from the defaults, and all."""
    config = read_json(sweep_dir / SWEEP_FILES["best_config"])
    if not isinstance(config, dict):
        return None
    path = shlex.quote(str(sweep_dir.resolve() / SWEEP_FILES["best_config"]))
    return {
        "replay": f"fmnist train --config {path}",
        "differences": differences(config, TrainConfig().to_dict(), skip=NOT_OPTIONS),
        "all": [(k, format_value(v)) for k, v in config.items() if k not in NOT_OPTIONS],
    }


SWEEP_PLOTS = (  # (saved file, title, Optuna's function, size in inches: two half-width plots, one full-width)
    ("optimization_history.png", "Optimisation history", "plot_optimization_history", (6.4, 4.2)),
    ("param_importances.png", "Parameter importances", "plot_param_importances", (6.4, 4.2)),
    ("parallel_coordinates.png", "Parallel coordinates", "plot_parallel_coordinate", (12, 4.6)),
)


def _sweep_plots(sweep_dir: Path, study: Any, metric: str | None) -> list[dict[str, str | None]]:
    """Optuna's matplotlib plots, drawn from the study, else the PNGs the sweep saved."""
    plots = []
    for filename, title, maker, size in SWEEP_PLOTS:
        uri, note = (
            _optuna_plot(study, maker, metric or "value", size)
            if study is not None
            else (None, "the study could not be opened")
        )
        if uri is None and (sweep_dir / filename).is_file():
            uri, note = "data:image/png;base64," + base64.b64encode((sweep_dir / filename).read_bytes()).decode(), ""
        plots.append({"title": title, "image": uri, "note": note})
    return plots


def _optuna_plot(study: Any, maker: str, metric: str, size: tuple[float, float]) -> tuple[str | None, str]:
    import warnings

    import matplotlib
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    with matplotlib.rc_context(), warnings.catch_warnings():  # Optuna switches pyplot to its ggplot style
        warnings.simplefilter("ignore")
        try:
            axes = getattr(ovm, maker)(study, target_name=metric)
        except Exception as err:  # e.g. importances need two completed trials with differing values
            plt.close("all")
            return None, f"not drawn: {err}"
        figure = axes.figure if hasattr(axes, "figure") else np.asarray(axes).flat[0].figure
        for ax in figure.axes:  # the page's look instead of ggplot's grey; the section heading names the plot
            ax.set_facecolor("white")
            ax.grid(color="#e4e7eb")
            for loc in ("left", "center", "right"):
                ax.set_title("", loc=loc)
        figure.set_size_inches(*size)
        figure.tight_layout()
        uri = png_uri(figure, dpi=110)
        plt.close(figure)
        return uri, ""


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    return url


def _parse(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except (TypeError, ValueError):
            pass
    return text


def _metric_value(value: Any, metric: str | None) -> str:
    if not finite(value):
        return "—"
    return pct(value) if metric and "accuracy" in metric else f"{value:.4f}"
