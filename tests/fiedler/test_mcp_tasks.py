"""Fiedler as an MCP task server (protocol 2025-11-25), driven by the official SDK client
over HTTP against a real Fiedler process: a task-augmented fiedler_converse answers with a
task handle, tasks/get follows it to completed, tasks/result gives the answer, tasks/cancel
cancels; states map one to one onto Fiedler's, and a plain call is unchanged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mcp_types as t
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.support.fake_llm import FakeLLM, echo_chunks
from tests.support.fiedler import Fiedler, call
from tests.support.waiting import async_wait_for

PROMPT = "System check, please respond with OK."


@pytest.fixture
def fiedler(start_fiedler: Callable[..., Fiedler]) -> Fiedler:
    return start_fiedler()


def legacy_client(fiedler: Fiedler) -> Client:
    """The official client on the 2025-11-25 protocol (its default, auto, ends on 2026-07-28)."""
    return Client(f"{fiedler.process.url}/mcp", mode="legacy")


async def as_task(client: Any, arguments: dict[str, Any]) -> t.CreateTaskResult:
    """A task-augmented tools/call (the SDK's client has no helper for it)."""
    params = t.CallToolRequestParams(
        name="fiedler_converse", arguments=arguments, task=t.TaskMetadata(ttl=60_000)
    ).model_dump(by_alias=True, mode="json", exclude_none=True)
    raw = await client.session._dispatcher.send_raw_request("tools/call", params, {})
    return t.CreateTaskResult.model_validate(raw)


async def get(client: Any, task_id: str) -> t.GetTaskResult:
    request = t.GetTaskRequest(params=t.GetTaskRequestParams(task_id=task_id))
    return await client.session.send_request(request, t.GetTaskResult)


async def test_a_task_from_handle_to_result(fiedler: Fiedler) -> None:
    async with legacy_client(fiedler) as session:
        await _handle_to_result(session)


async def _handle_to_result(session: Any) -> None:
    assert session.server_capabilities.tasks is not None
    tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert tools["fiedler_converse"].execution.task_support == "optional"
    assert tools["fiedler_get_task_status"].execution is None

    created = await as_task(session, {"prompt": PROMPT, "requester_id": "ops-team"})
    task_id = created.task.task_id
    assert created.task.status == "working" and created.task.poll_interval == 1000

    async def completed() -> t.GetTaskResult | None:
        seen = await get(session, task_id)
        return seen if seen.status == "completed" else None

    final = await async_wait_for(completed, timeout=30, interval=0.2, what="the task")
    assert final.task_id == task_id and final.ttl is None
    result = await session.session.send_request(
        t.GetTaskPayloadRequest(params=t.GetTaskPayloadRequestParams(task_id=task_id)),
        t.CallToolResult,
    )
    assert [c.text for c in result.content] == ["OK"] and not result.is_error

    # The same row, as the guide's tool reports it.
    status = await session.call_tool("fiedler_get_task_status", {"task_id": task_id})
    assert status.structured_content["status"] == "COMPLETED"
    assert status.structured_content["result_payload"] == "OK"
    listed = await session.session.send_request(t.ListTasksRequest(), t.ListTasksResult)
    assert task_id in {task.task_id for task in listed.tasks}

    # A client that does not ask for a task gets exactly today's reply.
    plain = await session.call_tool(
        "fiedler_converse", {"prompt": PROMPT, "requester_id": "ops-team"}
    )
    assert set(plain.structured_content) == {"status", "task_id", "stream_topic"}
    assert plain.structured_content["status"] == "pending"


async def test_bad_task_requests_are_refused_clearly(fiedler: Fiedler) -> None:
    async with legacy_client(fiedler) as session:
        await _refused(session)


async def _refused(session: Any) -> None:
    with pytest.raises(MCPError, match="unknown task id 'nope'"):
        await get(session, "nope")
    with pytest.raises(MCPError, match="invalid arguments for fiedler_converse"):
        await as_task(session, {"prompt": "", "requester_id": "ops"})
    params = {"name": "fiedler_list_tasks", "arguments": {}, "task": {"ttl": 1000}}
    with pytest.raises(MCPError, match="cannot run as a task"):
        await session.session._dispatcher.send_raw_request("tools/call", params, {})
    listed = await session.session.send_request(t.ListTasksRequest(), t.ListTasksResult)
    assert listed.tasks == []  # nothing was created


async def test_tasks_cancel_cancels_a_running_task(
    slow_fiedler: Fiedler, fake_llm: FakeLLM
) -> None:
    async with legacy_client(slow_fiedler) as client:
        created = await as_task(client, {"prompt": "slow: via tasks", "requester_id": "ops"})
        task_id = created.task.task_id
        await async_wait_for(
            lambda: "slow: via tasks" in fake_llm.streaming, timeout=30, what="the stream"
        )
        request = t.CancelTaskRequest(params=t.CancelTaskRequestParams(task_id=task_id))
        cancelled = await client.session.send_request(request, t.CancelTaskResult)
        assert cancelled.status == "cancelled"
        assert cancelled.status_message == (
            "cancelled by the MCP client (tasks/cancel) while running"
        )
        result = await client.session.send_request(
            t.GetTaskPayloadRequest(params=t.GetTaskPayloadRequestParams(task_id=task_id)),
            t.CallToolResult,
        )
        assert result.is_error
        status = await call(slow_fiedler, "fiedler_get_task_status", {"task_id": task_id})
        assert status["status"] == "CANCELLED"
        # Cancelling a finished task: a clear error, nothing changed.
        done = await as_task(client, {"prompt": "quick", "requester_id": "ops"})

        async def finished() -> bool:
            return (await get(client, done.task.task_id)).status == "completed"

        await async_wait_for(finished, timeout=30, interval=0.2, what="the quick task")
        request = t.CancelTaskRequest(params=t.CancelTaskRequestParams(task_id=done.task.task_id))
        with pytest.raises(MCPError, match="is already COMPLETED"):
            await client.session.send_request(request, t.CancelTaskResult)


async def test_tasks_result_reports_the_stream_as_progress(
    start_fiedler: Callable[..., Fiedler], fake_llm: FakeLLM
) -> None:
    """A tasks/result that asks for progress (a progressToken) is answered as a stream of
    events: each chunk of the task's output as a progress notification, then the result.
    The chunks also stay on mad.stream.<task_id> (tests/fiedler/test_get_streams.py)."""
    fake_llm.delay = 0.05
    fiedler = start_fiedler(fake_llm.fiedler_env)
    prompt = "report progress in five words"
    async with legacy_client(fiedler) as client:
        created = await as_task(client, {"prompt": prompt, "requester_id": "ops"})
        seen: list[tuple[float, str | None]] = []

        async def progressed(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, message))

        result = await client.session.send_request(
            t.GetTaskPayloadRequest(
                params=t.GetTaskPayloadRequestParams(task_id=created.task.task_id)
            ),
            t.CallToolResult,
            progress_callback=progressed,
        )
    assert [c.text for c in result.content] == [f"Echo: {prompt}"]
    assert [message for _, message in seen] == echo_chunks(prompt)
    assert [progress for progress, _ in seen] == list(range(1, len(seen) + 1))


async def test_a_plain_call_with_a_progress_token_is_answered_as_before(
    fiedler: Fiedler,
) -> None:
    """Asking for progress on a call that has none to give changes nothing but the
    response's framing (a stream of events holding the same reply)."""
    async with legacy_client(fiedler) as client:
        seen: list[float] = []

        async def progressed(progress: float, total: float | None, message: str | None) -> None:
            seen.append(progress)

        reply = await client.call_tool(
            "fiedler_converse",
            {"prompt": PROMPT, "requester_id": "ops"},
            progress_callback=progressed,
        )
    assert reply.structured_content["status"] == "pending" and seen == []
