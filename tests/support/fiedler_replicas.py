"""Fiedler replicas sharing one PostgreSQL task store, as real processes on a test's group.

Each replica has its own working directory and log (so what each one did can be read
apart); the store is read straight from PostgreSQL; a task is followed through any replica.
"""

from __future__ import annotations

import collections
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mads.core.mcp_client import call_tool
from tests.support.group import ProcessGroup
from tests.support.mad_process import MadProcess
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_for

REPLICA_LINE = re.compile(r"as replica (\S+) \(leases of")

FAST_LEASES = {"FIEDLER_LEASE_S": "3", "FIEDLER_CLAIM_POLL_S": "0.5"}
"""Short leases, so a dead or stalled holder's task is taken over within seconds."""


@dataclass
class Replicas:
    group: ProcessGroup
    postgres: PostgresServer
    database: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: list[MadProcess] = field(default_factory=list)

    @property
    def store_env(self) -> dict[str, str]:
        """A replica's environment: the store's URI in a file, as a Secret is mounted."""
        uri_file = self.workdir / "store-uri"
        if not uri_file.exists():
            uri_file.write_text(self.postgres.uri(self.database) + "\n")
            uri_file.chmod(0o600)
        return {
            "FIEDLER_STORE": "postgresql",
            "FIEDLER_STORE_URI_FILE": str(uri_file),
            "FIEDLER_REPLICAS": "3",
        }

    def start(self, count: int, env: dict[str, str] | None = None) -> list[MadProcess]:
        """Start ``count`` more replicas at the same moment, then wait until each is ready."""
        started = []
        for _ in range(count):
            n = len(self.processes)
            merged = {**self.group.env_for("fiedler"), **self.store_env, **self.env, **(env or {})}
            process = MadProcess("fiedler", self.workdir / f"fiedler-{n}", merged)
            self.processes.append(process)
            started.append(process.start(wait_ready=False))
        for process in started:
            process.wait_ready(timeout=60)
        return started

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def logs(self) -> str:
        return "\n".join(process.log_text() for process in self.processes)

    def rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self.postgres.connect(self.database) as conn:
            return conn.execute(sql.encode(), params).fetchall()

    def count(self, where: str = "true", params: tuple[object, ...] = ()) -> int:
        return int(self.rows(f"SELECT count(*) FROM tasks WHERE {where}", params)[0][0])


def completions(logs: str) -> collections.Counter[str]:
    """How many times each task was logged ``COMPLETED`` (over replicas and restarts)."""
    return collections.Counter(
        line.split()[1]
        for line in logs.splitlines()
        if line.startswith("INFO:fiedler:Task ") and line.endswith(" status changed to COMPLETED")
    )


def owner_of(process: MadProcess) -> str:
    """The lease holder name the replica's current incarnation logged at start."""
    found = wait_for(
        lambda: REPLICA_LINE.findall(process.log_text()), timeout=30, what="the replica's id"
    )
    return str(found[-1])


def replicas(
    group: ProcessGroup, postgres: PostgresServer, workdir: Path, env: dict[str, str] | None = None
) -> Iterator[Replicas]:
    """A fixture's body: a fresh database, replicas started by the test, stopped at the end."""
    found = Replicas(group, postgres, postgres.create_database(), workdir, dict(env or {}))
    try:
        yield found
    finally:
        found.stop()


async def call(process: MadProcess, tool: str, arguments: dict[str, Any]) -> Any:
    return await call_tool(f"{process.url}/mcp", tool, arguments)


def status_lines(process: MadProcess) -> subprocess.CompletedProcess[str]:
    return process.cli("mad-status")
