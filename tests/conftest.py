"""Shared fixtures: a real password-protected Redis, and MADs as real processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.mad_process import MadProcess
from tests.support.redis_server import RedisServer


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
