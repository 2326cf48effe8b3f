"""The group's metrics credential (MAD_METRICS_TOKEN): a scraper off loopback (Prometheus in
another pod) presenting it reads /metrics and /status of a MAD behind Grace and of Grace
itself, and nothing else; without it, or with the wrong one, both stay closed. The guards
run in-process here with a pod-network client address (every local process is loopback)."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from mads.core.internal_access import InternalGuard, ScrapeCredential
from mads.grace.access import AccessGuard
from mads.grace.tokens import Principal, from_api_tokens

SCRAPE = "metrics-credential-0123456789abcdef"
INTERNAL = "internal-credential-0123456789abcdef"
POD = ("10.42.0.7", 40000)


def _inner() -> Starlette:
    async def ok(request: object) -> PlainTextResponse:
        return PlainTextResponse("served")

    paths = ("/metrics", "/status", "/mcp", "/readyz")
    return Starlette(routes=[Route(p, ok, methods=["GET", "POST"]) for p in paths])


def behind_grace() -> InternalGuard:
    log = logging.getLogger("test")
    return InternalGuard(_inner(), INTERNAL, log, scrape=ScrapeCredential(SCRAPE))


def grace(principals: dict[str, Principal]) -> AccessGuard:
    log = logging.getLogger("test")
    return AccessGuard(_inner(), principals, log, scrape=ScrapeCredential(SCRAPE))


async def _get(app: object, path: str, token: str | None) -> int:
    transport = httpx.ASGITransport(app=app, client=POD)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(transport=transport, base_url="http://mad") as http:
        return (await http.get(path, headers=headers)).status_code


@pytest.mark.parametrize(
    "app",
    [behind_grace(), grace({}), grace(from_api_tokens(["a-client-token-0123456789abcdef"]))],
    ids=["behind-grace", "grace-loopback-only", "grace-with-tokens"],
)
async def test_the_scrape_credential_opens_metrics_and_status_only(app: object) -> None:
    assert await _get(app, "/metrics", SCRAPE) == 200
    assert await _get(app, "/status", SCRAPE) == 200
    assert await _get(app, "/mcp", SCRAPE) in (401, 403)
    assert await _get(app, "/metrics", None) in (401, 403)
    assert await _get(app, "/metrics", "not-the-credential-0123456789") in (401, 403)


async def test_without_a_scrape_credential_nothing_changes() -> None:
    app = InternalGuard(_inner(), INTERNAL, logging.getLogger("test"))
    assert await _get(app, "/metrics", SCRAPE) == 401
    assert await _get(app, "/metrics", INTERNAL) == 200  # the internal credential, as before
    assert await _get(app, "/readyz", None) == 200
