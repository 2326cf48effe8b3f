"""MCP tasks through the front door (protocol 2025-11-25).

An outside client connected only to Grace runs the group's long-running work as MCP tasks:
a tool a MAD's contract declares task-capable (:class:`~mads.core.contract.TaskTools`,
Fiedler's ``fiedler_converse``) is offered with ``execution.taskSupport``; called with a
``task`` parameter it is relayed as a plain call, and Grace answers with a task handle.
``tasks/get``, ``tasks/result`` and ``tasks/cancel`` are relayed as the owner's status and
cancel tools. Nothing is kept here, so any Grace replica answers for any task.

Task ids are namespaced per upstream MAD and signed: ``<owner>:<owner's id>:<mac>``, the MAC
keyed from Grace's own bus credential (every replica has the same one). A task id Grace did
not hand out — another MAD's raw id, a changed one — is refused as unknown.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import mcp_types as t
from mcp.shared.exceptions import MCPError

from mads.core import mcp_tasks, sdk
from mads.core.contract import TaskTools
from mads.core.mcp_tasks import INTERNAL_ERROR, INVALID_PARAMS
from mads.core.registry import contracts
from mads.core.service import MadService
from mads.grace.gateway import Gateway

MAC_CHARS = 24
CANCELLED_BY = "an outside client through Grace (tasks/cancel)"


@functools.cache
def task_tools() -> dict[str, tuple[str, TaskTools]]:
    """``start tool -> (owner, its task tools)`` for every MAD that declares them."""
    return {c.tasks.start: (c.name, c.tasks) for c in contracts().values() if c.tasks is not None}


def owner_tools(owner: str) -> TaskTools | None:
    """The task tools of MAD ``owner``, None when it declares none."""
    return next((tools for name, tools in task_tools().values() if name == owner), None)


class TaskIds:
    """Grace's task ids: the owner's id, namespaced and signed."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"grace task ids\0" + secret.encode()).digest()

    def _mac(self, owner: str, inner: str) -> str:
        digest = hmac.new(self._key, f"{owner}:{inner}".encode(), hashlib.sha256).hexdigest()
        return digest[:MAC_CHARS]

    def encode(self, owner: str, inner: str) -> str:
        return f"{owner}:{inner}:{self._mac(owner, inner)}"

    def decode(self, task_id: str) -> tuple[str, str]:
        """``(owner, the owner's id)``; MCPError when Grace did not hand this id out."""
        owner, _, rest = task_id.partition(":")
        inner, _, mac = rest.rpartition(":")
        if not inner or not hmac.compare_digest(mac.encode(), self._mac(owner, inner).encode()):
            raise MCPError(code=INVALID_PARAMS, message=f"unknown task id {task_id!r}")
        return owner, inner


class GatewayTasks:
    """Server middleware on Grace's MCP server, outside the gateway (which relays calls)."""

    def __init__(self, gateway: Gateway, ids: TaskIds, logger: logging.Logger) -> None:
        self.gateway = gateway
        self.ids = ids
        self.log = logger
        self.tools = task_tools()

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if ctx.method == "initialize":
            return mcp_tasks.with_capability(await call_next(ctx), listing=False)
        if ctx.method == "tools/list":
            offered = {name: tools for name, (_owner, tools) in self.tools.items()}
            return mcp_tasks.advertise(await call_next(ctx), offered)
        params = ctx.params
        if ctx.method == "tools/call" and isinstance(params, Mapping) and "task" in params:
            return await self._as_task(params)
        return await call_next(ctx)

    async def _as_task(self, params: Mapping[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        found = self.tools.get(name) if isinstance(name, str) else None
        if found is None:
            raise MCPError(code=INVALID_PARAMS, message=f"tool {name!r} cannot run as a task")
        owner, tools = found
        reply = await self.relay(owner, tools.start, params.get("arguments") or {})
        inner = reply.get(tools.id_field)
        if not isinstance(inner, str) or not inner:
            raise MCPError(code=INTERNAL_ERROR, message=f"{owner} gave no {tools.id_field}")
        return {"task": await self.view(self.ids.encode(owner, inner))}

    async def relay(self, owner: str, tool: str, arguments: Any) -> dict[str, Any]:
        """The owner's structured reply, or MCPError with its one-line refusal."""
        result = await self.gateway.relay(owner, tool, arguments)
        if result.is_error:
            text = "; ".join(getattr(c, "text", "") for c in result.content) or "refused"
            code = INVALID_PARAMS if "unknown" in text or "invalid" in text else INTERNAL_ERROR
            raise MCPError(code=code, message=text)
        return dict(result.structured_content or {})

    def _decode(self, task_id: str) -> tuple[str, str, TaskTools]:
        """Owner, the owner's id and its task tools; MCPError for an id not handed out."""
        owner, inner = self.ids.decode(task_id)
        tools = owner_tools(owner)
        if tools is None:
            raise MCPError(code=INVALID_PARAMS, message=f"unknown task id {task_id!r}")
        return owner, inner, tools

    async def status(self, task_id: str) -> tuple[dict[str, Any], TaskTools]:
        owner, inner, tools = self._decode(task_id)
        return await self.relay(owner, tools.status, {tools.id_field: inner}), tools

    async def view(self, task_id: str) -> dict[str, Any]:
        reply, tools = await self.status(task_id)
        return mcp_tasks.view(task_id, reply, tools)

    async def result(self, task_id: str) -> dict[str, Any]:
        reply, tools = await mcp_tasks.until_finished(
            lambda: self.status(task_id),
            lambda found: found[1].terminal(str(found[0].get("status"))),
            task_id,
            interval=0.5,
        )
        return mcp_tasks.payload(task_id, reply, tools)

    async def cancel(self, task_id: str) -> dict[str, Any]:
        owner, inner, tools = self._decode(task_id)
        arguments = {tools.id_field: inner, "requester_id": CANCELLED_BY}
        reply = await self.relay(owner, tools.cancel, arguments)
        return mcp_tasks.view(task_id, reply, tools)


def method_tools(task_id: Any, method: str) -> str | None:
    """The tool a ``tasks/*`` request through Grace acts as (what a token's scope must
    allow): the owner's status tool for get and result, its cancel tool for cancel."""
    if not isinstance(task_id, str):
        return None
    tools = owner_tools(task_id.partition(":")[0])
    if tools is None:
        return None
    return tools.cancel if method == "tasks/cancel" else tools.status


def serve(service: MadService, gateway: Gateway, secret: str) -> GatewayTasks:
    """Serve MCP tasks on Grace: the middleware goes just before ``gateway``."""
    tasks = GatewayTasks(gateway, TaskIds(secret), service.log)
    chain = service.mcp.middleware
    chain.insert(chain.index(gateway), tasks)

    async def tasks_get(ctx: Any, params: t.GetTaskRequestParams) -> dict[str, Any]:
        return await tasks.view(params.task_id)

    async def tasks_result(ctx: Any, params: t.GetTaskPayloadRequestParams) -> dict[str, Any]:
        return await tasks.result(params.task_id)

    async def tasks_cancel(ctx: Any, params: t.CancelTaskRequestParams) -> dict[str, Any]:
        return await tasks.cancel(params.task_id)

    server = service.mcp
    sdk.add_request_handler(server, "tasks/get", t.GetTaskRequestParams, tasks_get)
    sdk.add_request_handler(server, "tasks/result", t.GetTaskPayloadRequestParams, tasks_result)
    sdk.add_request_handler(server, "tasks/cancel", t.CancelTaskRequestParams, tasks_cancel)
    return tasks
