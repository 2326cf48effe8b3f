"""Fiedler's SQLite task store: one file in WAL mode, written by one thread, one replica.

All statements run on a single thread that owns the connection, so the event loop never
blocks on disk. That thread also groups the writes that queue up while it is busy into one
transaction (each in its own savepoint, so one failing statement does not undo the others):
with ``synchronous=FULL`` a commit costs one fsync, and under load many tasks share it. A
caller's ``await`` returns only after its transaction has committed — "stored" means on disk.

Only one Fiedler process writes the file, so a lease found in it when the store opens was
held by an earlier run that is gone: opening voids those leases, and the tasks they held are
claimed again at once instead of after their expiry.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from mads.fiedler.contract import TaskStatus
from mads.fiedler.store import (
    FINISHED_SQL,
    SCHEMA_VERSION,
    CancelAsked,
    Claim,
    Retention,
    StoreUnavailableError,
    Task,
    Wake,
    cancelled_by,
    describe,
    iso,
    now,
    written_by,
)

MAX_BATCH = 256
INCREMENTAL = 2
"""``PRAGMA auto_vacuum``'s value for incremental: the file can give free pages back."""

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]

# Each entry moves the schema one version up; never edit an entry once released.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE tasks (
        task_id        TEXT PRIMARY KEY,
        status         TEXT NOT NULL
                       CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED')),
        prompt         TEXT NOT NULL,
        requester_id   TEXT NOT NULL,
        request_key    TEXT UNIQUE,
        result_payload TEXT,
        error_details  TEXT,
        attempts       INTEGER NOT NULL DEFAULT 0,
        created_at     TEXT NOT NULL,
        updated_at     TEXT NOT NULL
    );
    CREATE INDEX tasks_by_status ON tasks (status);
    CREATE INDEX tasks_by_requester ON tasks (requester_id);
    """,
    # 2: CANCELLED, and who asked for a running task to be cancelled (kept across a crash,
    # so a restart cancels it instead of running it again). SQLite cannot change a CHECK in
    # place: the table is rebuilt, rows kept.
    """
    CREATE TABLE tasks_v2 (
        task_id        TEXT PRIMARY KEY,
        status         TEXT NOT NULL
                       CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
        prompt         TEXT NOT NULL,
        requester_id   TEXT NOT NULL,
        request_key    TEXT UNIQUE,
        result_payload TEXT,
        error_details  TEXT,
        attempts       INTEGER NOT NULL DEFAULT 0,
        created_at     TEXT NOT NULL,
        updated_at     TEXT NOT NULL,
        cancel_requested_by TEXT
    );
    INSERT INTO tasks_v2 (task_id, status, prompt, requester_id, request_key, result_payload,
                          error_details, attempts, created_at, updated_at)
        SELECT task_id, status, prompt, requester_id, request_key, result_payload,
               error_details, attempts, created_at, updated_at FROM tasks ORDER BY rowid;
    DROP TABLE tasks;
    ALTER TABLE tasks_v2 RENAME TO tasks;
    CREATE INDEX tasks_by_status ON tasks (status);
    CREATE INDEX tasks_by_requester ON tasks (requester_id);
    """,
    # 3: leases. The store hands work out the way the shared one does: a claim holds a task
    # under an owner, an expiry (seconds since the epoch) and a generation, the fencing
    # token a finish must present.
    """
    ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
    ALTER TABLE tasks ADD COLUMN lease_generation INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN lease_expires_at REAL;
    UPDATE tasks SET lease_generation = attempts;
    """,
    # 4: finished tasks by when they finished, for the retention's deletes.
    """
    CREATE INDEX tasks_finished ON tasks (updated_at)
        WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED');
    """,
)
assert len(MIGRATIONS) == SCHEMA_VERSION, "each schema version has its SQLite migration"

COLUMNS = (
    "task_id, status, prompt, requester_id, result_payload, error_details, attempts, "
    "created_at, updated_at, lease_owner, lease_generation"
)
CLAIMABLE = (
    "(status = 'PENDING' OR (status = 'RUNNING' "
    "AND (lease_expires_at IS NULL OR lease_expires_at < :expired_before)))"
)
"""Tasks a claim may take: waiting, or running under a lease that was let go (NULL) or
expired (before ``:expired_before``; 0 when only let-go leases may be taken)."""


def _row(row: tuple[Any, ...] | None) -> Task | None:
    if row is None:
        return None
    task_id, status, *rest = row
    return Task(task_id, TaskStatus(status), *rest)


def _fetch(conn: sqlite3.Connection, task_id: str) -> Task | None:
    sql = f"SELECT {COLUMNS} FROM tasks WHERE task_id = ?"
    return _row(conn.execute(sql, (task_id,)).fetchone())


def check_writable(path: Path) -> None:
    """Name the path, this process's uid and the fix when SQLite could not write here.

    SQLite itself only says "unable to open database file"; the usual cause is a bind
    mount owned by root while Fiedler runs as an unprivileged user."""
    candidates = [path.parent, *(p for p in (path, Path(f"{path}-wal")) if p.exists())]
    for candidate in candidates:
        if os.access(candidate, os.W_OK):
            continue
        uid = os.getuid()
        info = candidate.stat()
        raise PermissionError(
            f"{candidate} is not writable by uid {uid} (it belongs to uid {info.st_uid}, "
            f"mode {stat.S_IMODE(info.st_mode):04o}); fix: chown {uid} {candidate} on the "
            "host, or mount a named volume there"
        )


class Opened(NamedTuple):
    conn: sqlite3.Connection
    found: int
    """The schema version found before migrating (0: a new file)."""
    incremental: bool
    """The file gives the pages of deleted rows back (``auto_vacuum=INCREMENTAL``)."""


def incremental_when_new(conn: sqlite3.Connection) -> bool:
    """Make a new file one that can give the pages of deleted tasks back to the file system
    (``auto_vacuum=INCREMENTAL``: only before its first table). Returns whether the file is
    one; a file made before is rebuilt later, once (:meth:`SQLiteTaskStore.reclaim`)."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL:
        return True
    if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] != 0:
        return False
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    return True


