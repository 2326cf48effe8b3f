"""The group-internal credential: no way around the front door.

A MAD other than the front door serves MCP only to requests bearing the group's internal
credential (``MAD_INTERNAL_TOKEN``), which its peers and ``mad-cli`` present; anything else
on the host or the pod network gets 401. ``/healthz`` and ``/readyz`` stay open (probes),
``/status`` and ``/metrics`` stay open to loopback (``mad-status`` inside the MAD's own
container or environment) and to a scraper presenting the group's metrics credential
(``MAD_METRICS_TOKEN``), which opens nothing else. Refusals are counted
(``mad_internal_refusals_total``) and logged once per client address; the credential is
never logged.
"""

from __future__ import annotations

import hmac
import json
import logging

from prometheus_client import CollectorRegistry, Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from mads.core.contract import INTERNAL_TOKEN_VARIABLE
from mads.core.edge import LOOPBACK_OPEN_PATHS, OPEN_PATHS, is_loopback
from mads.core.logs import FirstTime


def refusal(front: str | None = None) -> str:
    """What a caller without the internal credential is told: how to get in, and which MAD
    outside clients call instead (``front``: the exposed one, when one is installed)."""
    instead = f", or call its tools through {front}" if front else ""
    return (
        "this MAD serves the group only: present the group's internal credential "
        f"(Authorization: Bearer ${INTERNAL_TOKEN_VARIABLE}){instead}"
    )


def _bearer(scope: Scope) -> bytes:
    return next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")


class ScrapeCredential:
    """The group's metrics credential: a monitoring system that presents it may read
    ``/status`` and ``/metrics`` from anywhere, and nothing else (least privilege: it is
    not the internal credential, which calls tools)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode() if token else None

    def admits(self, scope: Scope) -> bool:
        if self._expected is None or scope.get("path") not in LOOPBACK_OPEN_PATHS:
            return False
        return hmac.compare_digest(_bearer(scope), self._expected)


class InternalGuard:
    def __init__(
        self,
        app: ASGIApp,
        token: str,
        logger: logging.Logger,
        metrics: CollectorRegistry | None = None,
        scrape: ScrapeCredential | None = None,
        loopback_prefixes: tuple[str, ...] = (),
        front_door: str | None = None,
    ) -> None:
        self.app = app
        self._front_door = front_door
        self._expected = f"Bearer {token}".encode()
        self._scrape = scrape or ScrapeCredential("")
        self._loopback_prefixes = loopback_prefixes
        self.log = logger
        self._first = FirstTime()
        self.refusals = Counter(
            "mad_internal_refusals",
            "Requests refused for lack of the group's internal credential",
            registry=metrics if metrics is not None else CollectorRegistry(),
        )

    def _under_loopback_prefix(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self._loopback_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        host = client[0] if client else None
        if path in LOOPBACK_OPEN_PATHS and (is_loopback(host) or self._scrape.admits(scope)):
            await self.app(scope, receive, send)
            return
        if is_loopback(host) and self._under_loopback_prefix(str(path)):
            await self.app(scope, receive, send)  # a MAD's own pages (Rogers' /ui)
            return
        if hmac.compare_digest(_bearer(scope), self._expected):
            await self.app(scope, receive, send)
            return
        self.refusals.inc()
        where = host or "unknown address"
        if self._first(where):
            self.log.warning(
                "Refused a request from %s without the group's internal credential "
                "(further ones are counted in mad_internal_refusals_total, not logged)",
                where,
            )
        body = json.dumps({"error": refusal(self._front_door)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="madgroup-internal"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
