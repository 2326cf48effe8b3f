"""Tool calls carried over Redis Streams: durable hand-over, one execution per request."""

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mads.core import access, relay
from mads.core.bus import ENVELOPE_FIELD, Bus
from mads.core.envelope import decode
from mads.core.relay import RelayBusyError, RelayError, ToolRelayClient, ToolRequestServer
from tests.support.redis_server import RedisServer, connected_bus
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
    client = ToolRelayClient(caller_bus, ["owner"])
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
    client = ToolRelayClient(caller_bus, ["owner"])
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
        stream,
        {
            "tool": "add",
            "arguments": {"a": 4, "b": 5},
            "reply_channel": "mad.direct.caller.x.owner",
        },
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
        await async_wait_for(lambda: redis_server.client().exists(access.registry_key("owner")))
        redis_server.stop(kill=True)
        shutil.rmtree(redis_server.workdir / "appendonlydir", ignore_errors=True)
        redis_server.start()
        await async_wait_for(
            lambda: redis_server.client().exists(access.registry_key("owner")),
            timeout=20,
            what="the tool list published again",
        )


async def test_a_reply_comes_only_from_the_owner_that_was_asked(
    buses: tuple[Bus, Bus], redis_server: RedisServer
) -> None:
    """A reply on the owner's reply channel that names another sender is not taken."""
    _owner_bus, caller_bus = buses
    client = ToolRelayClient(caller_bus, ["owner"])
    async with running(client.run()):
        pending = asyncio.create_task(client.call("owner", "add", {"a": 1, "b": 2}, timeout=30))
        await async_wait_for(
            lambda: redis_server.client().xlen("mad.owner.requests"), what="the request queued"
        )
        [(_, [(_, fields)])] = redis_server.client().xread({"mad.owner.requests": "0"})
        request = decode(fields[ENVELOPE_FIELD.encode()], 1 << 20)
        forger = await connected_bus(redis_server, "forger")
        try:
            forged = forger.envelope(
                client.reply_channel("owner"),
                {"ok": True, "result": {"sum": 99}, "error": None},
                correlation_id=request.message_id,
            )
            await forger.publish_envelope(forged)
            owner = Owner()
            owner_bus = await connected_bus(redis_server, "owner")
            server = ToolRequestServer(owner_bus, "owner", owner.run_tool)
            async with running(server.run()):
                assert (await pending)["result"] == {"sum": 3}
            await owner_bus.close()
        finally:
            await forger.close()


async def test_calling_an_owner_the_client_does_not_know_is_refused(
    buses: tuple[Bus, Bus],
) -> None:
    _, caller_bus = buses
    client = ToolRelayClient(caller_bus, ["owner"])
    with pytest.raises(RelayError, match="stranger serves no tools"):
        await client.call("stranger", "add", {}, timeout=5)


async def test_a_reply_channel_that_is_not_the_owners_gets_no_answer(
    buses: tuple[Bus, Bus], redis_server: RedisServer
) -> None:
    """An owner answers only on its own reply channels for the caller that asked, so a
    request cannot make it publish on someone else's channel."""
    owner_bus, caller_bus = buses
    stream = "mad.owner.requests"
    owner = Owner()
    server = ToolRequestServer(owner_bus, "owner", owner.run_tool)
    heard: list[str] = []

    async def listen() -> None:
        async for message in caller_bus.messages(patterns=["mad.*"]):
            heard.append(message.channel)

    async def listening() -> bool:
        await caller_bus.publish("mad.topic.listening", {})
        return bool(heard)

    async with running(server.run(), listen()):
        await async_wait_for(listening, interval=0.2, what="the listener subscribed")
        request = caller_bus.envelope(
            stream,
            {
                "tool": "add",
                "arguments": {"a": 1, "b": 1},
                "reply_channel": "mad.fiedler.task.status",
            },
        )
        await caller_bus.stream_append(stream, request)
        await async_wait_for(
            lambda: _pending_count(redis_server, stream), what="the request acknowledged"
        )
        await caller_bus.publish("mad.topic.done", {})
        await async_wait_for(lambda: "mad.topic.done" in heard, what="the listener caught up")
    assert set(heard) == {"mad.topic.listening", "mad.topic.done"}
    assert owner.runs == [{"a": 1, "b": 1}]


async def test_a_full_stream_refuses_calls_as_busy_and_loses_none_it_accepted(
    buses: tuple[Bus, Bus], redis_server: RedisServer
) -> None:
    """At its backlog limit the owner's stream takes no more: a call past it is refused,
    said to be busy, and nothing of it is queued; every call accepted is carried out once
    the owner is back, exactly once."""
    owner_bus, caller_bus = buses
    client = ToolRelayClient(caller_bus, ["owner"], backlog_limit=10)
    async with running(client.run()):
        calls = [
            asyncio.create_task(client.call("owner", "add", {"a": n, "b": 0}, timeout=60))
            for n in range(15)
        ]
        await async_wait_for(
            lambda: sum(c.done() for c in calls) == 5, what="the calls past the limit refused"
        )
        refused = [c for c in calls if c.done()]
        for call in refused:
            with pytest.raises(RelayBusyError, match=r"busy: 10 requests wait for owner.*retry"):
                call.result()
        assert redis_server.client().xlen("mad.owner.requests") == 10

        owner = Owner()
        server = ToolRequestServer(owner_bus, "owner", owner.run_tool)
        async with running(server.run()):
            accepted = [c for c in calls if c not in refused]
            replies = await asyncio.gather(*accepted)
            assert all(reply["ok"] for reply in replies)
            # Drained, the stream takes calls again.
            again = await client.call("owner", "add", {"a": 100, "b": 1}, timeout=30)
            assert again["result"] == {"sum": 101}
    ran = sorted(run["a"] for run in owner.runs)
    assert len(ran) == 11 and len(set(ran)) == 11, "each accepted call ran once"
    assert client.waiting == 0


