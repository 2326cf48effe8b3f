"""MCP tasks over a MAD's task tools (:class:`TaskTools`), on both protocol generations the
SDK serves, built from what the MAD's status tool reports, so the MAD that owns the tasks
and a gateway in front of it say the same thing.

- **2025-11-25** (experimental tasks in the core protocol): a ``tools/call`` with a
  ``task`` parameter answers ``{"task": Task}``; ``tasks/get``, ``tasks/result``,
  ``tasks/cancel`` (and ``tasks/list`` where the owner lists) follow; ``ttl`` and
  ``pollInterval``; ``capabilities.tasks`` in ``initialize``.
- **2026-07-28** (the ``io.modelcontextprotocol/tasks`` extension): a client declares the
  extension in its per-request capabilities, and a call of a task-capable tool then answers
  ``CreateTaskResult`` (``resultType: "task"``); ``tasks/get`` gives the detailed task with
  the final ``result`` (or ``error``) inlined; ``tasks/update`` and ``tasks/cancel`` are
  acknowledgements; ``ttlMs`` and ``pollIntervalMs``; the extension in ``server/discover``.
  A client that did not declare the extension gets -32021 for the task methods.

The SDK (mcp 2.3) defines the 2025 types but serves neither generation; these are plain
dicts because the SDK drops ``None`` fields of a model it sends, and ``ttl`` must be there.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import mcp_types as t
from mcp.server import MCPServer
from mcp.server.mcpserver import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field, ValidationError

from mads.core import sdk
from mads.core.contract import TaskTools
from mads.core.logs import quoted

T = TypeVar("T")
Status = Mapping[str, Any]
"""What a MAD's status tool replies for one task (``status``, timestamps, result/error)."""

MAX_TASK_ID_CHARS = 256
POLL_INTERVAL_MS = 1000
"""What a task server suggests between two ``tasks/get`` (the work takes seconds)."""
RESULT_WAIT_S = 300.0
"""How long ``tasks/result`` waits for a task still working before saying so."""
DRAIN_S = 2.0
"""How long ``tasks/result`` still relays a finished task's output (it ends at once, unless
the output was produced before this process ran)."""
RELATED_TASK = "io.modelcontextprotocol/related-task"
EXTENSION = "io.modelcontextprotocol/tasks"
INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601
INTERNAL_ERROR = -32603
REQUEST_FAULTS = ("invalid arguments for ", "unknown tool ", "unknown task_id ")
"""How a tool's refusal begins when the request is at fault (the arguments, the tool's
name, a task id), as the owners word them."""


def refusal_code(text: str) -> int:
    """The JSON-RPC error code for a task method refused with ``text``: invalid params for a
    request at fault, internal error for the rest (a busy owner, one that did not answer, a
    store that is down: the request may be made again as it is)."""
    return INVALID_PARAMS if text.startswith(REQUEST_FAULTS) else INTERNAL_ERROR


CAPABILITY: dict[str, Any] = {"cancel": {}, "requests": {"tools": {"call": {}}}}
"""``capabilities.tasks`` of a server that runs tool calls as tasks and cancels them."""


class UpdateTaskRequestParams(t.RequestParams):
    """``tasks/update`` (2026-07-28 extension): answers to a task's input requests."""

    task_id: str = Field(alias="taskId")
    input_responses: dict[str, Any] = Field(default_factory=dict, alias="inputResponses")


class TaskBackend(Protocol):
    """Where a task server's tasks live: the MAD that owns them, or a gateway's upstreams."""

    offered: Mapping[str, TaskTools]
    """Task-capable tool name -> the task tools it belongs to."""
    listing: bool
    """Whether ``tasks/list`` is served (2025-11-25)."""
    poll_s: float
    """How often ``tasks/result`` reads the status again while it waits."""

    def task_id(self, tool: str, structured: Mapping[str, Any]) -> str:
        """The task id to hand out for a call of ``tool`` that replied ``structured``."""

    async def status(self, task_id: str) -> tuple[Status, TaskTools]:
        """The task's status reply; MCPError (-32602) for an id not handed out."""

    async def cancel(self, task_id: str) -> tuple[Status, TaskTools]:
        """Cancel it; MCPError (-32602) for a terminal task or an unknown id."""

    async def recent(self) -> list[tuple[str, Status, TaskTools]]:
        """The newest tasks (only when ``listing``)."""

    def follow(self, task_id: str) -> AsyncIterator[tuple[int, str]]:
        """The task's output as it is produced, ``(sequence number, text)``, for progress
        notifications; it may end early or never (the caller stops following once the
        task is finished)."""


