"""The bus's connections to Redis are bounded for subscriptions too: with
``max_subscriptions=2`` a third client's subscription holds no connection until one of the
first two ends, then receives; meanwhile the bus stays connected (the watcher has its own)
and says once that a subscription waits. Clients' subscriptions filling their pool leave
the MAD's own subscriptions theirs."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from mads.core.bus import Bus, BusMessage
from mads.core.settings import BusSettings
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_for


class Subscriber:
    def __init__(self, bus: Bus, channel: str, *, for_client: bool = True) -> None:
        self.channel = channel
        self.received: list[BusMessage] = []
        self.task = asyncio.create_task(self._run(bus, for_client))

    async def _run(self, bus: Bus, for_client: bool) -> None:
        async for message in bus.messages(channels_=[self.channel], for_client=for_client):
            self.received.append(message)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def connected_bus(redis_server: RedisServer, max_subscriptions: int) -> Bus:
    """A bus on ``redis_server`` with a small clients' pool, short waits, connected."""
    bus = Bus(
        host="127.0.0.1",
        port=redis_server.port,
        password=redis_server.password,
        sender_id="tester",
        max_subscriptions=max_subscriptions,
        pool_timeout_s=0.2,
        check_interval=0.1,
    )
    await bus.start()
    assert await bus.wait_connected(10)
    return bus


def said_waiting(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m for r in caplog.records if "subscriptions are in use" in (m := r.getMessage())]


async def test_subscriptions_share_a_bounded_pool(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    bus = await connected_bus(redis_server, max_subscriptions=2)
    admin = redis_server.client()
    subscribers = [Subscriber(bus, f"mad.topic.pool-{n}") for n in range(3)]
    seen_subscriptions: set[int] = set()
    seen_connected: set[bool] = set()

    def receiving() -> list[Subscriber]:
        return [s for s in subscribers if s.received]

    async def publish_and_look(count: int) -> bool:
        for subscriber in subscribers:
            await bus.publish(subscriber.channel, {"probe": True})
        seen_subscriptions.add(len(admin.client_list(_type="pubsub")))
        seen_connected.add(bus.connected)
        return len(receiving()) == count

    try:
        await async_wait_for(lambda: publish_and_look(2), timeout=30, what="two subscriptions")
        for _ in range(20):  # the third keeps trying, and never gets a connection
            assert not await publish_and_look(3)
        assert seen_subscriptions <= {0, 1, 2}, seen_subscriptions
        waiting = next(s for s in subscribers if not s.received)
        await async_wait_for(
            lambda: said_waiting(caplog), timeout=30, what="the bus to say a subscription waits"
        )

        await receiving()[0].stop()

        async def taken_up() -> bool:
            await publish_and_look(2)
            return bool(waiting.received)

        await async_wait_for(
            taken_up, timeout=30, what="the waiting subscription to take the freed connection"
        )
        assert max(seen_subscriptions) <= 2, seen_subscriptions
        assert seen_connected == {True}, "the bus looked down while the pool was full"
        assert said_waiting(caplog) == [
            "All 2 connections for clients' subscriptions are in use (REDIS_MAX_SUBSCRIPTIONS):"
            " a further client's subscription waits for one"
        ], "said once"
    finally:
        for subscriber in subscribers:
            await subscriber.stop()
        await bus.close()
        admin.close()


async def test_clients_filling_their_pool_leave_the_mads_own_subscriptions(
    redis_server: RedisServer,
) -> None:
    bus = await connected_bus(redis_server, max_subscriptions=1)
    clients = [Subscriber(bus, f"mad.topic.client-{n}") for n in range(3)]
    own = [Subscriber(bus, f"mad.topic.own-{n}", for_client=False) for n in range(4)]

    async def delivered(subscribers: list[Subscriber], count: int) -> bool:
        for subscriber in subscribers:
            await bus.publish(subscriber.channel, {"probe": True})
        return sum(bool(s.received) for s in subscribers) == count

    try:
        await async_wait_for(
            lambda: delivered(clients, 1), timeout=30, what="one client's subscription"
        )
        await async_wait_for(
            lambda: delivered(own, len(own)), timeout=30, what="every one of the MAD's own"
        )
        assert await delivered(clients, 1), "a second client took a connection"
    finally:
        for subscriber in [*clients, *own]:
            await subscriber.stop()
        await bus.close()


def test_the_bound_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", "x")
    assert BusSettings(mad_name="grace").redis_max_subscriptions == 64
    monkeypatch.setenv("REDIS_MAX_SUBSCRIPTIONS", "8")
    assert BusSettings(mad_name="grace").redis_max_subscriptions == 8
