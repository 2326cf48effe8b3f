"""A load client for Grace's front door, as a load tool talks to an MCP server (plain
JSON-RPC over keep-alive connections, no retries), and what Fiedler stored for it: used by
the front-door capacity tests and bench/relay_backlog.py."""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp

PROMPT = "System check, please respond with OK."
HANDSHAKE = "2025-06-18"


class Client:
    """Plain JSON-RPC over keep-alive connections, as a load tool talks to an MCP server."""

    def __init__(self, url: str, token: str, connections: int) -> None:
        self.url = f"{url}/mcp"
        self.token = token
        # Idle connections are let go before the server's keep-alive (uvicorn's 5 s) ends
        # them, as a well-behaved client does: never a request on a connection being closed.
        connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=2)
        self.http = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=600)
        )
        self._ids = itertools.count(1)

    async def send(
        self, method: str, params: dict[str, Any], version: str = HANDSHAKE
    ) -> tuple[int, dict[str, Any]]:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        headers = {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": version,
            "authorization": f"Bearer {self.token}",
        }
        async with self.http.post(self.url, data=json.dumps(body), headers=headers) as response:
            return response.status, json.loads(await response.read())

    async def converse(self, requester: str, request_id: str) -> tuple[str, str]:
        """``("accepted", task id)``, ``("queued", why)``, ``("busy", why)`` or
        ``("other", what came)``."""
        arguments = {"prompt": PROMPT, "requester_id": requester, "request_id": request_id}
        status, reply = await self.send(
            "tools/call", {"name": "fiedler_converse", "arguments": arguments}
        )
        result = reply.get("result") or {}
        if status == 200 and not result.get("isError") and result.get("structuredContent"):
            return "accepted", str(result["structuredContent"]["task_id"])
        text = json.dumps(reply)
        if "busy" in text and "retry" in text and "not queued" in text:
            return "busy", text
        if "queued and will be carried out" in text:
            return "queued", text
        return "other", f"HTTP {status}: {text[:300]}"

    async def close(self) -> None:
        await self.http.close()


def tasks_of(db_path: Path, requester: str) -> dict[str, tuple[str, str | None]]:
    """Fiedler's tasks for ``requester``: idempotency key -> (status, result)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT request_key, status, result_payload FROM tasks WHERE requester_id = ?",
            (requester,),
        ).fetchall()
    finally:
        conn.close()
    return {str(key): (status, result) for key, status, result in rows}


def request_id_of(key: str) -> str:
    """The client's request id in Fiedler's idempotency key ``request:<requester>:<id>``."""
    return key.rsplit(":", 1)[1]
