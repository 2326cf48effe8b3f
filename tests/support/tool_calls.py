"""A lean MCP client for load: plain JSON-RPC ``tools/call`` POSTs over keep-alive
connections (aiohttp), as a load tool sends them to a stateless MCP endpoint.

The official SDK client spends about 2 ms of CPU per call; on a 2-core machine that, not
the server under test, would set the pace. Use the SDK client to test behaviour and this
one to generate load.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import aiohttp
from mcp_types.version import LATEST_HANDSHAKE_VERSION


class ToolCallClient:
    def __init__(self, mcp_url: str, *, token: str | None = None, connections: int = 16):
        self.url = mcp_url
        self.headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": LATEST_HANDSHAKE_VERSION,
        }
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections))
        self._ids = itertools.count(1)

    async def call(self, tool: str, arguments: dict[str, Any]) -> tuple[bool, Any]:
        """``(True, structured result)`` or ``(False, what went wrong)``."""
        request = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments},
        }
        async with self.http.post(self.url, data=json.dumps(request), headers=self.headers) as r:
            body = await r.read()
        if r.status != 200:
            return False, f"HTTP {r.status}: {body[:200]!r}"
        reply = json.loads(body)
        result = reply.get("result")
        if not isinstance(result, dict):
            return False, f"JSON-RPC error: {reply.get('error')!r}"
        if result.get("isError"):
            return False, f"tool error: {result.get('content')!r}"
        return True, result.get("structuredContent")

    async def close(self) -> None:
        await self.http.close()
