"""Waking a CLI command when the group's state changes, instead of polling ``state.json``.

A command that follows the supervisor (``up``, ``stop``, ``down``) makes a FIFO in the
state directory's ``watchers/`` and sleeps in ``select`` on it; every save of the state
writes one byte to each FIFO there. The follower also wakes when the process it waits on
(the supervisor) exits, through a pidfd; where there is none, a short fallback timeout
stands in. A follower that died leaves a FIFO nobody reads: the next save removes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import time
from collections.abc import Iterator
from pathlib import Path

from madgroup.local import processes

FALLBACK = 1.0
"""The longest a follower sleeps without news (it rechecks its deadline and the
supervisor's lock then)."""
NO_PIDFD_FALLBACK = 0.05
"""The sleep when the process waited on cannot be watched (no pidfd on this system)."""
PREPARING = "."
"""The prefix of a follower's FIFO until its reader has it open."""


def notify(folder: Path) -> None:
    """One byte to every follower's FIFO in ``folder``; stale ones are removed."""
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return
    for path in entries:
        if path.name.startswith(PREPARING):
            continue  # a follower's FIFO before its reader opened it: not stale
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.ENOENT):  # nobody reads it any more
                with contextlib.suppress(OSError):
                    path.unlink()
            continue
        try:
            os.write(fd, b".")
        except BlockingIOError:
            pass  # full: the follower has a wake-up pending already
        except OSError:
            pass
        finally:
            os.close(fd)


class Follower:
    """One command's FIFO; :meth:`wait` returns on a state change, the watched process's
    exit, or the timeout."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{time.time_ns()}"
        self.path = folder / name
        # Made under a name notify() passes over, opened, then renamed into view: a FIFO
        # without a reader looks stale to notify(), which would remove it in between.
        preparing = folder / f"{PREPARING}{name}"
        os.mkfifo(preparing, 0o600)
        # Read and write: with a writer of its own, the FIFO never reads as closed (EOF)
        # between the supervisor's writes, so select only wakes on a byte.
        self.fd = os.open(preparing, os.O_RDWR | os.O_NONBLOCK)
        os.rename(preparing, self.path)
        self.process: int | None = None
        self.watched_pid: int | None = None

    def watch_process(self, pid: int | None) -> None:
        """Wake when ``pid`` exits too (the supervisor), where the system allows it."""
        if pid == self.watched_pid:
            return
        if self.process is not None:
            os.close(self.process)
        self.watched_pid = pid
        self.process = processes.open_pidfd(pid)

    def wait(self, timeout: float = FALLBACK) -> None:
        watched = [self.fd] + ([self.process] if self.process is not None else [])
        if self.watched_pid and self.process is None:
            timeout = min(timeout, NO_PIDFD_FALLBACK)
        with contextlib.suppress(InterruptedError):
            select.select(watched, [], [], max(0.0, timeout))
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fd, 4096):
                pass

    def close(self) -> None:
        if self.process is not None:
            os.close(self.process)
            self.process = None
        os.close(self.fd)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@contextlib.contextmanager
def follow(folder: Path) -> Iterator[Follower]:
    follower = Follower(folder)
    try:
        yield follower
    finally:
        follower.close()
