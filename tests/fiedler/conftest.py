"""Fiedler's test group: a real Redis and a real Sequential Thinking process shared by a test
module, a fresh Fiedler process per test, and an OpenAI-compatible server on loopback."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mads.core.mcp_client import call_tool
from tests.fiedler.fake_llm import FakeLLM
from tests.support.group import ProcessGroup, process_group
from tests.support.mad_process import MadProcess
from tests.support.waiting import async_wait_for


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessGroup]:
    """Redis and Sequential Thinking, shared by a module's tests."""
    with process_group(tmp_path_factory.mktemp("group")) as processes:
        processes.start("sequential_thinking")
        yield processes


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    try:
        yield server
    finally:
        server.stop()


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


@pytest.fixture
def start_fiedler(group: ProcessGroup, tmp_path: Path) -> Iterator[Callable[..., Fiedler]]:
    """A fresh Fiedler per test: ``start_fiedler({"FIEDLER_...": ...}, wait_ready=True)``."""
    yield from _fiedlers(group, tmp_path)


@pytest.fixture(scope="module")
def start_fiedler_module(
    group: ProcessGroup, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Fiedler]]:
    """One Fiedler shared by a module's tests (for tests that only read or are refused)."""
    yield from _fiedlers(group, tmp_path_factory.mktemp("fiedler"))


def _fiedlers(group: ProcessGroup, tmp_path: Path) -> Iterator[Callable[..., Fiedler]]:
    started: list[MadProcess] = []

    def start(env: dict[str, str] | None = None, wait_ready: bool = True) -> Fiedler:
        db_path = tmp_path / "data" / "fiedler_state.db"
        merged = {**group.env, "FIEDLER_DB_PATH": str(db_path), **(env or {})}
        process = MadProcess("fiedler", tmp_path / "fiedler", merged)
        started.append(process)
        process.start(wait_ready=wait_ready)
        return Fiedler(process, Path(merged["FIEDLER_DB_PATH"]))

    try:
        yield start
    finally:
        for process in reversed(started):
            process.stop()


@pytest.fixture
def slow_fiedler(start_fiedler: Callable[..., Fiedler], fake_llm: FakeLLM) -> Fiedler:
    """Against the fake OpenAI-compatible endpoint with a long timeout (its ``slow: ...``
    prompts stall until cancelled), one task at a time, so a second waits PENDING."""
    return start_fiedler(
        {
            **fake_llm.fiedler_env,
            "FIEDLER_LLM_TIMEOUT_S": "120",
            "FIEDLER_MAX_CONCURRENCY": "1",
        }
    )


async def call(fiedler: Fiedler, tool: str, arguments: dict[str, Any]) -> Any:
    """Call a tool over MCP; raises McpToolError with the tool's message on failure."""
    return await call_tool(f"{fiedler.process.url}/mcp", tool, arguments)


async def wait_terminal(fiedler: Fiedler, task_id: str, timeout: float = 30) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        status = await call(fiedler, "fiedler_get_task_status", {"task_id": task_id})
        return status if status["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None

    return await async_wait_for(finished, timeout=timeout, interval=0.1, what=f"task {task_id}")
