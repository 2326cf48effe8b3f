"""Nothing accepted is lost: kill -9 with tasks in flight, requests handed over through the
durable stream while Fiedler is down, redelivered requests, and a bus outage."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx

from mads.core.envelope import Envelope, make_envelope
from mads.core.relay import reply_cache_key
from tests.support.fake_llm import FakeLLM
from tests.support.fiedler import Fiedler, call, wait_terminal
from tests.support.group import ProcessGroup
from tests.support.waiting import wait_for

REQUESTS = "mad.fiedler.requests"


def relayed(prompt: str, requester: str = "relay") -> Envelope:
    """A request as Grace's relay hands it over (see mads.core.relay.ToolRelayClient)."""
    return make_envelope(
        sender_id="grace",
        channel=REQUESTS,
        recipient_id="fiedler",
        payload={
            "tool": "fiedler_converse",
            "arguments": {"prompt": prompt, "requester_id": requester},
            "reply_channel": "mad.direct.grace.test.fiedler",
        },
    )


def hand_over(group: ProcessGroup, envelope: Envelope) -> None:
    group.redis.client().xadd(REQUESTS, {"envelope": envelope.model_dump_json()})


def cached_reply(group: ProcessGroup, envelope: Envelope) -> dict[str, object] | None:
    raw = group.redis.client().get(reply_cache_key("fiedler", envelope.message_id))
    return json.loads(raw) if raw else None


def unacknowledged(group: ProcessGroup) -> int:
    return int(group.redis.client().xpending(REQUESTS, "owners")["pending"])


async def test_kill_9_with_50_tasks_in_flight_loses_and_duplicates_nothing(
    start_fiedler: Callable[..., Fiedler], fake_llm: FakeLLM, group: ProcessGroup
) -> None:
    group.redis.client().delete(REQUESTS)
    fake_llm.delay = 0.25  # ~1 s per answer, 4 at a time: the tasks stay in flight
    fiedler = start_fiedler(
        {
            "FIEDLER_LLM_PROVIDER": "openai",
            "FIEDLER_LLM_BASE_URL": fake_llm.base_url,
            "FIEDLER_LLM_MODEL": "test-model",
            "FIEDLER_MAX_CONCURRENCY": "4",
        }
    )
    replies = await asyncio.gather(
        *(
            call(fiedler, "fiedler_converse", {"prompt": f"task {n}", "requester_id": "load"})
            for n in range(40)
        )
    )
    assert all(reply["status"] == "pending" for reply in replies)
    before_kill = [relayed(f"task {n}") for n in range(40, 50)]
    for envelope in before_kill:
        hand_over(group, envelope)
    wait_for(lambda: fiedler.rows() == 50, what="all 50 tasks stored")
    wait_for(lambda: fiedler.rows("status = 'RUNNING'") > 0, what="a task RUNNING")

    fiedler.process.kill()  # SIGKILL: no shutdown code runs
    running = fiedler.rows("status = 'RUNNING'")
    in_flight = fiedler.rows("status IN ('PENDING', 'RUNNING')")
    assert running >= 1 and in_flight >= 25, (running, in_flight)

    # Work handed over while Fiedler is down waits in the stream.
    while_down = [relayed(f"task {n}") for n in range(50, 60)]
    for envelope in while_down:
        hand_over(group, envelope)
    fake_llm.delay = 0.0
    fiedler.process.start()

    wait_for(
        lambda: fiedler.rows("status IN ('COMPLETED', 'FAILED')") == 60,
        timeout=60,
        what="all 60 tasks terminal",
    )
    assert fiedler.rows() == 60
    assert fiedler.rows("status = 'COMPLETED'") == 60
    for n in range(60):
        assert (
            fiedler.rows("prompt = ? AND result_payload = ?", (f"task {n}", f"Echo: task {n}")) == 1
        )
    assert unacknowledged(group) == 0
    # The relayed requests were answered with their own task ids.
    for envelope in before_kill + while_down:
        reply = cached_reply(group, envelope)
        assert reply is not None and reply["ok"] is True
        assert (
            fiedler.rows("task_id = ? AND requester_id = 'relay'", (reply["result"]["task_id"],))
            == 1
        )

    log = fiedler.process.log_text()
    assert log.count("Resuming task ") == in_flight
    assert f"Recovered {in_flight} unfinished task(s) from an earlier run" in log
    for reply in replies:
        assert log.count(f"Task {reply['task_id']} status changed to COMPLETED") == 1


async def test_a_redelivered_request_makes_one_task(
    start_fiedler: Callable[..., Fiedler], group: ProcessGroup
) -> None:
    group.redis.client().delete(REQUESTS)
    fiedler = start_fiedler()
    envelope = relayed("System check, please respond with OK.")
    hand_over(group, envelope)
    first = wait_for(lambda: cached_reply(group, envelope), what="the first reply")
    # As if Fiedler had crashed after storing the task but before its reply was recorded:
    # the relay delivers the same request (same message id) again.
    group.redis.client().delete(reply_cache_key("fiedler", envelope.message_id))
    hand_over(group, envelope)
    wait_for(lambda: unacknowledged(group) == 0 and cached_reply(group, envelope), what="reply 2")
    second = cached_reply(group, envelope)
    assert first["ok"] and second is not None and second["ok"]
    assert second["result"]["task_id"] == first["result"]["task_id"]
    assert fiedler.rows() == 1
    assert fiedler.process.log_text().count("Received new task ") == 1
    status = await wait_terminal(fiedler, first["result"]["task_id"])
    assert (status["status"], status["result_payload"]) == ("COMPLETED", "OK")


async def test_tasks_progress_while_the_bus_is_down(
    start_fiedler: Callable[..., Fiedler], group: ProcessGroup
) -> None:
    fiedler = start_fiedler()
    group.redis.stop(kill=True)
    try:
        wait_for(
            lambda: httpx.get(f"{fiedler.process.url}/readyz").status_code == 503,
            what="Fiedler to notice the bus is down",
        )
        reply = await call(
            fiedler,
            "fiedler_converse",
            {"prompt": "System check, please respond with OK.", "requester_id": "ops"},
        )
        status = await wait_terminal(fiedler, reply["task_id"], timeout=15)
        assert (status["status"], status["result_payload"]) == ("COMPLETED", "OK")
        report = httpx.get(f"{fiedler.process.url}/status").json()
        lines = {line["label"]: line["value"] for line in report["lines"]}
        assert lines["Conversation Bus Connected"] == "False"
        assert lines["Database Status"] == "OK"
    finally:
        group.redis.start()
    fiedler.process.wait_ready()
