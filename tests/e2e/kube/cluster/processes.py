"""The cluster's processes: started with their output in a log file, remembered by pid, and
stopped by pid — only a process that is still the one started (same pid, same program)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the process that started it dies, so a test
    run killed outright (kill -9, a CI timeout) leaves no control plane behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class Started:
    name: str
    pid: int
    program: str
    log: str


def start(
    name: str, argv: list[str], log: Path, *, attached: bool, env: dict[str, str] | None = None
) -> Started:
    """Start ``argv`` in a session of its own. ``attached``: it dies with this process."""
    with open(log, "ab") as out:
        preexec: Callable[[], None] | None = _die_with_parent if attached else None
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
            env={**os.environ, **(env or {})},
        )
    return Started(name, process.pid, argv[0], str(log))


def is_ours(started: Started) -> bool:
    """Whether the pid still runs the program that was started (a pid may be reused)."""
    try:
        exe = os.readlink(f"/proc/{started.pid}/exe")
    except OSError:
        return False
    return os.path.realpath(exe) == os.path.realpath(started.program)


def alive(started: Started) -> bool:
    if not is_ours(started):
        return False
    try:
        with open(f"/proc/{started.pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop(started: Started, grace: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL after ``grace`` seconds. False when it was not running."""
    if not alive(started):
        _reap(started.pid)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(started.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(started.pid)
        if not alive(started):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(started.pid, signal.SIGKILL)
    for _ in range(50):
        _reap(started.pid)
        if not alive(started):
            break
        time.sleep(0.1)
    return True


def tail(path: str | Path, lines: int = 20) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
