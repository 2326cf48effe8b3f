"""The ``io.modelcontextprotocol/tasks`` extension (protocol 2026-07-28) for the official
SDK client, as the SDK asks a client extension to be written: a claim on ``tools/call``
results of ``resultType: "task"`` whose resolver polls ``tasks/get`` until the task is
terminal and returns its final tool result. The SDK ships the mechanism, not this
extension; the wire shapes are the extension's schema (modelcontextprotocol/ext-tasks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import anyio
import mcp_types as t
from mcp.client import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from pydantic import ConfigDict, Field

EXTENSION = "io.modelcontextprotocol/tasks"
TERMINAL = ("completed", "failed", "cancelled")


class _Task(t.Result):
    """The extension's ``Task``: what every task answer carries."""

    model_config = ConfigDict(extra="allow")
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str | None = None
    last_updated_at: str | None = None
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


class CreateTaskResult(_Task):
    """What a task-capable call answers with instead of its result."""

    result_type: Literal["task"] = Field(alias="resultType")


class DetailedTask(_Task):
    """``tasks/get``: the task, with its final ``result`` or ``error`` once it has one."""

    result_type: str | None = Field(default=None, alias="resultType")
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class TaskParams(t.RequestParams):
    task_id: str


class UpdateParams(TaskParams):
    input_responses: dict[str, Any] = Field(default_factory=dict)


class GetTask(t.Request[TaskParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskParams
    name_param: ClassVar[str | None] = "taskId"  # the extension's Mcp-Name routing header


class CancelTask(t.Request[TaskParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskParams
    name_param: ClassVar[str | None] = "taskId"


class UpdateTask(t.Request[UpdateParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    params: UpdateParams
    name_param: ClassVar[str | None] = "taskId"


class ResultOfTask(t.Request[TaskParams, Literal["tasks/result"]]):
    """2025-11-25 only: a 2026-07-28 server answers it as an unknown method."""

    method: Literal["tasks/result"] = "tasks/result"
    params: TaskParams


async def get(session: ClientSession, task_id: str) -> DetailedTask:
    return await session.send_request(GetTask(params=TaskParams(task_id=task_id)), DetailedTask)


async def cancel(session: ClientSession, task_id: str) -> t.Result:
    return await session.send_request(CancelTask(params=TaskParams(task_id=task_id)), t.Result)


async def update(session: ClientSession, task_id: str) -> t.Result:
    request = UpdateTask(params=UpdateParams(task_id=task_id, input_responses={"x": {}}))
    return await session.send_request(request, t.Result)


async def until_terminal(
    session: ClientSession, task_id: str, deadline_s: float = 60
) -> DetailedTask:
    """``tasks/get`` at the interval the server suggests, until the task is terminal."""
    with anyio.fail_after(deadline_s):
        while True:
            found = await get(session, task_id)
            if found.status in TERMINAL:
                return found
            await anyio.sleep((found.poll_interval_ms or 1000) / 1000)


async def _resolve(created: CreateTaskResult, ctx: ClaimContext) -> t.CallToolResult:
    found = await until_terminal(ctx.session, created.task_id)
    if found.status == "completed" and found.result is not None:
        return t.CallToolResult.model_validate(found.result)
    if found.status == "failed" and found.error is not None:
        raise MCPError(code=int(found.error.get("code", -32603)), message=str(found.error))
    text = f"task {found.status}: {found.status_message}"
    return t.CallToolResult(content=[t.TextContent(type="text", text=text)], is_error=True)


class TasksExtension(ClientExtension):
    identifier = EXTENSION

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return (ResultClaim(result_type="task", model=CreateTaskResult, resolve=_resolve),)
