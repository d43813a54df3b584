"""Sweeps on Optuna: one study per sweep, in SQLite by default, PostgreSQL or a journal file to span machines.

Every trial is an ordinary ``fmnist train`` run directory. The study total (``--trials N``) holds across workers
and machines: trials are numbered by the storage, and a trial runs only if fewer than N counted trials come
before it (the rest are closed at once, marked as over the cap, and never counted). Grid points are enqueued
once in the study, so concurrent workers take each exactly once.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmnist.sweep.spec import Param, SweepError, SweepSpec, config_from_mapping, run_name
from fmnist.training.callbacks import Callback
from fmnist.training.config import ConfigError, TrainConfig

NOT_COUNTED = "fmnist_not_counted"  # user attribute: over the cap, or interrupted (the work is redone later)
GRID_ENQUEUED = "fmnist_grid_enqueued"
SPACE_FINGERPRINT = "fmnist_space_fingerprint"  # user attributes: the search space the study was created with
SPACE = "fmnist_space"


@dataclass
class SweepOptions:
    """How to run a sweep (everything but the sweep file)."""

    out: Path
    storage: str | None = None
    study_name: str | None = None
    trials: int = 20
    workers: int = 1
    seed: int = 0
    base: TrainConfig = field(default_factory=TrainConfig)
    wandb: bool = False
    sweep_file: str | None = None

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out / 'sweep.db').resolve()}"


def open_storage(url: str) -> Any:
    """An Optuna storage for a URL (``sqlite:///``, ``postgresql://``...) or a journal file path (``*.log``)."""
    import optuna

    if "://" not in url:
        from optuna.storages.journal import JournalFileBackend

        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(url)))
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url)
        except Exception:  # two machines creating the schema of a new database at once: one loses, then loads
            if attempt == 4:
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def open_study(spec: SweepSpec, options: SweepOptions) -> Any:
    """Create or load the study (load_if_exists), with the sampler and pruner the sweep file asks for."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = make_sampler(spec, options.seed)
    pruner: Any = optuna.pruners.NopPruner()
    if spec.hyperband:
        epochs = int(spec.fixed.get("epochs", options.base.epochs))
        pruner = optuna.pruners.HyperbandPruner(
            min_resource=spec.hyperband["min_iter"], max_resource=epochs, reduction_factor=spec.hyperband["eta"]
        )
    study = optuna.create_study(
        storage=open_storage(options.storage_url),
        study_name=options.study_name or spec.name,
        sampler=sampler,
        pruner=pruner,
        direction=spec.goal,
        load_if_exists=True,
    )
    check_fingerprint(study, spec)
    if spec.method == "grid" and not study.user_attrs.get(GRID_ENQUEUED):
        study.set_user_attr(GRID_ENQUEUED, True)
        for point in spec.grid():
            study.enqueue_trial(point, skip_if_exists=True)
    return study


class StudyChangedError(SweepError):
    """The sweep file's search space is not the one the existing study was created with."""


def check_fingerprint(study: Any, spec: SweepSpec) -> None:
    """Record the sweep's canonical search space in a new study; refuse to add trials from another space to an
    existing one (its trials would mix two searches, and the samplers would mislead each other).

    Raises:
        StudyChangedError: one line naming the study, what changed and the way out.
    """
    stored = study.user_attrs.get(SPACE_FINGERPRINT)
    if stored is None:  # a new study, or one from before fingerprints: this space is now its space
        study.set_user_attr(SPACE_FINGERPRINT, spec.fingerprint())
        study.set_user_attr(SPACE, spec.space())
        return
    if stored == spec.fingerprint():
        return
    before, now = study.user_attrs.get(SPACE, {}), spec.space()
    changed = [k for k in ("method", "metric", "goal") if before.get(k) != now[k]]
    old, new = before.get("parameters", {}), now["parameters"]
    changed += [f"parameters.{k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    raise StudyChangedError(
        f"the sweep file changed since study {study.study_name!r} was created ({', '.join(changed) or 'its space'}"
        " differs); start a new study with --study NEW_NAME, or use another --out"
    )


def make_sampler(spec: SweepSpec, seed: int) -> Any:
    """GridSampler, RandomSampler or TPESampler for the sweep's method."""
    import optuna

    if spec.method == "grid":
        return optuna.samplers.GridSampler({p.name: list(p.values) for p in spec.searched}, seed=seed)
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _suggest(trial: Any, p: Param) -> Any:
    if p.distribution == "constant":
        return p.values[0]
    if p.distribution == "categorical":
        return trial.suggest_categorical(p.name, list(p.values))
    if p.distribution == "int_uniform":
        return trial.suggest_int(p.name, int(p.low), int(p.high))
    log = p.distribution == "log_uniform_values"
    return trial.suggest_float(p.name, p.low, p.high, log=log, step=None if log else p.q)


def counted_before(study: Any, number: int) -> int:
    """How many counted trials (not over the cap, not interrupted) have a smaller number."""
    import optuna

    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.number < number and t.state != optuna.trial.TrialState.WAITING and not t.user_attrs.get(NOT_COUNTED)
    )


def counted(study: Any) -> int:
    return counted_before(study, math.inf)


@dataclass
class TrialEvent:
    """What a worker reports about a trial."""

    number: int
    state: str  # "running", "complete", "pruned", "failed", "interrupted"
    value: float | None = None
    run_dir: str | None = None
    reason: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


