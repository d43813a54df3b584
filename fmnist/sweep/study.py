"""Sweeps on Optuna: one study per sweep, in SQLite by default, PostgreSQL or a journal file to span machines.

Every trial is an ordinary ``fmnist train`` run directory. The study total (``--trials N``) counts the trials that
ended for their own reasons (complete, pruned, failed by a configuration error or a divergence) and those running:
a trial whose worker died does not count, its retry takes its place (``fmnist.sweep.retry``). A new trial runs
only if fewer than N counted trials come before it (the rest are closed at once, marked as over the cap, and never
counted), so concurrent workers and machines never overshoot. Grid points are enqueued once in the study, so
concurrent workers take each exactly once.

Each worker, before each ``ask``, fails and replaces the trials of dead workers (``Recovery``); a command ends
when its own work is done and no trial of a dead worker of this machine is pending.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmnist.backend.threads import per_worker, thread_budget
from fmnist.sweep import SWEEP_FILES, sweep_link
from fmnist.sweep.liveness import WORKER, this_worker
from fmnist.sweep.retry import NOT_COUNTED, STOPPED, Recovered, Recovery, is_retry, prepare_run_dir, replace, slot
from fmnist.sweep.spec import (
    Param,
    SweepError,
    SweepSpec,
    config_from_mapping,
    decode,
    encode,
    run_name,
    takes_effect,
)
from fmnist.sweep.storage import DEFAULT_GRACE, Heartbeat, heartbeat_interval, open_storage, quiet
from fmnist.training.callbacks import Callback
from fmnist.training.config import TrainConfig

__all__ = ["NOT_COUNTED", "SweepOptions", "TrialEvent", "open_study", "run_sweep", "work"]

GRID_ENQUEUED = "fmnist_grid_enqueued"
SPACE_FINGERPRINT = "fmnist_space_fingerprint"  # user attributes: the search space the study was created with
SPACE = "fmnist_space"
OVER_CAP = "trial cap reached"
NO_POINT_LEFT = "no grid point left"
INTERRUPTED = "interrupted"


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
    grace: int = DEFAULT_GRACE  # seconds without a heartbeat before another machine's trial is retried
    setup: Callable[[], None] | None = None  # called first in each worker process (the command line's warnings)

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out / SWEEP_FILES['database']).resolve()}"


class StudyChangedError(SweepError):
    """The sweep file's search space is not the one the existing study was created with."""


