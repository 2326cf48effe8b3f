"""The retention of finished tasks, on both stores (SQLite, and a real PostgreSQL): with a
retention of one day and tasks back-dated, pruning deletes exactly the finished tasks that
finished before it — in several batches — and never a PENDING or RUNNING one however old;
a count keeps the newest finished ones; SQLite's file shrinks afterwards; and a Fiedler
started with the retention in its environment prunes on its own."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from mads.fiedler.postgres_store import PostgresTaskStore
from mads.fiedler.postgres_uri import parse
from mads.fiedler.retention import Pruner
from mads.fiedler.sqlite_store import SQLiteTaskStore
from mads.fiedler.store import Retention, TaskStore, iso
from tests.support.fiedler import Fiedler
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.waiting import wait_for

DAY_S = 86_400.0
BATCH = 7
"""Small, so every pass below takes several batches."""
LOG = logging.getLogger("fiedler")
BULK = "x" * 4096
"""What each old task's prompt and answer hold, so deleting them frees a measurable space."""


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    yield from postgres_server()


class Backdating(Protocol):
    """Moves tasks' timestamps into the past, straight in the database."""

    def finished_days_ago(self, task_ids: list[str], days: float) -> None: ...


def ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


@dataclass
class SQLiteBackdating:
    path: Path

    def finished_days_ago(self, task_ids: list[str], days: float) -> None:
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            conn.executemany(
                "UPDATE tasks SET created_at = ?, updated_at = ? WHERE task_id = ?",
                [(iso(ago(days + 1)), iso(ago(days)), task_id) for task_id in task_ids],
            )
            conn.commit()
        finally:
            conn.close()


@dataclass
class PostgresBackdating:
    server: PostgresServer
    database: str

    def finished_days_ago(self, task_ids: list[str], days: float) -> None:
        with self.server.connect(self.database) as conn:
            conn.execute(
                "UPDATE tasks SET created_at = %s, updated_at = %s WHERE task_id = ANY(%s)",
                (ago(days + 1), ago(days), task_ids),
            )


@dataclass
class Opened:
    store: TaskStore
    backdating: Backdating
    file: Path | None = None


@pytest.fixture(params=["sqlite", "postgresql"])
async def opened(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opened]:
    if request.param == "sqlite":
        path = tmp_path / "fiedler_state.db"
        store: TaskStore = SQLiteTaskStore(str(path), LOG)
        found = Opened(store, SQLiteBackdating(path), path)
    else:
        server: PostgresServer = request.getfixturevalue("server")
        database = server.create_database()
        store = PostgresTaskStore(parse(server.uri(database)), LOG, pool_size=4, timeout_s=5)
        found = Opened(store, PostgresBackdating(server, database))
    await store.open()
    try:
        yield found
    finally:
        await store.close()


async def make(store: TaskStore, prefix: str, count: int, prompt: str = "p") -> list[str]:
    ids = [f"{prefix}-{n}" for n in range(count)]
    await asyncio.gather(*(store.create(i, prompt, "retention-test") for i in ids))
    return ids


async def run_and_finish(store: TaskStore, ids: list[str], outcome: str) -> None:
    """Claim every PENDING task (``ids`` are all of them) and finish each with ``outcome``."""
    claims = await store.claim("retention-test", len(ids), 60.0)
    assert sorted(c.task.task_id for c in claims) == sorted(ids)
    for claim in claims:
        result, error = (BULK, None) if outcome == "COMPLETED" else (None, BULK)
        finished = await store.finish(
            claim.task.task_id,
            outcome,  # type: ignore[arg-type]
            result,
            error,
            owner="retention-test",
            generation=claim.task.lease_generation,
        )
        assert finished is not None


async def remaining(store: TaskStore) -> set[str]:
    return {task.task_id for task in await store.recent(limit=100_000)}


async def test_a_day_of_retention_deletes_exactly_the_old_finished_tasks(opened: Opened) -> None:
    store = opened.store
    old_completed = await make(store, "old-completed", 40, BULK)
    await run_and_finish(store, old_completed, "COMPLETED")
    old_failed = await make(store, "old-failed", 9, BULK)
    await run_and_finish(store, old_failed, "FAILED")
    old_cancelled = await make(store, "old-cancelled", 5, BULK)
    for task_id in old_cancelled:
        assert await store.cancel(task_id, "a test") is not None
    recent = await make(store, "recent-completed", 6)
    await run_and_finish(store, recent, "COMPLETED")
    old_running = await make(store, "old-running", 3)
    claims = await store.claim("retention-test", 3, 60.0)
    assert sorted(c.task.task_id for c in claims) == sorted(old_running)
    old_pending = await make(store, "old-pending", 4)
    old_finished = old_completed + old_failed + old_cancelled
    opened.backdating.finished_days_ago(old_finished + old_running + old_pending, 2)
    opened.backdating.finished_days_ago(recent, 0.5)
    before = await remaining(store)
    size_before = checkpointed_size(opened.file) if opened.file else 0

    pruner = Pruner(store, Retention(max_age_s=DAY_S), LOG, interval_s=60, batch=BATCH)
    deleted = await pruner.prune()

    assert deleted == len(old_finished) == pruner.pruned
    assert await remaining(store) == before - set(old_finished)
    assert await remaining(store) == set(recent + old_running + old_pending)
    counts = await store.counts()
    assert (counts["PENDING"], counts["RUNNING"]) == (4, 3)
    assert await pruner.prune() == 0  # nothing left past the retention
    if opened.file is not None:
        size_after = opened.file.stat().st_size
        assert size_after < size_before / 2, (size_before, size_after)


