"""The HTTP edge of every MAD: what is refused before the MCP SDK sees a request.

- **Admission.** At most ``max_inflight`` MCP requests are worked on at once; one more
  waits up to ``wait_s`` for a slot, then gets ``503`` with ``Retry-After`` and a JSON-RPC
  error saying to retry. Past capacity a caller is told to come back, nothing is dropped
  unsaid, and the bus never sees more than the service can carry.
- **No never-ending streams.** The MADs serve MCP statelessly, so there is no stream to
  resume: ``GET`` (and ``DELETE``) on ``/mcp`` answer ``405`` with ``Allow: POST``, as the
  streamable HTTP transport allows, instead of an event stream held open forever.
- **Well-formed Host and Origin.** Exactly one ``Host`` header, ``host[:port]`` with a port
  of 1-65535, and at most one ``Origin``, ``scheme://host[:port]``; the SDK then checks
  them against the allow-list (DNS-rebinding protection).
- **Clients that leave.** The request body is read here, whole (up to the body limit;
  past it, the SDK answers 413). A client that disconnects before its body is complete (a
  ``Transfer-Encoding: chunked`` header with a body that is not chunked, say) is logged in
  one line, without a traceback, and nothing behind the edge sees the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Literal

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mads.core.logs import quoted

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
"""Always served: probes come from the node, not from loopback."""
LOOPBACK_OPEN_PATHS = frozenset({"/status", "/metrics"})
"""Served to loopback without credentials, so ``mad-status`` works beside its MAD."""


@functools.lru_cache(maxsize=4096)
def is_loopback(host: str | None) -> bool:
    """Whether a client address is a loopback one (asked for every request: remembered)."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


BUSY_CODE = -32000
"""JSON-RPC "server error" (the implementation-defined range): busy, retry later."""
HOST = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?)(?::([0-9]{1,5}))?$"
)
ORIGIN = re.compile(r"^https?://([^/?#\s]+)$")
LOG_EVERY_S = 60.0


def valid_host(value: str) -> bool:
    match = HOST.match(value)
    if match is None:
        return False
    port = match.group(1)
    return port is None or 1 <= int(port) <= 65535


def valid_origin(value: str) -> bool:
    match = ORIGIN.match(value)
    return match is not None and valid_host(match.group(1))


