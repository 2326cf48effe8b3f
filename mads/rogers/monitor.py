"""The bus monitor: one pattern subscription to ``mad.*`` feeding the connections table,
the traffic counts and the traffic log. Anything that is not a valid envelope is counted as
malformed and logged once per channel; nothing on the bus can stop the monitor."""

from __future__ import annotations

import logging

from mads.core import channels
from mads.core.bus import Bus, BusMessage
from mads.rogers.connections import ConnectionTable
from mads.rogers.live import LiveView
from mads.rogers.stats import TrafficStats
from mads.rogers.traffic_log import TrafficLog


class BusMonitor:
    def __init__(
        self,
        bus: Bus,
        connections: ConnectionTable,
        stats: TrafficStats,
        traffic_log: TrafficLog,
        logger: logging.Logger,
        *,
        live: LiveView | None = None,
        max_malformed_sources: int = 1000,
    ) -> None:
        self.bus = bus
        self.connections = connections
        self.stats = stats
        self.traffic_log = traffic_log
        self.live = live
        self.log = logger
        self.max_malformed_sources = max_malformed_sources
        self._malformed_sources: set[str] = set()

    async def run(self) -> None:
        async for message in self.bus.messages(patterns=[channels.ALL]):
            self.handle(message)

    def handle(self, message: BusMessage) -> None:
        envelope = message.envelope
        if envelope is None:
            self._malformed(message)
            return
        sender = envelope.sender_id
        self.connections.saw(sender)
        self.stats.record(sender, channels.classify(message.channel))
        self.traffic_log.saw(sender, message.channel)
        if self.live is not None:
            self.live.saw(message)

    def _malformed(self, message: BusMessage) -> None:
        self.stats.record_malformed()
        source = message.channel
        if source in self._malformed_sources:
            return
        if len(self._malformed_sources) >= self.max_malformed_sources:
            return
        self._malformed_sources.add(source)
        self.log.warning(
            "Ignoring malformed message on channel %r (%s); further ones from this channel "
            "are counted, not logged",
            source[:256],
            message.error,
        )
