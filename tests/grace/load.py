"""Paced load through ``grace_send_message`` over several MCP sessions (used by the load
test and by bench/monitor.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from tests.grace.support import call, grace_session


@dataclass
class LoadResult:
    sent: int
    failed: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


async def paced_send(
    url: str,
    token: str,
    *,
    rate: float,
    seconds: float,
    channel: str = "mad.topic.load",
    sessions: int = 8,
    in_flight: int = 64,
) -> LoadResult:
    """Issue ``rate`` sends per second for ``seconds`` (a schedule, not a loop as fast as
    possible), at most ``in_flight`` outstanding; report what succeeded."""
    total = int(rate * seconds)
    slots = asyncio.Semaphore(in_flight)
    sent = failed = 0
    async with contextlib.AsyncExitStack() as stack:
        pool = [await stack.enter_async_context(grace_session(url, token)) for _ in range(sessions)]

        async def one(n: int) -> None:
            nonlocal sent, failed
            try:
                ok, _ = await call(
                    pool[n % sessions],
                    "grace_send_message",
                    {"channel": channel, "payload": {"n": n}},
                )
            except Exception:
                ok = False
            finally:
                slots.release()
            if ok:
                sent += 1
            else:
                failed += 1

        tasks = []
        start = time.monotonic()
        for n in range(total):
            due = start + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
    return LoadResult(sent=sent, failed=failed, seconds=elapsed)