async def test_the_owner_works_on_as_many_requests_at_once_as_it_is_given(
    buses: tuple[Bus, Bus],
) -> None:
    owner_bus, caller_bus = buses
    release = asyncio.Event()
    working = 0
    most = 0

    async def slow(name: str, arguments: dict[str, Any]) -> tuple[bool, Any]:
        nonlocal working, most
        working += 1
        most = max(most, working)
        try:
            await release.wait()
        finally:
            working -= 1
        return True, arguments["n"]

    server = ToolRequestServer(owner_bus, "owner", slow, concurrency=40)
    client = ToolRelayClient(caller_bus, ["owner"])
    async with running(server.run(), client.run()):
        calls = [
            asyncio.create_task(client.call("owner", "slow", {"n": n}, timeout=60))
            for n in range(100)
        ]
        await async_wait_for(lambda: working == 40, what="40 requests worked on at once")
        release.set()
        replies = await asyncio.gather(*calls)
    assert sorted(reply["result"] for reply in replies) == list(range(100))
    assert most == 40, f"{most} requests were worked on at once, not 40"


async def test_handled_requests_are_trimmed_from_the_stream_and_unhandled_ones_kept(
    buses: tuple[Bus, Bus], redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay, "KEEP_HANDLED", 5)
    monkeypatch.setattr(relay, "TRIM_EVERY_S", 0.1)
    owner_bus, caller_bus = buses
    owner = Owner()
    client = ToolRelayClient(caller_bus, ["owner"])
    server = ToolRequestServer(owner_bus, "owner", owner.run_tool)
    stream = "mad.owner.requests"
    async with running(client.run()):
        async with running(server.run()):
            for n in range(300):
                assert (await client.call("owner", "add", {"a": n, "b": 0}, timeout=30))["ok"]
            await async_wait_for(
                lambda: redis_server.client().xlen(stream) < 150,
                what="the handled requests trimmed",
            )
        # The owner away, what is queued stays until it is handled.
        queued = [
            asyncio.create_task(client.call("owner", "add", {"a": n, "b": 0}, timeout=60))
            for n in range(300, 320)
        ]
        await async_wait_for(
            lambda: redis_server.client().xinfo_groups(stream)[0]["lag"] == 20,
            what="20 requests queued",
        )
        async with running(ToolRequestServer(owner_bus, "owner", owner.run_tool).run()):
            assert all(reply["ok"] for reply in await asyncio.gather(*queued))
    assert sorted(run["a"] for run in owner.runs) == list(range(320))


async def test_a_callers_replies_travel_together_within_the_message_limit(
    redis_server: RedisServer,
) -> None:
    """The replies of one batch for one caller go in as few messages as the bus's message
    limit allows: every message under it, every reply in exactly one of them."""
    limit = 2048
    owner_bus = await connected_bus(redis_server, "owner", max_message_bytes=limit)
    caller_bus = await connected_bus(redis_server, "caller")
    listener_bus = await connected_bus(redis_server, "listener")

    async def padded(name: str, arguments: dict[str, Any]) -> tuple[bool, Any]:
        return True, {"n": arguments["n"], "text": "x" * 300}

    client = ToolRelayClient(caller_bus, ["owner"])
    heard: list[tuple[int, dict[str, Any]]] = []
    listening = asyncio.Event()

    async def listen() -> None:
        channel = client.reply_channel("owner")
        async for message in listener_bus.messages(channels_=[channel], subscribed=listening.set):
            assert message.envelope is not None
            heard.append((len(message.raw), message.envelope.payload))

    try:
        async with running(client.run(), listen()):
            await asyncio.wait_for(listening.wait(), 10)
            # Queued while the owner is away, so that it reads and answers them together.
            calls = [
                asyncio.create_task(client.call("owner", "padded", {"n": n}, timeout=60))
                for n in range(30)
            ]
            await async_wait_for(
                lambda: redis_server.client().xlen("mad.owner.requests") == 30,
                what="30 requests queued",
            )
            async with running(ToolRequestServer(owner_bus, "owner", padded).run()):
                replies = await asyncio.gather(*calls)
                await async_wait_for(
                    lambda: sum(len(p["replies"]) for _, p in heard) >= 30,
                    what="every reply heard",
                )
    finally:
        for bus in (owner_bus, caller_bus, listener_bus):
            await bus.close()
    assert sorted(reply["result"]["n"] for reply in replies) == list(range(30))
    assert all(size <= limit for size, _ in heard), [size for size, _ in heard]
    carried = [request_id for _, payload in heard for request_id in payload["replies"]]
    assert len(carried) == len(set(carried)) == 30, "each reply in exactly one message"
    assert 1 < len(heard) < 30, f"{len(heard)} messages for 30 replies"
