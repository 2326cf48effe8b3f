"""2,000 ``GET /mcp`` against Fiedler: a stateless MCP server holds no event stream open,
so the streams cost nothing and memory stays flat."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp

from tests.support.evidence import record
from tests.support.fiedler import Fiedler
from tests.support.waiting import async_wait_for

STREAMS = 2000
MAX_GROWTH_KB = 16 * 1024
"""Held streams cost ~70 kB each (2,000 took Fiedler from 120 to 260 MB); a busy machine's
allocator noise is a few MB. Between the two, a bound that only held streams exceed."""


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_get_streams_are_refused_and_memory_stays_flat(
    start_fiedler: Callable[..., Fiedler],
) -> None:
    fiedler = start_fiedler()
    assert fiedler.process.process is not None
    pid = fiedler.process.process.pid
    url = f"{fiedler.process.url}/mcp"
    statuses: Counter[int] = Counter()

    async def one(http: aiohttp.ClientSession) -> None:
        async with http.get(url, headers={"accept": "text/event-stream"}) as response:
            statuses[response.status] += 1
            assert response.headers["allow"] == "POST"
            await response.read()

    def open_sockets() -> int:
        """Sockets Fiedler holds now (an fd closed while it is being looked at is not)."""
        count = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(FileNotFoundError):
                count += "socket" in str(fd.readlink())
        return count

    async def round_of_streams() -> None:
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=120)
        ) as http:
            await asyncio.gather(*(one(http) for _ in range(STREAMS)))

    sockets = open_sockets()
    before = rss_kb(pid)
    await round_of_streams()
    warmed = rss_kb(pid)
    await round_of_streams()
    after = rss_kb(pid)
    record(
        "GET /mcp",
        f"2 x {STREAMS} against Fiedler: {dict(statuses)}; Fiedler RSS {before} kB, "
        f"{warmed} kB after the first round, {after} kB after the second",
    )
    assert statuses == {405: 2 * STREAMS}
    # The first round sizes the server's connection buffers; the second must not grow them:
    # nothing is held per stream.
    assert after - warmed < MAX_GROWTH_KB
    assert after - before < 4 * MAX_GROWTH_KB
    # Closed by the client, each connection is let go as soon as the server sees it go (a
    # busy machine sees it later): none may be held.
    await async_wait_for(
        lambda: open_sockets() <= sockets + 5, timeout=30, what="the streams to be let go"
    )
    assert fiedler.process.ready()
