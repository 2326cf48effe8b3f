"""The front door under real concurrency: every one of 1,000 (then 2,000) fiedler_converse
calls opened at once through Grace is accepted or told to retry, and retried to completion;
none is lost, no reply says "Unknown tool" (every reply is read), and Grace's readiness
never flaps from the first call until every task has completed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.evidence import record
from tests.support.grace import new_token
from tests.support.group import ProcessGroup
from tests.support.group import mad_group as mad_group  # the fixture
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
        self.replies = 0
        """Every reply read, whatever it said."""
        self.unknown_tool: list[str] = []
        """Replies that said the tool is unknown (at any status, in any field)."""

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
            self.replies += 1
            if b"unknown tool" in payload.lower():
                self.unknown_tool.append(f"HTTP {status}: {payload[:300]!r}")
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


def open_files_limit(pid: int | None = None) -> int:
    """The soft RLIMIT_NOFILE of this process, or of process ``pid`` (from /proc)."""
    if pid is None:
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return resource.RLIM_INFINITY if soft == "unlimited" else int(soft)
    raise AssertionError(f"no open files limit for process {pid}")


def need_open_files(calls: int) -> int:
    """What one process of the test (this one, or Grace) may hold at once: a connection per
    call, plus room for everything else it has open."""
    needed = calls + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        pytest.fail(
            f"{calls} concurrent calls need {needed} open files per process, and the "
            f"open-files limit is {soft} (hard limit {hard}, which tests/conftest.py raises "
            "the soft one to): raise the hard limit (ulimit -Hn, LimitNOFILE=, or the "
            "container's --ulimit nofile=)"
        )
    return needed


def test_the_open_files_limit_is_raised_for_the_tests_and_what_they_start() -> None:
    """tests/conftest.py raises the soft limit to the hard one, and a process it starts
    inherits it — checked from a process that starts with the usual 1,024."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip(f"the hard limit is {hard}: there is nothing to raise")
    script = (
        "import resource, subprocess, sys\n"
        "from tests.conftest import raise_open_files_limit\n"
        "raise_open_files_limit()\n"
        "child = 'import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])'\n"
        "print(subprocess.run([sys.executable, '-c', child], capture_output=True, text=True,"
        " check=True).stdout.strip())\n"
    )

    def usual_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=usual_limit,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    expected = hard if hard != resource.RLIM_INFINITY else 1 << 20
    assert int(done.stdout) == expected, "the child did not inherit the raised limit"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("calls", [1000, 2000])
async def test_every_concurrent_converse_is_accepted_or_told_to_retry(
    mad_group: ProcessGroup, calls: int
) -> None:
    needed = need_open_files(calls)
    token = new_token()
    db_path = mad_group.workdir / "fiedler_state.db"
    mad_group.start("sequential_thinking")
    grace = mad_group.start("grace", {"GRACE_API_TOKENS": token})
    mad_group.start("fiedler", {"FIEDLER_DB_PATH": str(db_path)})
    assert grace.process is not None
    assert open_files_limit(grace.process.pid) >= needed, "Grace did not inherit the limit"
    caller = Caller(grace.url, token)
    readiness: Counter[int] = Counter()
    stop = asyncio.Event()
    # Sampled for the whole run: while the calls are made and until every task completed.
    sampler = asyncio.create_task(sample_readiness(grace.url, readiness, stop))
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=300)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            task_ids = await asyncio.gather(*(caller.converse(http, n) for n in range(calls)))

        async def all_done() -> bool:
            total, done = completed_ok(db_path)
            assert total == calls, f"{total} tasks stored for {calls} calls"
            return done == calls

        await async_wait_for(all_done, timeout=300, interval=0.5, what="every task COMPLETED OK")
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    record(
        "back-pressure",
        f"{calls} calls: {dict(caller.outcomes)} in {caller.replies} replies; "
        f"Grace /readyz samples: {dict(readiness)}",
    )

    assert caller.unexpected == []
    assert caller.unknown_tool == [], f"{len(caller.unknown_tool)} 'Unknown tool' replies"
    assert caller.replies == sum(caller.outcomes.values()) >= calls, "every reply was read"
    assert len(set(task_ids)) == calls, "every call made its own task, exactly once"
    assert caller.outcomes["accepted"] == calls
    assert readiness[200] > 0 and set(readiness) == {200}, (
        f"Grace's readiness flapped: {dict(readiness)}"
    )
    assert "Traceback" not in grace.log_text()
