"""Envelope publish rate through the MAD core vs. raw redis-py PUBLISH, in one run.

Starts its own password-protected redis-server on a free port, publishes N messages of the
same payload both ways (sequentially awaited, one connection each) and prints the rates and
their ratio (goal: core/raw >= 0.5).

    .venv/bin/python bench/bus.py [--messages 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mads.core.bus import Bus
from mads.core.envelope import make_envelope
from tests.support.redis_server import RedisServer

PAYLOAD = {"task_id": "0b4d6c1e-0000-4000-8000-000000000000", "status": "RUNNING", "n": 1}


async def raw_rate(server: RedisServer, count: int) -> float:
    client = aioredis.Redis(host="127.0.0.1", port=server.port, password=server.password)
    data = make_envelope("bench", "mad.topic.bench", PAYLOAD).model_dump_json()
    started = time.perf_counter()
    for _ in range(count):
        await client.publish("mad.topic.bench", data)
    elapsed = time.perf_counter() - started
    await client.aclose()
    return count / elapsed


async def core_rate(server: RedisServer, count: int) -> float:
    bus = Bus(host="127.0.0.1", port=server.port, password=server.password, sender_id="bench")
    await bus.start()
    await bus.wait_connected(10)
    started = time.perf_counter()
    for _ in range(count):
        await bus.publish("mad.topic.bench", PAYLOAD)
    elapsed = time.perf_counter() - started
    await bus.close()
    return count / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), appendonly=False).start()
        try:
            await raw_rate(server, 1000)  # warm-up
            raw = await raw_rate(server, args.messages)
            core = await core_rate(server, args.messages)
        finally:
            server.stop()
    print(f"raw redis-py PUBLISH : {raw:10.0f} msg/s")
    print(f"core Bus.publish     : {core:10.0f} msg/s (envelope built, validated, encoded)")
    print(f"ratio core/raw       : {core / raw:10.2f}  (goal >= 0.5)")


if __name__ == "__main__":
    asyncio.run(main())
