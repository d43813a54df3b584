"""Helpers of the course-file tests: ``fmnist`` as its console script runs, and a stand-in for the wandb package."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest

from fmnist.cli import main


def fmnist(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``fmnist ARGS`` as the console script runs it, without a terminal: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["fmnist", *args])
    with pytest.raises(SystemExit) as ended:
        main()
    out = capsys.readouterr()
    return ended.value.code, out.out, out.err


def stand_in_wandb(monkeypatch, init: Callable[..., Any]) -> types.ModuleType:
    """A ``wandb`` module that ``importlib.util.find_spec`` finds, whose ``init`` is ``init`` (no network)."""
    module = types.ModuleType("wandb")
    module.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    module.run = None  # no run open
    module.init = init
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module
