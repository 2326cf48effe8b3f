"""Who may talk to Grace: an ASGI middleware in front of the whole app.

- ``/healthz`` and ``/readyz`` are open (probes come from the node, not from loopback).
- With tokens configured, every other request needs ``Authorization: Bearer <token>``
  (401 otherwise); ``/status`` and ``/metrics`` are also open to loopback so ``mad-status``
  works inside Grace's own container.
- With no tokens, only loopback clients are served (403 for others).
- A token's scopes and limits (:mod:`mads.grace.tokens`) are applied here, before any work:
  a ``tools/call`` outside its scopes gets 403 naming the missing scope; over its request
  rate or calls in flight, 429 with ``Retry-After``.
- With OAuth configured (:mod:`mads.grace.oauth`), a bearer token that is not a static one
  is verified as an OAuth access token and its subject gets the scopes and limits its OAuth
  scopes map to. Then 401s carry ``WWW-Authenticate: Bearer resource_metadata="…"`` (and
  ``scope``, ``error``, ``error_description``), 403s ``error="insufficient_scope"`` naming
  the OAuth scope that grants what was missing, and the Protected Resource Metadata
  (:mod:`mads.grace.resource_metadata`) is open to anyone.

Tokens are known by their SHA-256 only, compared with :func:`hmac.compare_digest`, and
never logged. Every refusal is counted in ``grace_refusals_total{token, reason}``; refusals
are logged once per token (or client address) and reason.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pydantic_core
from prometheus_client import CollectorRegistry, Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from mads.core.edge import LOOPBACK_OPEN_PATHS, OPEN_PATHS, is_loopback, read_body, replay
from mads.core.internal_access import ScrapeCredential
from mads.core.logs import FirstTime
from mads.grace.resource_metadata import ProtectedResource, is_metadata_path
from mads.grace.tasks import method_tools
from mads.grace.tokens import (
    Limiter,
    Principal,
    ScopeRefusal,
    called_tool,
    retry_after,
    scope_refusal,
)
from mads.grace.verdicts import Refused

if TYPE_CHECKING:
    from mads.grace.oauth import OAuthVerifier

SCOPE_BODY_LIMIT = 4 * 1024 * 1024
"""Bodies read for the scope check (past it, the MCP endpoint's own limit refuses them)."""


UNAVAILABLE_RETRY_S = 5


@dataclass(frozen=True)
class OAuthDoor:
    """What the guard needs for OAuth access tokens: their verifier and Grace's resource."""

    verifier: OAuthVerifier
    resource: ProtectedResource


@dataclass(frozen=True)
class Unidentified:
    """A request without a usable credential: why, whether a token was presented at all (an
    RFC 6750 challenge carries an error code only then), and the status to answer."""

    reason: str
    presented: bool
    status: int = 401


class AccessGuard:
    def __init__(
        self,
        app: ASGIApp,
        principals: dict[str, Principal],
        logger: logging.Logger,
        metrics: CollectorRegistry | None = None,
        scrape: ScrapeCredential | None = None,
        oauth: OAuthDoor | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self.app = app
        self._principals = dict(principals)
        self._oauth = oauth
        self._scrape = scrape or ScrapeCredential("")
        self.log = logger
        self.limiter = limiter or Limiter()
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
        path = str(scope.get("path", ""))
        if (
            scope["type"] != "http"
            or path in OPEN_PATHS
            or (self._oauth is not None and is_metadata_path(path))
        ):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        host = client[0] if client else None
        loopback = is_loopback(host)
        if self._scrape.admits(scope):
            await self.app(scope, receive, send)
            return
        if not self._principals and self._oauth is None:
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
        identified = await self._identify(scope)
        if isinstance(identified, Unidentified):
            await self._unidentified(scope, receive, send, host, identified)
            return
        principal = identified
        if not principal.unrestricted and scope.get("method") == "POST":
            body, read = await read_body(receive, SCOPE_BODY_LIMIT)
            if read == "complete":
                missing = scope_refusal(principal, _message(body), method_tools)
                if missing is not None:
                    await self._out_of_scope(send, host, principal, missing)
                    return
            receive = replay(body, read == "complete", receive)
        over = self.limiter.admit(principal)
        if over is not None:
            self._refused(principal.key, host, over.kind, over.reason, principal.who)
            await _reply(send, 429, over.reason, {"retry-after": retry_after(over.wait_s)})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.limiter.release(principal)

    async def _identify(self, scope: Scope) -> Principal | Unidentified:
        header = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value
                break
        if not header:
            return Unidentified(
                "missing bearer token (send 'Authorization: Bearer <token>')", presented=False
            )
        scheme, _, presented = header.partition(b" ")
        token = presented.strip()
        if scheme.lower() != b"bearer" or not token:
            return Unidentified(
                "the Authorization header must read 'Bearer <token>'", presented=False
            )
        if self._principals:
            presented_digest = hashlib.sha256(token).hexdigest().encode()
            found: Principal | None = None
            for known, principal in self._principals.items():
                # no early exit: the time does not say which one matched
                if hmac.compare_digest(presented_digest, known.encode()):
                    found = principal
            if found is not None:
                return found
        if self._oauth is None:
            return Unidentified("invalid bearer token", presented=True)
        verdict = await self._oauth.verifier.verify(token)
        if isinstance(verdict, Refused):
            return Unidentified(verdict.reason, presented=True, status=verdict.status)
        return verdict.principal

    async def _unidentified(
        self, scope: Scope, receive: Receive, send: Send, host: str | None, why: Unidentified
    ) -> None:
        unavailable = why.status == 503
        self._refused(
            "-", host, "issuer_unavailable" if unavailable else "unauthenticated", why.reason
        )
        if self._oauth is None:
            await _reply(send, 401, why.reason, {"www-authenticate": 'Bearer realm="grace"'})
            return
        if unavailable:
            retry = str(UNAVAILABLE_RETRY_S)
            await _reply(send, 503, why.reason, {"retry-after": retry})
            return
        needed = None
        if scope.get("method") == "POST":
            body, read = await read_body(receive, SCOPE_BODY_LIMIT)
            if read == "complete":
                needed = self._scope_for(_message(body))
        challenge = self._oauth.resource.challenge(
            scope=needed,
            error="invalid_token" if why.presented else None,
            description=why.reason if why.presented else None,
        )
        await _reply(send, 401, why.reason, {"www-authenticate": challenge})

    async def _out_of_scope(
        self, send: Send, host: str | None, principal: Principal, missing: ScopeRefusal
    ) -> None:
        self._refused(principal.key, host, "scope", missing.reason, principal.who)
        if self._oauth is None or principal.kind != "subject":
            await _reply(send, 403, missing.reason)
            return
        scopes = self._oauth.verifier.scopes
        granting = (
            scopes.granting_tool(missing.tool)
            if missing.tool is not None
            else scopes.granting_topic(missing.topic or "")
        )
        if granting is not None:
            reason = f"{missing.reason}: the OAuth scope {granting!r} grants it"
        else:
            reason = f"{missing.reason}: no OAuth scope grants it"
        challenge = self._oauth.resource.challenge(
            scope=granting, error="insufficient_scope", description=reason
        )
        await _reply(send, 403, reason, {"www-authenticate": challenge})

    def _scope_for(self, message: Any) -> str | None:
        """For a challenge on a request without a token: the OAuth scope granting the tool
        it calls (the first one of a batch that names one), if any."""
        assert self._oauth is not None
        for item in message if isinstance(message, list) else [message]:
            tool = called_tool(item)
            if tool is not None:
                return self._oauth.verifier.scopes.granting_tool(tool)
        return None

    def _refused(
        self, token: str, host: str | None, reason: str, detail: str, who: str | None = None
    ) -> None:
        self.refusals.labels(token=token, reason=reason).inc()
        if not self._first((token if token != "-" else host or "?", reason)):
            return
        who = who or (f"token {token!r}" if token != "-" else "a client")
        self.log.warning(
            "Refused a request from %s at %s: %s (further ones are counted in "
            "grace_refusals_total, not logged)",
            who,
            host or "unknown address",
            detail,
        )


def _message(body: bytes) -> Any:
    try:
        return pydantic_core.from_json(body)
    except ValueError:
        return None  # the MCP endpoint answers a malformed body itself


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