def open_study(spec: SweepSpec, options: SweepOptions, on_stale: Callable[[Any, Any], None] | None = None) -> Any:
    """Create or load the study (load_if_exists), with the sampler and pruner the sweep file asks for, and the
    heartbeat of ``options.grace`` (``on_stale``: what to do with a trial whose heartbeat stopped).

    Raises:
        StudyChangedError: the study exists and was created from another search space.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # fmnist says what matters (failures, retries) itself
    pruner: Any = optuna.pruners.NopPruner()
    if spec.hyperband:
        epochs = int(spec.fixed.get("epochs", options.base.epochs))
        pruner = optuna.pruners.HyperbandPruner(
            min_resource=spec.hyperband["min_iter"], max_resource=epochs, reduction_factor=spec.hyperband["eta"]
        )
    study = optuna.create_study(
        storage=open_storage(options.storage_url, options.grace, on_stale),
        study_name=options.study_name or spec.name,
        sampler=make_sampler(spec, options.seed),
        pruner=pruner,
        direction=spec.goal,
        load_if_exists=True,
    )
    check_fingerprint(study, spec)
    if spec.method == "grid" and not study.user_attrs.get(GRID_ENQUEUED):
        for point in spec.grid():
            enqueue_point(study, {k: encode(v) for k, v in point.items()}, skip_if_exists=True)
        study.set_user_attr(GRID_ENQUEUED, True)  # after the points: a worker killed meanwhile enqueues the rest
    return study


def load_study(spec: SweepSpec, options: SweepOptions) -> Any:
    """The existing study, opened read-only (nothing created, no heartbeat), for a look at it.

    Raises:
        StorageError: there is no such storage or study.
    """
    import optuna

    from fmnist.sweep.storage import StorageError

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(options.storage_url, read_only=True)
    name = options.study_name or spec.name
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StorageError(f"no study {name!r} in {options.storage_url} yet") from None


def check_fingerprint(study: Any, spec: SweepSpec) -> None:
    """Record the sweep's canonical search space in a new study; refuse to add trials from another space to an
    existing one (its trials would mix two searches, and the samplers would mislead each other).

    Raises:
        StudyChangedError: one line naming the study, what changed and the way out.
    """
    if study.user_attrs.get(SPACE_FINGERPRINT) is None:  # a new study, or one from before fingerprints
        study.set_user_attr(SPACE_FINGERPRINT, spec.fingerprint())
        study.set_user_attr(SPACE, spec.space())
        return
    change = space_change(study, spec)
    if change is not None:
        raise StudyChangedError(change)


def space_change(study: Any, spec: SweepSpec) -> str | None:
    """None when the study was created from this sweep's search space (or records none), else the one-line
    message that says what changed and the way out."""
    stored = study.user_attrs.get(SPACE_FINGERPRINT)
    if stored is None or stored == spec.fingerprint():
        return None
    before, now = study.user_attrs.get(SPACE, {}), spec.space()
    changed = [k for k in ("method", "metric", "goal") if before.get(k) != now[k]]
    old, new = before.get("parameters", {}), now["parameters"]
    changed += [f"parameters.{k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return (
        f"the sweep file changed since study {study.study_name!r} was created ({', '.join(changed) or 'its space'}"
        " differs); start a new study with --study NEW_NAME, or use another --out"
    )


GRID_POINT = "fmnist_grid_point"  # user attribute of an enqueued grid point: the point (stored values)


def make_sampler(spec: SweepSpec, seed: int) -> Any:
    """RandomSampler or TPESampler for the sweep's method; for a grid, a sampler that never draws: every point is
    enqueued in the study with its values (Optuna's ``GridSampler`` expects a grid id that enqueued points never
    get, and fails on one-point grids)."""
    import optuna

    if spec.method == "grid":
        return _grid_sampler()
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _grid_sampler() -> Any:
    import optuna

    class EnqueuedPointsOnly(optuna.samplers.BaseSampler):
        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return {}

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
            return {}

        def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
            raise SweepError(f"grid trial {trial.number} has no value of {name}: not an enqueued grid point")

    return EnqueuedPointsOnly()


def enqueue_point(study: Any, point: dict[str, Any], skip_if_exists: bool = False) -> None:
    """Enqueue a grid point (its values as the study stores them), marked as one."""
    study.enqueue_trial(point, user_attrs={GRID_POINT: point}, skip_if_exists=skip_if_exists)


def _suggest(trial: Any, p: Param) -> Any:
    """A trial's value of ``p`` as the run uses it (lists are stored as text: ``fmnist.sweep.spec.encode``)."""
    if p.distribution == "constant":
        return p.values[0]
    if p.distribution == "categorical":
        return decode(p.name, trial.suggest_categorical(p.name, [encode(v) for v in p.values]))
    if p.distribution == "int_uniform":
        return trial.suggest_int(p.name, int(p.low), int(p.high))
    log = p.distribution == "log_uniform_values"
    return trial.suggest_float(p.name, p.low, p.high, log=log, step=None if log else p.q)


# --- the study total ------------------------------------------------------------------------------------------------


def counts(trial: Any) -> bool:
    """Whether a trial takes a place in the ``--trials`` count: it runs, it is a retry waiting to run, or it
    ended for its own reasons."""
    from optuna.trial import TrialState

    if trial.state == TrialState.RUNNING:
        return True
    if trial.state == TrialState.WAITING:
        return is_retry(trial)
    return not trial.user_attrs.get(NOT_COUNTED)


