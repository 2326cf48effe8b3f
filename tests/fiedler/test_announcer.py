"""Fiedler's task events obey the bus's message size limit (MAD_MAX_MESSAGE_BYTES) like
every other publish: an event over it is dropped with a warning, the rest go out in order."""

import asyncio
import logging

from mads.fiedler.announcer import Announcer
from tests.support.redis_server import RedisServer, connected_bus
from tests.support.waiting import async_wait_for

LIMIT = 2048


async def test_events_over_the_bus_limit_are_dropped(redis_server: RedisServer, caplog) -> None:
    bus = await connected_bus(redis_server, "fiedler", max_message_bytes=LIMIT)
    pubsub = redis_server.client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("mad.stream.t1")
    announcer = Announcer(bus, logging.getLogger("fiedler"))
    runner = asyncio.create_task(announcer.run())
    try:
        announcer.announce("mad.stream.t1", {"seq": 1, "delta": "small"})
        announcer.announce("mad.stream.t1", {"seq": 2, "delta": "x" * LIMIT})
        announcer.announce("mad.stream.t1", {"seq": 3, "delta": "small"})
        received: list[bytes] = []

        async def two() -> list[bytes] | None:
            message = await asyncio.to_thread(pubsub.get_message, timeout=0.5)
            if message is not None:
                received.append(message["data"])
            return received if len(received) >= 2 else None

        await async_wait_for(two, timeout=10, interval=0, what="two events on mad.stream.t1")
        assert [b'"seq":1' in m for m in received] == [True, False]
        assert b'"seq":3' in received[1]
        assert announcer.dropped == 1
        assert f"over the {LIMIT}-byte limit" in caplog.text
    finally:
        runner.cancel()
        pubsub.close()
        await bus.close()
