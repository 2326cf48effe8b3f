"""Best-effort publishing of task events on the bus.

The worker must never wait for Redis: a task completes whether or not the bus is up. So the
worker only queues events here (``announce`` never blocks), and one background task
publishes them in order — which keeps ``mad.stream.<task_id>`` chunks in sequence. While the
bus is down, events are dropped (pub/sub is fire-and-forget anyway; the task's state and
result stay in the store).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mads.core.bus import Bus, BusError, BusUnavailableError
from mads.core.envelope import EnvelopeError, encode

MAX_PIPELINE = 200


class Announcer:
    def __init__(self, bus: Bus, logger: logging.Logger, max_queued: int = 10_000) -> None:
        self.bus = bus
        self.log = logger
        self._queue: asyncio.Queue[tuple[str, dict[str, Any], dict[str, Any]]] = asyncio.Queue(
            max_queued
        )
        self.published = 0
        self.dropped = 0

    def announce(self, channel: str, payload: dict[str, Any], **fields: Any) -> None:
        if not self.bus.connected:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait((channel, payload, fields))
        except asyncio.QueueFull:
            self.dropped += 1

    async def run(self) -> None:
        """Publish in order; what queued up meanwhile goes out in one pipelined round trip."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_PIPELINE and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if not self.bus.connected:
                self.dropped += len(batch)
                continue
            commands: list[tuple[Any, ...]] = []
            for channel, payload, fields in batch:
                try:
                    envelope = self.bus.envelope(channel, payload, **fields)
                    commands.append(
                        ("PUBLISH", channel, encode(envelope, self.bus.max_message_bytes))
                    )
                except EnvelopeError as exc:
                    self.dropped += 1
                    self.log.warning("Not publishing an event on %s: %s", channel, exc)
            try:
                sent = len(await self.bus.pipeline(commands))
            except BusUnavailableError:
                self.dropped += len(batch)
                continue
            except BusError as exc:
                self.log.warning("Publishing task events failed: %s", exc)
                self.dropped += len(batch)
                continue
            self.published += sent

    async def drain(self, timeout: float = 2.0) -> None:
        """Give queued events a moment to go out (at shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._queue.empty() and self.bus.connected and loop.time() < deadline:
            await asyncio.sleep(0.02)
