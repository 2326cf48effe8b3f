"""The task store in-process: grouped commits, transitions, idempotency, migrations."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

import pytest

from mads.fiedler.store import SCHEMA_VERSION, StoreUnavailableError, TaskStore


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
    started = await asyncio.gather(*(store.start(i) for i in ids))
    assert {t.status for t in started if t} == {"RUNNING"}
    await asyncio.gather(*(store.finish(i, "COMPLETED", "OK", None) for i in ids))
    # Another connection (another process would see the same) reads every row back.
    conn = sqlite3.connect(store.path)
    rows = conn.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall()
    assert rows == [("COMPLETED", 500)]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_transitions_only_move_forward(store: TaskStore) -> None:
    task, _ = await store.create("t1", "prompt", "r")
    assert task.status == "PENDING" and task.attempts == 0
    assert await store.finish("t1", "COMPLETED", "x", None) is None  # not RUNNING yet
    running = await store.start("t1")
    assert running is not None and running.attempts == 1
    again = await store.start("t1")  # a crash left it RUNNING: it may start again
    assert again is not None and again.attempts == 2
    done = await store.finish("t1", "FAILED", None, "why")
    assert done is not None and (done.status, done.error_details) == ("FAILED", "why")
    assert await store.start("t1") is None
    assert await store.finish("t1", "COMPLETED", "late", None) is None
    assert await store.start("unknown") is None
    assert await store.unfinished() == []


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
    from mads.fiedler.store import MIGRATIONS

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