class HttpEdge:
    """ASGI middleware in front of a MAD's whole app; it guards the MCP ``path``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        max_inflight: int,
        wait_s: float,
        body_limit: int,
        logger: logging.Logger,
    ) -> None:
        self.app = app
        self.path = path
        self.body_limit = body_limit
        self.wait_s = wait_s
        self.log = logger
        self.max_inflight = max_inflight
        self._slots = asyncio.Semaphore(max_inflight)
        self.refused_busy = 0
        self.inflight = 0
        self._last_logged: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.path:
            await self._guarded(scope, receive, send)
            return
        if scope["method"] in ("GET", "DELETE"):
            await _reply(send, 405, "this MCP endpoint is stateless: POST only", {"allow": "POST"})
            return
        problem = header_problem(scope.get("headers", []))
        if problem is not None:
            status, reason = problem
            self._log_once(reason, "Refused an MCP request: %s", reason)
            await _reply(send, status, reason)
            return
        try:
            if self._slots.locked():  # no slot free: wait for one, but not for ever
                await asyncio.wait_for(self._slots.acquire(), self.wait_s)
            else:
                await self._slots.acquire()  # returns at once, without a timer or a task
        except TimeoutError:
            self.refused_busy += 1
            self._log_once(
                "busy",
                "Busy: %d MCP requests in progress; telling callers to retry",
                self.max_inflight,
            )
            await _busy(send, self.max_inflight)
            return
        self.inflight += 1
        try:
            body, read = await read_body(receive, self.body_limit)
            if read == "disconnected":
                self._log_once(
                    "disconnect",
                    "A client went away before its request was read (%d bytes came)",
                    len(body),
                )
                return
            await self._guarded(scope, replay(body, read == "complete", receive), send)
        finally:
            self.inflight -= 1
            self._slots.release()

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            self._log_once(
                "disconnect",
                "A client went away before its request was read (%s %s)",
                scope.get("method"),
                quoted(scope.get("path", "")),
            )

    def _log_once(self, key: str, message: str, *args: object) -> None:
        """Log a refusal of one kind at most once a minute, not once per request."""
        now = time.monotonic()
        last = self._last_logged.get(key)
        if last is None or now - last >= LOG_EVERY_S:
            self._last_logged[key] = now
            if len(self._last_logged) > 1000:
                self._last_logged.clear()
            self.log.warning(message, *args)


def host_name(value: str) -> str:
    """The name in a well-formed ``Host`` value, without its port, in lower case."""
    match = HOST.match(value)
    name = value if match is None or match.group(1) is None else value[: match.start(1) - 1]
    return name.lower()


def host_refusal(
    headers: Iterable[tuple[bytes, bytes]], names: Iterable[str]
) -> tuple[int, str] | None:
    """For pages a browser opens (DNS-rebinding protection, as the MCP endpoint has it): a
    request whose Host, or Origin when it has one, names none of ``names`` (with any port)
    is refused, 421 or 403 with the reason; None when it may be served."""
    headers = list(headers)
    problem = header_problem(headers)
    if problem is not None:
        return problem
    allowed = {name.lower() for name in names}
    host = next(value for name, value in headers if name == b"host").decode("latin-1")
    if host_name(host) not in allowed:
        return 421, f"Invalid Host header: {quoted(host, 60)} is not a name this MAD serves"
    origin = next((value for name, value in headers if name == b"origin"), None)
    if origin is not None:
        text = origin.decode("latin-1")
        match = ORIGIN.match(text)
        if match is None or host_name(match.group(1)) not in allowed:
            return 403, f"Invalid Origin header: {quoted(text, 60)} is not this MAD's"
    return None


def header_problem(headers: Iterable[tuple[bytes, bytes]]) -> tuple[int, str] | None:
    hosts = [value for name, value in headers if name == b"host"]
    origins = [value for name, value in headers if name == b"origin"]
    if len(hosts) != 1:
        return 421, "Invalid Host header: exactly one is required"
    host = hosts[0].decode("latin-1")
    if not valid_host(host):
        return 421, f"Invalid Host header: {quoted(host, 60)} is not host[:port]"
    if len(origins) > 1:
        return 403, "Invalid Origin header: more than one"
    if origins:
        origin = origins[0].decode("latin-1")
        if not valid_origin(origin):
            return 403, f"Invalid Origin header: {quoted(origin, 60)} is not scheme://host[:port]"
    return None


async def _reply(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    await _send(send, status, body, headers)


async def _busy(send: Send, limit: int) -> None:
    error = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {
            "code": BUSY_CODE,
            "message": f"busy: {limit} requests in progress; retry after 1 s",
            "data": {"retryAfter": 1},
        },
    }
    await _send(send, 503, json.dumps(error).encode(), {"retry-after": "1"})


async def _send(send: Send, status: int, body: bytes, headers: dict[str, str] | None) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    start: Message = {"type": "http.response.start", "status": status, "headers": raw}
    with contextlib.suppress(OSError):
        await send(start)
        await send({"type": "http.response.body", "body": body})


BodyRead = Literal["complete", "over_limit", "disconnected"]


async def read_body(receive: Receive, limit: int) -> tuple[bytes, BodyRead]:
    """The request body as far as it came: all of it, the first ``limit``-plus bytes (the
    rest is still to be received), or what came before the client left."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), "disconnected"
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), "over_limit"
        if not message.get("more_body", False):
            return b"".join(chunks), "complete"


def replay(body: bytes, complete: bool, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A ``receive`` that gives back what was read, then continues from the original."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replayed
