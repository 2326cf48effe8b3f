"""Fiedler as a task server on protocol 2026-07-28 (the ``io.modelcontextprotocol/tasks``
extension), driven by the official SDK client in its default mode with the extension
(tests/support/tasks_extension.py) against a real Fiedler process: fiedler_converse answers
a task handle, tasks/get follows it to completed with the result inlined, tasks/cancel
cancels; a client without the extension sees today's tools and JSON."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types.version import LATEST_MODERN_VERSION

from tests.support import tasks_extension as ext
from tests.support.fake_llm import FakeLLM
from tests.support.fiedler import Fiedler, call
from tests.support.waiting import async_wait_for

PROMPT = "System check, please respond with OK."
SMOKE = {"prompt": PROMPT, "requester_id": "ops-team"}


@pytest.fixture
def fiedler(start_fiedler: Callable[..., Fiedler]) -> Fiedler:
    return start_fiedler()


def task_client(fiedler: Fiedler) -> Client:
    return Client(f"{fiedler.process.url}/mcp", extensions=[ext.TasksExtension()])


async def test_a_task_from_handle_to_result(fiedler: Fiedler) -> None:
    async with task_client(fiedler) as client:
        assert client.protocol_version == LATEST_MODERN_VERSION
        assert ext.EXTENSION in (client.server_capabilities.extensions or {})

        created = await client.session.call_tool("fiedler_converse", SMOKE, allow_claimed=True)
        assert isinstance(created, ext.CreateTaskResult)
        assert created.status == "working"
        assert created.poll_interval_ms == 1000 and created.ttl_ms is None

        final = await ext.until_terminal(client.session, created.task_id)
        assert final.status == "completed" and final.result_type == "complete"
        assert [c["text"] for c in final.result["content"]] == ["OK"]
        assert final.result["isError"] is False

        # The same SQLite row, as the guide's tool reports it (the id *is* Fiedler's).
        status = await call(fiedler, "fiedler_get_task_status", {"task_id": created.task_id})
        assert status["status"] == "COMPLETED" and status["result_payload"] == "OK"

        # The SDK's call_tool resolves the claim by itself: the answer, no model turn spent.
        answered = await client.call_tool("fiedler_converse", SMOKE)
        assert [c.text for c in answered.content] == ["OK"] and not answered.is_error


async def test_a_client_without_the_extension_sees_todays_reply(fiedler: Fiedler) -> None:
    async with Client(f"{fiedler.process.url}/mcp") as client:
        assert client.protocol_version == LATEST_MODERN_VERSION
        plain = await client.call_tool("fiedler_converse", SMOKE)
        assert set(plain.structured_content) == {"status", "task_id", "stream_topic"}
        assert plain.structured_content["status"] == "pending"
        # The task methods need the extension declared: -32021, naming it.
        with pytest.raises(MCPError) as refused:
            await ext.get(client.session, plain.structured_content["task_id"])
        assert refused.value.error.code == -32021
        assert ext.EXTENSION in str(refused.value.error.data)


async def test_bad_task_requests_are_refused_clearly(fiedler: Fiedler) -> None:
    async with task_client(fiedler) as client:
        with pytest.raises(MCPError, match="unknown task id 'nope'"):
            await ext.get(client.session, "nope")
        with pytest.raises(MCPError, match="unknown task id 'nope'"):
            await ext.update(client.session, "nope")
        # Refused arguments: the plain tool error, and no task.
        refused = await client.session.call_tool(
            "fiedler_converse", {"prompt": "", "requester_id": "ops"}, allow_claimed=True
        )
        assert refused.is_error
        assert "invalid arguments for fiedler_converse" in refused.content[0].text
        assert fiedler.rows() == 0
        # 2026-07-28 has no tasks/result: the result comes with tasks/get.
        with pytest.raises(MCPError) as unknown:
            await client.session.send_request(
                ext.ResultOfTask(params=ext.TaskParams(task_id="nope")), ext.DetailedTask
            )
        assert unknown.value.error.code == -32601
        # tasks/update is acknowledged for a known task (no Fiedler task asks for input).
        created = await client.session.call_tool("fiedler_converse", SMOKE, allow_claimed=True)
        assert isinstance(created, ext.CreateTaskResult)
        acknowledged = await ext.update(client.session, created.task_id)
        assert acknowledged.model_dump(exclude_none=True, exclude={"meta"}) == {}


async def test_tasks_cancel_cancels_a_running_task(
    slow_fiedler: Fiedler, fake_llm: FakeLLM
) -> None:
    async with task_client(slow_fiedler) as client:
        arguments = {"prompt": "slow: via the extension", "requester_id": "ops"}
        created = await client.session.call_tool("fiedler_converse", arguments, allow_claimed=True)
        assert isinstance(created, ext.CreateTaskResult)
        await async_wait_for(
            lambda: arguments["prompt"] in fake_llm.streaming, timeout=30, what="the stream"
        )
        await ext.cancel(client.session, created.task_id)  # an empty acknowledgement
        final = await ext.until_terminal(client.session, created.task_id)
        assert final.status == "cancelled"
        assert final.status_message == "cancelled by the MCP client (tasks/cancel) while running"
        await async_wait_for(
            lambda: arguments["prompt"] in fake_llm.disconnects, timeout=10, what="stream closed"
        )
        status = await call(slow_fiedler, "fiedler_get_task_status", {"task_id": created.task_id})
        assert status["status"] == "CANCELLED"
        # Cancelling it again is acknowledged (idempotent); a finished task is a clear error.
        await ext.cancel(client.session, created.task_id)
        quick = {"prompt": "quick", "requester_id": "ops"}
        done = await client.session.call_tool("fiedler_converse", quick, allow_claimed=True)
        assert isinstance(done, ext.CreateTaskResult)
        assert (await ext.until_terminal(client.session, done.task_id)).status == "completed"
        with pytest.raises(MCPError, match="is already COMPLETED"):
            await ext.cancel(client.session, done.task_id)
        assert (await ext.get(client.session, done.task_id)).status == "completed"
