"""Rogers: the bus monitor. Watches ``mad.*``, keeps the connections table and the traffic
counts, and serves its tools over MCP and over the bus (so Grace can relay them)."""

from __future__ import annotations

import asyncio

from mads.core.relay import ToolRequestServer
from mads.core.service import MadService
from mads.core.settings import load_settings
from mads.rogers import tools, ui
from mads.rogers.bus_memory import BusMemoryWatch
from mads.rogers.connections import ConnectionTable
from mads.rogers.live import LiveView
from mads.rogers.metrics import RogersCollector
from mads.rogers.monitor import BusMonitor
from mads.rogers.settings import RogersSettings
from mads.rogers.stats import TrafficStats
from mads.rogers.storage import BusStorage
from mads.rogers.traffic_log import TrafficLog
from mads.rogers.ui import LiveUi
from mads.sequential_thinking import client

NAME = "rogers"


def build() -> MadService:
    settings = load_settings(RogersSettings, mad_name=NAME)
    service = MadService(
        NAME,
        settings,
        instructions="The bus monitor: who is connected (rogers_get_connections) and how much "
        "traffic the Conversation Bus carries (rogers_get_stats).",
    )
    bus = service.use_bus(settings)

    client.link(service, settings)

    connections = ConnectionTable(
        settings.mad_heartbeat_s, max_entries=settings.rogers_max_connections
    )
    stats = TrafficStats(
        max_senders=settings.rogers_max_senders, retention_h=settings.rogers_stats_retention_h
    )
    traffic_log = TrafficLog(
        service.log, settings.rogers_log_interval_s, settings.rogers_max_log_pairs
    )
    live = LiveView()
    monitor = BusMonitor(bus, connections, stats, traffic_log, service.log, live=live)
    live_ui = LiveUi(connections, stats, live, allowed_hosts=settings.allowed_hosts)
    service.add_routes(live_ui.routes(), loopback_prefix=ui.PREFIX)
    service.add_background(monitor.run)
    service.add_background(traffic_log.run)

    async def report_transitions() -> None:
        while True:
            await asyncio.sleep(settings.mad_heartbeat_s)
            for mad_id, old, new in connections.transitions():
                service.log.info("MAD %s is now %s (was %s)", mad_id, new, old)

    service.add_background(report_transitions)
    storage = BusStorage(
        bus,
        service.log,
        interval_s=settings.rogers_bus_storage_interval_s,
        volume_bytes=settings.rogers_bus_volume_bytes,
    )
    service.add_background(storage.run)
    tools.register(service, connections, stats)
    memory = BusMemoryWatch(bus, service.log)
    service.add_background(memory.run)
    service.metrics.register(RogersCollector(connections, stats, memory, storage))

    requests = ToolRequestServer(
        bus,
        NAME,
        service.call_tool_locally,
        logger=service.log,
        concurrency=settings.relay_concurrency,
        metrics=service.metrics,
    )
    service.before_heartbeat(requests.keep_tools_published)

    async def serve_requests() -> None:
        await requests.run(tools=await service.tool_definitions())

    service.add_background(serve_requests)
    return service
