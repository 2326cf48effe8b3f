"""The bus client against a real redis-server: pub/sub, streams, heartbeats, reconnects."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from mads.core import channels
from mads.core.bus import (
    Bus,
    BusCommandError,
    BusMessage,
    BusUnavailableError,
    heartbeat_loop,
)
from mads.core.envelope import EnvelopeError
from mads.core.registry import bus_connected_log
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_for


@pytest.fixture
async def bus(redis_server: RedisServer) -> AsyncIterator[Bus]:
    client = Bus(
        host="127.0.0.1",
        port=redis_server.port,
        password=redis_server.password,
        sender_id="tester",
        connected_log=bus_connected_log(),
    )
    await client.start()
    assert await client.wait_connected(10)
    yield client
    await client.close()


class Collector:
    """Subscribes in the background and keeps what arrives."""

    def __init__(self, bus: Bus, patterns: list[str]) -> None:
        self.received: list[BusMessage] = []
        self._task = asyncio.create_task(self._run(bus, patterns))

    async def _run(self, bus: Bus, patterns: list[str]) -> None:
        async for message in bus.messages(patterns=patterns):
            self.received.append(message)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def publish_until_seen(bus: Bus, collector: Collector, channel: str) -> None:
    """Subscriptions take effect asynchronously: publish probes until one is seen."""

    async def seen() -> bool:
        await bus.publish(channel, {"probe": True})
        return any(m.channel == channel for m in collector.received)

    await async_wait_for(seen, timeout=10, interval=0.05, what=f"subscription to {channel}")


async def test_publish_subscribe_round_trip(bus: Bus) -> None:
    collector = Collector(bus, ["mad.topic.*"])
    await publish_until_seen(bus, collector, "mad.topic.ready")
    sent = await bus.publish("mad.topic.news", {"n": 1}, correlation_id="c-9")
    await async_wait_for(lambda: any(m.channel == "mad.topic.news" for m in collector.received))
    got = next(m for m in collector.received if m.channel == "mad.topic.news")
    assert got.envelope == sent
    assert got.pattern == "mad.topic.*"
    assert got.envelope.sender_id == "tester"
    await collector.stop()


async def test_malformed_traffic_is_reported_not_raised(
    bus: Bus, redis_server: RedisServer
) -> None:
    collector = Collector(bus, ["mad.*"])
    await publish_until_seen(bus, collector, "mad.topic.ready")
    raw = redis_server.client()
    raw.publish("mad.topic.junk", b"{not json")
    raw.publish("mad.topic.junk", b'{"sender_id": "x"}')
    await async_wait_for(lambda: sum(m.error is not None for m in collector.received) == 2)
    errors = [m.error for m in collector.received if m.error]
    assert all(e.startswith("invalid envelope") for e in errors)
    # The subscription is still alive after bad input.
    await bus.publish("mad.topic.after", {})
    await async_wait_for(lambda: any(m.channel == "mad.topic.after" for m in collector.received))
    await collector.stop()


async def test_oversized_publish_is_refused_and_nothing_is_sent(bus: Bus) -> None:
    collector = Collector(bus, ["mad.topic.*"])
    await publish_until_seen(bus, collector, "mad.topic.ready")
    with pytest.raises(EnvelopeError, match="over the 1048576-byte limit"):
        await bus.publish("mad.topic.big", {"blob": "x" * (1024 * 1024 + 1)})
    await bus.publish("mad.topic.marker", {})
    await async_wait_for(lambda: any(m.channel == "mad.topic.marker" for m in collector.received))
    assert "mad.topic.big" not in {m.channel for m in collector.received}
    await collector.stop()


async def test_reconnects_after_redis_restarts_on_the_same_port(
    bus: Bus, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tester")
    collector = Collector(bus, ["mad.topic.*"])
    await publish_until_seen(bus, collector, "mad.topic.ready")

    redis_server.stop(kill=True)
    await async_wait_for(lambda: not bus.connected, timeout=15, what="bus to notice Redis is gone")
    with pytest.raises(BusUnavailableError):
        await bus.publish("mad.topic.lost", {})

    redis_server.start()
    assert await bus.wait_connected(15)
    assert bus.reconnects == 1
    await publish_until_seen(bus, collector, "mad.topic.again")
    assert caplog.text.count(bus_connected_log()) >= 1
    assert "Lost connection to the Conversation Bus" in caplog.text
    assert redis_server.password not in caplog.text
    await collector.stop()


async def test_heartbeats_arrive_on_the_senders_own_system_channel(bus: Bus) -> None:
    """Each MAD beats on a channel of its own, so its bus user alone may publish there."""
    collector = Collector(bus, [channels.HEARTBEATS])
    beats = asyncio.create_task(heartbeat_loop(bus, 0.05, lambda: {"mad_name": "tester"}))
    await async_wait_for(lambda: len(collector.received) >= 3, timeout=10)
    beat = collector.received[0].envelope
    assert beat is not None
    assert beat.channel == "mad.system.heartbeat.tester"
    assert collector.received[0].channel == "mad.system.heartbeat.tester"
    assert beat.sender_id == "tester"
    assert beat.payload == {"mad_name": "tester"}
    beats.cancel()
    await collector.stop()


async def test_stream_consumer_group_ack_and_claim(bus: Bus) -> None:
    stream = "mad.tester.requests"
    await bus.ensure_group(stream, "g")
    await bus.ensure_group(stream, "g")  # idempotent
    first = bus.envelope(stream, {"n": 1})
    await bus.stream_append(stream, first)

    read = await bus.read_group(stream, "g", "consumer-a", block_ms=100)
    assert [e.envelope for e in read] == [first]
    # consumer-a dies without acknowledging: consumer-b claims the entry.
    claimed = await bus.claim_stale(stream, "g", "consumer-b", min_idle_ms=0)
    assert [e.envelope for e in claimed] == [first]
    assert await bus.ack(stream, "g", claimed[0].entry_id) == 1
    assert await bus.claim_stale(stream, "g", "consumer-c", min_idle_ms=0) == []
    assert await bus.read_group(stream, "g", "consumer-a", block_ms=50) == []


async def test_stream_entries_survive_a_redis_restart(bus: Bus, redis_server: RedisServer) -> None:
    stream = "mad.tester.requests"
    await bus.ensure_group(stream, "g")
    envelope = bus.envelope(stream, {"keep": "me"})
    await bus.stream_append(stream, envelope)
    redis_server.client().execute_command("BGREWRITEAOF")
    await async_wait_for(
        lambda: redis_server.client().info("persistence")["aof_rewrite_in_progress"] == 0
    )
    redis_server.stop()
    redis_server.start()
    assert await bus.wait_connected(15)
    entries = await bus.read_group(stream, "g", "c", block_ms=100)
    assert [e.envelope for e in entries] == [envelope]


async def test_a_refused_subscription_is_a_bus_error(redis_server: RedisServer) -> None:
    """Redis refusing a subscription (NOPERM) reaches the subscriber as the bus's own
    error, not as a Redis exception."""
    admin = redis_server.client()
    admin.acl_setuser(
        "listener",
        enabled=True,
        passwords=["+listener-password-0123"],
        commands=["+@connection", "+subscribe", "+psubscribe", "+ping", "+info", "+publish"],
        channels=["mad.system.*"],
    )
    bus = Bus(
        host="127.0.0.1",
        port=redis_server.port,
        username="listener",
        password="listener-password-0123",
        sender_id="tester",
    )
    await bus.start()
    try:
        assert await bus.wait_connected(10)
        with pytest.raises(BusCommandError, match=r"refused a subscription: .*no permissions"):
            async with asyncio.timeout(30):
                async for _message in bus.messages(patterns=["mad.fiedler.*"]):
                    pass
        assert bus.connected, "a refusal is not an outage"
    finally:
        await bus.close()