def counted_before(study: Any, number: float) -> int:
    """How many places of the count are taken by trials whose point's first attempt has a smaller number."""
    return len({slot(t) for t in study.get_trials(deepcopy=False) if counts(t) and slot(t) < number})


def counted(study: Any) -> int:
    return counted_before(study, math.inf)


def trial_cap(spec: SweepSpec, options: SweepOptions) -> int:
    """The study total: ``--trials``, and never more than the grid's size for a grid sweep."""
    return min(options.trials, len(spec.grid())) if spec.method == "grid" else options.trials


def more_work(study: Any, spec: SweepSpec, cap: int) -> bool:
    """Whether a worker should ask for a trial: a retry waits, or places are left (and, in a grid, points)."""
    from optuna.trial import TrialState

    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if any(is_retry(t) for t in waiting):
        return True
    if counted(study) >= cap:
        return False
    return bool(waiting) if spec.method == "grid" else True


# --- a worker -------------------------------------------------------------------------------------------------------


@dataclass
class TrialEvent:
    """What a worker reports about a trial."""

    number: int
    state: str  # "running", "complete", "pruned", "failed", "interrupted", "retried", "given up", "taken over"
    value: float | None = None
    run_dir: str | None = None
    reason: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    note: str | None = None  # a running retry: where it starts from; a retried trial: its retry's number


def work(spec: SweepSpec, options: SweepOptions, on_event: Callable[[TrialEvent], None] | None = None) -> None:
    """One worker: recover the trials of dead workers, then take trials from the study while there is work
    (``more_work``), until the study holds ``options.trials`` counted trials."""
    report = on_event or (lambda event: None)

    def found(recovered: Recovered) -> None:
        state = "given up" if recovered.given_up else "retried"
        note = None if recovered.retry is None else f"as trial {recovered.retry}"
        report(TrialEvent(recovered.trial, state, reason=recovered.why, note=note))

    recovery = Recovery(options.grace, found)
    study = open_study(spec, options, on_stale=recovery.stale)
    cap = trial_cap(spec, options)
    while True:
        recover(study, recovery)
        if not more_work(study, spec, cap):
            return
        with quiet():  # Optuna warns that heartbeats are meant for Study.optimize: fmnist drives them itself
            trial = study.ask()
        if spec.method == "grid" and not (is_retry(trial) or GRID_POINT in trial.user_attrs):
            _close(study, trial, NO_POINT_LEFT)  # another worker took the last one meanwhile
        elif not is_retry(trial) and counted_before(study, trial.number) >= cap:
            _close(study, trial, OVER_CAP)
        else:
            run_trial(study, trial, spec, options, report)


def recover(study: Any, recovery: Recovery) -> None:
    """``recovery.run``, where a storage hiccup only postpones the search to the next ``ask``."""
    from optuna.exceptions import StorageInternalError

    with contextlib.suppress(StorageInternalError):
        recovery.run(study)


def _close(study: Any, trial: Any, why: str) -> None:
    """End a trial that will not run (over the cap, or a grid worker too late): not counted; a grid point it took
    goes back to the queue."""
    from optuna.trial import TrialState

    trial.set_user_attr(NOT_COUNTED, why)
    study.tell(trial, state=TrialState.FAIL)
    if GRID_POINT in trial.user_attrs and not is_retry(trial):
        enqueue_point(study, trial.user_attrs[GRID_POINT])


