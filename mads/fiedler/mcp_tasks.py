"""Fiedler's tasks the MCP way (protocol 2025-11-25, experimental tasks).

``fiedler_converse`` is task-capable (``execution.taskSupport: optional``): called with a
``task`` parameter it creates the Fiedler task as usual and answers with a task handle
(``CreateTaskResult``) whose id *is* the Fiedler task id. ``tasks/get``, ``tasks/list``,
``tasks/result`` and ``tasks/cancel`` read and change the same SQLite rows that
``fiedler_get_task_status`` and ``fiedler_cancel_task`` do; the wire shapes come from
:mod:`mads.core.mcp_tasks`, over the tools Fiedler's contract names. A client that does not
ask for a task sees exactly the tools and JSON it always did.

The SDK serves none of this: a middleware adds the task capability to ``initialize``,
``taskSupport`` to ``tools/list`` and answers a task-augmented ``tools/call`` (a tool
handler cannot: the SDK would check its reply as a plain tool result), and request
handlers answer the four methods.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import mcp_types as t
from mcp.shared.exceptions import MCPError

from mads.core import mcp_tasks, sdk
from mads.core.contract import TaskTools
from mads.core.mcp_tasks import INTERNAL_ERROR, INVALID_PARAMS
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


def task_view(task: Task) -> dict[str, Any]:
    return mcp_tasks.view(task.task_id, status_reply(task), TOOLS)


def _store_down(exc: StoreUnavailableError) -> MCPError:
    return MCPError(code=INTERNAL_ERROR, message=f"the task store is unavailable: {exc}")


class TaskProtocol:
    """Server middleware, just outside the argument check: a task-augmented call whose
    arguments are refused gets a JSON-RPC error, and no task is created."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if ctx.method == "initialize":
            return mcp_tasks.with_capability(await call_next(ctx), listing=True)
        if ctx.method == "tools/list":
            return mcp_tasks.advertise(await call_next(ctx), {TOOLS.start: TOOLS})
        params = ctx.params
        if ctx.method == "tools/call" and isinstance(params, Mapping) and "task" in params:
            return await self._as_task(ctx, params, call_next)
        return await call_next(ctx)

    async def _as_task(
        self, ctx: Any, params: Mapping[str, Any], call_next: Callable[[Any], Awaitable[Any]]
    ) -> dict[str, Any]:
        name = params.get("name")
        if name != TOOLS.start:
            raise MCPError(code=INVALID_PARAMS, message=f"tool {name!r} cannot run as a task")
        plain = {k: v for k, v in params.items() if k != "task"}
        reply = await call_next(dataclasses.replace(ctx, params=plain))
        if not isinstance(reply, dict):
            reply = reply.model_dump(by_alias=True, mode="json", exclude_none=True)
        if reply.get("isError"):
            texts = [c.get("text", "") for c in reply.get("content", []) if isinstance(c, dict)]
            raise MCPError(code=INVALID_PARAMS, message="; ".join(texts) or "refused")
        task_id = (reply.get("structuredContent") or {}).get(TOOLS.id_field)
        return {"task": task_view(await self.get(str(task_id)))}

    async def get(self, task_id: str) -> Task:
        try:
            task = await self.store.get(task_id)
        except StoreUnavailableError as exc:
            raise _store_down(exc) from None
        if task is None:
            raise MCPError(code=INVALID_PARAMS, message=f"unknown task id {task_id!r}")
        return task


def serve(service: MadService, store: TaskStore, worker: Worker) -> TaskProtocol:
    """Make Fiedler's MCP server a task server for Fiedler's tasks."""
    protocol = TaskProtocol(store)
    service.wrap_tool_calls(protocol)

    async def tasks_get(ctx: Any, params: t.GetTaskRequestParams) -> dict[str, Any]:
        return task_view(await protocol.get(params.task_id))

    async def tasks_list(ctx: Any, params: t.PaginatedRequestParams | None) -> dict[str, Any]:
        try:
            recent = await store.recent(limit=1000)
        except StoreUnavailableError as exc:
            raise _store_down(exc) from None
        return {"tasks": [task_view(task) for task in recent]}

    async def tasks_result(ctx: Any, params: t.GetTaskPayloadRequestParams) -> dict[str, Any]:
        task = await mcp_tasks.until_finished(
            lambda: protocol.get(params.task_id),
            lambda found: found.status.terminal,
            params.task_id,
            interval=0.2,
        )
        return mcp_tasks.payload(task.task_id, status_reply(task), TOOLS)

    async def tasks_cancel(ctx: Any, params: t.CancelTaskRequestParams) -> dict[str, Any]:
        try:
            task = await cancel(store, worker, params.task_id, CANCELLED_BY)
        except CancelRefused as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from None
        except StoreUnavailableError as exc:
            raise _store_down(exc) from None
        return task_view(task)

    server = service.mcp
    sdk.add_request_handler(server, "tasks/get", t.GetTaskRequestParams, tasks_get)
    sdk.add_request_handler(server, "tasks/list", t.PaginatedRequestParams, tasks_list)
    sdk.add_request_handler(server, "tasks/result", t.GetTaskPayloadRequestParams, tasks_result)
    sdk.add_request_handler(server, "tasks/cancel", t.CancelTaskRequestParams, tasks_cancel)
    return protocol
