"""What Grace keeps of the owners' task answers (mads.grace.task_status), against a real
Redis: an answer is given again while no change is published for its task, read from the
owner again once one is (or once the subscription was remade, or once it is too old to
trust for a task still working), and a read is shared by everyone asking at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mads.core.bus import Bus
from mads.fiedler.contract import CONTRACT as FIEDLER
from mads.fiedler.contract import TASK_STATUS_CHANNEL
from mads.grace import task_status
from mads.grace.task_status import TaskStatuses
from tests.support.redis_server import RedisServer, connected_bus
from tests.support.waiting import async_wait_for

TOOLS = FIEDLER.tasks
assert TOOLS is not None


class Owner:
    """Fiedler's status tool, as far as Grace can tell: what it answers, and how often."""

    def __init__(self) -> None:
        self.state = {"task_id": "t1", "status": "PENDING", "updated_at": "2026-01-01T00:00:00Z"}
        self.reads = 0
        self.gate: asyncio.Event | None = None

    async def read(self) -> dict[str, Any]:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return dict(self.state)

    def change(self, status: str, updated_at: str) -> None:
        self.state = {**self.state, "status": status, "updated_at": updated_at}


@contextlib.asynccontextmanager
async def following(server: RedisServer) -> AsyncIterator[tuple[TaskStatuses, Bus]]:
    grace, fiedler = await connected_bus(server, "grace"), await connected_bus(server, "fiedler")
    statuses = TaskStatuses(grace, {"fiedler": TOOLS}, logging.getLogger("test"))
    runner = asyncio.create_task(statuses.run())
    try:
        # The status channel is listened to once a client asks about a task.
        await statuses.status("fiedler", "first", TOOLS, Owner().read)
        await async_wait_for(lambda: statuses.following, what="the status channel followed")
        yield statuses, fiedler
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await grace.close()
        await fiedler.close()


async def publish(bus: Bus, status: str, updated_at: str, task_id: str = "t1") -> None:
    payload = {"task_id": task_id, "status": status, "updated_at": updated_at}
    await bus.publish(TASK_STATUS_CHANNEL, payload)


async def ask(statuses: TaskStatuses, owner: Owner) -> dict[str, Any]:
    return dict(await statuses.status("fiedler", "t1", TOOLS, owner.read))


async def test_an_answer_is_kept_until_a_change_is_published(redis_server: RedisServer) -> None:
    owner = Owner()
    async with following(redis_server) as (statuses, fiedler):
        for _ in range(50):
            assert (await ask(statuses, owner))["status"] == "PENDING"
        assert owner.reads == 1

        owner.change("RUNNING", "2026-01-01T00:00:01Z")
        await publish(fiedler, "RUNNING", "2026-01-01T00:00:01Z")

        async def running() -> bool:
            return (await ask(statuses, owner))["status"] == "RUNNING"

        await async_wait_for(running, what="the change heard and read")
        assert owner.reads == 2
        for _ in range(50):
            await ask(statuses, owner)
        assert owner.reads == 2

        # A change for another task, or a late one for an older change, reads nothing.
        await publish(fiedler, "COMPLETED", "2026-01-01T00:00:05Z", task_id="other")
        await publish(fiedler, "PENDING", "2026-01-01T00:00:00Z")
        await publish(fiedler, "RUNNING", "2026-01-01T00:00:01Z")
        owner.change("COMPLETED", "2026-01-01T00:00:09Z")
        await publish(fiedler, "COMPLETED", "2026-01-01T00:00:09Z")

        async def completed() -> bool:
            return (await ask(statuses, owner))["status"] == "COMPLETED"

        await async_wait_for(completed, what="the last change heard and read")
        assert owner.reads == 3


async def test_a_final_answer_is_kept_however_old_and_a_working_one_is_not(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(task_status, "MAX_AGE_S", 0.0)
    owner = Owner()
    async with following(redis_server) as (statuses, _fiedler):
        await ask(statuses, owner)
        await ask(statuses, owner)
        assert owner.reads == 2, "a working task's answer is read again once too old"
        owner.change("COMPLETED", "2026-01-01T00:00:09Z")
        await ask(statuses, owner)
        for _ in range(20):
            assert (await ask(statuses, owner))["status"] == "COMPLETED"
        assert owner.reads == 3


async def test_answers_read_before_the_subscription_was_remade_are_read_again(
    redis_server: RedisServer,
) -> None:
    owner = Owner()
    async with following(redis_server) as (statuses, _fiedler):
        await ask(statuses, owner)
        redis_server.stop(kill=True)
        redis_server.start()
        # Whatever was published while it was down was not heard: read again.
        await async_wait_for(
            lambda: statuses.subscriptions == 2, timeout=30, what="the subscription remade"
        )

        async def read_again() -> bool:
            await ask(statuses, owner)
            return owner.reads == 2

        await async_wait_for(read_again, timeout=30, what="the answer read again")
        await ask(statuses, owner)
        assert owner.reads == 2


async def test_everyone_asking_at_once_shares_one_read(redis_server: RedisServer) -> None:
    owner = Owner()
    owner.gate = asyncio.Event()
    async with following(redis_server) as (statuses, _fiedler):
        askers = [asyncio.create_task(ask(statuses, owner)) for _ in range(100)]
        await async_wait_for(lambda: owner.reads == 1, what="the read started")
        owner.gate.set()
        answers = await asyncio.gather(*askers)
    assert owner.reads == 1
    assert all(a["status"] == "PENDING" for a in answers)


async def test_tasks_no_one_asks_about_are_forgotten(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(task_status, "MAX_TASKS", 10)
    owner = Owner()
    async with following(redis_server) as (statuses, _fiedler):
        for n in range(50):
            await statuses.status("fiedler", f"t{n}", TOOLS, owner.read)
        assert len(statuses) == 10


def subscribers(server: RedisServer) -> int:
    """Subscribers to Fiedler's status channel, as Redis counts them."""
    [(_channel, count)] = server.client().pubsub_numsub(TASK_STATUS_CHANNEL)
    return int(count)


async def test_the_status_channel_is_listened_to_only_while_a_task_is_kept(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Owners publish every change of every task: a Grace no client asks about tasks does
    not take them in, and answers read before it listens are read again."""
    monkeypatch.setattr(task_status, "KEEP_S", 1.0)
    monkeypatch.setattr(task_status, "FOLLOW_CHECK_S", 0.1)
    grace = await connected_bus(redis_server, "grace")
    statuses = TaskStatuses(grace, {"fiedler": TOOLS}, logging.getLogger("test"))
    runner = asyncio.create_task(statuses.run())
    owner = Owner()
    try:
        await ask(statuses, owner)
        await async_wait_for(lambda: subscribers(redis_server) == 1, what="the channel followed")
        await ask(statuses, owner)  # the first answer was read before: read again
        for _ in range(20):
            await ask(statuses, owner)
        assert owner.reads == 2
        await async_wait_for(
            lambda: subscribers(redis_server) == 0 and len(statuses) == 0,
            what="the task forgotten and the channel left",
        )
        assert not statuses.following
        await ask(statuses, owner)  # asked again: read, and followed again
        await async_wait_for(lambda: subscribers(redis_server) == 1, what="followed again")
        assert owner.reads == 3 and statuses.subscriptions == 2
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await grace.close()
