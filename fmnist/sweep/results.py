"""Sweep results: the leaderboard (terminal and CSV), the best configuration, the study plots, a read-only
status of a study, and what failed."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import warnings
from pathlib import Path
from typing import Any

from fmnist.files import atomic_write, write_json
from fmnist.rundir.layout import FILES
from fmnist.sweep import SWEEP_FILES, liveness
from fmnist.sweep.retry import STOPPED, is_retry
from fmnist.sweep.spec import SweepSpec
from fmnist.sweep.storage import HEARTBEAT
from fmnist.sweep.study import INTERRUPTED, NO_POINT_LEFT, NOT_COUNTED, OVER_CAP
from fmnist.training.config import options_of

STATE_NAMES = {"COMPLETE": "complete", "PRUNED": "pruned", "RUNNING": "running", "FAIL": "failed"}


def leaderboard(study: Any, spec: SweepSpec) -> list[dict[str, Any]]:
    """Counted trials, best first (completed by metric, then pruned, running, failed), as flat rows: every point's
    latest state (a trial whose worker died is not shown; its retry is)."""
    from optuna.trial import TrialState

    rank = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.RUNNING: 2, TrialState.FAIL: 3}
    sign = -1.0 if spec.goal == "maximize" else 1.0
    trials = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.RUNNING or (t.state in rank and not t.user_attrs.get(NOT_COUNTED))
    ]
    trials.sort(key=lambda t: (rank[t.state], sign * t.value if t.value is not None else 0.0, t.number))
    names = [p.name for p in spec.searched]
    return [
        {
            "trial": t.number,
            "state": STATE_NAMES[t.state.name],
            spec.metric: t.value,
            **{name: t.params.get(name) for name in names},
            "reason": t.user_attrs.get("reason", ""),
            "run_dir": t.user_attrs.get("run_dir", ""),
        }
        for t in trials
    ]


def write_results(study: Any, spec: SweepSpec, out: Path) -> dict[str, Any]:
    """Write ``leaderboard.csv``, ``best_config.json`` and the PNG plots under ``out``; returns what was written
    (and, under ``plot_errors``, the plots that could not be drawn and why; under ``plot_notes``, what a drawn plot
    cannot show)."""
    rows = leaderboard(study, spec)
    written: dict[str, Any] = {"rows": rows, "plot_errors": {}}
    if rows:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(out / SWEEP_FILES["leaderboard"], buffer.getvalue())
        written["leaderboard"] = out / SWEEP_FILES["leaderboard"]
    best = next((r for r in rows if r["state"] == "complete"), None)
    if best is not None:
        config = options_of(json.loads((Path(best["run_dir"]) / FILES["config"]).read_text()))
        write_json(out / SWEEP_FILES["best_config"], config)
        written["best_config"] = out / SWEEP_FILES["best_config"]
        written["best"] = best
    written["plot_notes"] = {}
    written["plots"] = _plots(study, out, written["plot_errors"], written["plot_notes"])
    return written


def _plots(study: Any, out: Path, errors: dict[str, str], notes: dict[str, str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    from fmnist.files import atomic_open

    paths = []
    makers = {
        "optimization_history.png": ovm.plot_optimization_history,
        "parallel_coordinates.png": ovm.plot_parallel_coordinate,
        "param_importances.png": ovm.plot_param_importances,
    }
    for name, make in makers.items():
        try:
            with warnings.catch_warnings(record=True) as caught:  # a view's warnings tell nothing to act on
                warnings.simplefilter("always")
                axes = make(study)
            if any("importances will be equal" in str(w.message).lower() for w in caught):
                notes[name] = "too few completed trials to rank the parameters: every one shows the same importance"
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.set_size_inches(10, 6)
            with atomic_open(out / name) as handle:
                figure.savefig(handle, format="png", dpi=110, bbox_inches="tight")
            plt.close(figure)
            paths.append(out / name)
        except Exception as err:  # a plot needs enough completed trials (importances need two or more)
            errors[name] = f"{type(err).__name__}: {err}"
            plt.close("all")
    return paths


def failures(rows: list[dict[str, Any]]) -> tuple[int, str | None]:
    """How many leaderboard rows failed, and the commonest reason among them with its count (reasons that
    differ only in their numbers, such as the step of a divergence, are one reason)."""
    import re

    reasons = [r["reason"] or "no reason recorded" for r in rows if r["state"] == "failed"]
    if not reasons:
        return 0, None
    groups: dict[str, list[str]] = {}
    for reason in reasons:
        groups.setdefault(re.sub(r"[-+]?\d[\d.e+-]*", "#", reason), []).append(reason)
    common = max(groups.values(), key=len)
    return len(reasons), f"{common[0]} ({len(common)} of {len(reasons)})"


NOT_RUN = {  # why a finished trial does not count, as --status shows it
    STOPPED: "worker died",
    INTERRUPTED: "interrupted",
    OVER_CAP: "over the cap",
    NO_POINT_LEFT: "not run (grid done)",
}


def status(study: Any, spec: SweepSpec) -> dict[str, Any]:
    """A read-only view of a study: trials by state, the running ones (who runs them, since when, how far), and
    the best so far."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}

    def add(state: str) -> None:
        states[state] = states.get(state, 0) + 1

    running = []
    for t in trials:
        why = t.user_attrs.get(NOT_COUNTED)
        if t.state == TrialState.RUNNING:
            add("running")
            running.append(_running(t))
        elif t.state == TrialState.WAITING:
            add("retry waiting" if is_retry(t) else "waiting")
        elif not why:
            add({TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(t.state, "failed"))
        else:
            add(NOT_RUN.get(why, str(why)))
    rows = leaderboard(study, spec)
    best = next((r for r in rows if r["state"] == "complete"), None)
    return {"states": states, "running": running, "best": best, "rows": rows}


def _running(trial: Any) -> dict[str, Any]:
    """Who runs a trial, whether that process lives (on this machine), since when, and how far it got."""
    import time

    worker = trial.user_attrs.get(liveness.WORKER)
    if worker is None:
        alive = "unknown"
    elif liveness.same_machine(worker):
        alive = "alive" if liveness.process_alive(worker) else "gone"
    else:
        alive = "another machine"
    beat = trial.user_attrs.get(HEARTBEAT)  # journal storage: the last heartbeat
    run_dir = Path(trial.user_attrs.get("run_dir", ""))
    epochs_done, epochs = None, None
    if trial.user_attrs.get("run_dir") and run_dir.is_dir():  # not on another machine's disk
        epochs_done = 0
        with contextlib.suppress(*UNREADABLE):  # no epoch finished yet
            epochs_done = len((run_dir / FILES["metrics"]).read_text().splitlines())
        with contextlib.suppress(*UNREADABLE):
            epochs = json.loads((run_dir / FILES["config"]).read_text())["epochs"]
    return {
        "trial": trial.number,
        "worker": liveness.describe(worker),
        "alive": alive,
        "since": trial.datetime_start,
        "heartbeat_age": time.time() - float(beat) if beat is not None else None,
        "epochs_done": epochs_done,
        "epochs": epochs,
    }


UNREADABLE = (OSError, ValueError, KeyError, TypeError)
