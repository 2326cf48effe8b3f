"""Start the supervisor detached from this command, by ``fork``.

The command has already imported everything the supervisor runs, so a forked child starts
supervising at once, where a fresh interpreter would first spend a tenth of a second
starting up and importing. The child leaves the command's session, drops every file the
command had open (its pipes, the command lock), writes to the supervisor log and never
returns into the command's code.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from madgroup.local import processes


class Detached:
    """The forked supervisor, as the command sees it (the parts of ``Popen`` it uses)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int | None:
        """Until it exits or ``timeout`` passes; its exit code, or None if still running."""
        deadline = time.monotonic() + timeout
        pidfd = processes.open_pidfd(self.pid)
        try:
            while self.poll() is None and (left := deadline - time.monotonic()) > 0:
                if pidfd is not None:
                    select.select([pidfd], [], [], left)
                else:
                    time.sleep(min(left, 0.05))
        finally:
            if pidfd is not None:
                os.close(pidfd)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)


def spawn(run: Callable[[], int], cwd: Path, log: Path) -> Detached:
    """Fork; the child runs ``run()`` in its own session in ``cwd``, its output appended
    to ``log``, and exits with its return value."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    pid = os.fork()
    if pid:
        os.close(log_fd)
        return Detached(pid)
    code = 1
    try:
        os.setsid()
        os.chdir(cwd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        code = run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
