"""The front door under real concurrency: every one of 1,000 (then 2,000) fiedler_converse
calls opened at once through Grace is accepted or told to retry, and retried to completion;
none is lost, none is told "Unknown tool", and Grace's readiness never flaps meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.grace.support import new_token
from tests.support.waiting import async_wait_for

PROMPT = "System check, please respond with OK."
HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2025-06-18",
}


class Caller:
    """One outside client per call, each on its own connection, all opened at once."""

    def __init__(self, url: str, token: str) -> None:
        self.url = f"{url}/mcp"
        self.headers = {**HEADERS, "authorization": f"Bearer {token}"}
        self.outcomes: Counter[str] = Counter()
        self.unexpected: list[str] = []

    async def converse(self, http: aiohttp.ClientSession, n: int) -> str:
        """Retry while told to; return the task id."""
        body = {
            "jsonrpc": "2.0",
            "id": n,
            "method": "tools/call",
            "params": {
                "name": "fiedler_converse",
                "arguments": {"prompt": PROMPT, "requester_id": "load", "request_id": f"r-{n}"},
            },
        }
        for _ in range(200):
            async with http.post(self.url, json=body, headers=self.headers) as response:
                status = response.status
                retry_after = response.headers.get("retry-after")
                payload = await response.read()
            if status == 503 and retry_after:
                self.outcomes["told to retry (503)"] += 1
                await asyncio.sleep(float(retry_after))
                continue
            reply: dict[str, Any] = json.loads(payload)
            result = reply.get("result") or {}
            if status == 200 and not result.get("isError") and result.get("structuredContent"):
                self.outcomes["accepted"] += 1
                return str(result["structuredContent"]["task_id"])
            text = json.dumps(reply)[:300]
            if "retry" in text and ("busy" in text or "timed out" in text or "queued" in text):
                self.outcomes["told to retry (tool)"] += 1
                await asyncio.sleep(1)
                continue
            self.unexpected.append(f"HTTP {status}: {text}")
            raise AssertionError(f"call {n}: HTTP {status}: {text}")
        raise AssertionError(f"call {n} was told to retry 200 times")


def completed_ok(db_path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        total = conn.execute("SELECT count(*) FROM tasks WHERE requester_id = 'load'").fetchone()
        done = conn.execute(
            "SELECT count(*) FROM tasks WHERE requester_id = 'load' AND status = 'COMPLETED' "
            "AND result_payload = 'OK'"
        ).fetchone()
    finally:
        conn.close()
    return int(total[0]), int(done[0])


async def sample_readiness(url: str, seen: Counter[int], stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            try:
                async with http.get(f"{url}/readyz", timeout=aiohttp.ClientTimeout(10)) as r:
                    seen[r.status] += 1
            except (aiohttp.ClientError, TimeoutError):
                seen[0] += 1
            await asyncio.sleep(0.05)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("calls", [1000, 2000])
async def test_every_concurrent_converse_is_accepted_or_told_to_retry(
    redis_server, start_mad, tmp_path: Path, calls: int
) -> None:
    token = new_token()
    db_path = tmp_path / "fiedler_state.db"
    st = start_mad("sequential_thinking")
    grace = start_mad("grace", env={**redis_server.env, "GRACE_API_TOKENS": token})
    start_mad(
        "fiedler",
        env={
            **redis_server.env,
            "SEQUENTIAL_THINKING_URL": f"{st.url}/mcp",
            "FIEDLER_DB_PATH": str(db_path),
        },
    )
    caller = Caller(grace.url, token)
    readiness: Counter[int] = Counter()
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_readiness(grace.url, readiness, stop))
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=300)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            task_ids = await asyncio.gather(*(caller.converse(http, n) for n in range(calls)))
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    print(f"\n{calls} calls: {dict(caller.outcomes)}; Grace /readyz samples: {dict(readiness)}")

    assert caller.unexpected == []
    assert len(set(task_ids)) == calls, "every call made its own task, exactly once"
    assert caller.outcomes["accepted"] == calls
    assert set(readiness) == {200}, f"Grace's readiness flapped: {dict(readiness)}"

    async def all_done() -> bool:
        total, done = completed_ok(db_path)
        assert total == calls, f"{total} tasks stored for {calls} calls"
        return done == calls

    await async_wait_for(all_done, timeout=300, interval=0.5, what="every task COMPLETED OK")
    assert "Unknown tool" not in grace.log_text()
    assert "Traceback" not in grace.log_text()
