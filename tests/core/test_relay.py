"""Tool calls carried over Redis Streams: durable hand-over, one execution per request."""

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mads.core.bus import Bus
from mads.core.relay import TOOL_REGISTRY_KEY, ToolRelayClient, ToolRequestServer
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_for


class Owner:
    """A tool owner that counts how often each call really ran."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []

    async def run_tool(self, name: str, arguments: dict[str, Any]) -> tuple[bool, Any]:
        self.runs.append(arguments)
        if name != "add":
            return False, f"unknown tool {name!r}"
        return True, {"sum": arguments["a"] + arguments["b"]}


async def connected_bus(server: RedisServer, sender: str) -> Bus:
    bus = Bus(host="127.0.0.1", port=server.port, password=server.password, sender_id=sender)
    await bus.start()
    assert await bus.wait_connected(10)
    return bus


@contextlib.asynccontextmanager
async def running(*coroutines: Any) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def buses(redis_server: RedisServer) -> AsyncIterator[tuple[Bus, Bus]]:
    owner_bus = await connected_bus(redis_server, "owner")
    caller_bus = await connected_bus(redis_server, "caller")
    yield owner_bus, caller_bus
    await owner_bus.close()
    await caller_bus.close()


TOOLS = [{"name": "add", "description": "a + b", "inputSchema": {"type": "object"}}]


async def test_round_trip_with_results_and_errors(buses: tuple[Bus, Bus]) -> None:
    owner_bus, caller_bus = buses
    owner = Owner()
    server = ToolRequestServer(owner_bus, "owner", owner.run_tool)
    client = ToolRelayClient(caller_bus)
    async with running(server.run(TOOLS), client.run()):
        assert await client.call("owner", "add", {"a": 2, "b": 3}, timeout=10) == {
            "ok": True,
            "result": {"sum": 5},
            "error": None,
        }
        failed = await client.call("owner", "nope", {}, timeout=10)
        assert failed == {"ok": False, "result": None, "error": "unknown tool 'nope'"}
        assert await client.registered_tools() == {"owner": TOOLS}


async def test_a_request_made_while_the_owner_is_down_is_served_when_it_returns(
    buses: tuple[Bus, Bus], redis_server: RedisServer
) -> None:
    owner_bus, caller_bus = buses
    owner = Owner()
    client = ToolRelayClient(caller_bus)
    async with running(client.run()):
        pending = asyncio.create_task(client.call("owner", "add", {"a": 1, "b": 1}, timeout=20))
        await async_wait_for(
            lambda: redis_server.client().xlen("mad.owner.requests"), what="the request queued"
        )
        assert not pending.done()
        server = ToolRequestServer(owner_bus, "owner", owner.run_tool)
        async with running(server.run()):
            assert (await pending)["result"] == {"sum": 2}
    assert len(owner.runs) == 1


async def test_an_unacknowledged_request_is_claimed_and_run_once(
    buses: tuple[Bus, Bus], redis_server: RedisServer
) -> None:
    owner_bus, caller_bus = buses
    stream = "mad.owner.requests"
    await owner_bus.ensure_group(stream, "owners")
    request = caller_bus.envelope(
        stream, {"tool": "add", "arguments": {"a": 4, "b": 5}, "reply_channel": "mad.direct.x"}
    )
    await caller_bus.stream_append(stream, request)
    # A consumer that dies after reading, before acknowledging:
    assert len(await owner_bus.read_group(stream, "owners", "dead-consumer", block_ms=100)) == 1

    owner = Owner()
    server = ToolRequestServer(owner_bus, "owner", owner.run_tool, claim_idle_ms=0)
    async with running(server.run()):
        await async_wait_for(lambda: len(owner.runs) == 1, what="the claimed request to run")
        await async_wait_for(
            lambda: _pending_count(redis_server, stream), what="the entry acknowledged"
        )
        # The same request delivered again is answered from the reply cache, not run again.
        await caller_bus.stream_append(stream, request)
        await async_wait_for(
            lambda: _pending_count(redis_server, stream, after_entries=2), what="second ack"
        )
    assert owner.runs == [{"a": 4, "b": 5}]


def _pending_count(server: RedisServer, stream: str, after_entries: int = 1) -> bool:
    """True once ``after_entries`` entries exist and none is pending acknowledgement."""
    redis = server.client()
    info = redis.xpending(stream, "owners")
    return bool(redis.xlen(stream) >= after_entries and info["pending"] == 0)


async def test_the_tool_list_is_published_again_after_redis_lost_its_data(
    buses: tuple[Bus, Bus], redis_server: RedisServer
) -> None:
    owner_bus, _ = buses
    server = ToolRequestServer(owner_bus, "owner", Owner().run_tool)
    async with running(server.run(TOOLS)):
        await async_wait_for(lambda: redis_server.client().hexists(TOOL_REGISTRY_KEY, "owner"))
        redis_server.stop(kill=True)
        shutil.rmtree(redis_server.workdir / "appendonlydir", ignore_errors=True)
        redis_server.start()
        await async_wait_for(
            lambda: redis_server.client().hexists(TOOL_REGISTRY_KEY, "owner"),
            timeout=20,
            what="the tool list published again",
        )
