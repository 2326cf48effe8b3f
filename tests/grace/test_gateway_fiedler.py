"""An outside MCP client (the official SDK) connected only to Grace, with a token, runs the
guide's step 8 against Fiedler; Rogers logs the guide's step 9 line; a converse relayed while
Fiedler is down times out with a clear error, stays queued, and is carried out when Fiedler
returns, as is one relayed while it restarts."""

import asyncio

from tests.support.grace import call, grace_session, new_token, ok
from tests.support.group import ProcessGroup
from tests.support.group import mad_group as mad_group  # the fixture
from tests.support.waiting import async_wait_for

SMOKE = {"prompt": "System check, please respond with OK.", "requester_id": "ops-team"}
STEP9 = (
    "INFO:rogers:[Metrics] Received message from sender: fiedler on channel: "
    "mad.fiedler.task.status"
)
RELAY_TIMEOUT_S = 8


async def completed(s, task_id: str) -> dict:
    async def done() -> dict | None:
        status = await ok(s, "fiedler_get_task_status", {"task_id": task_id})
        return status if status["status"] in ("COMPLETED", "FAILED") else None

    return await async_wait_for(done, timeout=30, interval=0.2, what=f"task {task_id} done")


async def test_step8_through_grace_and_fiedler_restart(mad_group: ProcessGroup) -> None:
    token = new_token()
    mad_group.start("sequential_thinking")
    grace = mad_group.start(
        "grace", {"GRACE_API_TOKENS": token, "GRACE_RELAY_TIMEOUT_S": str(RELAY_TIMEOUT_S)}
    )
    rogers = mad_group.start("rogers")
    fiedler = mad_group.start("fiedler")

    async with grace_session(grace.url, token) as s:

        async def fiedler_listed() -> bool:
            return "fiedler_converse" in {t.name for t in (await s.list_tools()).tools}

        await async_wait_for(fiedler_listed, timeout=15, what="fiedler tools listed by grace")

        # Guide step 8, Part A and Part B.
        pending = await ok(s, "fiedler_converse", SMOKE)
        assert pending["status"] == "pending"
        assert pending["stream_topic"] == f"mad.stream.{pending['task_id']}"
        status = await completed(s, pending["task_id"])
        assert status["status"] == "COMPLETED", status
        assert "OK" in str(status["result_payload"])
        assert status["prompt"] == SMOKE["prompt"]

        # Guide step 9: Rogers saw Fiedler's status changes.
        await async_wait_for(lambda: STEP9 in rogers.log_text(), timeout=10, what="step 9 line")

        # A bad argument is refused by the owner and comes back as one clear line.
        success, error = await call(s, "fiedler_converse", {"prompt": "x"})
        assert not success and "requester_id" in error

        # Fiedler down: the call times out with a clear error, and stays queued.
        fiedler.kill()
        queued = {"prompt": "System check, please respond with OK.", "requester_id": "queued"}
        success, error = await call(s, "fiedler_converse", queued)
        assert not success
        assert "fiedler is down" in error and "queued" in error, error

        # A converse relayed while Fiedler restarts is answered when it is back.
        restart = asyncio.create_task(asyncio.to_thread(fiedler.start))
        during = await ok(s, "fiedler_converse", {**SMOKE, "requester_id": "during-restart"})
        await restart
        assert (await completed(s, during["task_id"]))["status"] == "COMPLETED"

        async def queued_task() -> list:
            tasks = await ok(s, "fiedler_list_tasks", {"requester_id": "queued"})
            return tasks["tasks"] if isinstance(tasks, dict) else tasks

        tasks = await async_wait_for(queued_task, timeout=15, what="the queued converse")
        assert len(tasks) == 1
