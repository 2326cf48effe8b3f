"""Is a component ready? The same checks as every substrate: an authenticated Redis PING
(:mod:`madgroup.local.redis_admin`), or HTTP ``GET /readyz`` answering 200 (the standard
library's client, so probes are cheap)."""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any

from madgroup import topology
from madgroup.local import redis_admin
from madgroup.local.ports import HOST


def http_get(
    port: int, path: str, timeout: float = 1.0, ca_file: str | None = None
) -> tuple[int, Any]:
    """``GET path``; over HTTPS, checked against ``ca_file``, when one is given."""
    conn: http.client.HTTPConnection
    if ca_file is not None:
        context = ssl.create_default_context(cafile=ca_file)
        conn = http.client.HTTPSConnection(HOST, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": f"127.0.0.1:{port}"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    return response.status, data


def http_ready(
    port: int, path: str = "/readyz", timeout: float = 1.0, ca_file: str | None = None
) -> bool:
    try:
        return http_get(port, path, timeout, ca_file)[0] == 200
    except (OSError, http.client.HTTPException):
        return False


def ready(
    comp: topology.Component,
    port: int,
    password: str,
    timeout: float = 1.0,
    ca_file: str | None = None,
) -> bool:
    """``ca_file``: the bus speaks TLS, its certificate signed by that CA."""
    if comp.probe.kind == topology.ProbeKind.REDIS_PING:
        return redis_admin.ready(port, password, timeout, ca_file)
    https = ca_file if topology.serves_tls(comp) else None
    return http_ready(port, comp.probe.path, timeout, https)


def mad_status(
    port: int, timeout: float = 5.0, ca_file: str | None = None
) -> dict[str, Any] | None:
    """The MAD's ``/status`` report (what ``mad-status`` prints), or None if unreachable;
    ``ca_file``: it serves HTTPS with a certificate signed by that CA."""
    try:
        code, data = http_get(port, "/status", timeout, ca_file)
    except (OSError, http.client.HTTPException):
        return None
    return data if code == 200 and isinstance(data, dict) else None
