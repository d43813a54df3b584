"""W&B as people meet it: asked for on the command line or by a sweep file, installed but not logged in, offline.

Never a prompt or a traceback: where W&B would ask for a login, fmnist stops before any training with one line and
exit 2 (a sweep checks once, before its first trial). ``wandb_login_problem`` reads W&B's own settings the way the
installed ``wandb`` does, which the tests check against the real package where it is installed (with a fake home:
no network, and ``wandb.init`` reached only in offline mode)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fmnist.rundir.tracking import NOT_LOGGED_IN, wandb_login_problem
from fmnist.training import splits as splits_module

from course_cli import fmnist, stand_in_wandb

HAVE_WANDB = importlib.util.find_spec("wandb") is not None
KEY = "0123456789abcdef" * 2 + "01234567"  # 40 characters, the form of a W&B API key
NETRC = f"machine api.wandb.ai\n  login user\n  password {KEY}\n"

# scenario -> (environment, files under the home directory, whether a run starts without a login)
SCENARIOS = {
    "nothing": ({}, {}, False),
    "WANDB_API_KEY": ({"WANDB_API_KEY": KEY}, {}, True),
    "wandb login (netrc)": ({}, {".netrc": NETRC}, True),
    "NETRC elsewhere": ({"NETRC": "{home}/keys/netrc"}, {"keys/netrc": NETRC}, True),
    "netrc of another host": ({}, {".netrc": f"machine example.com login u password {KEY}\n"}, False),
    "own W&B server": (
        {"WANDB_BASE_URL": "https://wandb.example.org"},
        {".netrc": f"machine wandb.example.org login u password {KEY}\n"},
        True,
    ),
    "own server, key for the cloud": ({"WANDB_BASE_URL": "https://wandb.example.org"}, {".netrc": NETRC}, False),
    "WANDB_MODE=offline": ({"WANDB_MODE": "offline"}, {}, True),
    "WANDB_MODE=disabled": ({"WANDB_MODE": "disabled"}, {}, True),
    "wandb offline (settings)": ({}, {".config/wandb/settings": "[default]\nmode = offline\n"}, True),
    "workspace settings": ({}, {"work/wandb/settings": "[default]\nmode = offline\n"}, True),
    "WANDB_CONFIG_DIR": ({"WANDB_CONFIG_DIR": "{home}/cfg"}, {"cfg/settings": "[default]\nmode = disabled\n"}, True),
    "WANDB_MODE=online over settings": (
        {"WANDB_MODE": "online"},
        {".config/wandb/settings": "[default]\nmode = offline\n"},
        False,
    ),
}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A home directory of our own, no W&B variables, and the current directory ``home/work``."""
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    for name in [k for k in os.environ if k.startswith("WANDB_")] + ["NETRC"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(home / "work")
    return home


def arrange(home: Path, monkeypatch, scenario: str) -> tuple[dict[str, str], bool]:
    env, files, ready = SCENARIOS[scenario]
    for name, text in files.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(text)
    env = {k: v.format(home=home) for k, v in env.items()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env, ready


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_login_is_read_as_wandb_reads_it(home, monkeypatch, scenario):
    _, ready = arrange(home, monkeypatch, scenario)
    assert wandb_login_problem() == (None if ready else NOT_LOGGED_IN)


WANDB_DECIDES = textwrap.dedent(
    """
    import sys
    try:
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib.wbauth import authenticate
        from wandb.sdk.lib.wbauth.host_url import HostUrl
    except ImportError:
        print("unknown"); sys.exit()
    settings = wandb_setup.singleton().settings
    if settings._offline or settings._noop:
        print("ready"); sys.exit()
    auth = authenticate._use_system_auth(host=HostUrl(settings.base_url), source="test", update_session=False)
    print("ready" if auth else "login")
    """
)


@pytest.mark.skipif(not HAVE_WANDB, reason="wandb is not installed (pip install 'fmnist[wandb]')")
def test_the_same_as_the_installed_wandb_decides(home, tmp_path):
    """Each scenario in a fresh process (W&B keeps its settings for the process), against wandb's own reading."""
    running = {}
    for scenario, (env, files, ready) in SCENARIOS.items():
        scenario_home = tmp_path / scenario.replace(" ", "_").replace("/", "_")
        (scenario_home / "work").mkdir(parents=True)
        for name, text in files.items():
            (scenario_home / name).parent.mkdir(parents=True, exist_ok=True)
            (scenario_home / name).write_text(text)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
        environ.update({k: v.format(home=scenario_home) for k, v in env.items()}, HOME=str(scenario_home))
        command = [sys.executable, "-c", WANDB_DECIDES]
        running[scenario] = (
            subprocess.Popen(command, cwd=scenario_home / "work", env=environ, stdout=subprocess.PIPE, text=True),
            ready,
        )
    for scenario, (proc, ready) in running.items():
        said = proc.communicate(timeout=120)[0].strip().splitlines()[-1]
        if said == "unknown":
            pytest.skip("this wandb keeps its login elsewhere than 0.31 does")
        assert said == ("ready" if ready else "login"), scenario


@pytest.fixture(params=["real wandb", "stand-in wandb"])
def installed(request, monkeypatch):
    """W&B installed: the real package where there is one, and a stand-in module; ``wandb.init`` must not run."""
    if request.param == "real wandb":
        wandb = pytest.importorskip("wandb")
        monkeypatch.setattr(wandb, "init", lambda **k: pytest.fail("wandb.init was reached"))
        return wandb
    return stand_in_wandb(monkeypatch, init=lambda **k: pytest.fail("wandb.init was reached"))


@pytest.fixture
def no_data(monkeypatch):
    monkeypatch.setattr(splits_module, "load_dataset", lambda *a, **k: pytest.fail("data was loaded"))


@pytest.mark.usefixtures("home", "installed", "no_data")
@pytest.mark.parametrize("asked", [["-wp", "proj"], ["-w_p", "proj"], ["--wandb_entity", "team"], ["--wandb"]])
def test_not_logged_in_stops_before_any_training_with_one_line(monkeypatch, capsys, tmp_path, asked):
    out = tmp_path / "run"
    code, stdout, err = fmnist(monkeypatch, capsys, "train", *asked, "-e", "1", "--out", str(out))
    assert code == 2
    assert err == f"error: {NOT_LOGGED_IN} ({asked[0]} asks for W&B)\n"
    assert stdout == ""
    assert not out.exists()


@pytest.mark.usefixtures("home", "no_data")
def test_without_the_package_the_refusal_names_what_was_typed(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    code, _, err = fmnist(monkeypatch, capsys, "train", "-w_p", "proj", "--out", str(tmp_path / "run"))
    assert code == 2
    assert err == "error: -w_p asks for W&B, which needs the wandb package: pip install 'fmnist[wandb]'\n"


SWEEP = "method: random\nparameters:\n  epochs: {value: 1}\n  hidden_size: {value: 8}\n"


@pytest.mark.usefixtures("home", "no_data")
@pytest.mark.parametrize(
    ("lines", "asked"),
    [
        ("  wandb_project: {value: proj}\n", "parameters.wandb_project"),
        (
            "command:\n  - ${env}\n  - python\n  - ${program}\n  - --wandb_entity\n  - team\n  - ${args}\n",
            "command: --wandb_entity",
        ),
        ("project: proj\n", "project"),
    ],
)
def test_a_sweep_that_asks_for_wandb_checks_once_before_its_first_trial(
    monkeypatch, capsys, tmp_path, installed, lines, asked
):
    pytest.importorskip("optuna")
    from fmnist.sweep import study as study_module

    monkeypatch.setattr(study_module, "work", lambda *a, **k: pytest.fail("a trial was started"))
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(SWEEP + lines)
    out = tmp_path / "out"
    code, _, err = fmnist(monkeypatch, capsys, "sweep", str(sweep_file), "--out", str(out))
    assert code == 2
    assert err == f"error: {NOT_LOGGED_IN} (the sweep file's {asked} asks for W&B)\n"
    assert not out.exists()
    monkeypatch.setitem(sys.modules, "wandb", None)  # and without the package, the same key is named
    find_spec = importlib.util.find_spec
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    code, _, err = fmnist(monkeypatch, capsys, "sweep", str(sweep_file), "--out", str(out))
    assert (code, err) == (
        2,
        f"error: the sweep file's {asked} asks for W&B, which needs the wandb package: pip install 'fmnist[wandb]'\n",
    )


@pytest.mark.usefixtures("home", "installed")
def test_no_wandb_runs_a_sweep_file_that_names_a_project_without_it(monkeypatch, capsys, tmp_path):
    pytest.importorskip("optuna")
    from fmnist.cli import sweep as cli_sweep

    ran = []
    monkeypatch.setattr(cli_sweep, "run", lambda spec, options: ran.append(options.wandb))
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(SWEEP + "  wandb_project: {value: proj}\n")
    code, _, _ = fmnist(monkeypatch, capsys, "sweep", str(sweep_file), "--no-wandb", "--out", str(tmp_path / "o"))
    assert (code, ran) == (0, [False])


@pytest.mark.usefixtures("home", "tiny_fashion")
def test_a_wandb_failure_at_the_start_is_one_line_and_leaves_no_run_directory(monkeypatch, capsys, tmp_path):
    def init(**kwargs):
        raise RuntimeError("Network error (ConnectTimeout), entering retry loop.\nmore lines")

    stand_in_wandb(monkeypatch, init)
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    out = tmp_path / "run"
    code, _, err = fmnist(monkeypatch, capsys, "train", "-wp", "proj", "-e", "1", "-sz", "8", "--out", str(out))
    assert code == 1
    assert err == (
        "error: W&B could not start the run (Network error (ConnectTimeout), entering retry loop.); "
        "WANDB_MODE=offline logs without a network\n"
    )
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_WANDB, reason="wandb is not installed (pip install 'fmnist[wandb]')")
@pytest.mark.usefixtures("tiny_fashion")
def test_offline_mode_logs_a_real_run_without_a_login(home, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    code, stdout, err = fmnist(monkeypatch, capsys, "train", "-wp", "proj", "-e", "1", "-sz", "8", "--out", str(out))
    assert code == 0, stdout + err
    assert list(out.glob("wandb/offline-run-*/run-*.wandb"))  # what `wandb sync` uploads later
    assert "Traceback" not in stdout + err
    assert "WARNING" not in stdout + err