def work(spec: SweepSpec, options: SweepOptions, on_event: Callable[[TrialEvent], None] | None = None) -> None:
    """One worker: take trials from the study until it holds ``options.trials`` counted trials."""
    from optuna.trial import TrialState

    from fmnist.training.fit import DivergenceError, TrainingInterrupted
    from fmnist.training.run import train_run

    study = open_study(spec, options)
    report = on_event or (lambda event: None)
    cap = trial_cap(spec, options)
    while counted(study) < cap:
        trial = study.ask()
        if counted_before(study, trial.number) >= cap:
            trial.set_user_attr(NOT_COUNTED, "trial cap reached")
            study.tell(trial, state=TrialState.FAIL)
            break
        if spec.method != "grid":
            # seeded by the trial number, not by the worker: workers and machines never draw the same values,
            # and a trial's values do not depend on which worker ran it (TPE still reads the whole history)
            study.sampler = make_sampler(spec, options.seed * 1_000_003 + trial.number)
        params = {p.name: _suggest(trial, p) for p in spec.params}
        searched = {p.name: params[p.name] for p in spec.searched}
        run_dir = options.out / "runs" / run_name(trial.number, searched)
        trial.set_user_attr("run_dir", str(run_dir))
        report(TrialEvent(trial.number, "running", run_dir=str(run_dir), params=searched))

        pruner = Pruner(trial, spec.metric)
        try:
            config = config_from_mapping(params, options.base)
            if options.wandb:
                config = config_from_mapping({"wandb": True}, config)
            train_run(config, run_dir, [pruner])
            if pruner.reason is not None:
                trial.set_user_attr("reason", pruner.reason)
                study.tell(trial, state=TrialState.PRUNED)
                report(TrialEvent(trial.number, "pruned", None, str(run_dir), pruner.reason, searched))
            else:
                value = _final_metric(run_dir, spec.metric)
                study.tell(trial, value)
                report(TrialEvent(trial.number, "complete", value, str(run_dir), params=searched))
        except (KeyboardInterrupt, TrainingInterrupted):
            trial.set_user_attr(NOT_COUNTED, "interrupted")
            study.tell(trial, state=TrialState.FAIL)
            if spec.method == "grid":
                study.enqueue_trial(searched)  # the grid point is still to be done
            report(TrialEvent(trial.number, "interrupted", None, str(run_dir), "interrupted", searched))
            raise
        except (DivergenceError, ConfigError, ValueError, RuntimeError, OSError) as err:
            trial.set_user_attr("reason", f"{type(err).__name__}: {err}")
            study.tell(trial, state=TrialState.FAIL)
            report(TrialEvent(trial.number, "failed", None, str(run_dir), str(err), searched))


def trial_cap(spec: SweepSpec, options: SweepOptions) -> int:
    """The study total: ``--trials``, and never more than the grid's size for a grid sweep."""
    return min(options.trials, len(spec.grid())) if spec.method == "grid" else options.trials


class Pruner(Callback):
    """A trial's pruner as a run callback: reports the sweep metric after each epoch and, when Optuna's pruner
    says so, ends the run after that epoch (its checkpoint and report are kept) with the reason in ``reason``."""

    def __init__(self, trial: Any, metric: str):
        self.trial = trial
        self.metric = metric
        self.reason: str | None = None

    def on_epoch_end(self, trainer: Any, metrics: Any) -> None:
        value = getattr(metrics, self.metric)
        self.trial.report(value, metrics.epoch)
        if self.trial.should_prune():
            self.reason = f"pruned after epoch {metrics.epoch} ({self.metric} {value:.4f})"
            trainer.stop_training, trainer.stop_reason = True, self.reason


def _final_metric(run_dir: Path, metric: str) -> float:
    import json

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return float(json.loads(lines[-1])[metric])


def _worker_main(spec: SweepSpec, options: SweepOptions) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):  # the trial is already marked interrupted
        work(spec, options)


def write_sweep_info(spec: SweepSpec, options: SweepOptions) -> None:
    """``OUT/sweep.json``: where the study is and what it searches, so ``fmnist report OUT`` can reopen it
    (``storage`` null means the default ``sweep.db`` beside it, so a moved sweep directory still opens)."""
    import json

    from fmnist.training.atomic import atomic_write

    info = {
        "format": "fmnist-sweep",
        "version": 1,
        "study_name": options.study_name or spec.name,
        "storage": options.storage,
        "metric": {"name": spec.metric, "goal": spec.goal},
        "method": spec.method,
        "sweep_file": options.sweep_file,
        "spec": spec.describe(),
    }
    atomic_write(options.out / "sweep.json", json.dumps(info, indent=2, default=str) + "\n")


def run_sweep(spec: SweepSpec, options: SweepOptions, on_event: Callable[[TrialEvent], None] | None = None) -> Any:
    """Run ``options.workers`` workers (this process and separate processes) on one study; returns the study."""
    options.out.mkdir(parents=True, exist_ok=True)
    write_sweep_info(spec, options)
    study = open_study(spec, options)  # create it (and enqueue a grid) once, before the workers race
    context = multiprocessing.get_context("spawn")
    others = [context.Process(target=_worker_main, args=(spec, options)) for _ in range(options.workers - 1)]
    for process in others:
        process.start()
    try:
        work(spec, options, on_event)
    finally:
        for process in others:
            process.join()
    return study
