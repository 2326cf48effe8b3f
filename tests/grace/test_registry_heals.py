"""A wiped bus (FLUSHALL, or a Redis back without its data) does not disable the gateway:
the owners publish their tool lists again as soon as they find them missing, and a call
through Grace completes again."""

from __future__ import annotations

import time

import pytest

from mads.core.access import registry_key
from mads.core.mcp_client import result_data
from tests.grace.support import call, grace_session, new_token, ok
from tests.support.waiting import async_wait_for

PROMPT = "System check, please respond with OK."
REMOTE = {"fiedler_converse", "fiedler_get_task_status", "rogers_get_connections"}


async def offered(url: str, token: str) -> set[str]:
    async with grace_session(url, token) as s:
        return {tool.name for tool in (await s.list_tools()).tools}


@pytest.mark.timeout(180)
async def test_flushall_is_healed_and_calls_complete_again(redis_server, start_mad) -> None:
    token = new_token()
    st = start_mad("sequential_thinking")
    env = {**redis_server.env, "SEQUENTIAL_THINKING_URL": f"{st.url}/mcp"}
    grace = start_mad("grace", env={**redis_server.env, "GRACE_API_TOKENS": token})
    start_mad("rogers", env=env)
    start_mad("fiedler", env={**env, "FIEDLER_DB_PATH": str(grace.workdir / "f.db")})
    await async_wait_for(
        lambda: _offers_all(grace.url, token), timeout=60, what="Grace to offer the tools"
    )

    assert redis_server.client().flushall()
    wiped = time.monotonic()
    assert not redis_server.client().exists(registry_key("fiedler"), registry_key("rogers"))

    registry = redis_server.client()
    await async_wait_for(
        lambda: (
            registry.exists(registry_key("fiedler")) and registry.exists(registry_key("rogers"))
        ),
        timeout=60,
        what="the owners to publish their tools again",
    )
    print(f"\ntool lists published again {time.monotonic() - wiped:.2f} s after FLUSHALL")
    await async_wait_for(
        lambda: _offers_all(grace.url, token), timeout=60, what="the tools offered again"
    )

    async with grace_session(grace.url, token) as s:
        created = await ok(s, "fiedler_converse", {"prompt": PROMPT, "requester_id": "after-flush"})

        async def completed() -> dict | None:
            done, status = await call(s, "fiedler_get_task_status", {"task_id": created["task_id"]})
            assert done, status
            return status if status["status"] == "COMPLETED" else None

        final = await async_wait_for(completed, timeout=60, what="the task to complete")
        assert final["result_payload"] == "OK"
        connections = result_data(await s.call_tool("rogers_get_connections", {}))
        assert connections["status"] == "success"
    assert "Unknown tool" not in grace.log_text()


async def _offers_all(url: str, token: str) -> bool:
    return await offered(url, token) >= REMOTE
