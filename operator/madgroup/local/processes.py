"""Process identity and stopping, by pid, safely.

A pid alone can be reused after a process dies; a component's process is recognised by its
pid *and* its start time (field 22 of ``/proc/<pid>/stat``), recorded when it was started.
"""

from __future__ import annotations

import contextlib
import os
import select
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
    """Until the process is gone (True) or ``timeout`` passes (False). Sleeps on a pidfd,
    which wakes when the process exits, where the system has them."""
    deadline = time.monotonic() + timeout
    pidfd = open_pidfd(pid)
    try:
        while alive(pid, ticks):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _reap(pid)
            if pidfd is not None:
                select.select([pidfd], [], [], min(left, 1.0))
            else:
                time.sleep(min(left, 0.02))
    finally:
        if pidfd is not None:
            os.close(pidfd)
    _reap(pid)
    return True


def open_pidfd(pid: int | None) -> int | None:
    """A file descriptor that becomes readable when ``pid`` exits (Linux 5.3+), or None
    where there is no such process or no pidfd; the caller closes it."""
    if not pid:
        return None
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


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
