"""Rogers' figures as Prometheus metrics, read from the live tables at scrape time (nothing
is added to the per-message path)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mads.rogers.bus_memory import BusMemoryWatch
from mads.rogers.connections import STATUSES, ConnectionTable
from mads.rogers.stats import TrafficStats
from mads.rogers.storage import BusStorage


class RogersCollector(Collector):
    def __init__(
        self,
        connections: ConnectionTable,
        stats: TrafficStats,
        memory: BusMemoryWatch,
        storage: BusStorage | None = None,
    ) -> None:
        self.connections = connections
        self.stats = stats
        self.memory = memory
        self.storage = storage

    def collect(self) -> Iterator[Metric]:
        total = CounterMetricFamily("rogers_messages", "Valid envelopes seen on mad.* since start")
        total.add_metric([], self.stats.total)
        yield total
        by_sender = CounterMetricFamily(
            "rogers_messages_by_sender", "Valid envelopes per sender", labels=["sender"]
        )
        for sender, count in self.stats.senders.items():
            by_sender.add_metric([sender], count)
        yield by_sender
        by_class = CounterMetricFamily(
            "rogers_messages_by_channel_class",
            "Valid envelopes per channel class",
            labels=["channel_class"],
        )
        for name, count in self.stats.classes.items():
            by_class.add_metric([name], count)
        yield by_class
        malformed = CounterMetricFamily(
            "rogers_malformed_messages", "Deliveries on mad.* that were not valid envelopes"
        )
        malformed.add_metric([], self.stats.malformed)
        yield malformed
        rate = GaugeMetricFamily("rogers_message_rate", "Messages per second over the last minute")
        rate.add_metric([], self.stats.rate_per_s())
        yield rate
        conns = GaugeMetricFamily(
            "rogers_connections", "MADs in the connections table by status", labels=["status"]
        )
        for status, count in self.connections.counts().items():
            conns.add_metric([status], count)
        yield conns
        each = GaugeMetricFamily(
            "rogers_connection_status",
            "1 for each MAD's current status in the connections table (HEALTHY, STALE, "
            "DISCONNECTED), 0 for the others",
            labels=["mad", "status"],
        )
        for view in self.connections.snapshot():
            for status in STATUSES:
                each.add_metric([view["mad_id"], status], 1.0 if view["status"] == status else 0.0)
        yield each
        memory = self.memory.last
        if memory is not None:
            yield GaugeMetricFamily(
                "rogers_bus_memory_used_bytes",
                "What Redis's data takes (INFO memory used_memory), at Rogers' last look",
                value=memory.used,
            )
            yield GaugeMetricFamily(
                "rogers_bus_memory_max_bytes",
                "Redis's maxmemory (0: no limit); past it Redis refuses writes (noeviction)",
                value=memory.limit,
            )
        yield from self._storage()

    def _storage(self) -> Iterator[Metric]:
        """The bus's append-only file and its volume, each only while known."""
        if self.storage is None:
            return
        if self.storage.aof_bytes is not None:
            yield GaugeMetricFamily(
                "rogers_bus_aof_bytes",
                "Size of the bus's append-only file (Redis INFO persistence aof_current_size)",
                value=self.storage.aof_bytes,
            )
        if self.storage.volume_bytes is not None:
            yield GaugeMetricFamily(
                "rogers_bus_volume_bytes",
                "Declared size of the volume the bus's append-only file lives on",
                value=self.storage.volume_bytes,
            )
