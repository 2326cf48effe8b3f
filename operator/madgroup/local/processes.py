"""Process identity and stopping, by pid, safely.

A pid alone can be reused after a process dies; a component's process is recognised by its
pid *and* its start time (field 22 of ``/proc/<pid>/stat``), recorded when it was started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot, or None if there is no such
    process (or it is a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    if not fields or fields[0] == "Z":
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def alive(pid: int | None, ticks: int | None) -> bool:
    if not pid:
        return False
    current = start_ticks(pid)
    if current is None:
        return False
    return ticks is None or current == ticks


def wait_gone(pid: int, ticks: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid, ticks):
        if time.monotonic() > deadline:
            return False
        _reap(pid)
        time.sleep(0.02)
    _reap(pid)
    return True


def terminate(pid: int, ticks: int | None, timeout: float = 10.0) -> str:
    """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns how it ended."""
    if not alive(pid, ticks):
        return "not running"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, ticks, timeout):
        return "stopped"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_gone(pid, ticks, 5.0)
    return f"killed after {timeout:g} s"


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child (no zombie left behind)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
