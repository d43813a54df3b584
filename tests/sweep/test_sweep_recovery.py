"""Sweeps that lose nothing: killed workers found and their trials resumed from the checkpoint (same machine at
once, another machine after the grace period), on SQLite, PostgreSQL and a journal file; one-point grids; list
values; many workers on one study; a read-only status; an exit status that tells the truth."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fmnist.cli import app
from fmnist.sweep import SweepOptions, parse_sweep, run_sweep
from fmnist.sweep.liveness import WORKER, this_worker
from fmnist.sweep.results import leaderboard
from fmnist.sweep.retry import ATTEMPTS, CONTINUES, MAX_RETRIES, NOT_COUNTED, RETRY_OF, STOPPED, Recovery
from fmnist.sweep.spec import decode, encode
from fmnist.sweep.storage import HEARTBEAT, Heartbeat
from fmnist.sweep.study import OVER_CAP, Pruner, open_study
from fmnist.training.config import TrainConfig

from test_sweep import tiny_fashion  # noqa: F401 - the tiny data set, here and in the sweeps' own processes

optuna = pytest.importorskip("optuna", reason="Optuna is not installed (pip install 'fmnist[sweep]')")
TrialState = optuna.trial.TrialState
runner = CliRunner()
PROCESS = Path(__file__).parent / "sweep_process.py"
POSTGRES = os.environ.get("FMNIST_TEST_POSTGRES_URL")
STORAGES = [
    "sqlite",
    "journal",
    pytest.param("postgresql", marks=pytest.mark.skipif(not POSTGRES, reason="no FMNIST_TEST_POSTGRES_URL")),
]
TINY = {"epochs": {"value": 2}, "batch_size": {"value": 64}, "hidden_size": {"value": 8}}
GRID = (
    "method: grid\nparameters:\n  epochs: {value: 4}\n  batch_size: {value: 64}\n  hidden_size: {values: [8, 16, 24]}\n"
)


def storage_for(kind: str, tmp_path: Path) -> str | None:
    """A storage of ``kind`` for one test (None: the default SQLite file under --out)."""
    if kind == "journal":
        return str(tmp_path / "study.log")
    if kind == "postgresql":
        return POSTGRES
    return None


def study_name(tmp_path: Path) -> str:
    return f"s{os.getpid()}_{tmp_path.name}"[:60]  # unique in a shared PostgreSQL database


def storage_url(storage: str | None, out: Path) -> str:
    return storage or f"sqlite:///{out / 'sweep.db'}"


def load(storage: str | None, out: Path, name: str):
    from fmnist.sweep.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(storage_url(storage, out), read_only=True))


def fmnist_process(args: list[str], timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """``fmnist ARGS`` in a new process on the tiny data (``tests/sweep_process.py``), with its faults in ``env``."""
    environment = {**os.environ, "COLUMNS": "200", **env}
    command = [sys.executable, str(PROCESS), *args]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout)


def random_sweep(epochs: int) -> str:
    return (
        f"method: random\nparameters:\n  epochs: {{value: {epochs}}}\n  batch_size: {{value: 64}}\n"
        "  hidden_size: {value: 8}\n  learning_rate: {min: 1e-3, max: 1e-2, distribution: log_uniform_values}\n"
    )


def sweep_command(tmp_path: Path, text: str, out: Path, storage: str | None, *extra: str) -> list[str]:
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(text)
    args = ["sweep", str(sweep_file), "--out", str(out), "--study", study_name(tmp_path), *extra]
    return args + (["--storage", storage] if storage else [])


def epochs_trained(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def options(tmp_path: Path, trials: int, **kwargs) -> SweepOptions:
    kwargs.setdefault("study_name", study_name(tmp_path))
    return SweepOptions(out=tmp_path / "sweep", trials=trials, base=TrainConfig(), **kwargs)


def states(study) -> list[str]:
    return [t.state.name for t in study.get_trials()]


# --- a worker killed in the middle of a trial -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", STORAGES)
def test_a_killed_worker_is_retried_from_its_checkpoint_and_every_grid_point_runs_once(tmp_path, kind):
    storage, out, log = storage_for(kind, tmp_path), tmp_path / "out", tmp_path / "epochs.log"
    command = sweep_command(tmp_path, GRID, out, storage)
    killed = fmnist_process(command, FMNIST_TEST_KILL="1:2", FMNIST_TEST_EPOCH_LOG=str(log))
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    study = load(storage, out, study_name(tmp_path))
    assert states(study) == ["COMPLETE", "RUNNING", "WAITING"]  # trial 1 died in its third epoch

    started = time.perf_counter()
    rerun = fmnist_process(command, FMNIST_TEST_EPOCH_LOG=str(log))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"trial 1 retried as trial 3 (pid {killed_pid(log)} on" in rerun.stdout
    assert "(resuming trial 1 after epoch 2)" in rerun.stdout
    print(f"{kind}: the rerun ended after {time.perf_counter() - started:.1f} s")

    study = load(storage, out, study_name(tmp_path))
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert sorted(t.params["hidden_size"] for t in done) == [8, 16, 24]  # every point exactly once
    assert not [t for t in study.get_trials() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    dead = study.trials[1]
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs[NOT_COUNTED] == STOPPED
    retry = next(t for t in done if t.user_attrs.get(RETRY_OF) == 1)
    assert retry.params == dead.params
    run_dir = Path(retry.user_attrs["run_dir"])
    continues = json.loads((run_dir / CONTINUES).read_text())
    assert (continues["continues_trial"], continues["resumed_at_epoch"]) == (1, 2)
    # it trained only the remaining epochs: 3 and 4, in the rerun's process
    trained = [(e["epoch"], e["pid"]) for e in epochs_trained(log) if e["trial"] == retry.number]
    assert [epoch for epoch, _ in trained] == [3, 4]
    assert {pid for _, pid in trained} != {killed_pid(log)}
    # its first two epochs are the killed trial's, to the timing: copied, not retrained
    before = (Path(dead.user_attrs["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    after = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(after) == 4
    assert after[:2] == before[:2]
    assert json.loads((run_dir / "summary.json").read_text())["epochs_run"] == 4
    with open(out / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["state"] for r in rows) == ["complete"] * 3  # no zombie "running" row
    assert sorted(int(r["trial"]) for r in rows) == [0, 2, 3]


def killed_pid(log: Path) -> int:
    return next(e["pid"] for e in epochs_trained(log) if e["trial"] == 1)


@pytest.mark.slow
def test_a_killed_random_trial_is_resumed_and_the_sweep_still_runs_n_trials(tmp_path):
    out, log = tmp_path / "out", tmp_path / "epochs.log"
    command = sweep_command(tmp_path, random_sweep(epochs=3), out, None, "--trials", "3")
    killed = fmnist_process(command, FMNIST_TEST_KILL="1:1", FMNIST_TEST_EPOCH_LOG=str(log))
    assert killed.returncode == -signal.SIGKILL
    rerun = fmnist_process(command, FMNIST_TEST_EPOCH_LOG=str(log))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    with open(out / "leaderboard.csv") as handle:
        assert [r["state"] for r in csv.DictReader(handle)] == ["complete"] * 3
    study = load(None, out, study_name(tmp_path))
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(done) == 3  # the killed trial did not count; its retry did
    assert len({t.params["learning_rate"] for t in done}) == 3
    retry = next(t for t in done if RETRY_OF in t.user_attrs)
    assert retry.params == study.trials[1].params
    assert [e["epoch"] for e in epochs_trained(log) if e["trial"] == retry.number] == [2, 3]
    assert not [t for t in study.get_trials() if t.state == TrialState.RUNNING]


@pytest.mark.slow
@pytest.mark.parametrize("kind", STORAGES)
def test_a_dead_machine_is_retried_by_another_after_the_grace_period(tmp_path, kind):
    storage, out, log = storage_for(kind, tmp_path), tmp_path / "out", tmp_path / "epochs.log"
    command = sweep_command(tmp_path, GRID, out, storage, "--grace-period", "2")
    killed = fmnist_process(command, FMNIST_TEST_KILL="1:2", FMNIST_TEST_HOST="machine-b")
    assert killed.returncode == -signal.SIGKILL
    study = load(storage, out, study_name(tmp_path))
    assert study.trials[1].user_attrs[WORKER]["host"] == "machine-b"
    status = fmnist_process([*command, "--status"])
    assert "running 1: pid" in status.stdout
    assert "on machine-b (another machine" in status.stdout
    time.sleep(2.5)  # more than the grace period since machine-b's last heartbeat
    rerun = fmnist_process(command, FMNIST_TEST_EPOCH_LOG=str(log))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "trial 1 retried as trial 3 (no heartbeat from pid" in rerun.stdout
    assert "on machine-b for more than 2 s)" in rerun.stdout
    assert "(resuming trial 1 after epoch 2)" in rerun.stdout  # --out is shared here
    study = load(storage, out, study_name(tmp_path))
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert sorted(t.params["hidden_size"] for t in done) == [8, 16, 24]
    assert [e["epoch"] for e in epochs_trained(log) if e["trial"] == 3] == [3, 4]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test asks for trials as a dead worker did
@pytest.mark.parametrize("kind", STORAGES)
def test_a_stale_trial_of_another_machine_without_its_run_directory_starts_over(tmp_path, kind):
    storage = storage_for(kind, tmp_path)
    spec = parse_sweep({"method": "grid", "parameters": {**TINY, "hidden_size": {"values": [8, 16]}}})
    opts = options(tmp_path, trials=2, storage=storage, grace=1)
    study = open_study(spec, opts)
    trial = study.ask()  # machine b takes point 0, then dies with it
    trial.set_user_attr(WORKER, {"host": "machine-b", "pid": 4321, "boot": "b", "pidns": "b"})
    trial.set_user_attr(NOT_COUNTED, STOPPED)
    trial.suggest_categorical("hidden_size", [8, 16])
    trial.set_user_attr("run_dir", "/machine-b/runs/t000_sz-8")  # not on this machine
    if kind == "journal":
        trial.set_user_attr(HEARTBEAT, time.time() - 60)  # a heartbeat a minute old
    else:
        Heartbeat(study, trial, 1).beat()  # Optuna's heartbeat is timed by the database server: wait
        time.sleep(2.2)
    started = time.perf_counter()
    events = []
    run_sweep(spec, opts, events.append)
    first_start = next(e for e in events if e.state == "running" and e.number == 2)
    print(f"{kind}: the retry started {time.perf_counter() - started:.2f} s after the sweep began")
    retried = next(e for e in events if e.state == "retried")
    assert (retried.number, retried.note) == (0, "as trial 2")
    assert "no heartbeat from pid 4321 on machine-b" in retried.reason
    assert first_start.note.startswith("starting over: the run directory of trial 0 (pid 4321 on machine-b)")
    study = load(storage, opts.out, opts.study_name)
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert sorted(t.params["hidden_size"] for t in done) == [8, 16]
    continues = json.loads((Path(done[-1].user_attrs["run_dir"]) / CONTINUES).read_text())
    assert continues["resumed_at_epoch"] is None
    assert "share --out to resume" in continues["started_over"]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_point_whose_worker_dies_every_time_is_given_up_with_its_reason(tmp_path):
    spec = parse_sweep({"method": "grid", "parameters": {**TINY, "hidden_size": {"values": [8]}}})
    opts = options(tmp_path, trials=2)
    study = open_study(spec, opts)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_worker = {**this_worker(), "pid": int(gone.stdout), "start": None}  # this machine, a process now gone
    recovery = Recovery(grace=60)
    for _ in range(MAX_RETRIES + 1):  # the first attempt and three retries die with their worker
        trial = study.ask()
        trial.set_user_attr(WORKER, dead_worker)
        trial.set_user_attr(NOT_COUNTED, STOPPED)
        assert trial.suggest_categorical("hidden_size", [8]) == 8
        recovery.run(study)
    assert [r.given_up for r in recovery.found] == [False] * MAX_RETRIES + [True]
    assert [r.retry for r in recovery.found] == [1, 2, 3, None]
    study = run_sweep(spec, opts)  # nothing left to run: the point is given up, and the sweep ends
    assert states(study) == ["FAIL"] * 5
    given_up = study.trials[-1]
    assert given_up.params == {"hidden_size": 8}
    assert given_up.user_attrs["reason"].startswith("given up after 4 attempts whose worker died (last: pid")
    assert [a["trial"] for a in given_up.user_attrs[ATTEMPTS]] == [0, 1, 2, 3]
    rows = leaderboard(study, spec)
    assert [(r["trial"], r["state"]) for r in rows] == [(4, "failed")]  # not the four attempts
    assert "given up after 4 attempts" in rows[0]["reason"]


def test_ctrl_c_marks_the_trial_and_the_rerun_resumes_it(tmp_path, monkeypatch):
    spec = parse_sweep(
        {"method": "grid", "parameters": {**TINY, "epochs": {"value": 3}, "hidden_size": {"values": [8, 16]}}}
    )
    opts = options(tmp_path, trials=2)
    original = Pruner.on_epoch_end

    def interrupt(self, trainer, metrics):
        original(self, trainer, metrics)
        if self.trial.number == 1 and metrics.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Pruner, "on_epoch_end", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, opts)
    monkeypatch.setattr(Pruner, "on_epoch_end", original)
    study = load(None, opts.out, opts.study_name)
    assert states(study) == ["COMPLETE", "FAIL", "WAITING"]
    assert study.trials[1].user_attrs[NOT_COUNTED] == "interrupted"
    events = []
    run_sweep(spec, opts, events.append)
    assert next(e.note for e in events if e.state == "running") == "resuming trial 1 after epoch 2"
    study = load(None, opts.out, opts.study_name)
    assert sorted(t.params["hidden_size"] for t in study.get_trials() if t.state == TrialState.COMPLETE) == [8, 16]
    assert study.trials[2].user_attrs[ATTEMPTS] == [{"trial": 1, "why": "interrupted", "counts": False}]


def test_a_resumed_trial_reports_its_earlier_epochs_to_the_pruner():
    from types import SimpleNamespace

    from fmnist.training.fit import EpochMetrics

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    history = [EpochMetrics(e, 1.0, 0.5, 1.0, 0.5 + e / 10, 1.0, 100.0) for e in (1, 2)]
    trainer = SimpleNamespace(history=history, epoch=2, run=SimpleNamespace(config=TrainConfig(epochs=4)))
    trainer.stop_training = False
    Pruner(trial, "val_accuracy").on_train_begin(trainer)
    assert study.trials[0].intermediate_values == {1: 0.6, 2: 0.7}
    assert trainer.stop_training is False


# --- grids, list values -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "parameters",
    [
        {**TINY},  # no searched parameter: a grid of one point
        {**TINY, "hidden_size": {"values": [8]}},
        {**TINY, "hidden_size": {"values": [8, 8, 8.0]}},  # repeated values: one point
    ],
)
def test_one_point_grids_run_once_and_end(tmp_path, parameters):
    spec = parse_sweep({"method": "grid", "parameters": parameters})
    assert len(spec.grid()) == 1
    study = run_sweep(spec, options(tmp_path, trials=10))
    assert states(study) == ["COMPLETE"]
    again = run_sweep(spec, options(tmp_path, trials=10))  # nothing left to do
    assert states(again) == ["COMPLETE"]


def test_list_values_are_stored_as_text_and_decoded_for_the_run():
    assert encode((32, 16)) == "32-16"
    assert encode(3) == 3
    assert decode("hidden_sizes", "32-16") == (32, 16)
    assert decode("optimizer", "adam") == "adam"
    spec = parse_sweep({"parameters": {"hidden_sizes": {"values": [[32, 16], "24,12", [32, 16]]}}})
    assert spec.params[0].values == ((32, 16), (24, 12))


@pytest.mark.slow
def test_a_list_valued_sweep_runs_twice_on_one_study_and_with_a_second_worker(tmp_path):
    text = (
        "method: random\nparameters:\n  epochs: {value: 1}\n  batch_size: {value: 64}\n"
        "  hidden_sizes: {values: [[16, 8], [24, 12], [8]]}\n"
        "  learning_rate: {min: 1e-3, max: 1e-2, distribution: log_uniform_values}\n"
    )
    out = tmp_path / "out"
    first = runner.invoke(app, sweep_command(tmp_path, text, out, None, "--trials", "2"), env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    again = fmnist_process(sweep_command(tmp_path, text, out, None, "--trials", "5", "--workers", "2"))
    assert again.returncode == 0, again.stdout + again.stderr
    study = load(None, out, study_name(tmp_path))
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(done) == 5
    assert {t.params["hidden_sizes"] for t in done} <= {"16-8", "24-12", "8"}
    for t in done:
        config = json.loads((Path(t.user_attrs["run_dir"]) / "config.json").read_text())
        assert config["hidden_sizes"] == list(decode("hidden_sizes", t.params["hidden_sizes"]))
    for plot in ("parallel_coordinates.png", "param_importances.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"
    assert "hs=" in again.stdout  # the list values in the trial lines


# --- many workers -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_eight_workers_share_one_sqlite_study(tmp_path):
    out, log = tmp_path / "out", tmp_path / "epochs.log"
    started = time.perf_counter()
    result = fmnist_process(
        sweep_command(tmp_path, random_sweep(epochs=1), out, None, "--trials", "16", "--workers", "8"),
        FMNIST_TEST_EPOCH_LOG=str(log),
    )
    print(f"8 workers, 16 trials: {time.perf_counter() - started:.1f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "locked" not in result.stdout + result.stderr
    study = load(None, out, study_name(tmp_path))
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(done) == 16
    # Racing workers may each ask for the last place: the losers' trials are closed at once, never run or counted.
    extra = [t for t in study.get_trials() if t.state != TrialState.COMPLETE]
    assert all(t.state == TrialState.FAIL and t.user_attrs[NOT_COUNTED] == OVER_CAP for t in extra), extra
    assert all("run_dir" not in t.user_attrs for t in extra)
    assert len(extra) < 8
    assert len({t.params["learning_rate"] for t in done}) == 16
    assert all((Path(t.user_attrs["run_dir"]) / "summary.json").is_file() for t in done)
    trained = epochs_trained(log)
    assert len({e["pid"] for e in trained}) == 8  # every worker took trials
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert {e["blas_threads"] for e in trained} == {max(1, cores // 8)}
    assert result.stdout.count(" complete val_accuracy") == 16  # every worker's trials are shown


# --- what a user sees -------------------------------------------------------------------------------------------------


def test_every_trial_failing_exits_non_zero_with_the_commonest_reason(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        "method: grid\nparameters:\n  epochs: {value: 1}\n  optimizer: {value: sgd}\n  lr: {values: [1e9, 1e10]}\n"
    )
    result = runner.invoke(app, ["sweep", str(sweep_file), "--out", str(tmp_path / "out")], env={"COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: all 2 trials failed; the commonest reason: DivergenceError: training diverged")
    assert last.endswith("(2 of 2)")

    sweep_file.write_text(
        "method: grid\nparameters:\n  epochs: {value: 1}\n  optimizer: {value: sgd}\n  lr: {values: [1e9, 0.01]}\n"
    )
    result = runner.invoke(app, ["sweep", str(sweep_file), "--out", str(tmp_path / "two")], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "1 of 2 trials failed (reasons in leaderboard.csv)"


def test_status_shows_the_study_and_changes_nothing(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("method: grid\nparameters:\n  epochs: {value: 1}\n  hidden_size: {values: [8, 16]}\n")
    out = tmp_path / "out"
    missing = runner.invoke(app, ["sweep", str(sweep_file), "--out", str(out), "--status"])
    assert missing.exit_code == 2
    assert len(missing.output.strip().splitlines()) == 1
    assert "nothing has run" in missing.output
    assert not out.exists()
    assert runner.invoke(app, ["sweep", str(sweep_file), "--out", str(out)]).exit_code == 0
    database = out / "sweep.db"
    before = (database.stat().st_mtime_ns, database.read_bytes())
    result = runner.invoke(app, ["sweep", str(sweep_file), "--out", str(out), "--status"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "trials: 2 complete" in result.output
    assert "best so far: trial" in result.output
    assert (database.stat().st_mtime_ns, database.read_bytes()) == before
    assert all(len(line) <= 80 for line in result.output.splitlines())


def test_a_changed_sweep_file_is_still_one_line_with_heartbeats(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("method: grid\nparameters:\n  epochs: {value: 1}\n  hidden_size: {values: [8]}\n")
    out = tmp_path / "out"
    assert runner.invoke(app, ["sweep", str(sweep_file), "--out", str(out)]).exit_code == 0
    sweep_file.write_text("method: grid\nparameters:\n  epochs: {value: 1}\n  hidden_size: {values: [16]}\n")
    result = runner.invoke(app, ["sweep", str(sweep_file), "--out", str(out)], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "parameters.hidden_size" in result.output
    assert "--study NEW_NAME" in result.output
    status = runner.invoke(app, ["sweep", str(sweep_file), "--out", str(out), "--status"], env={"COLUMNS": "300"})
    assert status.exit_code == 0
    assert "the sweep file changed" in status.output


def test_bad_grace_period_is_one_line_exit_2(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("parameters:\n  epochs: {value: 1}\n")
    result = runner.invoke(app, ["sweep", str(sweep_file), "--grace-period", "0"])
    assert result.exit_code == 2
    assert "--grace-period must be > 0" in result.output
