"""The SDK's high-level ``mcp.Client`` in its default ``auto`` mode negotiates the 2026-07-28
protocol (``server/discover``, no initialize handshake), which the SDK serves on its own
stateless path rather than the direct path. Through Grace, with a token, it lists the
group's tools and runs the guide's step 8, and refusals read the same."""

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import LATEST_MODERN_VERSION

from mads.core.mcp_client import error_text, result_data
from tests.support.grace import new_token
from tests.support.group import ProcessGroup
from tests.support.group import mad_group as mad_group  # the fixture
from tests.support.waiting import async_wait_for

SMOKE = {"prompt": "System check, please respond with OK.", "requester_id": "ops-team"}


async def test_default_sdk_client_runs_step8_through_grace(mad_group: ProcessGroup) -> None:
    token = new_token()
    mad_group.start("sequential_thinking")
    grace = mad_group.start("grace", {"GRACE_API_TOKENS": token})
    mad_group.start("fiedler")

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with http, Client(streamable_http_client(f"{grace.url}/mcp", http_client=http)) as c:
        assert c.protocol_version == LATEST_MODERN_VERSION

        async def fiedler_listed() -> bool:
            names = {t.name for t in (await c.list_tools()).tools}
            return {"fiedler_converse", "grace_send_message"} <= names

        await async_wait_for(fiedler_listed, timeout=15, what="fiedler tools listed by grace")

        pending = result_data(await c.call_tool("fiedler_converse", SMOKE))
        assert pending["status"] == "pending"

        async def completed() -> dict | None:
            result = await c.call_tool("fiedler_get_task_status", {"task_id": pending["task_id"]})
            status = result_data(result)
            return status if status["status"] in ("COMPLETED", "FAILED") else None

        status = await async_wait_for(completed, timeout=30, interval=0.2, what="task done")
        assert status["status"] == "COMPLETED" and "OK" in str(status["result_payload"])

        sent = result_data(
            await c.call_tool("grace_send_message", {"channel": "mad.topic.x", "payload": {}})
        )
        assert sent["status"] == "success"

        system = {"channel": "mad.system.x", "payload": {}}
        refused = await c.call_tool("grace_send_message", system)
        assert refused.is_error
        assert "is not for outside clients" in error_text(refused, "grace_send_message")
        unknown = await c.call_tool("grace_send_message", {"channel": "mad.topic.x", "x": 1})
        assert unknown.is_error and "unknown argument(s): 'x'" in error_text(unknown)
