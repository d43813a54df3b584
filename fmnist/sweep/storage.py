"""Where a study lives, and the heartbeats that tell the workers of other machines that a trial still runs.

- **SQLite** (the default, ``OUT/sweep.db``): every transaction begins with ``BEGIN IMMEDIATE`` and waits up to
  ``SQLITE_TIMEOUT`` seconds for the lock. SQLite's default deferred transactions let two workers read the same
  ``WAITING`` trial and both take it, and let a reader that then writes fail at once with "database is locked"
  when another worker wrote in between; immediate transactions serialise the workers' (millisecond) storage calls
  instead.
- **PostgreSQL** (any SQLAlchemy URL): as Optuna makes it.
- **A journal file** (a path): Optuna's ``JournalStorage``, for a shared file system.

Heartbeats: a running trial records a sign of life every ``heartbeat_interval(grace)`` seconds. On the RDB
storages this is Optuna's own heartbeat (``RDBStorage(heartbeat_interval=, grace_period=,
heartbeat_stale_trial_callback=)``, timed by the database server's clock), and ``optuna.storages.fail_stale_trials``
fails the trials whose heartbeat is older than the grace period. Optuna has no heartbeat for the journal, so the
equivalent is a user attribute of the trial (``HEARTBEAT``, seconds since the epoch by the running machine's
clock): it lives in the journal itself, so wherever the journal works its heartbeats do too, with no extra files to
share or clean, for one short journal line per running trial and interval.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HEARTBEAT = "fmnist_heartbeat"  # user attribute (journal storage): the running trial's last sign of life
DEFAULT_GRACE = 120  # seconds without a heartbeat before a trial of another machine is taken as dead
SQLITE_TIMEOUT = 600  # seconds a worker waits for SQLite's lock before giving up


class StorageError(ValueError):
    """A storage that cannot be opened as asked (e.g. a study that does not exist, for a read-only view)."""


def heartbeat_interval(grace: int) -> int:
    """Seconds between heartbeats: several fit in the grace period, so a busy moment is not a death."""
    return max(1, grace // 6)


def is_journal(url: str) -> bool:
    return "://" not in url


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Without Optuna's warnings about the (experimental) heartbeat and its use outside ``Study.optimize``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def open_storage(
    url: str,
    grace: int = DEFAULT_GRACE,
    on_stale: Callable[[Any, Any], None] | None = None,
    read_only: bool = False,
) -> Any:
    """An Optuna storage for a URL (``sqlite:///``, ``postgresql://``...) or a journal file path.

    Args:
        grace: seconds without a heartbeat after which a running trial is failed by ``fail_stale_trials``.
        on_stale: Optuna's ``heartbeat_stale_trial_callback`` (RDB storages): called with each trial so failed.
        read_only: open an existing storage without creating anything, and without heartbeats.

    Raises:
        StorageError: ``read_only`` and nothing is stored there.
    """
    import optuna

    if is_journal(url):
        from optuna.storages.journal import JournalFileBackend

        if read_only and not Path(url).is_file():
            raise StorageError(f"no journal file {url}")
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(url)))
    sqlite = url.startswith("sqlite:///")
    if sqlite:
        path = Path(url.removeprefix("sqlite:///"))
        if read_only and not path.is_file():
            raise StorageError(f"no study database {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"engine_kwargs": {"connect_args": {"timeout": SQLITE_TIMEOUT}}} if sqlite else {}
    if read_only:
        kwargs["skip_table_creation"] = True
    else:
        kwargs.update(heartbeat_interval=heartbeat_interval(grace), grace_period=grace)
        kwargs["heartbeat_stale_trial_callback"] = on_stale
    for attempt in range(5):
        try:
            with quiet():
                storage = optuna.storages.RDBStorage(url, **kwargs)
            break
        except Exception:  # two machines creating the schema of a new database at once: one loses, then loads
            if attempt == 4 or read_only:
                raise
            time.sleep(0.5 + attempt)
    if sqlite and not read_only:
        _immediate_transactions(storage.engine)
    return storage


def _immediate_transactions(engine: Any) -> None:
    """Make every transaction of a SQLite engine ``BEGIN IMMEDIATE`` (SQLAlchemy's recipe for taking over
    SQLite's transaction control), and drop the connections opened before."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # the sqlite3 module no longer emits its own (deferred) BEGIN

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()


def uses_optuna_heartbeat(storage: Any) -> bool:
    """Whether the storage (or the storage a study wraps it in) is an RDB storage with Optuna's heartbeat."""
    return getattr(_backend(storage), "heartbeat_interval", None) is not None


def _backend(storage: Any) -> Any:
    return getattr(storage, "_backend", storage)  # optuna.create_study wraps an RDBStorage in a _CachedStorage


class Heartbeat:
    """While a trial runs: a thread that records its heartbeat every ``interval`` seconds (Optuna's on an RDB
    storage, ``HEARTBEAT`` on a journal). ``lost`` is set when the trial was finished by someone else meanwhile
    (its heartbeat stopped for longer than the grace period, so another worker took it over)."""

    def __init__(self, study: Any, trial: Any, interval: int):
        self.study, self.trial, self.interval = study, trial, interval
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial.number}", daemon=True)

    def beat(self) -> None:
        storage = _backend(self.study._storage)
        if uses_optuna_heartbeat(storage):
            storage.record_heartbeat(self.trial._trial_id)
        else:
            self.trial.set_user_attr(HEARTBEAT, time.time())

    def _run(self) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except UpdateFinishedTrialError:
                self.lost.set()
                return
            except Exception:  # a storage hiccup: the next beat tries again; the grace period spans several
                continue

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def fail_stale_trials(study: Any, grace: int, on_stale: Callable[[Any, Any], None]) -> None:
    """Fail the running trials whose heartbeat is older than ``grace`` seconds and pass each to ``on_stale``:
    Optuna's ``fail_stale_trials`` on an RDB storage (its callback is ``on_stale``), the same for a journal."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    if uses_optuna_heartbeat(study._storage):
        with quiet():
            optuna.storages.fail_stale_trials(study)
        return
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial.user_attrs.get(HEARTBEAT)
        if beat is None or now - float(beat) <= grace:
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):  # another worker failed it first
            continue
        on_stale(study, trial)
