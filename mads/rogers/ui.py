"""Rogers' live view in a browser: ``/ui`` on Rogers' port (loopback, or the internal
credential, like the rest of Rogers). The page is three static files shipped in the package
(no CDN: it works with no internet); ``/ui/events`` pushes a snapshot every second as
server-sent events — the connection table, messages per channel, the latest envelopes,
the tasks — which the page draws without reloading.

The event streams are bounded like every long request of a MAD: at most MAX_STREAMS at once
(beyond, 503 with ``Retry-After``), each closed after STREAM_S (the browser's EventSource
reconnects by itself).

A browser opens these pages, so they answer only to the names the MAD serves — loopback and
``MAD_ALLOWED_HOSTS`` — in ``Host`` (and ``Origin``, when one is sent): a page elsewhere
whose name was made to resolve to loopback (DNS rebinding) gets 421, not the group's data.
Probes, ``/status`` and ``/metrics`` are not under ``/ui`` and stay open to any Host (the
kubelet and Prometheus name the pod by its address).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mads.core.edge import host_refusal
from mads.core.service import LOOPBACK_HOSTS
from mads.rogers.connections import ConnectionTable
from mads.rogers.contract import CONTRACT
from mads.rogers.live import LiveView
from mads.rogers.stats import TrafficStats

PREFIX = CONTRACT.ui_path or "/ui"
INTERVAL_S = 1.0
STREAM_S = 600.0
MAX_STREAMS = 20
FILES = {
    "": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    # Only this page's own files: no inline script, nothing from elsewhere.
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


Handler = Callable[[Request], Awaitable[Response]]


class LiveUi:
    def __init__(
        self,
        connections: ConnectionTable,
        stats: TrafficStats,
        live: LiveView,
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        """``allowed_hosts``: the names besides loopback this MAD serves (its settings'
        ``MAD_ALLOWED_HOSTS``)."""
        self.connections = connections
        self.stats = stats
        self.live = live
        self.hosts = (*LOOPBACK_HOSTS, *allowed_hosts)
        self.streams = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "connections": self.connections.snapshot(),
            "rate_per_s": round(self.stats.rate_per_s(), 2),
            "total_messages": self.stats.total,
            **self.live.snapshot(),
        }

    def routes(self) -> list[Route]:
        static = [
            Route(PREFIX + path, self._own_hosts(self._static(name, kind)))
            for path, (name, kind) in FILES.items()
        ]
        return [*static, Route(PREFIX + "/events", self._own_hosts(self._events))]

    def _own_hosts(self, handler: Handler) -> Handler:
        """``handler``, answering only requests that name this MAD (DNS rebinding)."""

        async def guarded(request: Request) -> Response:
            refused = host_refusal(request.scope.get("headers", ()), self.hosts)
            if refused is not None:
                status, reason = refused
                return JSONResponse({"error": reason}, status_code=status)
            return await handler(request)

        return guarded

    def _static(self, name: str, kind: str) -> Handler:
        body = resources.files("mads.rogers").joinpath("ui", name).read_bytes()

        async def serve(request: Request) -> Response:
            return Response(body, media_type=kind, headers=SECURITY_HEADERS)

        return serve

    async def _events(self, request: Request) -> Response:
        if self.streams >= MAX_STREAMS:
            return Response(
                f"at most {MAX_STREAMS} live views at once; retry shortly\n",
                status_code=503,
                headers={"retry-after": "5"},
            )
        return StreamingResponse(
            self._stream(request),
            media_type="text/event-stream",
            headers={**SECURITY_HEADERS, "x-accel-buffering": "no"},
        )

    async def _stream(self, request: Request) -> AsyncIterator[str]:
        self.streams += 1
        try:
            loop = asyncio.get_running_loop()
            ends = loop.time() + STREAM_S
            yield "retry: 2000\n\n"
            while loop.time() < ends and not await request.is_disconnected():
                yield f"event: snapshot\ndata: {json.dumps(self.snapshot(), default=str)}\n\n"
                await asyncio.sleep(INTERVAL_S)
        finally:
            self.streams -= 1
