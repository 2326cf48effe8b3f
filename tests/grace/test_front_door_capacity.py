"""The front door at the speed of the rooms behind it, with real processes: a burst of
1,000 fiedler_converse calls through Grace (plain JSON-RPC over keep-alive connections, no
client retries) is accepted and carried out whole, once each; a relay stream at its limit
refuses what it cannot hold ("busy, retry") and loses nothing it accepted; 1,000 MCP task
clients waiting on slow tasks through Grace cost Fiedler a few status calls per task, not
one per poll; and Fiedler killed with SIGKILL in the middle of a burst loses nothing."""

from __future__ import annotations

import asyncio
import resource
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.support.evidence import record
from tests.support.fake_llm import FakeLLM
from tests.support.fiedler import relayed_calls
from tests.support.front_door import Client, request_id_of, tasks_of
from tests.support.grace import new_token
from tests.support.group import ProcessGroup
from tests.support.group import mad_group as mad_group  # the fixture
from tests.support.tool_calls import ToolCallClient
from tests.support.waiting import async_wait_for

PULSE = {"MAD_HEARTBEAT_S": "5"}
"""As deployed: a MAD busy with a burst is not taken for one that stopped."""
TASKS_VERSION = "2025-11-25"


def need_open_files(connections: int) -> None:
    needed = connections + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        pytest.fail(
            f"{connections} connections need {needed} open files per process and the limit "
            f"is {soft} (hard limit {hard}): raise the hard limit (ulimit -Hn)"
        )


async def all_completed(db_path: Path, requester: str, expected: set[str]) -> bool:
    found = tasks_of(db_path, requester)
    return {request_id_of(k) for k in found} == expected and all(
        status == "COMPLETED" for status, _ in found.values()
    )


@pytest.mark.timeout(900)
async def test_a_burst_of_1000_converse_calls_through_grace_is_carried_out_whole(
    mad_group: ProcessGroup,
) -> None:
    calls = 1000
    need_open_files(calls)
    token = new_token()
    db_path = mad_group.workdir / "fiedler_state.db"
    mad_group.start("sequential_thinking")
    grace = mad_group.start("grace", {"GRACE_API_TOKENS": token, **PULSE})
    fiedler = mad_group.start("fiedler", {"FIEDLER_DB_PATH": str(db_path), **PULSE})
    client = Client(grace.url, token, connections=calls)
    try:
        outcomes = await asyncio.gather(*(client.converse("burst", f"b-{n}") for n in range(calls)))
    finally:
        await client.close()
    kinds = Counter(kind for kind, _ in outcomes)
    record("front door", f"{calls} concurrent converse calls through Grace: {dict(kinds)}")
    assert kinds == {"accepted": calls}, [o for o in outcomes if o[0] != "accepted"][:5]
    task_ids = [task_id for _, task_id in outcomes]
    assert len(set(task_ids)) == calls, "every call made a task of its own"
    expected = {f"b-{n}" for n in range(calls)}
    await async_wait_for(
        lambda: all_completed(db_path, "burst", expected),
        timeout=300,
        interval=0.5,
        what="every task COMPLETED",
    )
    stored = tasks_of(db_path, "burst")
    assert len(stored) == calls, "no task lost, none made twice"
    assert {result for _, result in stored.values()} == {"OK"}
    assert relayed_calls(fiedler.url, "fiedler_converse") == calls, "each relayed call ran once"
    for process in (grace, fiedler):
        assert "Traceback" not in process.log_text(), process.name


@pytest.mark.timeout(900)
async def test_a_full_relay_stream_refuses_busy_and_loses_nothing_it_accepted(
    mad_group: ProcessGroup,
) -> None:
    """MAD_RELAY_BACKLOG_LIMIT=1000, Fiedler down, 1,500 calls sent through Grace: each is
    accepted (queued) or refused "busy, retry"; once Fiedler is back, every accepted one is
    carried out and no refused one is (counted)."""
    calls, limit = 1500, 1000
    need_open_files(calls)
    token = new_token()
    db_path = mad_group.workdir / "fiedler_state.db"
    mad_group.start("sequential_thinking")
    grace = mad_group.start(
        "grace",
        {
            "GRACE_API_TOKENS": token,
            "MAD_RELAY_BACKLOG_LIMIT": str(limit),
            "GRACE_RELAY_TIMEOUT_S": "2",
            **PULSE,
        },
    )
    fiedler_env = {"FIEDLER_DB_PATH": str(db_path), **PULSE}
    fiedler = mad_group.start("fiedler", fiedler_env)  # its consumer group made
    fiedler.stop()
    client = Client(grace.url, token, connections=calls)
    try:
        outcomes = await asyncio.gather(*(client.converse("full", f"f-{n}") for n in range(calls)))
    finally:
        await client.close()
    kinds = Counter(kind for kind, _ in outcomes)
    record("front door", f"{calls} calls, backlog limit {limit}, Fiedler down: {dict(kinds)}")
    assert set(kinds) <= {"queued", "busy"}, [o for o in outcomes if o[0] == "other"][:5]
    assert kinds["queued"] == limit, "the stream holds exactly its limit"
    assert kinds["busy"] == calls - limit
    busy = next(text for kind, text in outcomes if kind == "busy")
    assert f"busy: {limit:,} requests wait for fiedler" in busy
    assert "retry after" in busy

    accepted = {f"f-{n}" for n, (kind, _) in enumerate(outcomes) if kind == "queued"}
    mad_group.start("fiedler", fiedler_env)
    await async_wait_for(
        lambda: all_completed(db_path, "full", accepted),
        timeout=300,
        interval=0.5,
        what="every accepted call carried out",
    )
    stored = tasks_of(db_path, "full")
    assert {request_id_of(k) for k in stored} == accepted, "refused calls made no task"
    assert "Traceback" not in grace.log_text()


