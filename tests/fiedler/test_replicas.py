"""Fiedler replicas on one PostgreSQL task store, as real processes: they start together on
an empty database and migrate it once; every replica answers for every task; the same
request_id sent to two replicas at once makes one task; a cancel reaches the replica that
runs the task wherever it is sent; a replica stalled past its lease loses the task, and its
late finish is refused."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mcp_types as t
import pytest
from mcp import Client

from mads.fiedler.store import SCHEMA_VERSION
from tests.support.fake_llm import FakeLLM
from tests.support.fiedler_replicas import (
    FAST_LEASES,
    Replicas,
    call,
    completions,
    owner_of,
    replicas,
)
from tests.support.grace import grace_session, new_token
from tests.support.group import ProcessGroup
from tests.support.mad_process import MadProcess
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.waiting import async_wait_for, wait_for

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    yield from postgres_server()


@pytest.fixture
def fleet(
    group: ProcessGroup, postgres: PostgresServer, fake_llm: FakeLLM, tmp_path: Path
) -> Iterator[Replicas]:
    env = {**fake_llm.fiedler_env, **FAST_LEASES, "FIEDLER_MAX_CONCURRENCY": "4"}
    yield from replicas(group, postgres, tmp_path, env)


async def status_of(process: MadProcess, task_id: str) -> dict[str, Any]:
    return dict(await call(process, "fiedler_get_task_status", {"task_id": task_id}))


async def wait_status(
    process: MadProcess, task_id: str, wanted: tuple[str, ...] = TERMINAL, timeout: float = 30
) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        status = await status_of(process, task_id)
        return status if status["status"] in wanted else None

    return await async_wait_for(reached, timeout=timeout, interval=0.1, what=f"{task_id} {wanted}")


def holder(fleet: Replicas, task_id: str) -> str | None:
    rows = fleet.rows(
        "SELECT lease_owner FROM tasks WHERE task_id = %s AND status = 'RUNNING'", (task_id,)
    )
    return str(rows[0][0]) if rows else None


async def test_three_replicas_started_together_migrate_once_and_serve(
    fleet: Replicas, postgres: PostgresServer
) -> None:
    a, b, c = fleet.start(3)
    logs = fleet.logs()
    assert logs.count("Migrated the PostgreSQL task store") == 1, logs
    versions = fleet.rows("SELECT version FROM schema_version ORDER BY version")
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
    location = f"127.0.0.1/{fleet.database}"
    for process in (a, b, c):
        text = process.log_text()
        assert f"Initialized PostgreSQL task store at {location}..." in text
        assert "Initialized SQLite state database" not in text
        assert postgres.password not in text
        status = process.cli("mad-status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "- Database Status: OK" in status.stdout.splitlines()
    assert len({owner_of(p) for p in (a, b, c)}) == 3

    # Every replica answers for every task, whichever stored or ran it.
    created = await call(a, "fiedler_converse", {"prompt": "hello there", "requester_id": "ops"})
    done = await wait_status(c, created["task_id"])
    assert (done["status"], done["result_payload"]) == ("COMPLETED", "Echo: hello there")
    assert await status_of(b, created["task_id"]) == done
    listed = await call(b, "fiedler_list_tasks", {"requester_id": "ops"})
    assert [task["task_id"] for task in listed["tasks"]] == [created["task_id"]]
    counted = await call(c, "fiedler_count_tasks", {})
    assert counted["total"] == 1 and counted["by_status"]["COMPLETED"] == 1
    assert (
        sum(
            p.log_text().count(f"Task {created['task_id']} status changed to COMPLETED")
            for p in (a, b, c)
        )
        == 1
    )


async def test_the_same_request_id_at_two_replicas_at_once_makes_one_task(
    fleet: Replicas,
) -> None:
    a, b = fleet.start(2)
    for round_ in range(10):
        arguments = {"prompt": f"once {round_}", "requester_id": "ops", "request_id": f"r-{round_}"}
        first, second = await asyncio.gather(
            call(a, "fiedler_converse", arguments), call(b, "fiedler_converse", arguments)
        )
        assert first["task_id"] == second["task_id"], (first, second)
    assert fleet.count() == 10
    assert fleet.logs().count("Received new task ") == 10


async def test_a_cancel_sent_to_another_replica_stops_the_holder(
    fleet: Replicas, fake_llm: FakeLLM
) -> None:
    a, b, c = fleet.start(3)
    prompt = "slow: cancelled from elsewhere"
    created = await call(a, "fiedler_converse", {"prompt": prompt, "requester_id": "ops"})
    task_id = created["task_id"]
    await async_wait_for(lambda: prompt in fake_llm.streaming, timeout=30, what="the stream")
    running_on = holder(fleet, task_id)
    by_owner = {owner_of(p): p for p in (a, b, c)}
    assert running_on in by_owner
    elsewhere = next(p for owner, p in by_owner.items() if owner != running_on)

    reply = await call(
        elsewhere, "fiedler_cancel_task", {"task_id": task_id, "requester_id": "ops"}
    )
    assert reply["status"] in ("RUNNING", "CANCELLED")  # CANCELLED within its 2 s wait, or soon
    final = await wait_status(elsewhere, task_id, timeout=30)
    assert final["status"] == "CANCELLED", final
    assert final["error_details"] == "cancelled by ops (fiedler_cancel_task) while running"
    await async_wait_for(
        lambda: prompt in fake_llm.disconnects, timeout=30, what="the provider stream closed"
    )
    assert by_owner[running_on].log_text().count(f"Task {task_id} status changed to CANCELLED") == 1
    assert len(fake_llm.requests_for(prompt)) == 1


async def test_a_replica_stalled_past_its_lease_loses_the_task_and_its_late_finish_is_refused(
    fleet: Replicas, fake_llm: FakeLLM
) -> None:
    a, b = fleet.start(2)
    prompt = "stalled " + "word " * 19  # about two seconds at 0.1 s a chunk
    fake_llm.delay = 0.1
    try:
        created = await call(a, "fiedler_converse", {"prompt": prompt.strip(), "requester_id": "o"})
        task_id = created["task_id"]
        first = wait_for(lambda: holder(fleet, task_id), timeout=30, what="a holder")
        stalled = next(p for p in (a, b) if owner_of(p) == first)
        other = b if stalled is a else a
        assert stalled.process is not None
        stalled.process.send_signal(signal.SIGSTOP)
        try:
            # Its lease runs out; the other replica takes the task over and completes it.
            done = await wait_status(other, task_id, timeout=60)
            assert (done["status"], done["result_payload"]) == (
                "COMPLETED",
                f"Echo: {prompt.strip()}",
            )
            assert f"Taking over task {task_id} from {first}: its lease expired" in other.log_text()
            stored = fleet.rows(
                "SELECT status, result_payload, updated_at, lease_owner, lease_generation "
                "FROM tasks WHERE task_id = %s",
                (task_id,),
            )
        finally:
            stalled.process.send_signal(signal.SIGCONT)
        # Awake again, the stalled replica's finish is refused; nothing it does changes the row.
        await async_wait_for(
            lambda: f"Task {task_id}: late finish refused" in stalled.log_text(),
            timeout=30,
            what="the late finish refused",
        )
    finally:
        fake_llm.delay = 0.0
    assert (
        fleet.rows(
            "SELECT status, result_payload, updated_at, lease_owner, lease_generation "
            "FROM tasks WHERE task_id = %s",
            (task_id,),
        )
        == stored
    )
    assert stored[0][3] == owner_of(other) and stored[0][4] == 2
    assert f"Task {task_id} status changed to COMPLETED" not in stalled.log_text()
    assert other.log_text().count(f"Task {task_id} status changed to COMPLETED") == 1
    await async_wait_for(
        lambda: httpx.get(f"{stalled.url}/readyz").status_code == 200,
        timeout=30,
        what="the stalled replica ready again",
    )


async def test_mcp_tasks_are_answered_by_any_replica(fleet: Replicas, fake_llm: FakeLLM) -> None:
    a, b = fleet.start(2)
    async with (
        Client(f"{a.url}/mcp", mode="legacy") as on_a,
        Client(f"{b.url}/mcp", mode="legacy") as on_b,
    ):

        async def as_task(prompt: str) -> str:
            params = t.CallToolRequestParams(
                name="fiedler_converse",
                arguments={"prompt": prompt, "requester_id": "ops"},
                task=t.TaskMetadata(ttl=60_000),
            ).model_dump(by_alias=True, mode="json", exclude_none=True)
            raw = await on_a.session._dispatcher.send_raw_request("tools/call", params, {})
            return t.CreateTaskResult.model_validate(raw).task.task_id

        # Created through one replica, its result and state read through the other.
        task_id = await as_task("System check")
        result = await on_b.session.send_request(
            t.GetTaskPayloadRequest(params=t.GetTaskPayloadRequestParams(task_id=task_id)),
            t.CallToolResult,
        )
        assert [c.text for c in result.content] == ["Echo: System check"]
        seen = await on_b.session.send_request(
            t.GetTaskRequest(params=t.GetTaskRequestParams(task_id=task_id)), t.GetTaskResult
        )
        assert seen.status == "completed"

        # Cancelled through either replica, whichever runs it.
        slow = await as_task("slow: an MCP task cancelled")
        await async_wait_for(
            lambda: "slow: an MCP task cancelled" in fake_llm.streaming, timeout=30, what="stream"
        )
        request = t.CancelTaskRequest(params=t.CancelTaskRequestParams(task_id=slow))
        await on_b.session.send_request(request, t.CancelTaskResult)

        async def cancelled() -> t.GetTaskResult | None:
            found = await on_a.session.send_request(
                t.GetTaskRequest(params=t.GetTaskRequestParams(task_id=slow)), t.GetTaskResult
            )
            return found if found.status == "cancelled" else None

        final = await async_wait_for(cancelled, timeout=30, interval=0.2, what="cancelled")
        assert final.status_message == "cancelled by the MCP client (tasks/cancel) while running"


async def test_mcp_tasks_through_grace_are_answered_whichever_replica_runs_them(
    fleet: Replicas, group: ProcessGroup, fake_llm: FakeLLM
) -> None:
    """An outside client sees one Fiedler through Grace: tasks it starts there run on either
    replica, and Grace's relayed tasks/get, tasks/result and tasks/cancel reach the task
    wherever it is."""
    replicas_started = fleet.start(2)
    fake_llm.delay = 0.5  # each answer takes a while: one replica's 4 slots cannot take them all
    token = new_token()
    grace = group.start("grace", {"GRACE_API_TOKENS": token})
    try:
        async with grace_session(grace.url, token) as s:

            async def as_task(prompt: str) -> str:
                params = t.CallToolRequestParams(
                    name="fiedler_converse",
                    arguments={"prompt": prompt, "requester_id": "ops"},
                    task=t.TaskMetadata(ttl=60_000),
                ).model_dump(by_alias=True, mode="json", exclude_none=True)
                raw = await s._dispatcher.send_raw_request("tools/call", params, {})
                return t.CreateTaskResult.model_validate(raw).task.task_id

            async def offered() -> bool:
                listed = {tool.name: tool for tool in (await s.list_tools()).tools}
                tool = listed.get("fiedler_converse")
                return tool is not None and tool.execution is not None

            await async_wait_for(offered, timeout=30, what="fiedler_converse offered as a task")
            prompts = [f"System check {n}" for n in range(12)]
            ids = await asyncio.gather(*(as_task(prompt) for prompt in prompts))
            created = dict(zip(prompts, ids, strict=True))
            for prompt, task_id in created.items():
                result = await s.send_request(
                    t.GetTaskPayloadRequest(params=t.GetTaskPayloadRequestParams(task_id=task_id)),
                    t.CallToolResult,
                )
                assert [c.text for c in result.content] == [f"Echo: {prompt}"]
                seen = await s.send_request(
                    t.GetTaskRequest(params=t.GetTaskRequestParams(task_id=task_id)),
                    t.GetTaskResult,
                )
                assert seen.status == "completed"
            ran = [sum(completions(p.log_text()).values()) for p in replicas_started]
            assert sum(ran) == len(prompts) and all(ran), f"completions per replica: {ran}"

            slow = await as_task("slow: cancelled through Grace")
            await async_wait_for(
                lambda: "slow: cancelled through Grace" in fake_llm.streaming,
                timeout=30,
                what="the slow task streaming",
            )
            await s.send_request(
                t.CancelTaskRequest(params=t.CancelTaskRequestParams(task_id=slow)),
                t.CancelTaskResult,
            )

            async def cancelled() -> t.GetTaskResult | None:
                found = await s.send_request(
                    t.GetTaskRequest(params=t.GetTaskRequestParams(task_id=slow)),
                    t.GetTaskResult,
                )
                return found if found.status == "cancelled" else None

            await async_wait_for(cancelled, timeout=30, interval=0.2, what="cancelled")
    finally:
        fake_llm.delay = 0.0
        grace.stop()
