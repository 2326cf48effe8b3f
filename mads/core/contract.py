"""What a MAD promises the rest of the world: its contract.

Each MAD publishes one :class:`MadContract` in its own package (``mads/<name>/contract.py``)
and registers it under the entry-point group ``mads.services``; :mod:`mads.core.registry`
finds them there, so the core names no MAD. The control plane (topology, smoke checks,
every substrate) reads contracts instead of retyping a MAD's port, banner, tools, channels
or the log lines the deployment guide looks for. A contract is data only: importing one
costs nothing and pulls in none of the MAD's code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

ENTRY_POINT_GROUP = "mads.services"

# The guide's evidence that every MAD produces through the core.
BUS_CONNECTED_LOG = "Successfully connected to {bus} (Redis)"
"""``{bus}``: the name the group gives its bus (see :attr:`MadContract.bus_name`)."""
DEFAULT_BUS_NAME = "Conversation Bus"
STARTED_LOG = "MCP Server started on port {port}"
BUS_STATUS_LABEL = "Conversation Bus Connected"


def _frozen(mapping: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class DataFile:
    """A file a MAD keeps in its data directory, and the variable that names its path."""

    variable: str
    filename: str
    size_variable: str | None = None
    """Where the MAD is told the size of the volume the file lives on, where the substrate
    gives volumes a size (Kubernetes): in bytes, what its volume alert compares with."""


INTERNAL_TOKEN_VARIABLE = "MAD_INTERNAL_TOKEN"
"""The group's internal credential (see :mod:`mads.core.internal_access`)."""
METRICS_TOKEN_VARIABLE = "MAD_METRICS_TOKEN"
"""The group's metrics credential: what a scraper presents for /metrics and /status."""


@dataclass(frozen=True)
class BusAccess:
    """What a MAD's own code does on the Conversation Bus, beyond what the core does for
    every MAD on it (watch the connection, publish its heartbeat, serve or call tools over
    streams). Its Redis ACL user is derived from this and from what the core does
    (:mod:`mads.core.access`); nothing else grants it anything."""

    publishes: tuple[str, ...] = ()
    """Channels (Redis globs) it publishes on."""
    subscribes: tuple[str, ...] = ()
    """Channels it subscribes to, and patterns it pattern-subscribes to exactly as written
    (Redis compares a PSUBSCRIBE pattern with the allowed ones literally)."""
    keys: tuple[str, ...] = ()
    """Keys (Redis globs) its own code reads and writes."""
    commands: tuple[str, ...] = ()
    """Redis commands its own code runs, those inside its Lua scripts included."""
    serves_tools: bool = False
    """It serves its tools to callers over the bus (``mad.<name>.requests``)."""
    calls_tools: bool = False
    """It calls other MADs' tools over the bus (their request streams)."""


@dataclass(frozen=True)
class TaskTools:
    """A MAD's long-running work as plain tools, which an MCP front end serves as MCP tasks
    (protocol 2025-11-25): ``start`` answers with the task's id in ``id_field``; ``status``
    takes ``{id_field}`` and answers its ``status`` (a key of ``states``), the result or
    error and its timestamps; ``cancel`` takes ``{id_field}`` and cancels it."""

    start: str
    status: str
    cancel: str
    states: Mapping[str, str]
    """The MAD's own status names onto MCP's (``working``, ``completed``, ``failed``,
    ``cancelled``)."""
    id_field: str = "task_id"
    result_field: str = "result_payload"
    error_field: str = "error_details"
    status_channel: str | None = None
    """Where each change of a task's status is published (``{"task_id", "status", ...}``):
    what a live view of the bus follows."""
    stream_prefix: str | None = None
    """When ``start`` also answers ``stream_topic`` (``<prefix><id>``): a task's final result
    carries it beside the status reply, so it matches ``start``'s output schema."""

    def final_structure(self, status: Mapping[str, Any]) -> dict[str, Any]:
        """The structured content of a task's final tool result: the status reply, which
        has ``start``'s id and status, and its stream topic."""
        found = dict(status)
        if self.stream_prefix is not None:
            found["stream_topic"] = f"{self.stream_prefix}{status.get(self.id_field)}"
        return found

    def terminal(self, status: str) -> bool:
        return self.states.get(status, "working") != "working"


@dataclass(frozen=True)
class MadContract:
    name: str
    """The MAD's name: ``MAD_NAME``, the compose service, the Kubernetes component."""
    port: int
    """The default port of its one HTTP port (``/mcp``, ``/healthz``, ``/readyz`` ...)."""
    banner: str
    """The first line of ``mad-status``: ``[<banner> Status]``."""
    service: str
    """``module:function`` building its :class:`~mads.core.service.MadService`."""
    description: str
    tools: tuple[str, ...] = ()
    """The MCP tools it owns (and publishes in the gateway's registry if it uses the bus)."""
    bus_name: str | None = None
    """The name operators know the Conversation Bus by, when this MAD gives it its name
    (the bus monitor's: "... Conversation Bus")."""
    ui_path: str | None = None
    """Where on its port it serves a page for people (Rogers' live view of the bus)."""
    report_tools: tuple[str, ...] = ()
    """Read-only tools of its own, called without arguments, whose answers a support bundle
    (``madgroup report``) keeps."""
    uses_bus: bool = True
    bus: BusAccess = field(default_factory=BusAccess)
    """What it does on the bus (when it uses it): its ACL user is derived from this."""
    peers: tuple[str, ...] = ()
    """Other MADs it calls (over MCP) and cannot be ready without."""
    url_variable: str | None = None
    """The variable a MAD that calls this one (names it among its ``peers``) reads this
    MAD's MCP endpoint from."""
    status_labels: tuple[str, ...] = ()
    """The lines ``mad-status`` shows after the common ones, in order."""
    log_lines: Mapping[str, str] = field(default_factory=_frozen)
    """The log lines operators look for, by purpose; ``str.format`` templates."""
    data: DataFile | None = None
    """A file it keeps in its data directory (a volume on compose and Kubernetes)."""
    secrets: tuple[str, ...] = ()
    """Variables it reads that hold secrets (never rendered into files or command lines)."""
    client_token_variable: str | None = None
    """The variable holding the bearer tokens its clients present (``mad-cli`` inside the
    MAD's own environment presents the first)."""
    exposed: bool = False
    """Whether it is the one service outside clients reach."""
    max_replicas: int | None = None
    tasks: TaskTools | None = None
    """Its long-running work, when a client may run it as MCP tasks."""
    bus_volume_variable: str | None = None
    """Set for the MAD that reports the bus's append-only file (``INFO persistence``): the
    variable it is told the bus's volume size in, in bytes, where volumes have a size."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "log_lines", _frozen(self.log_lines))

    def log_line(self, purpose: str, **values: object) -> str:
        return self.log_lines[purpose].format(**values)
