"""Outside clients' subscriptions and message buffers, kept in Redis so Grace replicas are
interchangeable.

- ``mad.grace.clients``: hash ``client_id -> JSON list of topics``;
- ``mad.grace.client_expiry``: hash ``client_id -> epoch seconds``: a client expires after
  ``ttl_s`` without a subscribe or a poll;
- ``mad.grace.buffer.<client_id>``: a capped list of raw envelopes (oldest dropped);
- ``mad.grace.dropped.<client_id>``: how many were dropped since the last poll.

Pushing and polling are Lua scripts, so each is atomic however many replicas run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from mads.core.bus import Bus
from mads.core.errors import MadError

CLIENTS_KEY = "mad.grace.clients"
EXPIRY_KEY = "mad.grace.client_expiry"

PUSH = """
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
local cap = tonumber(ARGV[2])
if n > cap then
  redis.call('LTRIM', KEYS[1], n - cap, -1)
  redis.call('INCRBY', KEYS[2], n - cap)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return n
"""

POLL = """
local msgs = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #msgs > 0 then redis.call('LTRIM', KEYS[1], #msgs, -1) end
local dropped = redis.call('GETDEL', KEYS[2])
local left = redis.call('LLEN', KEYS[1])
return {msgs, dropped or 0, left}
"""


class UnknownClientError(MadError, LookupError):
    pass


def buffer_key(client_id: str) -> str:
    return f"mad.grace.buffer.{client_id}"


def dropped_key(client_id: str) -> str:
    return f"mad.grace.dropped.{client_id}"


class ClientBuffers:
    def __init__(
        self,
        bus: Bus,
        *,
        max_buffer: int,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.max_buffer = max_buffer
        self.ttl_s = ttl_s
        self._clock = clock
        self._push = bus.script(PUSH)
        self._poll = bus.script(POLL)

    def _expiry(self) -> str:
        return str(self._clock() + self.ttl_s)

    async def subscribe(self, client_id: str, topics: list[str]) -> None:
        """Replace the client's topics (creating the client) and renew its lease."""
        await self.bus.pipeline(
            [
                ("HSET", CLIENTS_KEY, client_id, json.dumps(topics)),
                ("HSET", EXPIRY_KEY, client_id, self._expiry()),
            ],
            transaction=True,
        )

    async def topics_of(self, client_id: str) -> list[str]:
        raw_topics, raw_expiry = await self.bus.pipeline(
            [("HGET", CLIENTS_KEY, client_id), ("HGET", EXPIRY_KEY, client_id)]
        )
        topics = _topics(raw_topics)
        if topics is None or _expired(raw_expiry, self._clock()):
            raise UnknownClientError(client_id)
        return topics

    async def poll(self, client_id: str, limit: int) -> tuple[list[bytes], int, int]:
        """``(messages, dropped, still_buffered)``; renews the client's lease."""
        await self.topics_of(client_id)
        messages, dropped, left = await self._poll(
            [buffer_key(client_id), dropped_key(client_id)], [limit]
        )
        await self.bus.hset(EXPIRY_KEY, client_id, self._expiry())
        return list(messages), int(dropped), int(left)

    async def push(self, client_id: str, raw: bytes) -> None:
        ttl = int(self.ttl_s) + 1
        await self._push(
            [buffer_key(client_id), dropped_key(client_id)], [raw, self.max_buffer, ttl]
        )

    async def subscriptions(self) -> dict[str, list[str]]:
        """Every live client's topics; expired clients are removed on the way."""
        now = self._clock()
        expiry = await self.bus.hgetall(EXPIRY_KEY)
        live: dict[str, list[str]] = {}
        expired: list[str] = []
        for client_id, raw in (await self.bus.hgetall(CLIENTS_KEY)).items():
            topics = _topics(raw)
            if topics is None or _expired(expiry.get(client_id), now):
                expired.append(client_id)
            else:
                live[client_id] = topics
        if expired:
            await self.bus.hdel(CLIENTS_KEY, *expired)
            await self.bus.hdel(EXPIRY_KEY, *expired)
        return live


def _expired(raw: Any, now: float) -> bool:
    try:
        return raw is None or float(raw) < now
    except ValueError:
        return True


def _topics(raw: Any) -> list[str] | None:
    if raw is None:
        return None
    try:
        topics = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        return None
    return topics
