"""A relay stream at its limit, at the deployed default: nothing accepted is lost.

    .venv/bin/python bench/relay_backlog.py [--extra 1000] [--limit N] [--connections 1024]

Real Redis, Sequential Thinking, Grace and Fiedler (the built-in responder). Fiedler is
started once (its consumer group made) and stopped; then the relay's backlog limit plus
``--extra`` ``fiedler_converse`` calls go through Grace (plain JSON-RPC over keep-alive
connections, no retries; Grace waits 0.5 s for an owner that does not answer), each either
queued for Fiedler or refused "busy, retry". Fiedler is started again and the run waits
until every queued call is a COMPLETED task. Prints the counts: queued, refused,
completed, queued but lost (goal 0), refused yet carried out (goal 0), and the times.
Without ``--limit`` the limit is the MADs' default (``MAD_RELAY_BACKLOG_LIMIT``, 100,000),
which is what this run is for; the test suite shows the same at a limit of 1,000
(tests/grace/test_front_door_capacity.py).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "operator")]

from mads.core.settings import BusSettings  # noqa: E402
from tests.support.front_door import Client, request_id_of, tasks_of  # noqa: E402
from tests.support.grace import new_token  # noqa: E402
from tests.support.group import process_group  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

REQUESTER = "backlog"
PULSE = {"MAD_HEARTBEAT_S": "5"}


async def send_all(url: str, token: str, calls: int, connections: int) -> list[tuple[str, str]]:
    client = Client(url, token, connections=connections)
    slots = asyncio.Semaphore(connections)

    async def one(n: int) -> tuple[str, str]:
        async with slots:
            return await client.converse(REQUESTER, f"b-{n}")

    try:
        return await asyncio.gather(*(one(n) for n in range(calls)))
    finally:
        await client.close()


def run(workdir: Path, limit: int | None, extra: int, connections: int) -> int:
    effective = limit or int(BusSettings.model_fields["mad_relay_backlog_limit"].default)
    calls = effective + extra
    token = new_token()
    grace_env = {"GRACE_API_TOKENS": token, "GRACE_RELAY_TIMEOUT_S": "0.5", **PULSE}
    if limit is not None:
        grace_env["MAD_RELAY_BACKLOG_LIMIT"] = str(limit)
    with process_group(workdir / "group") as group:
        db_path = group.workdir / "fiedler_state.db"
        fiedler_env = {"FIEDLER_DB_PATH": str(db_path), **PULSE}
        group.start("sequential_thinking")
        grace = group.start("grace", grace_env)
        group.start("fiedler", fiedler_env).stop()  # its consumer group made, then down
        print(f"{calls:,} calls through Grace, relay backlog limit {effective:,}, Fiedler down")
        began = time.monotonic()
        outcomes = asyncio.run(send_all(grace.url, token, calls, connections))
        sent_s = time.monotonic() - began
        kinds = Counter(kind for kind, _ in outcomes)
        print(f"sent in {sent_s:.0f} s: {dict(kinds)}")
        queued = {f"b-{n}" for n, (kind, _) in enumerate(outcomes) if kind == "queued"}
        refused = {f"b-{n}" for n, (kind, _) in enumerate(outcomes) if kind == "busy"}
        group.start("fiedler", fiedler_env)
        began = time.monotonic()

        def done() -> bool:
            found = tasks_of(db_path, REQUESTER)
            return len(found) >= len(queued) and all(s == "COMPLETED" for s, _ in found.values())

        wait_for(done, timeout=600 + len(queued) / 50, interval=2, what="every queued call done")
        drained_s = time.monotonic() - began
        stored = {
            request_id_of(key): status for key, (status, _) in tasks_of(db_path, REQUESTER).items()
        }
    completed = {rid for rid, status in stored.items() if status == "COMPLETED"}
    lost = queued - completed
    carried_refused = refused & set(stored)
    print(f"Fiedler back: {len(completed):,} COMPLETED in {drained_s:.0f} s")
    print(
        f"queued {len(queued):,}, refused busy {len(refused):,}, other {kinds['other']}; "
        f"queued but lost: {len(lost)} (goal 0); refused yet carried out: "
        f"{len(carried_refused)} (goal 0)"
    )
    return 1 if lost or carried_refused or kinds["other"] else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extra", type=int, default=1000, help="calls past the limit")
    parser.add_argument("--limit", type=int, default=None, help="default: the MADs' own")
    parser.add_argument("--connections", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None, help="where the group's files go")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        print("bench: redis-server is not installed", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="relay-backlog-", dir=args.dir))
    try:
        return run(workdir, args.limit, args.extra, args.connections)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
