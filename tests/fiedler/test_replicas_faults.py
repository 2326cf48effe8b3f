"""Fiedler replicas on PostgreSQL behind Grace, under faults, with real processes: replicas
killed with SIGKILL while 1,000 requests go through, and PostgreSQL crashing, restarting
and staying away for 20 s. Every accepted request ends as one task, COMPLETED once; a
provider call is repeated only for a task whose holder was killed."""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.evidence import record
from tests.support.fake_llm import FakeLLM
from tests.support.fiedler_replicas import (
    FAST_LEASES,
    Replicas,
    completions,
    owner_of,
    replicas,
)
from tests.support.grace import new_token
from tests.support.group import ProcessGroup
from tests.support.mad_process import MadProcess
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.tool_calls import ToolCallClient
from tests.support.waiting import async_wait_for

REQUESTS = "mad.fiedler.requests"
RELAY_TIMEOUT_S = "8"


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    yield from postgres_server()


@pytest.fixture
def fleet(
    group: ProcessGroup, postgres: PostgresServer, fake_llm: FakeLLM, tmp_path: Path
) -> Iterator[Replicas]:
    group.redis.client().delete(REQUESTS)
    # Leases of 6 s: short enough for quick take-overs, long enough that a replica merely
    # starved of CPU on a busy machine keeps renewing them (only killed ones lose theirs).
    env = {
        **fake_llm.fiedler_env,
        **FAST_LEASES,
        "FIEDLER_LEASE_S": "6",
        "FIEDLER_MAX_CONCURRENCY": "8",
    }
    yield from replicas(group, postgres, tmp_path, env)


@pytest.fixture
def grace(group: ProcessGroup) -> Iterator[tuple[MadProcess, str]]:
    token = new_token()
    process = group.start(
        "grace", {"GRACE_API_TOKENS": token, "GRACE_RELAY_TIMEOUT_S": RELAY_TIMEOUT_S}
    )
    try:
        yield process, token
    finally:
        process.stop()


class Load:
    """``fiedler_converse`` through Grace, each request under its own request_id, retried
    (the same request_id) until Grace answers with a task: what a careful client does."""

    def __init__(self, grace: MadProcess, token: str, in_flight: int, name: str) -> None:
        self.name = name
        self.client = ToolCallClient(f"{grace.url}/mcp", token=token, connections=in_flight)
        self.slots = asyncio.Semaphore(in_flight)
        self.accepted: dict[str, str] = {}  # request_id -> task_id
        self.refusals: collections.Counter[str] = collections.Counter()

    async def converse(self, n: int, patience: float) -> None:
        """Call until the request is accepted (the same request_id each time), waiting up to
        ``patience`` seconds for that; every refusal on the way is counted."""
        arguments = {
            "prompt": f"{self.name} {n}",
            "requester_id": self.name,
            "request_id": f"{self.name}-{n}",
        }

        async def accepted() -> str | None:
            ok, data = await self.client.call("fiedler_converse", arguments)
            if ok:
                return str(data["task_id"])
            self.refusals[str(data)[:120]] += 1
            return None

        async with self.slots:
            self.accepted[arguments["request_id"]] = await async_wait_for(
                accepted,
                timeout=patience,
                interval=0.5,  # a client's retry pace
                what=f"{self.name}-{n} accepted",
            )

    async def close(self) -> None:
        await self.client.close()


def completed(fleet: Replicas) -> int:
    return fleet.count("status = 'COMPLETED'")