# -- wire shapes ---------------------------------------------------------------------------


def _state(status: Status, tools: TaskTools) -> str:
    return tools.states.get(str(status.get("status")), "working")


def _common(task_id: str, status: Status, tools: TaskTools) -> dict[str, Any]:
    found: dict[str, Any] = {
        "taskId": task_id,
        "status": _state(status, tools),
        "createdAt": status.get("created_at"),
        "lastUpdatedAt": status.get("updated_at"),
    }
    error = status.get(tools.error_field)
    if found["status"] in ("failed", "cancelled") and error:
        found["statusMessage"] = str(error)
    return found


def view(task_id: str, status: Status, tools: TaskTools) -> dict[str, Any]:
    """The 2025-11-25 ``Task`` for ``task_id`` from the status tool's reply ``status``."""
    return {**_common(task_id, status, tools), "ttl": None, "pollInterval": POLL_INTERVAL_MS}


def modern_view(task_id: str, status: Status, tools: TaskTools) -> dict[str, Any]:
    """The 2026-07-28 extension's ``Task``."""
    return {**_common(task_id, status, tools), "ttlMs": None, "pollIntervalMs": POLL_INTERVAL_MS}


def detailed(task_id: str, status: Status, tools: TaskTools) -> dict[str, Any]:
    """The 2026-07-28 ``DetailedTask``: a completed task carries its final tool result, a
    failed one the error (an internal error: the work failed, not the request)."""
    found = modern_view(task_id, status, tools)
    if found["status"] == "completed":
        found["result"] = payload(task_id, status, tools)
    elif found["status"] == "failed":
        message = found.get("statusMessage") or "the task failed"
        found["error"] = {"code": INTERNAL_ERROR, "message": message}
    return found


def payload(task_id: str, status: Status, tools: TaskTools) -> dict[str, Any]:
    """A finished task's answer as a tool result (an error result, with the reason, when it
    failed or was cancelled)."""
    if _state(status, tools) == "completed":
        text, failed = str(status.get(tools.result_field) or ""), False
    else:
        text, failed = f"task {status.get('status')}: {status.get(tools.error_field)}", True
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": tools.final_structure(status),
        "isError": failed,
        "_meta": {RELATED_TASK: {"taskId": task_id}},
    }


def advertise(tools_list: Any, task_tools: Mapping[str, TaskTools]) -> Any:
    """Mark each tool a client may run as a task in a ``tools/list`` reply (wire dict)."""
    if isinstance(tools_list, dict):
        for tool in tools_list.get("tools", []):
            if isinstance(tool, dict) and tool.get("name") in task_tools:
                tool["execution"] = {"taskSupport": "optional"}
    return tools_list


def with_capability(initialized: Any, *, listing: bool) -> Any:
    """Add ``capabilities.tasks`` to an ``initialize`` reply (wire dict)."""
    if isinstance(initialized, dict):
        capability = dict(CAPABILITY, **({"list": {}} if listing else {}))
        initialized.setdefault("capabilities", {})["tasks"] = capability
    return initialized


def with_extension(discovered: Any) -> Any:
    """Add the tasks extension to a ``server/discover`` reply (wire dict)."""
    if isinstance(discovered, dict):
        capabilities = discovered.setdefault("capabilities", {})
        capabilities.setdefault("extensions", {})[EXTENSION] = {}
    return discovered


# -- the server ----------------------------------------------------------------------------


def _modern(ctx: Any) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def _declares_extension(ctx: Any) -> bool:
    capabilities = ctx.session.client_capabilities
    return bool(capabilities and capabilities.extensions and EXTENSION in capabilities.extensions)


def _progress_token(ctx: Any) -> str | int | None:
    meta = ctx.meta  # the SDK's RequestParamsMeta, a TypedDict
    token = meta.get("progress_token") if isinstance(meta, Mapping) else None
    return token if isinstance(token, str | int) else None