def connect(path: str) -> Opened:
    """Open (creating the parent directory and file) and migrate the database."""
    parent = Path(path).parent
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(f"unable to open database file: {parent} is not a directory")
    parent.mkdir(parents=True, exist_ok=True)
    check_writable(Path(path))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        incremental = incremental_when_new(conn)  # first: a new file takes it before all else
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch the journal to WAL (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        found = migrate(conn)
        # One writer: a lease in the file belongs to an earlier run, which is gone.
        conn.execute("UPDATE tasks SET lease_expires_at = NULL WHERE status = 'RUNNING'")
    except BaseException:
        conn.close()
        raise
    return Opened(conn, found, incremental)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION` in one transaction; returns the version
    found."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        current = int(row[0] or 0)
        if current > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"database schema version {current} is newer than this Fiedler "
                f"(knows up to {SCHEMA_VERSION})"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version - 1].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return current


Job = tuple[Operation, "concurrent.futures.Future[Any]", bool]
"""An operation, who awaits it, and whether it runs alone, outside any transaction."""


class _Writer(threading.Thread):
    """The one thread that touches the connection; runs operations in grouped commits, and
    the few that cannot run in a transaction (a checkpoint) alone between them."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(name="fiedler-sqlite", daemon=True)
        self.conn = conn
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()

    def submit(self, op: Operation, *, alone: bool = False) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.jobs.put((op, future, alone))
        return future

    def stop(self) -> None:
        self.jobs.put(None)

    def run(self) -> None:
        try:
            held: Job | None = None  # a job taken while gathering a batch it cannot join
            while True:
                job = held if held is not None else self.jobs.get()
                held = None
                if job is None:
                    return
                op, future, alone = job
                if alone:
                    self._run_alone(op, future)
                    continue
                batch = [(op, future)]
                stop = False
                while len(batch) < MAX_BATCH:
                    try:
                        more = self.jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    if more[2]:
                        held = more
                        break
                    batch.append(more[:2])
                self._run_batch(batch)
                if stop:
                    return
        finally:
            with contextlib.suppress(Exception):
                self.conn.close()

    def _run_alone(self, op: Operation, future: concurrent.futures.Future[Any]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(op(self.conn))
        except sqlite3.Error as exc:
            future.set_exception(exc)

    def _run_batch(self, batch: list[tuple[Operation, concurrent.futures.Future[Any]]]) -> None:
        live = [(op, f) for op, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        outcomes: list[tuple[bool, Any]] = []
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            for op, _future in live:
                self.conn.execute("SAVEPOINT op")
                try:
                    outcomes.append((True, op(self.conn)))
                    self.conn.execute("RELEASE op")
                except sqlite3.Error as exc:
                    self.conn.execute("ROLLBACK TO op")
                    self.conn.execute("RELEASE op")
                    outcomes.append((False, exc))
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            for _op, future in live:
                future.set_exception(exc)
            return
        for (_op, future), (ok, value) in zip(live, outcomes, strict=True):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


class SQLiteTaskStore:
    """The default store: the guide's file, for one Fiedler replica."""

    kind = "SQLite"
    shared = False

    def __init__(self, path: str, logger: logging.Logger | None = None) -> None:
        self.path = path
        self.location = path
        self.log = logger or logging.getLogger("fiedler")
        self._writer: _Writer | None = None
        self.last_error: str | None = "not opened yet"
        self._incremental = False

    @property
    def ok(self) -> bool:
        return self._writer is not None and self.last_error is None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Open and migrate; raises :class:`StoreUnavailableError` with the reason."""
        if self._writer is not None:
            return
        try:
            conn, found, self._incremental = await asyncio.to_thread(connect, self.path)
        except (sqlite3.Error, OSError) as exc:
            self.last_error = describe(exc)
            raise StoreUnavailableError(self.last_error) from None
        if found != SCHEMA_VERSION:
            self.log.info(
                "Migrated the SQLite task store at %s from schema version %d to %d",
                self.path,
                found,
                SCHEMA_VERSION,
            )
        self._writer = _Writer(conn)
        self._writer.start()
        self.last_error = None

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop()
            await asyncio.to_thread(writer.join, 10)

    async def _run(self, op: Callable[[sqlite3.Connection], T], *, alone: bool = False) -> T:
        if self._writer is None:
            raise StoreUnavailableError(f"task store not open: {self.last_error}")
        try:
            return await asyncio.wrap_future(self._writer.submit(op, alone=alone))
        except sqlite3.Error as exc:
            self.last_error = describe(exc)
            raise StoreUnavailableError(self.last_error) from None

    async def check(self) -> str | None:
        """A real query on a fresh read-only connection: None when healthy, else the reason.

        A fresh connection notices what the long-lived one cannot (a deleted file, a volume
        gone read-only or unmounted)."""
        if self._writer is None:
            return self.last_error or "not opened"
        try:
            await asyncio.to_thread(self._probe)
        except (sqlite3.Error, OSError) as exc:
            self.last_error = describe(exc)
            return self.last_error
        self.last_error = None
        return None

    def _probe(self) -> None:
        uri = f"{Path(self.path).resolve().as_uri()}?mode=rw"
        conn = sqlite3.connect(uri, uri=True, timeout=2.0)
        try:
            version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"unexpected schema version {version}")
            conn.execute("SELECT count(*) FROM tasks WHERE status = 'PENDING'").fetchone()
        finally:
            conn.close()

    # -- tasks -----------------------------------------------------------------------------

    async def create(
        self, task_id: str, prompt: str, requester_id: str, request_key: str | None = None
    ) -> tuple[Task, bool]:
        def op(conn: sqlite3.Connection) -> tuple[Task, bool]:
            stamp = now()
            cursor = conn.execute(
                "INSERT INTO tasks (task_id, status, prompt, requester_id, request_key, "
                "created_at, updated_at) VALUES (?, 'PENDING', ?, ?, ?, ?, ?) "
                "ON CONFLICT (request_key) DO NOTHING",
                (task_id, prompt, requester_id, request_key, stamp, stamp),
            )
            created = cursor.rowcount == 1
            if created:
                task = _fetch(conn, task_id)
            else:
                task = _row(
                    conn.execute(
                        f"SELECT {COLUMNS} FROM tasks WHERE request_key = ?", (request_key,)
                    ).fetchone()
                )
            assert task is not None
            return task, created

        return await self._run(op)

    async def get(self, task_id: str) -> Task | None:
        return await self._run(lambda conn: _fetch(conn, task_id))

    async def recent(
        self, status: TaskStatus | None = None, requester_id: str | None = None, limit: int = 50
    ) -> list[Task]:
        where: list[str] = []
        params: list[object] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if requester_id is not None:
            where.append("requester_id = ?")
            params.append(requester_id)
        sql = f"SELECT {COLUMNS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY rowid DESC LIMIT ?"
        params.append(limit)
        rows = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        return [task for task in map(_row, rows) if task is not None]

    async def counts(self) -> dict[TaskStatus, int]:
        sql = "SELECT status, count(*) FROM tasks GROUP BY status"
        rows = await self._run(lambda conn: conn.execute(sql).fetchall())
        found = dict(rows)
        return {status: int(found.get(status, 0)) for status in TaskStatus}

    async def cancel(self, task_id: str, by: str) -> tuple[Task, bool] | None:
        stamp = now()

        def op(conn: sqlite3.Connection) -> tuple[Task, bool] | None:
            cursor = conn.execute(
                "UPDATE tasks SET status = 'CANCELLED', error_details = ?, updated_at = ? "
                "WHERE task_id = ? AND status = 'PENDING'",
                (cancelled_by(by, before_running=True), stamp, task_id),
            )
            now_cancelled = cursor.rowcount == 1
            conn.execute(
                "UPDATE tasks SET cancel_requested_by = ? "
                "WHERE task_id = ? AND status = 'RUNNING' AND cancel_requested_by IS NULL",
                (by, task_id),
            )
            task = _fetch(conn, task_id)
            return None if task is None else (task, now_cancelled)

        return await self._run(op)

    async def unfinished(self, limit: int = 10_000) -> list[tuple[str, TaskStatus]]:
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT task_id, status FROM tasks WHERE {CLAIMABLE} ORDER BY rowid LIMIT :limit",
                {"expired_before": time.time(), "limit": limit},
            ).fetchall()
        )
        return [(str(task_id), TaskStatus(status)) for task_id, status in rows]

    async def backlog(self) -> tuple[int, float]:
        row = await self._run(
            lambda conn: conn.execute(
                "SELECT count(*), min(created_at) FROM tasks WHERE status = 'PENDING'"
            ).fetchone()
        )
        count, oldest = int(row[0]), row[1]
        if not count or oldest is None:
            return 0, 0.0
        created = datetime.fromisoformat(str(oldest).replace("Z", "+00:00"))
        return count, max(0.0, time.time() - created.timestamp())

    # -- leases ----------------------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        limit: int,
        lease_s: float,
        exclude: Collection[str] = (),
        *,
        take_over: bool = True,
    ) -> list[Claim]:
        skip = set(exclude)

        def op(conn: sqlite3.Connection) -> list[Claim]:
            moment = time.time()
            found = conn.execute(
                "SELECT task_id, status, lease_owner, cancel_requested_by FROM tasks "
                f"WHERE {CLAIMABLE} ORDER BY rowid LIMIT :limit",
                {"expired_before": moment if take_over else 0, "limit": limit + len(skip)},
            ).fetchall()
            picked = [row for row in found if row[0] not in skip][:limit]
            stamp = now()
            claims: list[Claim] = []
            for task_id, status, previous, cancel_by in picked:
                if status == "RUNNING" and cancel_by is not None:
                    conn.execute(
                        "UPDATE tasks SET status = 'CANCELLED', error_details = ?, "
                        "updated_at = ?, lease_owner = ?, lease_generation = lease_generation + 1,"
                        " lease_expires_at = NULL WHERE task_id = ?",
                        (cancelled_by(cancel_by, before_running=False), stamp, owner, task_id),
                    )
                else:
                    conn.execute(
                        "UPDATE tasks SET status = 'RUNNING', attempts = attempts + 1, "
                        "updated_at = ?, lease_owner = ?, lease_generation = lease_generation + 1,"
                        " lease_expires_at = ? WHERE task_id = ?",
                        (stamp, owner, moment + lease_s, task_id),
                    )
                task = _fetch(conn, task_id)
                assert task is not None
                claims.append(Claim(task, previous if status == "RUNNING" else None))
            return claims

        return await self._run(op)

    async def renew(
        self, owner: str, held: Mapping[str, int], lease_s: float
    ) -> dict[str, str | None]:
        def op(conn: sqlite3.Connection) -> dict[str, str | None]:
            until = time.time() + lease_s
            renewed: dict[str, str | None] = {}
            for task_id, generation in held.items():
                row = conn.execute(
                    "UPDATE tasks SET lease_expires_at = ? WHERE task_id = ? "
                    "AND status = 'RUNNING' AND lease_owner = ? AND lease_generation = ? "
                    "RETURNING cancel_requested_by",
                    (until, task_id, owner, generation),
                ).fetchone()
                if row is not None:
                    renewed[task_id] = row[0]
            return renewed

        return await self._run(op)

    async def finish(
        self,
        task_id: str,
        status: TaskStatus,
        result: str | None,
        error: str | None,
        *,
        owner: str,
        generation: int,
    ) -> Task | None:
        status = TaskStatus(status)
        if not status.terminal:
            raise ValueError(f"{status} is not a terminal status")

        def op(conn: sqlite3.Connection) -> Task | None:
            cursor = conn.execute(
                "UPDATE tasks SET status = ?, result_payload = ?, error_details = ?, "
                "updated_at = ?, lease_expires_at = NULL WHERE task_id = ? "
                "AND status = 'RUNNING' AND lease_owner = ? AND lease_generation = ?",
                (status, result, error, now(), task_id, owner, generation),
            )
            task = _fetch(conn, task_id)
            if cursor.rowcount == 1 or written_by(task, status, owner, generation):
                return task
            return None

        return await self._run(op)

    async def release(self, owner: str, held: Mapping[str, int]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            for task_id, generation in held.items():
                conn.execute(
                    "UPDATE tasks SET lease_expires_at = NULL WHERE task_id = ? "
                    "AND status = 'RUNNING' AND lease_owner = ? AND lease_generation = ?",
                    (task_id, owner, generation),
                )

        await self._run(op)

    # -- retention -------------------------------------------------------------------------

    async def prune(self, retention: Retention, limit: int) -> int:
        finished_before = (
            None
            if retention.max_age_s is None
            else iso(datetime.fromtimestamp(time.time() - retention.max_age_s, UTC))
        )

        def op(conn: sqlite3.Connection) -> int:
            deleted = 0
            if finished_before is not None:
                deleted += conn.execute(
                    "DELETE FROM tasks WHERE rowid IN (SELECT rowid FROM tasks "
                    f"WHERE {FINISHED_SQL} AND updated_at < ? ORDER BY updated_at LIMIT ?)",
                    (finished_before, limit),
                ).rowcount
            if retention.max_tasks is not None and deleted < limit:
                deleted += conn.execute(
                    "DELETE FROM tasks WHERE rowid IN (SELECT rowid FROM tasks "
                    f"WHERE {FINISHED_SQL} ORDER BY updated_at DESC LIMIT ? OFFSET ?)",
                    (limit - deleted, retention.max_tasks),
                ).rowcount
            return deleted

        return await self._run(op)

    async def reclaim(self) -> None:
        """Free pages go back to the file system (``incremental_vacuum``), then the
        write-ahead log is checkpointed and emptied, so the file shrinks now rather than at
        some later checkpoint. A file made before it could do so is first rebuilt, once
        (``VACUUM``: the store waits meanwhile, and the disk needs room for a copy)."""
        if not self._incremental:
            began = time.monotonic()
            self.log.info(
                "Rebuilding the SQLite task store at %s once (VACUUM), so that it gives the "
                "space of deleted tasks back; it waits meanwhile",
                self.path,
            )

            def rebuild(conn: sqlite3.Connection) -> None:
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                conn.execute("VACUUM")

            await self._run(rebuild, alone=True)
            self._incremental = True
            self.log.info(
                "Rebuilt the SQLite task store at %s in %.1f s", self.path, time.monotonic() - began
            )

        def op(conn: sqlite3.Connection) -> None:
            # executescript runs it to its end (execute would free one page per step)
            conn.executescript("PRAGMA incremental_vacuum;")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

        await self._run(op, alone=True)

    async def listen(self, wake: Wake, cancel_asked: CancelAsked) -> None:
        """Nothing to hear: this process is the store's only writer."""
        await asyncio.Event().wait()
