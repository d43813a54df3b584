"""Sweep results: the leaderboard (terminal and CSV), the best configuration, and the study plots."""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import Any

from fmnist.sweep.spec import SweepSpec
from fmnist.sweep.study import NOT_COUNTED
from fmnist.training.atomic import atomic_write
from fmnist.training.rundir import RECORD_KEYS


def leaderboard(study: Any, spec: SweepSpec) -> list[dict[str, Any]]:
    """Counted trials, best first (completed by metric, then pruned, then failed), as flat rows."""
    from optuna.trial import TrialState

    rank = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.RUNNING: 2, TrialState.FAIL: 3}
    sign = -1.0 if spec.goal == "maximize" else 1.0
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(NOT_COUNTED)]
    trials = [t for t in trials if t.state in rank]
    trials.sort(key=lambda t: (rank[t.state], sign * t.value if t.value is not None else 0.0, t.number))
    names = [p.name for p in spec.searched]
    return [
        {
            "trial": t.number,
            "state": t.state.name.lower(),
            spec.metric: t.value,
            **{name: t.params.get(name) for name in names},
            "reason": t.user_attrs.get("reason", ""),
            "run_dir": t.user_attrs.get("run_dir", ""),
        }
        for t in trials
    ]


def write_results(study: Any, spec: SweepSpec, out: Path) -> dict[str, Any]:
    """Write ``leaderboard.csv``, ``best_config.json`` and the PNG plots under ``out``; returns what was written
    (and, under ``plot_errors``, the plots that could not be drawn and why)."""
    rows = leaderboard(study, spec)
    written: dict[str, Any] = {"rows": rows, "plot_errors": {}}
    if rows:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(out / "leaderboard.csv", buffer.getvalue())
        written["leaderboard"] = out / "leaderboard.csv"
    best = next((r for r in rows if r["state"] == "complete"), None)
    if best is not None:
        config = json.loads((Path(best["run_dir"]) / "config.json").read_text())
        config = {k: v for k, v in config.items() if k not in (*RECORD_KEYS, "extra")}
        atomic_write(out / "best_config.json", json.dumps(config, indent=2) + "\n")
        written["best_config"] = out / "best_config.json"
        written["best"] = best
    written["plots"] = _plots(study, out, written["plot_errors"])
    return written


def _plots(study: Any, out: Path, errors: dict[str, str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm
    from optuna.exceptions import ExperimentalWarning

    from fmnist.training.atomic import atomic_open

    paths = []
    makers = {
        "optimization_history.png": ovm.plot_optimization_history,
        "parallel_coordinates.png": ovm.plot_parallel_coordinate,
        "param_importances.png": ovm.plot_param_importances,
    }
    for name, make in makers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                axes = make(study)
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
