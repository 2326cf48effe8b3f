"""The relay for outside clients: what they may publish, and the fan-out of bus traffic
into their buffers.

Publishing: the sender is always ``grace``; ``mad.system.*``, channels in a MAD's own
namespace (``mad.fiedler.*`` ...) and relay reply channels (``mad.direct.<mad>.<instance>``)
are refused, so an outside client can neither fake a heartbeat nor a tool reply. The payload
is capped.

Fan-out: one Grace replica at a time (a lease in Redis) pattern-subscribes to the union of
the clients' topics and appends each delivery to the buffers of the clients whose topic
matched. System and relay-reply channels are never delivered to outside clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections import OrderedDict
from typing import Any

from mads.core import channels
from mads.core.bus import Bus, BusError, BusMessage
from mads.core.logs import quoted
from mads.core.registry import contracts
from mads.grace.buffers import ClientBuffers

LEASE_KEY = "mad.grace.fanout.leader"
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


def _in_mad_namespace(channel: str) -> bool:
    parts = channel.split(".")
    return len(parts) >= 3 and parts[1] in contracts()


def publish_problem(channel: str) -> str | None:
    """Why an outside client may not publish on ``channel``, or None."""
    if channel.startswith(channels.SYSTEM_PREFIX) or channel == "mad.system":
        return (
            f"channel {quoted(channel)} is reserved: outside clients may not publish on "
            "mad.system.*"
        )
    if _in_mad_namespace(channel):
        return f"channel {quoted(channel)} belongs to a MAD: outside clients may not publish on it"
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
        self._listener: asyncio.Task[None] | None = None
        self._topics: tuple[str, ...] = ()
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.leading = False

    async def refresh(self) -> None:
        """Re-read the subscriptions now (called after a local subscribe)."""
        subscriptions = await self.buffers.subscriptions()
        by_topic: dict[str, list[str]] = {}
        for client_id, topics in subscriptions.items():
            for topic in topics:
                by_topic.setdefault(topic, []).append(client_id)
        self._by_topic = by_topic
        wanted = tuple(sorted(by_topic))
        if wanted != self._topics or (self._listener is not None and self._listener.done()):
            await self._stop_listener()
            self._topics = wanted
            if wanted:
                self._listener = asyncio.create_task(self._listen(wanted))

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
                        self._topics = ()
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

    async def _listen(self, topics: tuple[str, ...]) -> None:
        async for message in self.bus.messages(patterns=list(topics)):
            with contextlib.suppress(BusError):
                await self.deliver(message)

    async def deliver(self, message: BusMessage) -> None:
        if message.envelope is None or not deliverable(message.channel):
            return
        clients = self._by_topic.get(message.pattern or message.channel, ())
        for client_id in clients:
            key = (client_id, message.envelope.message_id)
            if key in self._recent:  # overlapping topics deliver a message once
                continue
            self._recent[key] = None
            if len(self._recent) > 10_000:
                self._recent.popitem(last=False)
            await self.buffers.push(client_id, message.raw)
