"""Shared fixtures: a real password-protected Redis, and MADs as real processes.

The open-files limit is raised to its hard limit for the whole run, before any process is
started, so every MAD and Redis a test starts inherits it (the 2,000-connection test needs
more than the usual 1,024)."""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import evidence
from tests.support.mad_process import MadProcess
from tests.support.redis_server import RedisServer


def raise_open_files_limit() -> int:
    """Set this process's soft RLIMIT_NOFILE to its hard limit (children inherit it);
    returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Linux refuses an unlimited number of open files: 2**20 is its usual ceiling.
    wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    # Kept as it was when that fails: a test that needs more says so.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pytest_configure(config: pytest.Config) -> None:
    raise_open_files_limit()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The lines tests recorded with :func:`tests.support.evidence.record`."""
    if not evidence.LINES:
        return
    terminalreporter.section("what the tests ran on and measured")
    for topic, line in evidence.LINES:
        terminalreporter.write_line(f"{topic}: {line}")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture
def start_mad(tmp_path: Path) -> Iterator[Callable[..., MadProcess]]:
    """Start a MAD process: ``start_mad("grace", env={...}, wait_ready=True)``."""
    started: list[MadProcess] = []

    def start(
        name: str,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
        port: int | None = None,
    ) -> MadProcess:
        process = MadProcess(name, tmp_path / name, env or {}, port=port)
        started.append(process)
        return process.start(wait_ready=wait_ready)

    try:
        yield start
    finally:
        for process in reversed(started):
            process.stop()
