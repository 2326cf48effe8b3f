"""How fast can the bus carry traffic before Rogers misses some?

One run, one machine, one Redis: measure the raw redis-py PUBLISH rate, then publish valid
envelopes on ``mad.topic.bench`` at paced rates (doubling, then bisecting) and find the
highest rate at which Rogers counted every message within ``--settle`` seconds of the end of
a ``--seconds`` run. Prints that rate as a ratio of the raw PUBLISH rate.

    .venv/bin/python bench/monitor.py [--seconds 3] [--settle 1.0]

Not a test: the numbers depend on the machine; the ratio is what compares across machines.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator")]

from mads.core.envelope import make_envelope  # noqa: E402
from tests.support.mad_process import MadProcess  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

CHANNEL = "mad.topic.bench"
METRIC = re.compile(
    r'^rogers_messages_by_channel_class_total\{channel_class="topic"\} (\S+)$', re.M
)
TICK_S = 0.005


def counted(rogers: MadProcess) -> int:
    text = httpx.get(f"{rogers.url}/metrics", timeout=5).text
    match = METRIC.search(text)
    return int(float(match.group(1))) if match else 0


def envelopes(n: int) -> list[bytes]:
    return [
        make_envelope("bench", CHANNEL, {"n": i, "pad": "x" * 64}).model_dump_json().encode()
        for i in range(n)
    ]


def raw_publish_rate(client, messages: list[bytes]) -> float:
    start = time.perf_counter()
    for data in messages:
        client.publish(CHANNEL, data)
    return len(messages) / (time.perf_counter() - start)


def raw_pipelined_rate(client, messages: list[bytes], batch: int = 100) -> float:
    start = time.perf_counter()
    for i in range(0, len(messages), batch):
        pipe = client.pipeline(transaction=False)
        for data in messages[i : i + batch]:
            pipe.publish(CHANNEL, data)
        pipe.execute()
    return len(messages) / (time.perf_counter() - start)


def paced_publish(client, messages: list[bytes], rate: float) -> float:
    """Publish ``messages`` at ``rate``/s in 5 ms ticks (pipelined per tick); the rate
    actually achieved."""
    start = time.perf_counter()
    sent = 0
    while sent < len(messages):
        due = min(len(messages), int((time.perf_counter() - start) * rate) + 1)
        if due > sent:
            pipe = client.pipeline(transaction=False)
            for data in messages[sent:due]:
                pipe.publish(CHANNEL, data)
            pipe.execute()
            sent = due
        else:
            time.sleep(TICK_S)
    return sent / (time.perf_counter() - start)


def keeps_up(client, rogers: MadProcess, rate: float, seconds: float, settle: float) -> tuple:
    messages = envelopes(int(rate * seconds))
    before = counted(rogers)
    achieved = paced_publish(client, messages, rate)
    deadline = time.monotonic() + settle
    got = counted(rogers) - before
    while got < len(messages) and time.monotonic() < deadline:
        time.sleep(0.05)
        got = counted(rogers) - before
    # Let a lagging Rogers drain before the next step, so steps do not interfere.
    wait_for(lambda: counted(rogers) - before >= len(messages) or None, timeout=120)
    return got == len(messages), achieved, got, len(messages)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each paced run")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds Rogers may lag")
    parser.add_argument("--start", type=float, default=1000.0, help="first rate tried (msg/s)")
    parser.add_argument("--bisect", type=int, default=4, help="bisection steps")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        redis_server = RedisServer(Path(tmp) / "redis", appendonly=False).start()
        st = MadProcess("sequential_thinking", Path(tmp) / "st", {}).start()
        rogers = MadProcess(
            "rogers",
            Path(tmp) / "rogers",
            {
                **redis_server.env,
                "SEQUENTIAL_THINKING_URL": st.url + "/mcp",
                "MAD_HEARTBEAT_S": "5",
                "ROGERS_LOG_INTERVAL_S": "60",
            },
        ).start()
        try:
            client = redis_server.client()
            raw = raw_publish_rate(client, envelopes(20_000))
            piped = raw_pipelined_rate(client, envelopes(50_000))
            print(f"raw redis-py PUBLISH, one client, one at a time: {raw:,.0f} msg/s")
            print(f"raw redis-py PUBLISH, one client, pipelined by 100: {piped:,.0f} msg/s")
            # Both raw runs went to Rogers too; let it drain before pacing.
            wait_for(lambda: counted(rogers) >= 70_000 or None, timeout=120)
            good, bad = 0.0, None
            rate = args.start
            while bad is None:
                ok, achieved, got, sent = keeps_up(client, rogers, rate, args.seconds, args.settle)
                print(
                    f"  {rate:>9,.0f}/s (achieved {achieved:,.0f}/s): {got}/{sent} counted "
                    f"-> {'kept up' if ok else 'fell behind'}"
                )
                if ok and achieved < rate * 0.9:
                    bad = rate  # the publisher itself cannot go faster
                    good = max(good, achieved)
                elif ok:
                    good, rate = rate, rate * 2
                else:
                    bad = rate
            for _ in range(args.bisect if good else 0):
                rate = (good + bad) / 2
                ok, achieved, got, sent = keeps_up(client, rogers, rate, args.seconds, args.settle)
                print(
                    f"  {rate:>9,.0f}/s (achieved {achieved:,.0f}/s): {got}/{sent} counted "
                    f"-> {'kept up' if ok else 'fell behind'}"
                )
                good, bad = (rate, bad) if ok else (good, rate)
            print(f"highest rate with every message counted: {good:,.0f} msg/s")
            print(f"ratio to raw PUBLISH rate, pipelined (the bus's ceiling): {good / piped:.2f}")
            print(f"ratio to raw PUBLISH rate (one at a time): {good / raw:.2f}")
        finally:
            rogers.stop()
            st.stop()
            redis_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
