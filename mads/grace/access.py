"""Who may talk to Grace: an ASGI middleware in front of the whole app.

- ``/healthz`` and ``/readyz`` are open (probes come from the node, not from loopback).
- With tokens configured, every other request needs ``Authorization: Bearer <token>``
  (401 otherwise); ``/status`` and ``/metrics`` are also open to loopback so ``mad-status``
  works inside Grace's own container.
- With no tokens, only loopback clients are served (403 for others).

Tokens are compared with :func:`hmac.compare_digest` and never logged. Refusals are logged
at most once a minute per client address and reason.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import time
from collections import OrderedDict

from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
LOOPBACK_OPEN_PATHS = frozenset({"/status", "/metrics"})
LOG_EVERY_S = 60.0


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AccessGuard:
    def __init__(self, app: ASGIApp, tokens: list[str], logger: logging.Logger) -> None:
        self.app = app
        self._tokens = [t.encode() for t in tokens]
        self.log = logger
        self._logged: OrderedDict[tuple[str, str], float] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        host = client[0] if client else None
        loopback = is_loopback(host)
        if self._tokens:
            if not (loopback and scope.get("path") in LOOPBACK_OPEN_PATHS):
                problem = self._token_problem(scope)
                if problem is not None:
                    self._refused(host, problem)
                    await _reply(send, 401, problem, {"www-authenticate": 'Bearer realm="grace"'})
                    return
        elif not loopback:
            problem = "Grace serves only loopback clients while GRACE_API_TOKENS is not set"
            self._refused(host, "not a loopback client")
            await _reply(send, 403, problem)
            return
        await self.app(scope, receive, send)

    def _token_problem(self, scope: Scope) -> str | None:
        header = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value
                break
        if not header:
            return "missing bearer token (send 'Authorization: Bearer <token>')"
        scheme, _, presented = header.partition(b" ")
        if scheme.lower() != b"bearer" or not presented.strip():
            return "the Authorization header must read 'Bearer <token>'"
        presented = presented.strip()
        matched = False
        for token in self._tokens:  # no early exit: the time does not say which one matched
            matched |= hmac.compare_digest(presented, token)
        return None if matched else "invalid bearer token"

    def _refused(self, host: str | None, reason: str) -> None:
        key = (host or "?", reason)
        now = time.monotonic()
        last = self._logged.get(key)
        if last is not None and now - last < LOG_EVERY_S:
            return
        self._logged[key] = now
        self._logged.move_to_end(key)
        while len(self._logged) > 1000:
            self._logged.popitem(last=False)
        self.log.warning("Refused request from %s: %s", host or "unknown address", reason)


async def _reply(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
