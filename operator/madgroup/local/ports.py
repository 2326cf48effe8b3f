"""Which ports the group uses here, and whether they are free before anything starts."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterable, Mapping

from madgroup import topology
from madgroup.errors import UsageError

OFFSET_ENV = "MADGROUP_PORT_OFFSET"
HOST = "127.0.0.1"
REPLICA_STEP = 100
"""A component's second process listens this far above its port, the third twice as far..."""


class PortError(UsageError, ValueError):
    pass


def offset_from(explicit: int | None) -> int:
    if explicit is not None:
        return explicit
    raw = os.environ.get(OFFSET_ENV, "").strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise PortError(f"{OFFSET_ENV}={raw!r} is not a whole number") from None


def plan(offset: int, names: list[str]) -> dict[str, int]:
    ports = {name: topology.component(name).port + offset for name in names}
    bad = {n: p for n, p in ports.items() if not 1024 <= p <= 65535}
    if bad:
        name, port = next(iter(bad.items()))
        raise PortError(
            f"--port-offset {offset} puts {name} on port {port}; ports must be 1024-65535"
        )
    return ports


def instance_ports(ports: Mapping[str, int], instances: Mapping[str, list[str]]) -> dict[str, int]:
    """Each process's port: the first of a component's takes the component's port, the
    i-th that port plus ``(i - 1) * REPLICA_STEP``."""
    found: dict[str, int] = {}
    for name, units in instances.items():
        for i, unit in enumerate(units):
            port = ports[name] + i * REPLICA_STEP
            if not 1024 <= port <= 65535:
                raise PortError(f"{unit} would listen on port {port}; ports must be 1024-65535")
            found[unit] = port
    return found


def in_use(port: int, host: str = HOST) -> bool:
    """True when a server could not bind ``host:port`` now (what redis/uvicorn would hit)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def free_offset(candidates: Iterable[int]) -> int | None:
    """The first offset at which every component's port is free right now."""
    for offset in candidates:
        try:
            ports = plan(offset, list(topology.COMPONENT_NAMES))
        except PortError:
            continue
        if not any(in_use(port) for port in ports.values()):
            return offset
    return None


def check_free(ports: dict[str, int]) -> None:
    busy = [(name, port) for name, port in ports.items() if in_use(port)]
    if not busy:
        return
    which = ", ".join(f"{port} ({name})" for name, port in busy)
    noun = "port" if len(busy) == 1 else "ports"
    raise PortError(
        f"{noun} {which} already in use; nothing was started. Stop what holds it, or run "
        f"the group on other ports: madgroup up --port-offset 1000 "
        f"(or set {OFFSET_ENV}=1000)"
    )
