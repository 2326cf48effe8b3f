"""The SQLite task store in-process: grouped commits, transitions under leases, idempotency,
migrations."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

import pytest

from mads.fiedler.sqlite_store import SQLiteTaskStore as TaskStore
from mads.fiedler.store import SCHEMA_VERSION, StoreUnavailableError

ME = "replica-a"


@pytest.fixture
async def store(tmp_path: Path):
    store = TaskStore(str(tmp_path / "nested" / "dir" / "fiedler_state.db"))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_concurrent_writes_are_all_committed(store: TaskStore) -> None:
    ids = [str(uuid.uuid4()) for _ in range(500)]
    created = await asyncio.gather(*(store.create(i, f"p{i}", "r") for i in ids))
    assert all(flag for _task, flag in created)
    claims = await asyncio.gather(*(store.claim(ME, 10, 30.0) for _ in range(50)))
    started = [claim.task for batch in claims for claim in batch]
    assert sorted(t.task_id for t in started) == sorted(ids)
    assert {t.status for t in started} == {"RUNNING"}
    await asyncio.gather(
        *(store.finish(t.task_id, "COMPLETED", "OK", None, owner=ME, generation=1) for t in started)
    )
    # Another connection (another process would see the same) reads every row back.
    conn = sqlite3.connect(store.path)
    rows = conn.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall()
    assert rows == [("COMPLETED", 500)]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_transitions_only_move_forward_under_the_lease(store: TaskStore) -> None:
    task, _ = await store.create("t1", "prompt", "r")
    assert task.status == "PENDING" and task.attempts == 0
    assert await store.finish("t1", "COMPLETED", "x", None, owner=ME, generation=0) is None
    (claim,) = await store.claim(ME, 5, 30.0)
    running = claim.task
    assert (running.status, running.attempts, running.lease_generation) == ("RUNNING", 1, 1)
    assert claim.taken_over_from is None
    assert await store.claim("replica-b", 5, 30.0) == []  # held under a live lease
    assert await store.renew(ME, {"t1": 1}, 30.0) == {"t1": None}
    assert await store.renew("replica-b", {"t1": 1}, 30.0) == {}

    await store.release(ME, {"t1": 1})  # let go: claimable at once, by anyone
    (again,) = await store.claim("replica-b", 5, 30.0)
    assert (again.task.attempts, again.task.lease_generation) == (2, 2)
    assert again.taken_over_from == ME
    # The first holder's lease is gone: its finish is refused, its renewal finds nothing.
    assert await store.finish("t1", "COMPLETED", "late", None, owner=ME, generation=1) is None
    assert await store.renew(ME, {"t1": 1}, 30.0) == {}
    done = await store.finish("t1", "FAILED", None, "why", owner="replica-b", generation=2)
    assert done is not None and (done.status, done.error_details) == ("FAILED", "why")
    # Written again under the same lease (a retry whose first reply was lost): the same.
    retried = await store.finish("t1", "FAILED", None, "why", owner="replica-b", generation=2)
    assert retried == done
    assert await store.claim(ME, 5, 30.0) == []
    assert await store.finish("t1", "COMPLETED", "late", None, owner=ME, generation=2) is None
    assert await store.unfinished() == []


async def test_a_cancel_asked_of_a_lost_holder_is_kept(store: TaskStore) -> None:
    await store.create("t2", "prompt", "r")
    await store.claim(ME, 5, 30.0)
    found = await store.cancel("t2", "ops")
    assert found is not None and found[0].status == "RUNNING" and not found[1]
    assert await store.renew(ME, {"t2": 1}, 30.0) == {"t2": "ops"}  # the holder learns of it
    await store.release(ME, {"t2": 1})  # as if its lease had run out
    assert await store.claim("replica-b", 5, 30.0, exclude=["t2"]) == []  # still run there
    (late,) = await store.claim("replica-b", 5, 30.0)
    # Its holder is gone, its cancellation was asked for: cancelled, not run again.
    assert late.task.status == "CANCELLED" and late.task.attempts == 1
    assert late.task.error_details == "cancelled by ops while running"


async def test_request_key_makes_one_task(store: TaskStore) -> None:
    first, created = await store.create("a", "prompt", "r", request_key="msg-1")
    second, created_again = await store.create("b", "prompt", "r", request_key="msg-1")
    assert created and not created_again
    assert second.task_id == first.task_id == "a"
    assert await store.get("b") is None
    assert (await store.counts())["PENDING"] == 1


async def test_reopening_keeps_data_and_schema(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite")
    store = TaskStore(path)
    await store.open()
    await store.create("kept", "prompt", "r")
    await store.close()
    reopened = TaskStore(path)
    await reopened.open()
    assert (await reopened.get("kept")) is not None
    assert await reopened.check() is None
    await reopened.close()
    conn = sqlite3.connect(path)
    versions = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
    conn.close()


async def test_a_version_1_store_is_upgraded_with_its_tasks(tmp_path: Path) -> None:
    """A store written before CANCELLED existed keeps every task, and then takes one."""
    from mads.fiedler.sqlite_store import MIGRATIONS

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        MIGRATIONS[0]
        + "; CREATE TABLE schema_version (version INTEGER NOT NULL);"
        + " INSERT INTO schema_version VALUES (1);"
        + " INSERT INTO tasks (task_id, status, prompt, requester_id, request_key,"
        + " result_payload, attempts, created_at, updated_at) VALUES"
        + " ('old', 'COMPLETED', 'p', 'r', 'k', 'OK', 1, 't0', 't1'),"
        + " ('waiting', 'PENDING', 'p', 'r', NULL, NULL, 0, 't0', 't0');"
    )
    conn.close()
    store = TaskStore(str(path))
    await store.open()
    try:
        old = await store.get("old")
        assert old is not None and old.status == "COMPLETED" and old.result_payload == "OK"
        found = await store.cancel("waiting", "a test")
        assert found is not None
        cancelled, now_cancelled = found
        assert now_cancelled and cancelled.status == "CANCELLED"
        assert cancelled.error_details == "cancelled by a test before it ran"
        again, created = await store.create("new", "p", "r", "k")
        assert not created and again.task_id == "old"  # the unique request key survived
    finally:
        await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    store = TaskStore(path)
    with pytest.raises(StoreUnavailableError, match="newer than this Fiedler"):
        await store.open()
    assert not store.ok


async def test_closed_store_says_why(tmp_path: Path) -> None:
    store = TaskStore(str(tmp_path / "x.db"))
    with pytest.raises(StoreUnavailableError, match="not open"):
        await store.get("x")