async def test_1000_requests_through_grace_with_replicas_killed_end_completed_once(
    fleet: Replicas,
    grace: tuple[MadProcess, str],
    fake_llm: FakeLLM,
) -> None:
    total = 1000
    rng = random.Random(27)
    fake_llm.delay = 0.1  # four chunks: about 0.4 s an answer, 8 at a time per replica
    fleet.start(3)
    load = Load(grace[0], grace[1], in_flight=48, name="load")
    killed_held: set[str] = set()
    killed: set[str] = set()
    kills: list[str] = []

    async def kill_three() -> None:
        for mark in (500, 1000, 1500):  # progress: accepted plus completed, of 2,000
            await async_wait_for(
                lambda mark=mark: len(load.accepted) + completed(fleet) >= mark,
                timeout=240,
                interval=0.1,
                what=f"progress {mark}",
            )
            victim = rng.choice(fleet.processes)
            owner = owner_of(victim)
            victim.kill()  # SIGKILL: its leases stay in the store until they expire
            killed.add(owner)
            held = fleet.rows(
                "SELECT task_id FROM tasks WHERE status = 'RUNNING' AND lease_owner = %s",
                (owner,),
            )
            killed_held.update(str(row[0]) for row in held)
            kills.append(f"{owner} holding {len(held)}")
            victim.start(wait_ready=False)
        for process in fleet.processes:
            await asyncio.to_thread(process.wait_ready, 60)

    try:
        await asyncio.gather(kill_three(), *(load.converse(n, 240) for n in range(total)))
        await async_wait_for(
            lambda: fleet.count("status IN ('COMPLETED', 'FAILED', 'CANCELLED')") == total,
            timeout=240,
            interval=0.5,
            what="every task finished",
        )
    finally:
        fake_llm.delay = 0.0
        await load.close()

    # 0 lost, 0 duplicated: one task per request, the one its caller was told.
    assert len(load.accepted) == total
    rows = fleet.rows(
        "SELECT request_key, task_id, status, result_payload, attempts, prompt, lease_owner "
        "FROM tasks"
    )
    assert len(rows) == total
    by_key = {key: rest for key, *rest in rows}
    for request_id, task_id in load.accepted.items():
        found_id, status, result, _attempts, prompt, _owner = by_key[f"request:load:{request_id}"]
        assert found_id == task_id
        assert (status, result) == ("COMPLETED", f"Echo: {prompt}")
    # COMPLETED exactly once: the fenced finish lets one write through, and it is logged by
    # the replica that made it — unless that replica was killed right after making it.
    logs = fleet.logs()
    completed_once = completions(logs)
    assert set(completed_once.values()) == {1}
    finisher = {task_id: owner for _k, task_id, _s, _r, _a, _p, owner in rows}
    unlogged = set(load.accepted.values()) - set(completed_once)
    assert all(finisher[task_id] in killed for task_id in unlogged), unlogged
    # A provider call was repeated only for tasks a killed replica held.
    calls = collections.Counter(r["messages"][0]["content"] for r in fake_llm.requests)
    task_of_prompt = {prompt: task_id for _k, task_id, _s, _r, _a, prompt, _o in rows}
    repeated = {task_of_prompt[p] for p, n in calls.items() if n > 1 and p in task_of_prompt}
    rerun = {task_id for _k, task_id, _s, _r, attempts, _p, _o in rows if attempts > 1}
    assert repeated <= killed_held, repeated - killed_held
    assert rerun <= killed_held, rerun - killed_held
    assert all(calls[f"load {n}"] >= 1 for n in range(total))
    assert len(kills) == 3 and killed_held, kills
    assert "Traceback" not in logs
    record(
        "fiedler replicas",
        f"{total} converse through Grace, 3 replicas, kill -9 x3 ({'; '.join(kills)}): "
        f"{total} completed once ({len(unlogged)} by a replica killed right after), 0 lost, "
        f"0 duplicated, 0 stuck; provider calls repeated "
        f"for {len(repeated)} task(s), restarted tasks {len(rerun)}, all held by a killed "
        f"replica ({len(killed_held)}); client retries {sum(load.refusals.values())}",
    )


def database_line(process: MadProcess) -> str:
    report = httpx.get(f"{process.url}/status", timeout=5).json()
    return str(
        next(line["value"] for line in report["lines"] if line["label"] == "Database Status")
    )


def queued_in_stream(group: ProcessGroup) -> int:
    """Requests in the relay stream not yet acknowledged (read or not)."""
    client = group.redis.client()
    info = client.xinfo_groups(REQUESTS)
    return sum(int(g.get("pending", 0)) + int(g.get("lag") or 0) for g in info)