def run_trial(study: Any, trial: Any, spec: SweepSpec, options: SweepOptions, report: Callable) -> None:
    """Run one trial as a run directory and tell the study how it ended."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from fmnist.rundir.driver import train_run
    from fmnist.training.fit import TrainingInterrupted

    trial.set_user_attr(WORKER, this_worker())  # first: a worker of this machine can tell at once if we die
    trial.set_user_attr(NOT_COUNTED, STOPPED)  # until the trial ends on its own
    if spec.method != "grid":
        # seeded by the trial number, not by the worker: workers and machines never draw the same values,
        # and a trial's values do not depend on which worker ran it (TPE still reads the whole history)
        study.sampler = make_sampler(spec, options.seed * 1_000_003 + trial.number)
    try:
        params = {p.name: _suggest(trial, p) for p in spec.params}
    except ValueError as err:  # e.g. a study whose stored choices this sweep file no longer matches
        _end(study, trial, TrialState.FAIL, reason=f"{type(err).__name__}: {err}")
        report(TrialEvent(trial.number, "failed", reason=f"{type(err).__name__}: {err}"))
        return
    searched = {p.name: params[p.name] for p in spec.searched}
    run_dir = options.out / "runs" / run_name(trial.number, searched)
    trial.set_user_attr("run_dir", str(run_dir))
    pruner = Pruner(trial, spec.metric)
    outcome: tuple[str, Any, str | None] = ("failed", None, None)
    with Heartbeat(study, trial, heartbeat_interval(options.grace)):
        try:
            config = config_from_mapping({**params, "wandb": options.wandb}, options.base)
            start = prepare_run_dir(trial, run_dir, config, options.out)
            shown = {k: v for k, v in searched.items() if takes_effect(k, config)}  # not momentum for adam...
            report(TrialEvent(trial.number, "running", run_dir=str(run_dir), params=shown, note=start.note or None))
            if start.record:
                trial.set_user_attr("continues", start.record)
            links = {"sweep": sweep_link(options.out, run_dir)}
            train_run(config, run_dir, [pruner], resume=start.resume, links=links)
            if pruner.reason is not None:
                outcome = ("pruned", None, pruner.reason)
            elif math.isfinite(value := _final_metric(run_dir, spec)):
                outcome = ("complete", value, None)
            else:
                outcome = ("failed", None, f"{spec.metric} is {value}")
        except (KeyboardInterrupt, TrainingInterrupted):
            _interrupted(study, trial, run_dir, searched, report)
            raise
        except Exception as err:  # a failure of this configuration (divergence, bad value, out of memory...)
            outcome = ("failed", None, f"{type(err).__name__}: {err}")
    state, value, reason = outcome
    states = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}
    try:
        _end(study, trial, states[state], value, reason)
    except (UpdateFinishedTrialError, ValueError):  # our heartbeat stopped too long: another worker retried it
        why = "its heartbeat stopped for longer than the grace period, so another worker retried it"
        report(TrialEvent(trial.number, "taken over", None, str(run_dir), why, searched))
        return
    report(TrialEvent(trial.number, state, value, str(run_dir), reason, searched))


def _end(study: Any, trial: Any, state: Any, value: float | None = None, reason: str | None = None) -> None:
    """Tell the study that a trial ended on its own (so it counts), with its reason if it did not complete."""
    if reason is not None:
        trial.set_user_attr("reason", reason)
    trial.set_user_attr(NOT_COUNTED, "")
    study.tell(trial, value, state=state)


def _interrupted(study: Any, trial: Any, run_dir: Path, searched: dict[str, Any], report: Callable) -> None:
    """Ctrl-C: the trial is marked interrupted (not counted) and retried on the next run, from its checkpoint."""
    from optuna.trial import TrialState

    trial.set_user_attr(NOT_COUNTED, INTERRUPTED)
    study.tell(trial, state=TrialState.FAIL)
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
    replace(study, frozen, INTERRUPTED, counts=False)
    report(TrialEvent(trial.number, "interrupted", None, str(run_dir), INTERRUPTED, searched))


class Pruner(Callback):
    """A trial's pruner as a run callback: reports the sweep metric after each epoch and, when Optuna's pruner
    says so, ends the run after that epoch (its checkpoint and report are kept) with the reason in ``reason``.
    A resumed run first reports the epochs it continues from, so the pruner judges it on its whole history."""

    def __init__(self, trial: Any, metric: str):
        self.trial = trial
        self.metric = metric
        self.reason: str | None = None

    def on_train_begin(self, trainer: Any) -> None:
        for metrics in trainer.history:
            self.trial.report(getattr(metrics, self.metric), metrics.epoch)
        if trainer.history and trainer.epoch < trainer.run.config.epochs:
            self._check(trainer, trainer.history[-1])

    def on_epoch_end(self, trainer: Any, metrics: Any) -> None:
        self.trial.report(getattr(metrics, self.metric), metrics.epoch)
        self._check(trainer, metrics)

    def _check(self, trainer: Any, metrics: Any) -> None:
        if self.trial.should_prune():
            value = getattr(metrics, self.metric)
            self.reason = f"pruned after epoch {metrics.epoch} ({self.metric} {value:.4f})"
            trainer.stop_training, trainer.stop_reason = True, self.reason


def _final_metric(run_dir: Path, spec: SweepSpec) -> float:
    """A trial's value: its last epoch's metric, or its best epoch's for a best-epoch metric (``best_val_accuracy``)."""
    from fmnist.files import read_jsonl
    from fmnist.rundir.layout import FILES

    values = [float(m[spec.metric]) for m in read_jsonl(run_dir / FILES["metrics"])]
    if not spec.best or not all(math.isfinite(v) for v in values):
        return values[-1]
    return max(values) if spec.goal == "maximize" else min(values)


