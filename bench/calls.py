"""What one MCP ``tools/call`` costs a MAD: the direct path against the SDK's stateless path,
in one run on one machine.

    .venv/bin/python bench/calls.py [--seconds 5] [--concurrency 16]

Starts a password-protected redis-server and two Grace processes that differ only in
``MAD_DIRECT_TOOL_CALLS``, then drives each with ``grace_send_message`` calls (JSON-RPC
over keep-alive connections, ``--concurrency`` outstanding) for ``--seconds``. Prints, for
each, calls/s and Grace's own CPU time per call (from /proc), and the ratios direct / SDK.

Not a test: the numbers depend on the machine; the ratios are what compare across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator")]

from tests.grace.load import SendClient  # noqa: E402
from tests.support.grace import new_token  # noqa: E402
from tests.support.mad_process import MadProcess  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

CHANNEL = "mad.topic.bench"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def closed_loop(url: str, token: str, seconds: float, concurrency: int) -> int:
    """Calls completed in ``seconds`` with ``concurrency`` callers each waiting for its
    reply before the next call; stops at the first refused call."""
    client = SendClient(url, token, concurrency)
    deadline = time.monotonic() + seconds
    done = 0

    async def caller(k: int) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            problem = await client.send(CHANNEL, {"caller": k, "n": done})
            if problem is not None:
                raise SystemExit(f"bench: call refused: {problem}")
            done += 1

    try:
        await asyncio.gather(*(caller(k) for k in range(concurrency)))
    finally:
        await client.close()
    return done


def measure(grace: MadProcess, token: str, seconds: float, concurrency: int) -> tuple:
    asyncio.run(closed_loop(grace.url, token, 1.0, concurrency))  # warm up
    pid = grace.process.pid if grace.process else 0
    cpu_before, start = cpu_seconds(pid), time.monotonic()
    calls = asyncio.run(closed_loop(grace.url, token, seconds, concurrency))
    elapsed, cpu_after = time.monotonic() - start, cpu_seconds(pid)
    cpu_ms = (
        (cpu_after - cpu_before) * 1000 / calls
        if cpu_before is not None and cpu_after is not None and calls
        else None
    )
    return calls / elapsed, cpu_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument("--concurrency", type=int, default=16, help="calls outstanding")
    args = parser.parse_args()

    token = new_token()
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = RedisServer(Path(tmp) / "redis", appendonly=False).start()
        results = {}
        try:
            for label, direct in (("direct path", "true"), ("SDK path", "false")):
                grace = MadProcess(
                    "grace",
                    Path(tmp) / label.replace(" ", "-"),
                    {
                        **redis_server.env,
                        "GRACE_API_TOKENS": token,
                        "MAD_DIRECT_TOOL_CALLS": direct,
                        "MAD_HEARTBEAT_S": "5",
                    },
                ).start()
                try:
                    results[label] = measure(grace, token, args.seconds, args.concurrency)
                finally:
                    grace.stop()
                rate, cpu_ms = results[label]
                cpu = f"{cpu_ms:.2f} ms of Grace CPU per call" if cpu_ms else "CPU n/a"
                print(f"{label:>12}: {rate:,.0f} grace_send_message calls/s, {cpu}")
        finally:
            redis_server.stop()
    (direct_rate, direct_cpu), (sdk_rate, sdk_cpu) = results["direct path"], results["SDK path"]
    print(f"ratio calls/s, direct / SDK: {direct_rate / sdk_rate:.2f}")
    if direct_cpu and sdk_cpu:
        print(f"ratio CPU per call, direct / SDK: {direct_cpu / sdk_cpu:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
