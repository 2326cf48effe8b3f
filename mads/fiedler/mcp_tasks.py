"""Fiedler's tasks the MCP way, on both protocol generations (:mod:`mads.core.mcp_tasks`).

``fiedler_converse`` is task-capable: asked for a task (a ``task`` parameter on 2025-11-25,
the tasks extension declared on 2026-07-28) it creates the Fiedler task as usual and answers
with a task handle whose id *is* the Fiedler task id. The task methods read and change the
same task rows that ``fiedler_get_task_status`` and ``fiedler_cancel_task`` do. A client
that does not ask for a task sees exactly the tools and JSON it always did.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from mcp.shared.exceptions import MCPError

from mads.core.contract import TaskTools
from mads.core.mcp_tasks import INTERNAL_ERROR, INVALID_PARAMS, Status, TaskServer
from mads.core.service import MadService
from mads.fiedler.contract import CONTRACT
from mads.fiedler.store import StoreUnavailableError, Task, TaskStore
from mads.fiedler.tools import CancelRefused, cancel, status_reply
from mads.fiedler.worker import Worker


def _task_tools() -> TaskTools:
    tools = CONTRACT.tasks
    assert tools is not None, "Fiedler's contract declares its task tools"
    return tools


TOOLS = _task_tools()
CANCELLED_BY = "the MCP client (tasks/cancel)"


def _store_down(exc: StoreUnavailableError) -> MCPError:
    return MCPError(code=INTERNAL_ERROR, message=f"the task store is unavailable: {exc}")


class FiedlerTasks:
    """Fiedler's task store as a :class:`~mads.core.mcp_tasks.TaskBackend`."""

    offered: Mapping[str, TaskTools] = {TOOLS.start: TOOLS}
    listing = True
    poll_s = 0.2

    def __init__(self, store: TaskStore, worker: Worker) -> None:
        self.store = store
        self.worker = worker

    def task_id(self, tool: str, structured: Mapping[str, Any]) -> str:
        return str(structured.get(TOOLS.id_field))

    async def task(self, task_id: str) -> Task:
        try:
            task = await self.store.get(task_id)
        except StoreUnavailableError as exc:
            raise _store_down(exc) from None
        if task is None:
            raise MCPError(code=INVALID_PARAMS, message=f"unknown task id {task_id!r}")
        return task

    async def status(self, task_id: str) -> tuple[Status, TaskTools]:
        return status_reply(await self.task(task_id)), TOOLS

    async def cancel(self, task_id: str) -> tuple[Status, TaskTools]:
        try:
            task = await cancel(self.store, self.worker, task_id, CANCELLED_BY)
        except CancelRefused as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from None
        except StoreUnavailableError as exc:
            raise _store_down(exc) from None
        return status_reply(task), TOOLS

    async def follow(self, task_id: str) -> AsyncIterator[tuple[int, str]]:
        async for chunk in self.worker.chunks.follow(task_id):
            if not chunk.get("done"):
                yield int(chunk["seq"]), str(chunk.get("delta", ""))

    async def recent(self) -> list[tuple[str, Status, TaskTools]]:
        try:
            found = await self.store.recent(limit=1000)
        except StoreUnavailableError as exc:
            raise _store_down(exc) from None
        return [(task.task_id, status_reply(task), TOOLS) for task in found]


def serve(service: MadService, store: TaskStore, worker: Worker) -> TaskServer:
    """Make Fiedler's MCP server a task server for Fiedler's tasks, just outside the
    argument check (a task-augmented call it refuses creates no task)."""
    server = TaskServer(FiedlerTasks(store, worker))
    service.wrap_tool_calls(server)
    server.add_handlers(service.mcp)
    return server
