"""Fiedler as a real process for a test: its task store read straight from the SQLite file,
its tools called over MCP, a task waited for until it is done, and what its /metrics count."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mads.core.mcp_client import call_tool
from tests.support.group import ProcessGroup
from tests.support.mad_process import MadProcess
from tests.support.waiting import async_wait_for

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


@dataclass
class Fiedler:
    process: MadProcess
    db_path: Path

    def rows(self, where: str = "1", params: tuple[object, ...] = ()) -> int:
        """Count task rows, read straight from the SQLite file."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        try:
            return int(
                conn.execute(f"SELECT count(*) FROM tasks WHERE {where}", params).fetchone()[0]
            )
        finally:
            conn.close()


def fiedlers(group: ProcessGroup, workdir: Path) -> Iterator[Callable[..., Fiedler]]:
    """A fixture's body: ``start(env, wait_ready=True)`` starts a Fiedler on ``group``'s bus
    and Sequential Thinking with its store under ``workdir``; all are stopped at the end."""
    started: list[MadProcess] = []

    def start(env: dict[str, str] | None = None, wait_ready: bool = True) -> Fiedler:
        db_path = workdir / "data" / "fiedler_state.db"
        merged = {**group.env_for("fiedler"), "FIEDLER_DB_PATH": str(db_path), **(env or {})}
        process = MadProcess("fiedler", workdir / "fiedler", merged)
        started.append(process)
        process.start(wait_ready=wait_ready)
        return Fiedler(process, Path(merged["FIEDLER_DB_PATH"]))

    try:
        yield start
    finally:
        for process in reversed(started):
            process.stop()


async def call(fiedler: Fiedler, tool: str, arguments: dict[str, Any]) -> Any:
    """Call a tool over MCP; raises McpToolError with the tool's message on failure."""
    return await call_tool(f"{fiedler.process.url}/mcp", tool, arguments)


async def wait_terminal(fiedler: Fiedler, task_id: str, timeout: float = 30) -> dict[str, Any]:
    """``fiedler_get_task_status`` until the task is COMPLETED, FAILED or CANCELLED."""

    async def finished() -> dict[str, Any] | None:
        status = await call(fiedler, "fiedler_get_task_status", {"task_id": task_id})
        return status if status["status"] in TERMINAL else None

    return await async_wait_for(finished, timeout=timeout, interval=0.1, what=f"task {task_id}")


def relayed_calls(fiedler_url: str, tool: str) -> float:
    """Relayed calls of ``tool`` Fiedler carried out, from its /metrics."""
    text = httpx.get(f"{fiedler_url}/metrics", timeout=10).text
    pattern = rf'^mad_relayed_calls_total\{{tool="{tool}"\}} ([0-9.e+]+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0