async def test_postgres_crashing_and_away_for_20_s_loses_no_accepted_task(
    fleet: Replicas,
    grace: tuple[MadProcess, str],
    postgres: PostgresServer,
    group: ProcessGroup,
    fake_llm: FakeLLM,
) -> None:
    total = 120
    fake_llm.delay = 0.05
    a, b = fleet.start(2)
    load = Load(grace[0], grace[1], in_flight=8, name="outage")

    async def paced(first: int, last: int, per_s: float) -> None:
        sending = []
        for n in range(first, last):
            sending.append(asyncio.create_task(load.converse(n, 180)))
            await asyncio.sleep(1 / per_s)
        await asyncio.gather(*sending)

    running: asyncio.Task[None] | None = None
    try:
        # A crash with an immediate restart at the same address (as a failover looks to a
        # client): the connections drop, the work goes on.
        running = asyncio.create_task(paced(0, 40, 20))
        await async_wait_for(lambda: len(load.accepted) >= 10, timeout=60, what="10 accepted")
        postgres.stop(immediate=True)
        postgres.start()
        await running
        await async_wait_for(lambda: completed(fleet) == 40, timeout=60, what="40 completed")

        # Down for 20 s while requests keep coming: Fiedler says so, is not ready, and the
        # requests wait in the relay stream.
        running = asyncio.create_task(paced(40, total, 6))
        await async_wait_for(lambda: len(load.accepted) >= 50, timeout=60, what="50 accepted")
        postgres.stop()
        stopped = time.monotonic()
        line = await async_wait_for(
            lambda: (v := database_line(a)).startswith("ERROR") and v, timeout=30, what="ERROR"
        )
        assert postgres.password not in line
        for process in (a, b):
            await async_wait_for(
                lambda p=process: httpx.get(f"{p.url}/readyz").status_code == 503,
                timeout=30,
                what="unready",
            )
            assert "Database" in httpx.get(f"{process.url}/readyz").json()["waiting_for"]
        status = a.cli("mad-status")
        assert status.returncode == 1 and f"- Database Status: {database_line(a)}" in status.stdout
        await async_wait_for(lambda: queued_in_stream(group) > 0, timeout=30, what="queued")
        accepted_before = len(load.accepted)
        await asyncio.sleep(max(0.0, 20 - (time.monotonic() - stopped)))  # the outage lasts 20 s
        queued = queued_in_stream(group)
        postgres.start()
        for process in (a, b):
            await asyncio.to_thread(process.wait_ready, 60)
        await running
        await async_wait_for(
            lambda: completed(fleet) == total, timeout=120, interval=0.5, what="all completed"
        )
    finally:
        if running is not None:
            running.cancel()
        fake_llm.delay = 0.0
        await load.close()

    assert len(load.accepted) == total and fleet.count() == total
    rows = fleet.rows("SELECT request_key, task_id, status FROM tasks")
    assert {key: task for key, task, _status in rows} == {
        f"request:outage:{request_id}": task for request_id, task in load.accepted.items()
    }
    assert {status for _key, _task, status in rows} == {"COMPLETED"}
    logs = fleet.logs()
    completed_once = completions(logs)
    assert set(completed_once) == set(load.accepted.values())
    assert set(completed_once.values()) == {1}
    calls = collections.Counter(r["messages"][0]["content"] for r in fake_llm.requests)
    repeated = sum(1 for n in range(total) if calls[f"outage {n}"] > 1)
    assert postgres.password not in logs and "Traceback" not in logs
    assert queued_in_stream(group) == 0
    record(
        "fiedler replicas",
        f"PostgreSQL crash-restart, then 20 s down: {total} requests through Grace, "
        f"{accepted_before} accepted before the outage, {queued} queued in the relay "
        f"stream at its end, all {total} COMPLETED once; provider calls repeated for "
        f"{repeated} task(s); client retries {sum(load.refusals.values())}",
    )
