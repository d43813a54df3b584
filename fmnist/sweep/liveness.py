"""Who runs a trial, and whether that process still lives.

Every trial records its worker (``WORKER``): host name, process id, and what makes a process id unique on a
machine over time (the boot, the PID namespace, the process's start time). A worker on the same machine (same
host, boot and PID namespace) can then tell at once that a trial's process is gone: no such process, a zombie,
or another process that reuses its id. Trials of other machines are judged by their heartbeat instead
(``fmnist.sweep.storage``).
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime
from typing import Any

WORKER = "fmnist_worker"  # user attribute: {"host", "pid", "boot", "pidns", "start", "since"}


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks since boot) of a process, from ``/proc/PID/stat`` (Linux)."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the name in parentheses may hold spaces
    return fields[0], fields[19]


HOST = socket.gethostname()
BOOT = _read("/proc/sys/kernel/random/boot_id")
PID_NAMESPACE = _pid_namespace()


def this_worker() -> dict[str, Any]:
    """The ``WORKER`` record of this process."""
    pid = os.getpid()
    stat = _stat(pid)
    return {
        "host": HOST,
        "pid": pid,
        "boot": BOOT,
        "pidns": PID_NAMESPACE,
        "start": stat[1] if stat else None,
        "since": datetime.now().astimezone().isoformat(timespec="seconds"),
        "time": time.time(),
    }


def same_machine(worker: dict[str, Any] | None) -> bool:
    """Whether ``worker`` ran on this machine, where its process id can be checked: same host name, boot and PID
    namespace (a container with this host name, or this machine after a reboot, is another machine)."""
    return bool(worker) and (worker.get("host"), worker.get("boot"), worker.get("pidns")) == (  # type: ignore[union-attr]
        HOST,
        BOOT,
        PID_NAMESPACE,
    )


def process_alive(worker: dict[str, Any]) -> bool:
    """Whether the process of a ``WORKER`` record of this machine still runs (a zombie does not)."""
    pid = int(worker["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    stat = _stat(pid)
    if stat is None:  # no /proc (macOS): the process exists
        return True
    state, start = stat
    if state in ("Z", "X"):
        return False
    return worker.get("start") is None or start == worker["start"]


def describe(worker: dict[str, Any] | None) -> str:
    """``pid 1234 on host`` for messages."""
    if not worker:
        return "an unknown worker"
    return f"pid {worker.get('pid')} on {worker.get('host')}"
