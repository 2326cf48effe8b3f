"""Rogers' MCP tools: thin, validating and delegating to the tables."""

from typing import Annotated, Any

from pydantic import Field

from mads.core.service import MadService
from mads.rogers.connections import ConnectionTable
from mads.rogers.stats import TrafficStats

CONNECTIONS_DESCRIPTION = """The MADs Rogers has heard on the Conversation Bus.

Returns {"status": "success", "connections": [{"mad_id", "status", "last_heartbeat",
"first_seen"}, ...]}. Any valid message counts as a heartbeat; status is HEALTHY, STALE after
3 missed heartbeat periods, DISCONNECTED after 12. Times are ISO-8601 UTC."""

STATS_DESCRIPTION = """Traffic on the Conversation Bus as Rogers counted it.

Returns total_messages, by_sender, by_channel_class (direct, stream, system, topic, other),
malformed_messages, rate_per_s (last minute) and uptime_s. With `hours`, the counts cover
only that many recent hours (per-minute resolution); without it, everything since start."""


def register(service: MadService, connections: ConnectionTable, stats: TrafficStats) -> None:
    Hours = Annotated[
        float | None,
        Field(
            gt=0,
            le=stats.retention_h,
            description=f"Count only the last N hours (at most {stats.retention_h}); "
            "omit for everything since Rogers started.",
        ),
    ]

    @service.tool("rogers_get_connections", description=CONNECTIONS_DESCRIPTION)
    def rogers_get_connections() -> dict[str, Any]:
        return {"status": "success", "connections": connections.snapshot()}

    @service.tool("rogers_get_stats", description=STATS_DESCRIPTION)
    def rogers_get_stats(hours: Hours = None) -> dict[str, Any]:
        return stats.summary(hours)
