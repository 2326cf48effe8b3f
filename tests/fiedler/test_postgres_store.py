"""The PostgreSQL task store in-process, against a real PostgreSQL: one migration however
many replicas open it at once, claims that never hand a task out twice, finishes fenced by
the lease, one task per request key under a race, notifications, and outages said without
the password."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from mads.fiedler.postgres_store import PostgresTaskStore
from mads.fiedler.postgres_uri import parse
from mads.fiedler.store import SCHEMA_VERSION, StoreUnavailableError
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.waiting import async_wait_for


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    yield from postgres_server()


@pytest.fixture
def database(server: PostgresServer) -> str:
    return server.create_database()


def new_store(server: PostgresServer, database: str, name: str = "fiedler") -> PostgresTaskStore:
    return PostgresTaskStore(
        parse(server.uri(database)), logging.getLogger(name), pool_size=4, timeout_s=3
    )


@pytest.fixture
async def store(server: PostgresServer, database: str) -> AsyncIterator[PostgresTaskStore]:
    opened = new_store(server, database)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_replicas_opening_together_migrate_once(
    server: PostgresServer, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    stores = [new_store(server, database, f"replica{n}") for n in range(3)]
    with caplog.at_level(logging.INFO):
        await asyncio.gather(*(s.open() for s in stores))
    try:
        migrated = [r for r in caplog.records if r.getMessage().startswith("Migrated")]
        assert [r.getMessage() for r in migrated] == [
            f"Migrated the PostgreSQL task store at 127.0.0.1/{database} from schema version 0 "
            f"to {SCHEMA_VERSION}"
        ]
        with server.connect(database) as conn:
            rows = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert rows == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
        assert [await s.check() for s in stores] == [None, None, None]
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_concurrent_claims_hand_each_task_out_once(
    server: PostgresServer, database: str, store: PostgresTaskStore
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(300)]
    await asyncio.gather(*(store.create(i, f"p{i}", "r") for i in ids))
    replicas = [new_store(server, database, f"r{n}") for n in range(3)]
    await asyncio.gather(*(r.open() for r in replicas))
    taken: dict[str, list[str]] = {}

    async def drain(n: int, replica: PostgresTaskStore) -> None:
        while claims := await replica.claim(f"replica-{n}", 7, 30.0):
            for claim in claims:
                taken.setdefault(claim.task.task_id, []).append(f"replica-{n}")

    try:
        await asyncio.gather(*(drain(n, r) for n, r in enumerate(replicas)))
    finally:
        await asyncio.gather(*(r.close() for r in replicas))
    assert sorted(taken) == sorted(ids)
    assert all(len(owners) == 1 for owners in taken.values())
    assert len({owners[0] for owners in taken.values()}) == 3  # all of them took work
    assert (await store.counts())["RUNNING"] == 300
    assert await store.backlog() == (0, 0.0)


async def test_finishing_is_fenced_by_the_lease(store: PostgresTaskStore) -> None:
    created, _ = await store.create("t1", "prompt", "r")
    assert created.created_at.endswith("Z") and created.status == "PENDING"
    (first,) = await store.claim("a", 5, 30.0)
    assert (first.task.status, first.task.lease_generation, first.taken_over_from) == (
        "RUNNING",
        1,
        None,
    )
    assert await store.claim("b", 5, 30.0) == []  # a live lease
    assert await store.renew("a", {"t1": 1}, 30.0) == {"t1": None}
    await store.release("a", {"t1": 1})
    assert await store.claim("b", 5, 30.0, exclude=["t1"]) == []
    (second,) = await store.claim("b", 5, 30.0)
    assert (second.task.attempts, second.task.lease_generation) == (2, 2)
    assert second.taken_over_from == "a"
    assert await store.renew("a", {"t1": 1}, 30.0) == {}  # a's lease is gone
    assert await store.finish("t1", "COMPLETED", "late", None, owner="a", generation=1) is None
    done = await store.finish("t1", "COMPLETED", "OK", None, owner="b", generation=2)
    assert done is not None and (done.status, done.result_payload) == ("COMPLETED", "OK")
    again = await store.finish("t1", "COMPLETED", "OK", None, owner="b", generation=2)
    assert again == done
    assert await store.get("t1") == done
    assert await store.unfinished() == []


async def test_one_task_per_request_key_under_a_race(store: PostgresTaskStore) -> None:
    results = await asyncio.gather(
        *(store.create(str(uuid.uuid4()), "p", "r", "request:r:same") for _ in range(20))
    )
    assert sum(created for _task, created in results) == 1
    assert len({task.task_id for task, _created in results}) == 1
    assert (await store.counts())["PENDING"] == 1
    listed = await store.recent(requester_id="r")
    assert [t.task_id for t in listed] == [results[0][0].task_id]


async def test_new_work_and_cancels_are_heard_by_other_replicas(
    server: PostgresServer, database: str, store: PostgresTaskStore
) -> None:
    woken: list[str] = []
    asked: list[tuple[str, str]] = []
    listener = asyncio.create_task(
        store.listen(lambda: woken.append("wake"), lambda t, by: asked.append((t, by)))
    )
    try:
        await async_wait_for(lambda: woken, what="the first wake on listening")
        other = new_store(server, database, "other")
        await other.open()
        try:
            woken.clear()
            await other.create("n1", "p", "r")
            await async_wait_for(lambda: woken, what="a wake for new work")
            await store.claim("holder", 1, 30.0)
            found = await other.cancel("n1", "ops (fiedler_cancel_task)")
            assert found is not None and found[0].status == "RUNNING" and not found[1]
            await async_wait_for(lambda: asked, what="the cancel notice")
            assert asked == [("n1", "ops (fiedler_cancel_task)")]
            assert await store.renew("holder", {"n1": 1}, 30.0) == {
                "n1": "ops (fiedler_cancel_task)"
            }
        finally:
            await other.close()
    finally:
        listener.cancel()


async def test_outages_are_said_without_the_password(server: PostgresServer) -> None:
    database = server.create_database()
    wrong = parse(server.uri(database).replace(server.password, "not-the-password-1f3a"))
    refused = PostgresTaskStore(wrong, timeout_s=3)
    with pytest.raises(StoreUnavailableError, match="password authentication failed") as exc:
        await refused.open()
    assert "not-the-password-1f3a" not in str(exc.value) and not refused.ok

    store = new_store(server, database)
    await store.open()
    try:
        await store.create("kept", "p", "r")
        server.stop()
        problem = await store.check()
        assert problem is not None and not store.ok
        assert server.password not in problem
        with pytest.raises(StoreUnavailableError):
            await store.get("kept")
        server.start()  # the same address: as after a failover
        assert await async_wait_for(lambda: _healthy(store), timeout=30, what="healthy again")
        task = await store.get("kept")
        assert task is not None and task.status == "PENDING"
    finally:
        await store.close()


async def _healthy(store: PostgresTaskStore) -> bool:
    return await store.check() is None


async def test_nul_characters_are_stored_as_replacement_characters(
    store: PostgresTaskStore,
) -> None:
    """PostgreSQL text cannot hold NUL; the SQLite store can: nothing fails on it."""
    task, created = await store.create("nul", "a\x00b", "r\x00", "request:r\x00:k")
    assert created and task.prompt == "a\ufffdb" and task.requester_id == "r\ufffd"
    again, created = await store.create("other", "a\x00b", "r\x00", "request:r\x00:k")
    assert not created and again.task_id == "nul"
    assert await store.get("nul\x00") is None
    assert await store.recent(requester_id="r\x00") == [task]
    assert [c.task.task_id for c in await store.claim("a", 1, 30.0)] == ["nul"]
    done = await store.finish("nul", "COMPLETED", "x\x00y", None, owner="a", generation=1)
    assert done is not None and done.result_payload == "x\ufffdy"
    assert await store.cancel("nul\x00", "o\x00") is None