@pytest.mark.timeout(900)
async def test_1000_task_clients_waiting_on_slow_tasks_cost_a_few_status_calls_each(
    mad_group: ProcessGroup,
) -> None:
    """Each client starts fiedler_converse as an MCP task (2025-11-25) through Grace, reads
    it with tasks/get, waits for it with tasks/result, and reads it again: every client gets
    its own final result, and Fiedler is asked for each task's status a few times in all
    (its relayed-call metrics), however often the clients ask."""
    clients = 1000
    need_open_files(clients)
    llm = FakeLLM().start()
    llm.delay = 1.0  # a few seconds a task, a hundred at a time (the provider's connections)
    try:
        token = new_token()
        mad_group.start("sequential_thinking")
        grace = mad_group.start(
            "grace", {"GRACE_API_TOKENS": token, "GRACE_RELAY_TIMEOUT_S": "120", **PULSE}
        )
        fiedler = mad_group.start(
            "fiedler", {**llm.fiedler_env, "FIEDLER_MAX_CONCURRENCY": "1000", **PULSE}
        )
        client = Client(grace.url, token, connections=clients)
        asked = Counter[str]()

        async def one(n: int) -> tuple[str, str]:
            prompt = f"slow {n}"
            status, created = await client.send(
                "tools/call",
                {
                    "name": "fiedler_converse",
                    "arguments": {"prompt": prompt, "requester_id": "waiting"},
                    "task": {"ttl": 600_000},
                },
                TASKS_VERSION,
            )
            assert status == 200 and "result" in created, created
            task_id = created["result"]["task"]["taskId"]
            for _ in range(2):
                _, seen = await client.send("tasks/get", {"taskId": task_id}, TASKS_VERSION)
                assert seen["result"]["taskId"] == task_id, seen
                asked["tasks/get"] += 1
            _, final = await client.send("tasks/result", {"taskId": task_id}, TASKS_VERSION)
            asked["tasks/result"] += 1
            _, seen = await client.send("tasks/get", {"taskId": task_id}, TASKS_VERSION)
            asked["tasks/get"] += 1
            assert seen["result"]["status"] == "completed", seen
            texts = [c["text"] for c in final["result"]["content"]]
            return prompt, "".join(texts)

        try:
            answers = await asyncio.gather(*(one(n) for n in range(clients)))
        finally:
            await client.close()
        status_calls = relayed_calls(fiedler.url, "fiedler_get_task_status")
    finally:
        llm.stop()
    record(
        "front door",
        f"{clients} task clients through Grace asked {dict(asked)}; Fiedler carried out "
        f"{status_calls:.0f} relayed status calls ({status_calls / clients:.2f} per task)",
    )
    assert [answer for _, answer in answers] == [f"Echo: {prompt}" for prompt, _ in answers]
    assert status_calls <= 4 * clients, f"{status_calls:.0f} status calls for {clients} tasks"
    assert "Traceback" not in grace.log_text()


