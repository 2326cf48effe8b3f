"""MCP tasks through the front door, on both protocol generations (:mod:`mads.core.mcp_tasks`).

An outside client connected only to Grace runs the group's long-running work as MCP tasks:
a tool a MAD's contract declares task-capable (:class:`~mads.core.contract.TaskTools`,
Fiedler's ``fiedler_converse``) is offered with ``execution.taskSupport``; asked for a task
it is relayed as a plain call, and Grace answers with a task handle. The task methods are
answered with the owner's status and cancel tools' replies; a status reply is given again
while the owner has published no change since (:mod:`mads.grace.task_status`), so polling
costs the owner nothing between changes. Nothing a replica keeps is needed by another: any
Grace replica answers for any task.

Task ids are namespaced per upstream MAD and signed: ``<owner>:<owner's id>:<mac>``, the MAC
keyed from Grace's own bus credential (every replica has the same one). A task id Grace did
not hand out — another MAD's raw id, a changed one — is refused as unknown.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any

from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

from mads.core.contract import TaskTools
from mads.core.errors import MadError
from mads.core.mcp_tasks import INTERNAL_ERROR, INVALID_PARAMS, Status, TaskServer, refusal_code
from mads.core.registry import contracts
from mads.core.service import MadService
from mads.grace.gateway import Gateway, Relay, success_result
from mads.grace.task_status import TaskStatuses, keep

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
    """The group's task-capable upstreams as a :class:`~mads.core.mcp_tasks.TaskBackend`:
    the task-augmented call is relayed by the gateway like any call; status and cancel are
    relayed as the owner's tools."""

    listing = False
    poll_s = 0.5

    def __init__(self, gateway: Gateway, ids: TaskIds, statuses: TaskStatuses) -> None:
        self.gateway = gateway
        self.ids = ids
        self.statuses = statuses
        self.owners = task_tools()
        self.offered: Mapping[str, TaskTools] = {
            name: tools for name, (_owner, tools) in self.owners.items()
        }

    def task_id(self, tool: str, structured: Mapping[str, Any]) -> str:
        owner, tools = self.owners[tool]
        inner = structured.get(tools.id_field)
        if not isinstance(inner, str) or not inner:
            raise MCPError(code=INTERNAL_ERROR, message=f"{owner} gave no {tools.id_field}")
        return self.ids.encode(owner, inner)

    async def relay(self, owner: str, tool: str, arguments: Any) -> dict[str, Any]:
        """The owner's structured reply, or MCPError with its one-line refusal."""
        try:
            return await structured(self.gateway.relay(owner, tool, arguments))
        except Refused as refused:
            raise refused.mcp_error() from None

    def _decode(self, task_id: str) -> tuple[str, str, TaskTools]:
        """Owner, the owner's id and its task tools; MCPError for an id not handed out."""
        owner, inner = self.ids.decode(task_id)
        tools = owner_tools(owner)
        if tools is None:
            raise MCPError(code=INVALID_PARAMS, message=f"unknown task id {task_id!r}")
        return owner, inner, tools

    async def status(self, task_id: str) -> tuple[Status, TaskTools]:
        """The owner's status reply: the one Grace holds while nothing has changed since
        (:mod:`mads.grace.task_status`), else relayed."""
        owner, inner, tools = self._decode(task_id)

        def read() -> Awaitable[dict[str, Any]]:
            return structured(self.gateway.relay(owner, tools.status, {tools.id_field: inner}))

        try:
            return await self.statuses.status(owner, inner, tools, read), tools
        except Refused as refused:
            raise refused.mcp_error() from None

    async def cancel(self, task_id: str) -> tuple[Status, TaskTools]:
        owner, inner, tools = self._decode(task_id)
        arguments = {tools.id_field: inner, "requester_id": CANCELLED_BY}
        asked = time.monotonic()
        answer = await self.relay(owner, tools.cancel, arguments)
        self.statuses.remember(owner, inner, answer, asked)
        return answer, tools

    async def recent(self) -> list[tuple[str, Status, TaskTools]]:
        return []  # not listing: a task id is all a client of Grace needs

    async def follow(self, task_id: str) -> AsyncIterator[tuple[int, str]]:
        """The owner's chunks on its stream for this task, from now on (pub/sub keeps none
        from before), until the one marked ``done``."""
        _owner, inner, tools = self._decode(task_id)
        if tools.stream_prefix is None:
            return
        stream = f"{tools.stream_prefix}{inner}"
        async for message in self.gateway.bus.messages(channels_=[stream], for_client=True):
            chunk = message.envelope.payload if message.envelope is not None else {}
            if chunk.get("done"):
                return
            if "delta" in chunk:
                yield int(chunk.get("seq", 0)), str(chunk["delta"])


class Refused(MadError):
    """The owner refused a relayed call: its answer, an error result."""

    def __init__(self, result: CallToolResult) -> None:
        super().__init__("the owner refused the call")
        self.result = result

    def mcp_error(self) -> MCPError:
        """The refusal as the task methods answer it: its one line, with the code that
        says whether the request was at fault."""
        text = "; ".join(getattr(c, "text", "") for c in self.result.content) or "refused"
        return MCPError(code=refusal_code(text), message=text)


async def structured(answer: Awaitable[CallToolResult]) -> dict[str, Any]:
    """The structured content of a relayed call's answer; :class:`Refused` for an error."""
    result = await answer
    if result.is_error:
        raise Refused(result)
    return dict(result.structured_content or {})


class StatusToolAnswers:
    """An owner's status tool called through Grace (``fiedler_get_task_status``, the way the
    guide polls a task): answered from the same kept answers as ``tasks/get``, so a client
    polling a task costs the owner a relayed call per change, not per poll. A call with
    other arguments than the task id, or the owner's refusal, is relayed and answered as
    it came."""

    def __init__(self, statuses: TaskStatuses, owner: str, tools: TaskTools) -> None:
        self.statuses = statuses
        self.owner = owner
        self.tools = tools

    async def __call__(self, owner: str, arguments: dict[str, Any], relay: Relay) -> CallToolResult:
        inner = arguments.get(self.tools.id_field)
        just_an_id = arguments.keys() == {self.tools.id_field} and isinstance(inner, str)
        if owner != self.owner or not just_an_id or not inner:
            return await relay()

        def read() -> Awaitable[dict[str, Any]]:
            return structured(relay())

        try:
            answer = await self.statuses.status(owner, inner, self.tools, read)
        except Refused as refused:
            return refused.result
        return success_result(dict(answer))


def method_tools(task_id: Any, method: str) -> str | None:
    """The tool a ``tasks/*`` request through Grace acts as (what a token's scope must
    allow): the owner's cancel tool for cancel, its status tool for the others."""
    if not isinstance(task_id, str):
        return None
    tools = owner_tools(task_id.partition(":")[0])
    if tools is None:
        return None
    return tools.cancel if method == "tasks/cancel" else tools.status


def serve(service: MadService, gateway: Gateway, secret: str) -> TaskServer:
    """Serve MCP tasks on Grace: the middleware goes just before ``gateway``; the owners'
    task states are followed on their status channels."""
    owners = {owner: tools for owner, tools in task_tools().values()}
    statuses = TaskStatuses(gateway.bus, owners, service.log)
    service.add_background(lambda: keep(statuses))
    for owner, tools in owners.items():
        gateway.keep_answers(tools.status, StatusToolAnswers(statuses, owner, tools))
    server = TaskServer(GatewayTasks(gateway, TaskIds(secret), statuses))
    chain = service.mcp.middleware
    chain.insert(chain.index(gateway), server)
    server.add_handlers(service.mcp)
    return server
