"""A MAD group as real processes for a test: one password-protected Redis and the MADs a
test asks for, each wired to the bus and to Sequential Thinking the way every substrate
wires them (``REDIS_*``, ``SEQUENTIAL_THINKING_URL``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.support.mad_process import MadProcess
from tests.support.redis_server import RedisServer


class ProcessGroup:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis = RedisServer(workdir / "redis").start()
        self.mads: dict[str, MadProcess] = {}

    @property
    def env(self) -> dict[str, str]:
        """What a MAD of this group is started with (a later ``env`` adds to it)."""
        env = dict(self.redis.env)
        thinking = self.mads.get("sequential_thinking")
        if thinking is not None:
            env["SEQUENTIAL_THINKING_URL"] = f"{thinking.url}/mcp"
        return env

    def start(
        self, name: str, env: dict[str, str] | None = None, wait_ready: bool = True
    ) -> MadProcess:
        process = MadProcess(name, self.workdir / name, {**self.env, **(env or {})})
        self.mads[name] = process
        return process.start(wait_ready=wait_ready)

    def stop(self) -> None:
        for process in reversed(list(self.mads.values())):
            process.stop()
        self.redis.stop(kill=True)


@contextlib.contextmanager
def process_group(workdir: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(workdir)
    try:
        yield group
    finally:
        group.stop()
