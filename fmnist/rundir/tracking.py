"""Experiment tracking: Weights & Biases when installed (``WANDB_MODE=offline`` works without a network), as one
callback that ``fmnist train`` and every sweep trial use alike, and the check, before any training, that W&B will
not stop to ask for a login (``wandb_login_problem``)."""

from __future__ import annotations

import configparser
import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fmnist.training.callbacks import Callback, Outcome
from fmnist.training.config import TrainConfig

NOT_LOGGED_IN = "not logged in to W&B: run `wandb login`, set WANDB_API_KEY, or set WANDB_MODE=offline"
WITHOUT_LOGIN = ("offline", "dryrun", "disabled")  # W&B's modes that need no account
DEFAULT_BASE_URL = "https://api.wandb.ai"


class TrackingError(RuntimeError):
    """W&B could not start a run (the message is one line and says how to go on without it)."""


def wandb_settings(cwd: Path | None = None) -> dict[str, str]:
    """W&B's settings as ``wandb`` reads them, without importing it: the global settings file
    (``$WANDB_CONFIG_DIR/settings``, else ``~/.config/wandb/settings``, written by ``wandb login``/``wandb offline``),
    the workspace's (``wandb/settings`` or ``.wandb/settings`` under ``$WANDB_DIR`` or the current directory),
    then the environment (``WANDB_MODE``, ``WANDB_BASE_URL``, ``WANDB_API_KEY``), each over the one before."""
    config_dir = os.environ.get("WANDB_CONFIG_DIR")
    files = [
        Path(config_dir).expanduser() / "settings" if config_dir else Path("~/.config/wandb/settings").expanduser()
    ]
    root = Path(os.environ.get("WANDB_DIR") or cwd or Path.cwd()).expanduser()
    files.append(root / (".wandb" if (root / ".wandb").exists() else "wandb") / "settings")
    settings: dict[str, str] = {}
    for path in files:
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except (configparser.Error, OSError, UnicodeDecodeError):  # W&B reads a broken file as empty too
            continue
        if parser.has_section("default"):
            settings.update(parser["default"])
    for name in ("mode", "base_url", "api_key"):
        if os.environ.get(f"WANDB_{name.upper()}"):
            settings[name] = os.environ[f"WANDB_{name.upper()}"]
    return settings


def wandb_login_problem(cwd: Path | None = None) -> str | None:
    """None when a W&B run can start here without asking anything: a mode that needs no account (``offline``,
    ``disabled``), an API key (``WANDB_API_KEY``, an identity token file, or the settings), or the key that
    ``wandb login`` stores in the netrc file (``$NETRC``, ``~/.netrc`` or ``~/_netrc``) for the W&B host. Otherwise
    the one line that says the three ways out (``NOT_LOGGED_IN``): W&B itself would stop at a prompt in a
    terminal, or fail with a traceback without one."""
    settings = wandb_settings(cwd)
    if settings.get("mode", "").strip().lower() in WITHOUT_LOGIN:
        return None
    if settings.get("api_key") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return None
    host = urlsplit(settings.get("base_url") or DEFAULT_BASE_URL).netloc
    return None if host and _netrc_password(host) else NOT_LOGGED_IN


def _netrc_password(host: str) -> str | None:
    """The password the netrc file holds for ``host`` (where ``wandb login`` keeps the API key), or None."""
    if os.environ.get("NETRC"):
        path = Path(os.environ["NETRC"]).expanduser()
    else:
        home = [Path("~/.netrc").expanduser(), Path("~/_netrc").expanduser()]
        path = next((p for p in home if p.exists()), home[0])
    try:
        found = netrc.netrc(str(path)).authenticators(host)
    except (netrc.NetrcParseError, OSError):
        return None
    return found[2] if found and found[2] else None


class WandbLogger(Callback):
    """Logs a run's configuration, per-epoch metrics and summary to W&B; ``wandb`` is imported only here."""

    def __init__(self, config: TrainConfig, run_dir: str | Path):
        self.config = config
        self.run_dir = Path(run_dir)
        self._run: Any = None

    def on_train_begin(self, trainer: Any) -> None:
        import wandb

        if wandb.run is not None:  # a run an earlier trial left open (one that failed before its end)
            wandb.finish()
        try:
            self._run = wandb.init(
                project=self.config.wandb_project,
                entity=self.config.wandb_entity,
                name=self.run_dir.name,
                dir=str(self.run_dir),
                config=self.config.to_dict(),
            )
        except Exception as err:  # W&B's own errors (no network, a refused key...) are one line here
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TrackingError(
                f"W&B could not start the run ({first}); WANDB_MODE=offline logs without a network"
            ) from None

    def on_epoch_end(self, trainer: Any, metrics: Any) -> None:
        values = {k: v for k, v in metrics.to_dict().items() if v is not None}
        self._run.log(values, step=int(metrics.epoch))

    def on_train_end(self, trainer: Any, outcome: Outcome) -> None:
        if self._run is None:
            return
        for key in ("test_accuracy", "test_loss", "best_epoch"):
            if outcome.summary.get(key) is not None:
                self._run.summary[key] = outcome.summary[key]
        self._run.summary["status"] = outcome.status
        self._run.finish()
        self._run = None
