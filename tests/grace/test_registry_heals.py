"""A wiped bus (FLUSHALL, or a Redis back without its data) does not disable the gateway.

Owners publish their tool lists before each heartbeat, so by the first heartbeat of each
owner after the wipe every tool is offered again; in between, a call to a tool an owner's
contract declares goes to that owner and is never "unknown"."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from mads.core import channels
from mads.core.access import registry_key
from mads.core.mcp_client import result_data
from mads.core.registry import contracts
from tests.support.evidence import record
from tests.support.grace import call, grace_session, new_token, ok
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_for, wait_for

PROMPT = "System check, please respond with OK."
OWNERS = ("fiedler", "rogers")


async def offered(url: str, token: str) -> set[str]:
    async with grace_session(url, token) as s:
        return {tool.name for tool in (await s.list_tools()).tools}


def declared_remote_tools() -> set[str]:
    return {tool for name in OWNERS for tool in contracts()[name].tools}


def heartbeats_after_the_wipe(redis_server: RedisServer, timeout: float = 60) -> dict[str, Any]:
    """FLUSHALL, then wait for each owner's first heartbeat published after it.

    A marker published on the listening connection right after the FLUSHALL orders the
    deliveries: what arrives after the marker was published after the wipe."""
    listener = redis_server.client().pubsub(ignore_subscribe_messages=True)
    marker = f"test.marker.{uuid.uuid4().hex}"
    listener.subscribe(marker, *(channels.heartbeat(name) for name in OWNERS))
    wait_for(
        lambda: redis_server.client().pubsub_numsub(marker)[0][1] == 1,
        timeout=10,
        what="the listener's subscriptions",
    )
    admin = redis_server.client()
    assert admin.flushall()
    admin.publish(marker, "wiped")
    after_marker = False
    heard: dict[str, Any] = {}

    def every_owner_heard() -> bool:
        nonlocal after_marker
        message = listener.get_message(timeout=0.2)
        if message is not None:
            channel = message["channel"].decode()
            if channel == marker:
                after_marker = True
            elif after_marker:
                heard.setdefault(channel.rsplit(".", 1)[-1], message["data"])
        return set(heard) == set(OWNERS)

    wait_for(every_owner_heard, timeout=timeout, interval=0, what="each owner's heartbeat")
    listener.close()
    return heard


@pytest.mark.timeout(180)
async def test_flushall_is_healed_by_the_next_heartbeats(redis_server, start_mad) -> None:
    token = new_token()
    st = start_mad("sequential_thinking")
    env = {**redis_server.env, "SEQUENTIAL_THINKING_URL": f"{st.url}/mcp"}
    grace = start_mad("grace", env={**redis_server.env, "GRACE_API_TOKENS": token})
    start_mad("rogers", env=env)
    start_mad("fiedler", env={**env, "FIEDLER_DB_PATH": str(grace.workdir / "f.db")})
    await async_wait_for(
        lambda: _offers(grace.url, token, declared_remote_tools()),
        timeout=60,
        what="Grace to offer the owners' tools",
    )
    before = await offered(grace.url, token)

    wiped = time.monotonic()
    heard = heartbeats_after_the_wipe(redis_server)
    healed = time.monotonic() - wiped
    record("FLUSHALL", f"every owner's first heartbeat after it within {healed:.2f} s")

    registry = redis_server.client()
    assert all(registry.exists(registry_key(name)) for name in OWNERS), heard
    assert await offered(grace.url, token) == before

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


@pytest.mark.timeout(180)
async def test_a_declared_tool_is_relayed_while_the_registry_lacks_it(
    redis_server, start_mad
) -> None:
    """Nothing has published Fiedler's tools yet (Fiedler is not running): a call to one
    goes to Fiedler all the same — the reply says Fiedler is down, never "Unknown tool" —
    and the request waits in Fiedler's stream until Fiedler starts and carries it out."""
    token = new_token()
    st = start_mad("sequential_thinking")
    grace = start_mad(
        "grace",
        env={**redis_server.env, "GRACE_API_TOKENS": token, "GRACE_RELAY_TIMEOUT_S": "2"},
    )
    assert not redis_server.client().exists(registry_key("fiedler"))

    async with grace_session(grace.url, token) as s:
        done, reply = await call(
            s, "fiedler_converse", {"prompt": PROMPT, "requester_id": "while-unlisted"}
        )
    assert not done
    assert "Unknown tool" not in reply
    assert "fiedler is down" in reply, reply

    env = {**redis_server.env, "SEQUENTIAL_THINKING_URL": f"{st.url}/mcp"}
    start_mad("fiedler", env={**env, "FIEDLER_DB_PATH": str(grace.workdir / "f.db")})

    async with grace_session(grace.url, token) as s:

        async def carried_out() -> list | None:
            done, listed = await call(s, "fiedler_list_tasks", {"requester_id": "while-unlisted"})
            assert done, listed
            tasks = [t for t in listed["tasks"] if t["status"] == "COMPLETED"]
            return tasks or None

        tasks = await async_wait_for(carried_out, timeout=60, what="the queued call to run")
    assert len(tasks) == 1


async def _offers(url: str, token: str, tools: set[str]) -> bool:
    return await offered(url, token) >= tools