@pytest.mark.timeout(900)
async def test_fiedler_killed_in_the_middle_of_a_burst_loses_nothing(
    mad_group: ProcessGroup,
) -> None:
    calls = 1000
    need_open_files(calls)
    token = new_token()
    db_path = mad_group.workdir / "fiedler_state.db"
    fiedler_env = {"FIEDLER_DB_PATH": str(db_path), **PULSE}
    mad_group.start("sequential_thinking")
    grace = mad_group.start(
        "grace", {"GRACE_API_TOKENS": token, "GRACE_RELAY_TIMEOUT_S": "120", **PULSE}
    )
    fiedler = mad_group.start("fiedler", fiedler_env)
    client = Client(grace.url, token, connections=calls)
    try:
        burst = asyncio.gather(*(client.converse("killed", f"k-{n}") for n in range(calls)))
        await async_wait_for(
            lambda: len(tasks_of(db_path, "killed")) >= calls // 4,
            timeout=120,
            interval=0.02,
            what="a quarter of the burst stored",
        )
        fiedler.kill(signal.SIGKILL)
        stored_at_kill = len(tasks_of(db_path, "killed"))
        mad_group.start("fiedler", fiedler_env)
        outcomes = await burst
    finally:
        await client.close()
    kinds = Counter(kind for kind, _ in outcomes)
    record(
        "front door",
        f"{calls} converse calls, Fiedler killed (SIGKILL) with {stored_at_kill} stored: "
        f"{dict(kinds)}",
    )
    assert stored_at_kill < calls, "the kill came in the middle of the burst"
    assert set(kinds) <= {"accepted", "queued"}, [o for o in outcomes if o[0] == "other"][:5]
    expected = {f"k-{n}" for n in range(calls)}
    await async_wait_for(
        lambda: all_completed(db_path, "killed", expected),
        timeout=300,
        interval=0.5,
        what="every call carried out",
    )
    assert len(tasks_of(db_path, "killed")) == calls, "none lost, none made twice"
    accepted_ids = [task_id for kind, task_id in outcomes if kind == "accepted"]
    assert len(set(accepted_ids)) == len(accepted_ids)
    assert "Traceback" not in grace.log_text()


async def test_polling_the_status_tool_through_grace_costs_fiedler_a_call_per_change(
    mad_group: ProcessGroup,
) -> None:
    """The guide's way of waiting on a task, fiedler_get_task_status through Grace, is
    answered from the answers Grace keeps for tasks/get: Fiedler carries out a relayed
    status call per change of the task, not per poll, and every answer is the one Fiedler
    gives directly. A call Grace cannot answer so (an unknown task) is relayed each time,
    and refused in Fiedler's words."""
    token = new_token()
    mad_group.start("sequential_thinking")
    grace = mad_group.start("grace", {"GRACE_API_TOKENS": token, **PULSE})
    fiedler = mad_group.start("fiedler", PULSE)
    through = ToolCallClient(f"{grace.url}/mcp", token=token, connections=4)
    direct = ToolCallClient(f"{fiedler.url}/mcp", connections=1)
    try:
        success, pending = await through.call(
            "fiedler_converse",
            {"prompt": "System check, please respond with OK.", "requester_id": "poll"},
        )
        assert success, pending
        asked = {"task_id": pending["task_id"]}

        async def completed() -> dict | None:
            success, status = await through.call("fiedler_get_task_status", asked)
            assert success, status
            return status if status["status"] == "COMPLETED" else None

        final = await async_wait_for(completed, interval=0.05, what="the task COMPLETED")
        polls = 300
        answers = await asyncio.gather(
            *(through.call("fiedler_get_task_status", asked) for _ in range(polls))
        )
        assert answers == [(True, final)] * polls
        assert await direct.call("fiedler_get_task_status", asked) == (True, final)
        carried_out = relayed_calls(fiedler.url, "fiedler_get_task_status")
        record("front door", f"{polls}+ status polls through Grace: {carried_out:.0f} relayed")
        # One read before the status channel is followed, one after, one per change.
        assert carried_out <= 5, f"{carried_out} status calls reached Fiedler"

        unknown = {"task_id": "no-such-task"}
        refusals = [await through.call("fiedler_get_task_status", unknown) for _ in range(3)]
        assert refusals == [refusals[0]] * 3
        assert not refusals[0][0] and "unknown task_id 'no-such-task': no such task" in str(
            refusals[0][1]
        )
        assert relayed_calls(fiedler.url, "fiedler_get_task_status") == carried_out + 3
    finally:
        await through.close()
        await direct.close()


async def test_a_task_call_refused_as_busy_is_not_called_invalid(mad_group: ProcessGroup) -> None:
    """A task-augmented call Grace cannot queue (Fiedler's stream at its limit) is refused
    with the busy line and an internal-error code, not invalid params: the request itself
    was fine and may be made again as it is. Nothing is queued."""
    token = new_token()
    grace = mad_group.start(
        "grace", {"GRACE_API_TOKENS": token, "MAD_RELAY_BACKLOG_LIMIT": "1", **PULSE}
    )
    # One request already waits for a Fiedler that is not there: the stream is full.
    mad_group.redis.client().xadd("mad.fiedler.requests", {"envelope": b"{}"})
    client = Client(grace.url, token, connections=1)
    try:
        status, refused = await client.send(
            "tools/call",
            {
                "name": "fiedler_converse",
                "arguments": {"prompt": "System check", "requester_id": "busy"},
                "task": {"ttl": 60_000},
            },
            TASKS_VERSION,
        )
    finally:
        await client.close()
    assert status == 200 and "error" in refused, refused
    assert refused["error"]["code"] == -32603, refused
    assert "busy: 1 requests wait for fiedler" in refused["error"]["message"], refused
    assert mad_group.redis.client().xlen("mad.fiedler.requests") == 1, "nothing was queued"
    assert "Traceback" not in grace.log_text()
