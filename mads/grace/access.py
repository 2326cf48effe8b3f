"""Who may talk to Grace: an ASGI middleware in front of the whole app.

- ``/healthz`` and ``/readyz`` are open (probes come from the node, not from loopback).
- With tokens configured, every other request needs ``Authorization: Bearer <token>``
  (401 otherwise); ``/status`` and ``/metrics`` are also open to loopback so ``mad-status``
  works inside Grace's own container.
- With no tokens, only loopback clients are served (403 for others).
- A token's scopes and limits (:mod:`mads.grace.tokens`) are applied here, before any work:
  a ``tools/call`` outside its scopes gets 403 naming the missing scope; over its request
  rate or calls in flight, 429 with ``Retry-After``.

Tokens are known by their SHA-256 only, compared with :func:`hmac.compare_digest`, and
never logged. Every refusal is counted in ``grace_refusals_total{token, reason}``; refusals
are logged once per token (or client address) and reason.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import pydantic_core
from prometheus_client import CollectorRegistry, Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from mads.core.edge import LOOPBACK_OPEN_PATHS, OPEN_PATHS, is_loopback, read_body, replay
from mads.core.internal_access import ScrapeCredential
from mads.core.logs import FirstTime
from mads.grace.tasks import method_tools
from mads.grace.tokens import Limiter, Principal, retry_after, scope_problem

SCOPE_BODY_LIMIT = 4 * 1024 * 1024
"""Bodies read for the scope check (past it, the MCP endpoint's own limit refuses them)."""


class AccessGuard:
    def __init__(
        self,
        app: ASGIApp,
        principals: dict[str, Principal],
        logger: logging.Logger,
        metrics: CollectorRegistry | None = None,
        scrape: ScrapeCredential | None = None,
    ) -> None:
        self.app = app
        self._principals = dict(principals)
        self._scrape = scrape or ScrapeCredential("")
        self.log = logger
        self.limiter = Limiter()
        self._first = FirstTime()
        self.refusals = Counter(
            "grace_refusals",
            "Requests Grace refused, by token name (or '-') and reason",
            ["token", "reason"],
            registry=metrics if metrics is not None else CollectorRegistry(),
        )
        # The anonymous series exist from the start (at 0), so a rate over them is defined
        # before the first refusal.
        for reason in ("unauthenticated", "not_loopback"):
            self.refusals.labels(token="-", reason=reason)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        host = client[0] if client else None
        loopback = is_loopback(host)
        if self._scrape.admits(scope):
            await self.app(scope, receive, send)
            return
        if not self._principals:
            if not loopback:
                problem = "Grace serves only loopback clients while GRACE_API_TOKENS is not set"
                self._refused("-", host, "not_loopback", "not a loopback client")
                await _reply(send, 403, problem)
                return
            await self.app(scope, receive, send)
            return
        if loopback and scope.get("path") in LOOPBACK_OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        principal, problem = self._principal(scope)
        if principal is None:
            self._refused("-", host, "unauthenticated", problem)
            await _reply(send, 401, problem, {"www-authenticate": 'Bearer realm="grace"'})
            return
        if not principal.unrestricted and scope.get("method") == "POST":
            body, read = await read_body(receive, SCOPE_BODY_LIMIT)
            if read == "complete":
                try:
                    message = pydantic_core.from_json(body)
                except ValueError:
                    message = None  # the MCP endpoint answers a malformed body itself
                missing = scope_problem(principal, message, method_tools)
                if missing is not None:
                    self._refused(principal.name, host, "scope", missing)
                    await _reply(send, 403, missing)
                    return
            receive = replay(body, read == "complete", receive)
        over = self.limiter.admit(principal)
        if over is not None:
            self._refused(principal.name, host, over.kind, over.reason)
            await _reply(send, 429, over.reason, {"retry-after": retry_after(over.wait_s)})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.limiter.release(principal)

    def _principal(self, scope: Scope) -> tuple[Principal | None, str]:
        header = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value
                break
        if not header:
            return None, "missing bearer token (send 'Authorization: Bearer <token>')"
        scheme, _, presented = header.partition(b" ")
        if scheme.lower() != b"bearer" or not presented.strip():
            return None, "the Authorization header must read 'Bearer <token>'"
        presented_digest = hashlib.sha256(presented.strip()).hexdigest().encode()
        found: Principal | None = None
        for known, principal in self._principals.items():
            # no early exit: the time does not say which one matched
            if hmac.compare_digest(presented_digest, known.encode()):
                found = principal
        return (found, "") if found is not None else (None, "invalid bearer token")

    def _refused(self, token: str, host: str | None, reason: str, detail: str) -> None:
        self.refusals.labels(token=token, reason=reason).inc()
        if not self._first((token if token != "-" else host or "?", reason)):
            return
        who = f"token {token!r}" if token != "-" else "a client"
        self.log.warning(
            "Refused a request from %s at %s: %s (further ones are counted in "
            "grace_refusals_total, not logged)",
            who,
            host or "unknown address",
            detail,
        )


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