def _not_found(method: str) -> MCPError:
    return MCPError(code=METHOD_NOT_FOUND, message="Method not found", data=method)


async def until_finished(
    fetch: Callable[[], Awaitable[T]],
    finished: Callable[[T], bool],
    task_id: str,
    *,
    interval: float,
) -> T:
    """What ``tasks/result`` waits on: ``fetch()`` again every ``interval`` seconds until
    ``finished`` says so; after RESULT_WAIT_S an error saying the task is still working."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RESULT_WAIT_S
    while True:
        found = await fetch()
        if finished(found):
            return found
        if loop.time() > deadline:
            raise MCPError(
                code=INTERNAL_ERROR, message=f"task {task_id!r} is still working; ask again"
            )
        await asyncio.sleep(interval)


class TaskServer:
    """Server middleware (it must see ``tools/call`` before the argument check or the
    gateway does) plus the ``tasks/*`` request handlers, over one :class:`TaskBackend`."""

    def __init__(self, backend: TaskBackend) -> None:
        self.backend = backend

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if ctx.method == "initialize":
            return with_capability(await call_next(ctx), listing=self.backend.listing)
        if ctx.method == "server/discover":
            return with_extension(await call_next(ctx))
        if ctx.method == "tools/list":
            return advertise(await call_next(ctx), self.backend.offered)
        params = ctx.params
        if ctx.method == "tools/call" and isinstance(params, Mapping):
            if "task" in params and not _modern(ctx):
                return await self._legacy_task(ctx, params, call_next)
            name = params.get("name")
            offered = isinstance(name, str) and name in self.backend.offered
            if offered and _modern(ctx) and _declares_extension(ctx):
                return await self._modern_task(ctx, params, call_next)
        return await call_next(ctx)

    async def _legacy_task(
        self, ctx: Any, params: Mapping[str, Any], call_next: Callable[[Any], Awaitable[Any]]
    ) -> dict[str, Any]:
        name = checked_task_call(params)
        if name not in self.backend.offered:
            raise MCPError(
                code=INVALID_PARAMS, message=f"tool {quoted(name, 60)} cannot run as a task"
            )
        plain = {k: v for k, v in params.items() if k != "task"}
        reply = _wire(await call_next(dataclasses.replace(ctx, params=plain)))
        if reply.get("isError"):
            texts = [c.get("text", "") for c in reply.get("content", []) if isinstance(c, dict)]
            message = "; ".join(texts) or "refused"
            raise MCPError(code=refusal_code(message), message=message)
        task_id = self.backend.task_id(str(name), reply.get("structuredContent") or {})
        return {"task": view(task_id, *await self.backend.status(task_id))}

    async def _modern_task(
        self, ctx: Any, params: Mapping[str, Any], call_next: Callable[[Any], Awaitable[Any]]
    ) -> dict[str, Any]:
        """A refused call is answered as the plain tool error it is; an accepted one as the
        handle of the task it started."""
        reply = _wire(await call_next(ctx))
        if reply.get("isError"):
            return reply
        task_id = self.backend.task_id(str(params["name"]), reply.get("structuredContent") or {})
        created = {
            "resultType": "task",
            **modern_view(task_id, *await self.backend.status(task_id)),
        }
        if "_meta" in reply:
            created["_meta"] = reply["_meta"]
        return created

    # -- request handlers ------------------------------------------------------------------

    async def get(self, ctx: Any, params: t.GetTaskRequestParams) -> dict[str, Any]:
        check_task_id(params.task_id)
        status, tools = await self.backend.status(params.task_id)
        if _modern(ctx):
            require_client_extension(ctx, EXTENSION)
            return detailed(params.task_id, status, tools)
        return view(params.task_id, status, tools)

    async def result(self, ctx: Any, params: t.GetTaskPayloadRequestParams) -> dict[str, Any]:
        if _modern(ctx):
            raise _not_found("tasks/result")  # 2026-07-28: the result comes with tasks/get
        check_task_id(params.task_id)
        progress = _progress_token(ctx) is not None
        follower = asyncio.create_task(self._report(ctx, params.task_id)) if progress else None
        try:
            status, tools = await until_finished(
                lambda: self.backend.status(params.task_id),
                lambda found: found[1].terminal(str(found[0].get("status"))),
                params.task_id,
                interval=self.backend.poll_s,
            )
            if follower is not None:
                await asyncio.wait({follower}, timeout=DRAIN_S)
        finally:
            if follower is not None:
                follower.cancel()
        return payload(params.task_id, status, tools)

    async def _report(self, ctx: Any, task_id: str) -> None:
        """The task's output as progress notifications on the ``tasks/result`` request
        (answered as a stream of events when it carries a ``progressToken``)."""
        async for seq, text in self.backend.follow(task_id):
            await ctx.session.report_progress(seq, None, text)

    async def cancel(self, ctx: Any, params: t.CancelTaskRequestParams) -> dict[str, Any]:
        if _modern(ctx):
            require_client_extension(ctx, EXTENSION)
        check_task_id(params.task_id)
        status, tools = await self.backend.cancel(params.task_id)
        return {} if _modern(ctx) else view(params.task_id, status, tools)

    async def update(self, ctx: Any, params: UpdateTaskRequestParams) -> dict[str, Any]:
        """No MAD task ever asks for input, so no response is outstanding: every one is
        ignored, as the extension says, once the task is known."""
        if not _modern(ctx):
            raise _not_found("tasks/update")
        require_client_extension(ctx, EXTENSION)
        check_task_id(params.task_id)
        await self.backend.status(params.task_id)
        return {}

    async def list_tasks(self, ctx: Any, params: t.PaginatedRequestParams) -> dict[str, Any]:
        if _modern(ctx) or not self.backend.listing:
            raise _not_found("tasks/list")
        if params.cursor is not None:  # every task comes in the one page: none handed out
            raise MCPError(
                code=INVALID_PARAMS, message=f"invalid cursor {quoted(params.cursor, 60)}"
            )
        return {"tasks": [view(*found) for found in await self.backend.recent()]}

    def add_handlers(self, server: MCPServer) -> None:
        """Answer the ``tasks/*`` methods on ``server`` (the caller places the middleware)."""
        handlers: dict[str, tuple[Any, Any]] = {
            "tasks/get": (t.GetTaskRequestParams, self.get),
            "tasks/result": (t.GetTaskPayloadRequestParams, self.result),
            "tasks/cancel": (t.CancelTaskRequestParams, self.cancel),
            "tasks/update": (UpdateTaskRequestParams, self.update),
        }
        if self.backend.listing:
            handlers["tasks/list"] = (t.PaginatedRequestParams, self.list_tasks)
        for method, (params_type, handler) in handlers.items():
            sdk.add_request_handler(server, method, params_type, handler)


def check_task_id(task_id: str) -> None:
    """A task id that no task can have is refused (-32602) before any store is asked."""
    if not 0 < len(task_id) <= MAX_TASK_ID_CHARS or not task_id.isprintable():
        raise MCPError(
            code=INVALID_PARAMS,
            message=f"unknown task id {quoted(task_id, 60)}: a task id is 1 to "
            f"{MAX_TASK_ID_CHARS} printable characters",
        )


def checked_task_call(params: Mapping[str, Any]) -> str:
    """The tool name of a task-augmented ``tools/call`` (2025-11-25) whose params are what
    the protocol says (a string ``name``, an object ``arguments``, ``task`` an object
    with an optional non-negative ``ttl``); otherwise -32602 saying what is wrong."""
    try:
        checked = t.CallToolRequestParams.model_validate(dict(params))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error.get("loc", ())) or "params"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        raise MCPError(
            code=INVALID_PARAMS, message=f"invalid tools/call params: {where}: {message}"
        ) from None
    ttl = checked.task.ttl if checked.task is not None else None
    if checked.task is None or (ttl is not None and ttl < 0):
        raise MCPError(
            code=INVALID_PARAMS,
            message="invalid tools/call params: task must be an object, its ttl a number of "
            "milliseconds (at least 0)",
        )
    return checked.name


def _wire(reply: Any) -> dict[str, Any]:
    if isinstance(reply, dict):
        return reply
    dumped: dict[str, Any] = reply.model_dump(by_alias=True, mode="json", exclude_none=True)
    return dumped
