"""Is a component ready? The same checks as every substrate: an authenticated Redis PING,
or HTTP ``GET /readyz`` answering 200. Standard library only, so probes are cheap."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from typing import Any

from madgroup import topology
from madgroup.local.ports import HOST


def _bulk(text: str) -> bytes:
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _connect(port: int, timeout: float, ca_file: str | None) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout)
    if ca_file is None:
        return sock
    context = ssl.create_default_context(cafile=ca_file)
    try:
        return context.wrap_socket(sock, server_hostname=HOST)
    except BaseException:
        sock.close()
        raise


def redis_ping(
    port: int, password: str | None, timeout: float = 0.5, ca_file: str | None = None
) -> str:
    """Send ``AUTH`` (if a password is given) and ``PING``; return Redis's last reply line
    (``PONG`` when ready, e.g. ``NOAUTH ...`` or ``LOADING ...`` otherwise). With a
    ``ca_file``, over TLS, Redis's certificate checked against that CA."""
    request = b""
    replies = 1
    if password is not None:
        request += b"*2\r\n" + _bulk("AUTH") + _bulk(password)
        replies += 1
    request += b"*1\r\n" + _bulk("PING")
    with _connect(port, timeout, ca_file) as sock:
        sock.sendall(request)
        buffer = b""
        while buffer.count(b"\r\n") < replies:
            chunk = sock.recv(4096)
            if not chunk:
                break
            buffer += chunk
    lines = [line for line in buffer.decode(errors="replace").split("\r\n") if line]
    if not lines:
        return "no reply"
    failed = next((line for line in lines if line.startswith("-")), None)
    return (failed or lines[-1]).lstrip("+-")


def redis_ready(port: int, password: str, timeout: float = 0.5, ca_file: str | None = None) -> bool:
    try:
        return redis_ping(port, password, timeout, ca_file) == "PONG"
    except OSError:
        return False


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
        return redis_ready(port, password, timeout, ca_file)
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