async def test_a_count_keeps_the_newest_finished_tasks(opened: Opened) -> None:
    store = opened.store
    finished = await make(store, "finished", 30)
    await run_and_finish(store, finished, "COMPLETED")
    for n, task_id in enumerate(finished):  # finished-0 the oldest, finished-29 the newest
        opened.backdating.finished_days_ago([task_id], (30 - n) / 100)
    waiting = await make(store, "waiting", 5)
    opened.backdating.finished_days_ago(waiting, 3)

    pruner = Pruner(store, Retention(max_tasks=12), LOG, interval_s=60, batch=BATCH)
    assert await pruner.prune() == 18

    assert await remaining(store) == set(finished[18:] + waiting)


def checkpointed_size(path: Path) -> int:
    """The database file's size with everything in it (the write-ahead log checkpointed)."""
    conn = sqlite3.connect(path, timeout=10)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()
    return path.stat().st_size


async def test_a_file_made_before_the_retention_is_rebuilt_once_then_shrinks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file made without incremental vacuum opens as it is (no rebuild holds up the
    start); the first pass that deletes tasks rebuilds it once, and then it shrinks."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE made_before (n INTEGER)")
    conn.commit()
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    conn.close()
    store = SQLiteTaskStore(str(path), LOG)
    await store.open()
    try:
        old = await make(store, "old", 60, BULK)
        await run_and_finish(store, old, "COMPLETED")
        SQLiteBackdating(path).finished_days_ago(old[:30], 2)
        before = checkpointed_size(path)
        pruner = Pruner(store, Retention(max_age_s=DAY_S), LOG, interval_s=60, batch=BATCH)
        with caplog.at_level(logging.INFO, logger="fiedler"):
            assert await pruner.prune() == 30
            middle = path.stat().st_size
            SQLiteBackdating(path).finished_days_ago(old[30:], 2)
            assert await pruner.prune() == 30
    finally:
        await store.close()
    rebuilt = [r.getMessage() for r in caplog.records if "Rebuil" in r.getMessage()]
    assert len(rebuilt) == 2, rebuilt  # "Rebuilding ..." and "Rebuilt ... in N s", once
    assert rebuilt[0].startswith(f"Rebuilding the SQLite task store at {path} once (VACUUM)")
    assert middle < before and path.stat().st_size < middle
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    conn.close()


def test_a_fiedler_with_a_retention_prunes_on_its_own(
    start_fiedler: Callable[..., Fiedler], tmp_path: Path
) -> None:
    path = tmp_path / "data" / "fiedler_state.db"

    async def prepare() -> tuple[list[str], list[str]]:
        store = SQLiteTaskStore(str(path), LOG)
        await store.open()
        try:
            old = await make(store, "stale", 12)
            await run_and_finish(store, old, "COMPLETED")
            pending = await make(store, "waiting", 2)
        finally:
            await store.close()
        return old, pending

    old, pending = asyncio.run(prepare())
    SQLiteBackdating(path).finished_days_ago(old + pending, 3)
    fiedler = start_fiedler(
        {
            "FIEDLER_DB_PATH": str(path),
            "FIEDLER_RETENTION_MAX_AGE_S": str(int(DAY_S)),
            "FIEDLER_RETENTION_INTERVAL_S": "1",
        }
    )
    wait_for(
        lambda: fiedler.rows("task_id LIKE 'stale-%'") == 0,
        timeout=30,
        interval=0.2,
        what="the old finished tasks deleted",
    )
    # The PENDING ones were not deleted: they ran (the built-in responder fails them, its
    # prompt is no operational check) and are finished now, but only just.
    assert fiedler.rows("task_id LIKE 'waiting-%'") == len(pending)
    metrics = httpx.get(f"{fiedler.process.url}/metrics", timeout=10).text
    assert f"fiedler_tasks_pruned_total {len(old)}.0" in metrics
    log = fiedler.process.log_path.read_text()
    assert "Keeping finished tasks for 86400 s after they finish" in log
    assert f"Deleted {len(old)} finished task(s) past the retention" in log