# --- many workers ---------------------------------------------------------------------------------------------------


def _worker_main(spec: SweepSpec, options: SweepOptions, events: Any, threads: int) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if options.setup is not None:
        options.setup()
    with contextlib.suppress(KeyboardInterrupt), thread_budget(threads):  # the trial is already marked interrupted
        work(spec, options, events.put if events is not None else None)


def run_sweep(spec: SweepSpec, options: SweepOptions, on_event: Callable[[TrialEvent], None] | None = None) -> Any:
    """Run ``options.workers`` workers (this process and separate processes) on one study; returns the study.

    Each worker gets ``per_worker(workers)`` threads (``fmnist.backend.threads``); the other workers' events reach
    ``on_event`` too. When they are done, this process recovers what a worker that died left behind before
    returning.
    """
    options.out.mkdir(parents=True, exist_ok=True)
    write_sweep_info(spec, options)
    study = open_study(spec, options)  # create it (and enqueue a grid) once, before the workers race
    threads = per_worker(options.workers)
    context = multiprocessing.get_context("spawn")
    events = context.Queue() if on_event is not None and options.workers > 1 else None
    others = [
        context.Process(target=_worker_main, args=(spec, options, events, threads), daemon=False)
        for _ in range(options.workers - 1)
    ]
    with thread_budget(threads):  # the workers' libraries read it when they load
        for process in others:
            process.start()
    relay = threading.Thread(target=_relay, args=(events, on_event), daemon=True) if events is not None else None
    if relay is not None:
        relay.start()
    try:
        with thread_budget(threads):
            work(spec, options, on_event)
    finally:
        for process in others:
            process.join()
        if relay is not None:
            events.put(None)
            relay.join(timeout=10)
    if any(process.exitcode not in (0, None) for process in others):
        with thread_budget(per_worker(1)):
            work(spec, options, on_event)  # a worker died: its trial is retried here
    return study


def _relay(events: Any, on_event: Callable[[TrialEvent], None]) -> None:
    """Pass the other workers' events to ``on_event`` until the end marker (or a queue that a killed worker
    left unreadable: its events are lost, not the sweep)."""
    with contextlib.suppress(Exception):
        while (event := events.get()) is not None:
            on_event(event)


def write_sweep_info(spec: SweepSpec, options: SweepOptions) -> None:
    """``OUT/sweep.json``: where the study is and what it searches, so ``fmnist report OUT`` can reopen it
    (``storage`` null means the default ``sweep.db`` beside it, so a moved sweep directory still opens)."""
    from fmnist.files import write_json

    info = {
        "format": "fmnist-sweep",
        "version": 1,
        "study_name": options.study_name or spec.name,
        "storage": options.storage,
        "metric": spec.metric_record(),
        "method": spec.method,
        "sweep_file": options.sweep_file,
        "spec": spec.describe(),
    }
    write_json(options.out / SWEEP_FILES["info"], info)
