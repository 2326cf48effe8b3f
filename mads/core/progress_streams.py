"""Requests that ask for progress are answered as a stream of events.

The MADs answer MCP in JSON (stateless, one reply per POST), and in JSON the SDK has
nowhere to put a notification. A request that carries ``_meta.progressToken`` and may run
long (``tools/call``, ``tasks/result``) is therefore handed to a second stateless transport
of the same server that answers as server-sent events: the progress notifications, then the
reply, then the stream ends. Everything else goes on as it came. A client must accept
``text/event-stream`` for such a request (the MCP transport says every client does).
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from mcp.server import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from mads.core import sdk
from mads.core.edge import read_body, replay

STREAMED_METHODS = frozenset({"tools/call", "tasks/result"})


def streaming_manager(
    server: MCPServer, security: TransportSecuritySettings, body_limit: int
) -> StreamableHTTPSessionManager:
    """A stateless transport of ``server`` that answers as server-sent events (run it with
    ``async with manager.run()`` for the life of the app)."""
    return StreamableHTTPSessionManager(
        app=sdk.lowlevel_server(server),
        json_response=False,
        stateless=True,
        security_settings=security,
        max_request_body_size=body_limit,
    )


def wants_progress(body: bytes) -> bool:
    """One JSON-RPC request of a streamed method with a ``_meta.progressToken``. Most
    requests carry none: they are told apart without parsing them."""
    if b"progressToken" not in body:
        return False
    try:
        message = pydantic_core.from_json(body)
    except ValueError:
        return False
    if not isinstance(message, dict) or message.get("method") not in STREAMED_METHODS:
        return False
    params: Any = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return isinstance(token, str | int) and not isinstance(token, bool)


class ProgressStreams:
    """ASGI middleware in front of the MCP endpoint ``path``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        manager: StreamableHTTPSessionManager,
        body_limit: int,
    ) -> None:
        self.app = app
        self.path = path
        self.manager = manager
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        body, read = await read_body(receive, self.body_limit)
        complete = read == "complete"
        replayed = replay(body, complete, receive)
        if complete and wants_progress(body):
            await self.manager.handle_request(scope, replayed, send)
        else:
            await self.app(scope, replayed, send)
