"""MCP tasks through Grace, on both protocol generations: an outside MCP client connected
only to Grace (bearer token) runs fiedler_converse as a task, polls it, fetches its result
and cancels; Grace hands out namespaced, signed task ids and refuses one it did not hand
out; a token's scopes apply to the task methods as to the tools they act as. Real
processes, the official SDK client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as t
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.version import LATEST_MODERN_VERSION

from mads.grace import tokens
from tests.support import tasks_extension as ext
from tests.support.fake_llm import FakeLLM, echo_chunks
from tests.support.grace import grace_session, new_token
from tests.support.group import ProcessGroup
from tests.support.group import mad_group as mad_group  # the fixture
from tests.support.waiting import async_wait_for

PROMPT = "System check, please respond with OK."


async def as_task(s: Any, arguments: dict[str, Any]) -> t.CreateTaskResult:
    params = t.CallToolRequestParams(
        name="fiedler_converse", arguments=arguments, task=t.TaskMetadata(ttl=60_000)
    ).model_dump(by_alias=True, mode="json", exclude_none=True)
    return t.CreateTaskResult.model_validate(
        await s._dispatcher.send_raw_request("tools/call", params, {})
    )


async def get(s: Any, task_id: str) -> t.GetTaskResult:
    request = t.GetTaskRequest(params=t.GetTaskRequestParams(task_id=task_id))
    return await s.send_request(request, t.GetTaskResult)


async def cancel(s: Any, task_id: str) -> t.CancelTaskResult:
    request = t.CancelTaskRequest(params=t.CancelTaskRequestParams(task_id=task_id))
    return await s.send_request(request, t.CancelTaskResult)


async def test_tasks_through_grace(mad_group: ProcessGroup, tmp_path: Path) -> None:
    admin, reader = new_token(), new_token()
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(
        json.dumps(
            {
                "tokens": [
                    {
                        "name": "starter",
                        "sha256": tokens.digest(reader),
                        "scopes": {"tools": ["fiedler_converse", "fiedler_get_task_status"]},
                    }
                ]
            }
        )
    )
    mad_group.start("sequential_thinking")
    grace = mad_group.start(
        "grace", {"GRACE_API_TOKENS": admin, "GRACE_TOKENS_FILE": str(tokens_file)}
    )
    mad_group.start("fiedler")

    async with grace_session(grace.url, admin) as s:

        async def offered() -> bool:
            listed = {tool.name: tool for tool in (await s.list_tools()).tools}
            tool = listed.get("fiedler_converse")
            return tool is not None and tool.execution is not None

        await async_wait_for(offered, timeout=20, what="fiedler_converse offered as a task")

        created = await as_task(s, {"prompt": PROMPT, "requester_id": "ops-team"})
        task_id = created.task.task_id
        owner, inner, mac = task_id.split(":")
        assert owner == "fiedler" and len(mac) == 24

        async def completed() -> t.GetTaskResult | None:
            seen = await get(s, task_id)
            return seen if seen.status == "completed" else None

        final = await async_wait_for(completed, timeout=30, interval=0.3, what="the task")
        assert final.task_id == task_id
        result = await s.send_request(
            t.GetTaskPayloadRequest(params=t.GetTaskPayloadRequestParams(task_id=task_id)),
            t.CallToolResult,
        )
        assert [c.text for c in result.content] == ["OK"]
        # The same task, through the guide's tool, under the owner's own id.
        status = await s.call_tool("fiedler_get_task_status", {"task_id": inner})
        assert status.structured_content["result_payload"] == "OK"

        # Ids Grace did not hand out: the owner's raw id, another signature, another owner.
        for forged in (inner, f"fiedler:{inner}:{'0' * 24}", f"rogers:{inner}:{mac}"):
            with pytest.raises(MCPError, match="unknown task id"):
                await get(s, forged)

        # A finished task cannot be cancelled: the owner's refusal, relayed.
        with pytest.raises(MCPError, match="is already COMPLETED"):
            await cancel(s, task_id)

    # A token scoped to starting and reading tasks may not cancel them.
    async with grace_session(grace.url, reader) as s:
        mine = await as_task(s, {"prompt": PROMPT, "requester_id": "dashboard"})
        assert (await get(s, mine.task.task_id)).task_id == mine.task.task_id
        with pytest.raises(MCPError):  # HTTP 403, before anything reaches Fiedler
            await cancel(s, mine.task.task_id)
        assert (await get(s, mine.task.task_id)).status != "cancelled"
    assert "lacks the scope for tool 'fiedler_cancel_task' (tasks/cancel)" in grace.log_text()


async def test_tasks_extension_through_grace(mad_group: ProcessGroup) -> None:
    """The same on protocol 2026-07-28: the official client in its default mode with the
    tasks extension, connected only to Grace with a bearer token."""
    token = new_token()
    mad_group.start("sequential_thinking")
    grace = mad_group.start("grace", {"GRACE_API_TOKENS": token})
    mad_group.start("fiedler")
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    transport = streamable_http_client(f"{grace.url}/mcp", http_client=http)
    async with http, Client(transport, extensions=[ext.TasksExtension()]) as client:
        assert client.protocol_version == LATEST_MODERN_VERSION
        assert ext.EXTENSION in (client.server_capabilities.extensions or {})

        async def offered() -> bool:
            return "fiedler_converse" in {tool.name for tool in (await client.list_tools()).tools}

        await async_wait_for(offered, timeout=20, what="fiedler_converse through grace")
        smoke = {"prompt": PROMPT, "requester_id": "ops-team"}
        created = await client.session.call_tool("fiedler_converse", smoke, allow_claimed=True)
        assert isinstance(created, ext.CreateTaskResult)
        owner, inner, mac = created.task_id.split(":")
        assert owner == "fiedler" and len(mac) == 24

        final = await ext.until_terminal(client.session, created.task_id)
        assert final.status == "completed"
        assert [c["text"] for c in final.result["content"]] == ["OK"]
        answered = await client.call_tool("fiedler_converse", smoke)  # the claim, resolved
        assert [c.text for c in answered.content] == ["OK"]

        for forged in (inner, f"fiedler:{inner}:{'0' * 24}"):
            with pytest.raises(MCPError, match="unknown task id"):
                await ext.get(client.session, forged)
        with pytest.raises(MCPError, match="unknown task id"):
            await ext.update(client.session, inner)
        with pytest.raises(MCPError, match="is already COMPLETED"):
            await ext.cancel(client.session, created.task_id)


async def test_tasks_result_through_grace_reports_progress(mad_group: ProcessGroup) -> None:
    """Through Grace, tasks/result with a progressToken relays the task's chunks from
    mad.stream.<id> as progress notifications, from the moment it was asked."""
    llm = FakeLLM().start()
    llm.delay = 0.3
    try:
        token = new_token()
        mad_group.start("sequential_thinking")
        grace = mad_group.start("grace", {"GRACE_API_TOKENS": token})
        mad_group.start("fiedler", llm.fiedler_env)
        prompt = "a few words to stream through the front door"
        async with grace_session(grace.url, token) as s:

            async def offered() -> bool:
                return "fiedler_converse" in {tool.name for tool in (await s.list_tools()).tools}

            await async_wait_for(offered, timeout=20, what="fiedler_converse through grace")
            created = await as_task(s, {"prompt": prompt, "requester_id": "ops"})
            seen: list[tuple[float, str | None]] = []

            async def progressed(progress: float, total: float | None, message: str | None):
                seen.append((progress, message))

            result = await s.send_request(
                t.GetTaskPayloadRequest(
                    params=t.GetTaskPayloadRequestParams(task_id=created.task.task_id)
                ),
                t.CallToolResult,
                progress_callback=progressed,
            )
        assert [c.text for c in result.content] == [f"Echo: {prompt}"]
        chunks = echo_chunks(prompt)
        messages = [message for _, message in seen]
        assert messages and messages == chunks[len(chunks) - len(messages) :], messages
        assert [p for p, _ in seen] == sorted(p for p, _ in seen)
    finally:
        llm.stop()
