"""The relay for outside clients: what they may publish, and the fan-out of bus traffic
into their buffers.

Publishing: the sender is always ``grace``, on ``mad.topic.*`` and ``mad.direct.*`` only
(what Grace's bus user may publish on); relay reply channels (``mad.direct.<mad>.*``) are
refused, so an outside client can fake neither a heartbeat nor a tool reply. The payload
is capped.

Fan-out: one Grace replica at a time (a lease in Redis) pattern-subscribes to ``mad.*``
(the one pattern its bus user may listen on; Redis compares PSUBSCRIBE patterns literally)
and appends each delivery to the buffers of the clients whose topics match it. System and
relay-reply channels are never delivered to outside clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import re
import uuid
from typing import Any

from mads.core import channels
from mads.core.bus import Bus, BusError, BusMessage
from mads.core.logs import quoted
from mads.core.registry import contracts
from mads.grace.buffers import ClientBuffers

LEASE_KEY = "mad.grace.fanout.leader"
LISTEN_WAIT_S = 2.0
"""How long a refresh that starts the fan-out's subscription waits for it to be made."""
TOPIC_PATTERN = re.compile(r"^mad\.[A-Za-z0-9_.:@*?-]{1,252}$")
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


def _is_reply_channel(channel: str) -> bool:
    parts = channel.split(".")
    return len(parts) >= 4 and parts[1] == "direct" and parts[2] in contracts()


CLIENT_CHANNELS = (channels.TOPICS, channels.DIRECT)
"""Where outside clients' messages go: Grace's bus user may publish there and nowhere else
(besides its heartbeat)."""


def publish_problem(channel: str) -> str | None:
    """Why an outside client may not publish on ``channel``, or None."""
    if not any(fnmatch.fnmatchcase(channel, pattern) for pattern in CLIENT_CHANNELS):
        return (
            f"channel {quoted(channel)} is not for outside clients: publish on "
            "mad.topic.<topic> or mad.direct.<recipient>"
        )
    if _is_reply_channel(channel):
        return (
            f"channel {quoted(channel)} carries relay replies: outside clients may not "
            "publish on it"
        )
    return None


def topic_problem(topic: str) -> str | None:
    if not TOPIC_PATTERN.match(topic):
        return (
            f"topic {quoted(topic)} must be a channel name or glob pattern under 'mad.' "
            "(letters, digits, _ . : @ - * ?)"
        )
    if topic.startswith(channels.SYSTEM_PREFIX):
        return f"topic {quoted(topic)} is not available to outside clients (mad.system.*)"
    return None


def deliverable(channel: str) -> bool:
    return not channel.startswith(channels.SYSTEM_PREFIX) and not _is_reply_channel(channel)


def payload_size(payload: dict[str, Any]) -> int:
    return len(json.dumps(payload, separators=(",", ":")).encode())


class FanOut:
    """Deliver bus traffic to outside clients' buffers (one replica at a time)."""

    def __init__(
        self,
        bus: Bus,
        buffers: ClientBuffers,
        logger: logging.Logger,
        *,
        refresh_s: float = 0.5,
        lease_s: float = 5.0,
    ) -> None:
        self.bus = bus
        self.buffers = buffers
        self.log = logger
        self.refresh_s = refresh_s
        self.lease_ms = int(lease_s * 1000)
        self.instance = uuid.uuid4().hex
        self._renew = bus.script(RENEW)
        self._by_topic: dict[str, list[str]] = {}
        self._matches: dict[str, tuple[str, ...]] = {}
        self._listener: asyncio.Task[None] | None = None
        self.leading = False

    async def refresh(self) -> None:
        """Re-read the subscriptions now (called after a local subscribe)."""
        subscriptions = await self.buffers.subscriptions()
        by_topic: dict[str, list[str]] = {}
        for client_id, topics in subscriptions.items():
            for topic in topics:
                by_topic.setdefault(topic, []).append(client_id)
        if by_topic != self._by_topic:
            self._by_topic = by_topic
            self._matches.clear()
        listening = self._listener is not None and not self._listener.done()
        if by_topic and not listening:
            subscribed = asyncio.Event()
            self._listener = asyncio.create_task(self._listen(subscribed))
            # A subscriber is answered once the fan-out listens: what is published after
            # grace_subscribe returns is delivered.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(subscribed.wait(), LISTEN_WAIT_S)
        elif not by_topic and listening:
            await self._stop_listener()

    def clients_for(self, channel: str) -> tuple[str, ...]:
        """The clients subscribed to a topic that ``channel`` matches, each once."""
        found = self._matches.get(channel)
        if found is None:
            found = tuple(
                dict.fromkeys(
                    client
                    for topic, clients in self._by_topic.items()
                    if fnmatch.fnmatchcase(channel, topic)
                    for client in clients
                )
            )
            if len(self._matches) >= 10_000:
                self._matches.clear()
            self._matches[channel] = found
        return found

    async def run(self) -> None:
        try:
            while True:
                await self.bus.wait_connected()
                try:
                    leading = bool(await self._renew([LEASE_KEY], [self.instance, self.lease_ms]))
                    if leading != self.leading:
                        self.log.info(
                            "Fan-out to outside clients %s on this replica",
                            "active" if leading else "handed to another replica",
                        )
                        self.leading = leading
                    if leading:
                        await self.refresh()
                    else:
                        await self._stop_listener()
                except BusError:
                    pass
                await asyncio.sleep(self.refresh_s)
        finally:
            await self._stop_listener()

    async def _stop_listener(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None

    async def _listen(self, subscribed: asyncio.Event) -> None:
        async for message in self.bus.messages(patterns=[channels.ALL], subscribed=subscribed.set):
            with contextlib.suppress(BusError):
                await self.deliver(message)

    async def deliver(self, message: BusMessage) -> None:
        if message.envelope is None or not deliverable(message.channel):
            return
        for client_id in self.clients_for(message.channel):
            await self.buffers.push(client_id, message.raw)
