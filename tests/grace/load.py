"""Paced load through ``grace_send_message``: the load test's generator.

It speaks MCP the way a load tool does, as plain JSON-RPC ``tools/call`` POSTs over a few
keep-alive connections (aiohttp), so the client's own cost stays small next to Grace's; the
official SDK client spends about 2 ms of CPU per call, which on a 2-core machine would be
the bottleneck, not Grace.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field

import aiohttp
from mcp_types.version import LATEST_HANDSHAKE_VERSION


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


class SendClient:
    """``grace_send_message`` over stateless MCP, one JSON-RPC request per POST."""

    def __init__(self, url: str, token: str, connections: int) -> None:
        self.url = f"{url}/mcp"
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": LATEST_HANDSHAKE_VERSION,
        }
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections))
        self._ids = itertools.count(1)

    async def send(self, channel: str, payload: dict) -> str | None:
        """None when Grace accepted the message, else what went wrong."""
        request = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": "tools/call",
            "params": {
                "name": "grace_send_message",
                "arguments": {"channel": channel, "payload": payload},
            },
        }
        async with self.http.post(self.url, data=json.dumps(request), headers=self.headers) as r:
            body = await r.read()
        if r.status != 200:
            return f"HTTP {r.status}: {body[:200]!r}"
        result = json.loads(body).get("result") or {}
        if result.get("isError") or (result.get("structuredContent") or {}).get("status") != (
            "success"
        ):
            return f"tool error: {body[:200]!r}"
        return None

    async def close(self) -> None:
        await self.http.close()


async def paced_send(
    url: str,
    token: str,
    *,
    rate: float,
    seconds: float,
    channel: str = "mad.topic.load",
    connections: int = 16,
    in_flight: int = 64,
) -> LoadResult:
    """Issue ``rate`` sends per second for ``seconds`` (a schedule, not a loop as fast as
    possible), at most ``in_flight`` outstanding; report what Grace accepted."""
    total = int(rate * seconds)
    slots = asyncio.Semaphore(in_flight)
    result = LoadResult()
    client = SendClient(url, token, connections)

    async def one(n: int) -> None:
        try:
            problem = await client.send(channel, {"n": n})
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        finally:
            slots.release()
        if problem is None:
            result.sent += 1
        else:
            result.failed += 1
            if len(result.errors) < 5:
                result.errors.append(problem)

    try:
        tasks = []
        start = time.monotonic()
        for n in range(total):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
        result.seconds = time.monotonic() - start
    finally:
        await client.close()
    return result
