"""A MAD group as real processes for a test: one password-protected Redis and the MADs a
test asks for, each wired to the bus and to Sequential Thinking the way every substrate
wires them (``REDIS_*`` for a MAD that uses the bus, ``SEQUENTIAL_THINKING_URL``, its data
file in its own directory)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from madgroup import topology

from tests.support.mad_process import MadProcess
from tests.support.redis_server import RedisServer


class ProcessGroup:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis = RedisServer(workdir / "redis").start()
        self.mads: dict[str, MadProcess] = {}
        """The MAD started last under each name."""
        self._started: list[MadProcess] = []

    def __getitem__(self, name: str) -> MadProcess:
        return self.mads[name]

    def env_for(self, name: str) -> dict[str, str]:
        """What MAD ``name`` of this group is started with (a later ``env`` adds to it): the
        bus when it uses one, Sequential Thinking once that runs, and its data file (Fiedler's
        store) in its working directory."""
        component = topology.component(name)
        env = dict(self.redis.env) if component.uses_bus else {}
        thinking = self.mads.get("sequential_thinking")
        if thinking is not None:
            env["SEQUENTIAL_THINKING_URL"] = f"{thinking.url}/mcp"
        if component.data_file is not None:
            env[component.data_file.variable] = str(
                self.workdir / name / component.data_file.filename
            )
        return env

    def start(
        self,
        name: str,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
        port: int | None = None,
    ) -> MadProcess:
        """Start MAD ``name`` (on ``port``, or a free one); started twice, the two replicas
        share one working directory (and log), and both are stopped with the group."""
        process = MadProcess(
            name, self.workdir / name, {**self.env_for(name), **(env or {})}, port=port
        )
        self.mads[name] = process
        self._started.append(process)
        return process.start(wait_ready=wait_ready)

    def stop(self) -> None:
        for process in reversed(self._started):
            process.stop()
        self.redis.stop(kill=True)


@contextlib.contextmanager
def process_group(workdir: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(workdir)
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture
def mad_group(tmp_path: Path) -> Iterator[ProcessGroup]:
    """A group for one test: Redis runs, the test starts the MADs it needs. A test module
    takes it with ``from tests.support.group import mad_group as mad_group``."""
    with process_group(tmp_path / "group") as group:
        yield group
