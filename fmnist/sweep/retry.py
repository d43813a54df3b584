"""Trials whose worker died: found, failed, and retried from their last checkpoint.

Before each ``ask`` a worker looks for trials that will never end on their own: ``RUNNING`` trials of this
machine whose process is gone (``fmnist.sweep.liveness``), and ``RUNNING`` trials of any machine whose heartbeat
is older than the grace period (``fmnist.sweep.storage``). Each is failed (an atomic state change: of two workers
that find the same trial, one fails it and the other is refused) and, by the one that failed it, replaced:

- by a **retry**, a ``WAITING`` trial with the same parameters that continues the same point: it takes the place
  of the first attempt in the ``--trials`` count (``SLOT``), knows the attempts before it (``ATTEMPTS``) and where
  the last one's run directory is (``RESUME_FROM``); the worker that takes it copies that directory into its own
  and resumes from ``checkpoint.npz`` (``prepare_run_dir``);
- or, once a point's workers died ``MAX_RETRIES + 1`` times, by a ``FAIL`` trial that records why it was given up.

A trial interrupted with Ctrl-C is retried the same way, without counting towards the limit.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fmnist.rundir.layout import FILES
from fmnist.sweep import liveness
from fmnist.sweep.liveness import WORKER

NOT_COUNTED = "fmnist_not_counted"  # user attribute: why a finished trial does not count (empty: it counts)
STOPPED = "its worker stopped before the trial ended"  # NOT_COUNTED of a trial while it runs
RETRY_OF = "fmnist_retry_of"  # user attributes of a retry: the trial it continues,
SLOT = "fmnist_slot"  # the number of the point's first attempt (its place in the --trials count),
ATTEMPTS = "fmnist_attempts"  # the attempts before it: [{"trial": n, "why": ..., "counts": bool}],
RESUME_FROM = "fmnist_resume_from"  # and the run directory (and worker) of the attempt it continues
CONTINUES = "continues.json"  # in a retry's run directory: which trial it continues, and from which epoch
MAX_RETRIES = 3


def slot(trial: Any) -> int:
    """A trial's place in the ``--trials`` count: the number of its point's first attempt."""
    return int(trial.user_attrs.get(SLOT, trial.number))


def is_retry(trial: Any) -> bool:
    return RETRY_OF in trial.user_attrs


@dataclass
class Recovered:
    """What happened to a trial found dead: retried as ``retry`` (``None``: given up) and why it was found."""

    trial: int
    why: str
    retry: int | None
    given_up: bool = False


def replace(study: Any, trial: Any, why: str, counts: bool = True) -> Recovered:
    """Enqueue the retry of a failed ``trial`` (a frozen trial), or record that its point is given up.

    Args:
        why: how the attempt ended, for the record (``pid 1234 on vm is gone``).
        counts: whether this attempt counts towards ``MAX_RETRIES`` (an interruption does not).
    """
    import optuna
    from optuna.trial import TrialState

    attempts = [*trial.user_attrs.get(ATTEMPTS, []), {"trial": trial.number, "why": why, "counts": counts}]
    params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    record = {
        RETRY_OF: trial.number,
        SLOT: slot(trial),
        ATTEMPTS: attempts,
        RESUME_FROM: {
            "trial": trial.number,
            "run_dir": trial.user_attrs.get("run_dir"),
            "worker": trial.user_attrs.get(WORKER),
        },
    }
    deaths = sum(1 for a in attempts if a["counts"])
    if deaths > MAX_RETRIES:
        reason = f"given up after {deaths} attempts whose worker died (last: {why})"
        record.update({"reason": reason, NOT_COUNTED: "", "run_dir": trial.user_attrs.get("run_dir", "")})
        given_up = optuna.trial.create_trial(
            state=TrialState.FAIL, params=trial.params, distributions=trial.distributions, user_attrs=record
        )
        study.add_trial(given_up)
        return Recovered(trial.number, why, None, given_up=True)
    study.enqueue_trial(params, user_attrs=record)
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    number = next((t.number for t in reversed(waiting) if t.user_attrs.get(RETRY_OF) == trial.number), None)
    return Recovered(trial.number, why, number)


@dataclass
class Recovery:
    """A worker's search for dead trials (``run`` before each ``ask``); ``found`` lists what it recovered, and
    ``stale`` is the callback Optuna's ``fail_stale_trials`` calls with each trial it failed."""

    grace: int
    on_found: Callable[[Recovered], None] | None = None
    found: list[Recovered] = field(default_factory=list)

    def _note(self, recovered: Recovered) -> None:
        self.found.append(recovered)
        if self.on_found is not None:
            self.on_found(recovered)

    def stale(self, study: Any, trial: Any) -> None:
        worker = trial.user_attrs.get(WORKER)
        why = f"no heartbeat from {liveness.describe(worker)} for more than {self.grace} s"
        self._note(replace(study, trial, why))

    def run(self, study: Any) -> None:
        """Fail and replace the dead trials: this machine's at once, any machine's after the grace period."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        from fmnist.sweep.storage import fail_stale_trials

        old = datetime.now() - timedelta(seconds=self.grace)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = trial.user_attrs.get(WORKER)
            if liveness.same_machine(worker) and not liveness.process_alive(worker):
                why = f"{liveness.describe(worker)} is gone"
            elif worker is None and trial.datetime_start is not None and trial.datetime_start < old:
                why = "no worker recorded (an earlier fmnist) and started before the grace period"
            else:
                continue
            try:
                study.tell(trial.number, state=TrialState.FAIL)
            except (UpdateFinishedTrialError, ValueError):  # another worker failed it first: its retry is theirs
                continue
            self._note(replace(study, trial, why))
        fail_stale_trials(study, self.grace, self.stale)


@dataclass
class Start:
    """How a trial's run starts: ``resume`` from the checkpoint in its run directory (a copy of the attempt it
    continues), or from epoch 0; ``note`` says which and why, for the terminal and ``continues.json``."""

    resume: bool = False
    epoch: int = 0
    note: str = ""
    record: dict[str, Any] = field(default_factory=dict)


def prepare_run_dir(trial: Any, run_dir: Path, config: Any, out: Path) -> Start:
    """For a retry, the start of its run: the run directory of the attempt it continues copied into ``run_dir``
    (atomically: a temporary copy renamed), with ``continues.json`` saying which trial it continues and from which
    epoch; or, where that directory cannot be had here (another machine without a shared ``--out``, no finished
    epoch, a damaged checkpoint, another configuration), a fresh start that says why. Not a retry: a fresh start.
    """
    from fmnist.files import ArchiveError, load_archive, write_json
    from fmnist.rundir.layout import read_config

    if not is_retry(trial):
        return Start()
    source = trial.user_attrs.get(RESUME_FROM) or {}
    number = source.get("trial", trial.user_attrs[RETRY_OF])
    record: dict[str, Any] = {"continues_trial": number, "from_run_dir": source.get("run_dir")}
    record["attempts"] = trial.user_attrs.get(ATTEMPTS, [])
    found = _find_run_dir(source.get("run_dir"), out)
    epoch, why = 0, None
    if found is None:
        where = liveness.describe(source.get("worker")) if source.get("worker") else "another worker"
        why = f"the run directory of trial {number} ({where}) is not here; share --out to resume"
    elif not (found / FILES["checkpoint"]).is_file():
        why = f"trial {number} had not finished an epoch"
    else:
        try:
            meta, _ = load_archive(found / FILES["checkpoint"], "checkpoint")
            epoch = int(meta.get("epoch", 0))
            before = {k: v for k, v in read_config(found).to_dict().items() if k not in _MAY_DIFFER}
            if before != {k: v for k, v in config.to_dict().items() if k not in _MAY_DIFFER}:
                why = f"trial {number} ran another configuration"
        except (ArchiveError, OSError, ValueError, KeyError, TypeError) as err:
            why = f"trial {number}'s checkpoint cannot be read ({err})"
    if why is not None:
        record.update(resumed_at_epoch=None, started_over=why)
        start_over(run_dir, record)
        return Start(False, 0, f"starting over: {why}", record)
    record.update(resumed_at_epoch=epoch, from_run_dir=str(found))
    staging = run_dir.with_name(f".{run_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    ignore = shutil.ignore_patterns(".*", "wandb", FILES["report"], FILES["summary"])  # W&B logs a new run
    shutil.copytree(found, staging, ignore=ignore, copy_function=_link_or_copy)
    write_json(staging / CONTINUES, record)
    shutil.rmtree(run_dir, ignore_errors=True)
    os.replace(staging, run_dir)
    return Start(True, epoch, f"resuming trial {number} after epoch {epoch}", record)


def _link_or_copy(source: str, target: str) -> None:
    """A hard link where the file system allows (instant, and safe: run files are only ever replaced whole, by
    atomic renames, never written in place), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


_MAY_DIFFER = ("device", "data_dir", "wandb")  # options a rerun may change without changing the run


def start_over(run_dir: Path, record: dict[str, Any]) -> None:
    """An empty ``run_dir`` whose ``continues.json`` says which trial it continues and why from the start."""
    from fmnist.files import write_json

    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONTINUES, record)


def _find_run_dir(recorded: str | None, out: Path) -> Path | None:
    """The attempt's run directory where it was recorded, else by its name under this sweep's ``out/runs`` (the
    same shared directory mounted elsewhere)."""
    if not recorded:
        return None
    for candidate in (Path(recorded), out / "runs" / Path(recorded).name):
        if (candidate / FILES["config"]).is_file():
            return candidate
    return None
