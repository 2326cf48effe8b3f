"""Rogers' contract: the bus monitor. It watches every ``mad.*`` channel, keeps the
connections table from heartbeats and counts the traffic; one per group."""

from __future__ import annotations

from enum import StrEnum

from mads.core import channels
from mads.core.contract import BusAccess, MadContract
from mads.sequential_thinking.contract import NAME as SEQUENTIAL_THINKING
from mads.sequential_thinking.contract import STATUS_LABEL as THINKING_STATUS

NAME = "rogers"
CONNECTIONS_TOOL = "rogers_get_connections"
"""Every MAD Rogers hears on the bus, with its status (the guide's step 7)."""
BUS_VOLUME_BYTES_VARIABLE = "ROGERS_BUS_VOLUME_BYTES"
METRICS_LOG = "[Metrics] Received message from sender: {sender} on channel: {channel}"


class ConnectionStatus(StrEnum):
    """A MAD's state in ``rogers_get_connections``."""

    HEALTHY = "HEALTHY"
    STALE = "STALE"
    """Three heartbeats missed."""
    DISCONNECTED = "DISCONNECTED"
    """Twelve heartbeats missed."""


CONTRACT = MadContract(
    name=NAME,
    port=8002,
    banner="RogersV1",
    service="mads.rogers.service:build",
    description="The bus monitor: heartbeats, connections and traffic statistics.",
    tools=(CONNECTIONS_TOOL, "rogers_get_stats"),
    report_tools=(CONNECTIONS_TOOL, "rogers_get_stats"),
    bus_name="Rogers Conversation Bus",
    ui_path="/ui",
    peers=(SEQUENTIAL_THINKING,),
    # It watches every channel; it publishes nothing of its own.
    bus=BusAccess(subscribes=(channels.ALL,), serves_tools=True),
    status_labels=(THINKING_STATUS,),
    log_lines={"metrics": METRICS_LOG},
    max_replicas=1,
    # It reports the bus's append-only file against the bus's volume.
    bus_volume_variable=BUS_VOLUME_BYTES_VARIABLE,
)
