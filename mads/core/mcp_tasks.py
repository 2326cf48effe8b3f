"""MCP tasks (protocol 2025-11-25) over a MAD's task tools (:class:`TaskTools`): the wire
shapes a task server answers with, built from what the MAD's status tool reports, so the
MAD that owns the tasks and a gateway in front of it say the same thing.

The SDK (mcp 2.3) defines the task types but serves none of them; these are plain dicts
because the SDK drops ``None`` fields of a model it sends, and ``ttl`` must be there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from mcp.shared.exceptions import MCPError

from mads.core.contract import TaskTools

T = TypeVar("T")

POLL_INTERVAL_MS = 1000
"""What a task server suggests between two ``tasks/get`` (the work takes seconds)."""
RESULT_WAIT_S = 300.0
"""How long ``tasks/result`` waits for a task still working before saying so."""
RELATED_TASK = "io.modelcontextprotocol/related-task"
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
CAPABILITY: dict[str, Any] = {"cancel": {}, "requests": {"tools": {"call": {}}}}
"""``capabilities.tasks`` of a server that runs tool calls as tasks and cancels them."""


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


def view(task_id: str, status: Mapping[str, Any], tools: TaskTools) -> dict[str, Any]:
    """The MCP ``Task`` for ``task_id`` from the status tool's reply ``status``."""
    state = tools.states.get(str(status.get("status")), "working")
    found: dict[str, Any] = {
        "taskId": task_id,
        "status": state,
        "createdAt": status.get("created_at"),
        "lastUpdatedAt": status.get("updated_at"),
        "ttl": None,
        "pollInterval": POLL_INTERVAL_MS,
    }
    error = status.get(tools.error_field)
    if state in ("failed", "cancelled") and error:
        found["statusMessage"] = str(error)
    return found


def payload(task_id: str, status: Mapping[str, Any], tools: TaskTools) -> dict[str, Any]:
    """What ``tasks/result`` gives for a finished task: its answer as a tool result (an
    error result, with the reason, when it failed or was cancelled)."""
    state = tools.states.get(str(status.get("status")), "working")
    if state == "completed":
        text, failed = str(status.get(tools.result_field) or ""), False
    else:
        text, failed = f"task {status.get('status')}: {status.get(tools.error_field)}", True
    return {
        "content": [{"type": "text", "text": text}],
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
