"""Paced load through ``grace_send_message``: the load test's generator (a lean JSON-RPC
client, :mod:`tests.support.tool_calls`, so the generator's own cost stays small next to
Grace's)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

from tests.support.tool_calls import ToolCallClient


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
    """``grace_send_message`` through Grace's MCP endpoint."""

    def __init__(self, url: str, token: str, connections: int) -> None:
        self.calls = ToolCallClient(f"{url}/mcp", token=token, connections=connections)

    async def send(self, channel: str, payload: dict) -> str | None:
        """None when Grace accepted the message, else what went wrong."""
        ok, data = await self.calls.call(
            "grace_send_message", {"channel": channel, "payload": payload}
        )
        if not ok:
            return str(data)
        if not isinstance(data, dict) or data.get("status") != "success":
            return f"unexpected reply: {data!r}"
        return None

    async def close(self) -> None:
        await self.calls.close()


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
