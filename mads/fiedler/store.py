"""Fiedler's task store: SQLite in WAL mode, written by one thread.

All statements run on a single thread that owns the connection, so the event loop never
blocks on disk. That thread also groups the writes that queue up while it is busy into one
transaction (each in its own savepoint, so one failing statement does not undo the others):
with ``synchronous=FULL`` a commit costs one fsync, and under load many tasks share it. A
caller's ``await`` returns only after its transaction has committed — "stored" means on disk.
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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from mads.core.errors import MadError
from mads.fiedler.contract import TaskStatus

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = (
    TaskStatus.PENDING,
    TaskStatus.RUNNING,
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
)
MAX_BATCH = 256

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
)
SCHEMA_VERSION = len(MIGRATIONS)

COLUMNS = (
    "task_id, status, prompt, requester_id, result_payload, error_details, attempts, "
    "created_at, updated_at"
)


class StoreUnavailableError(MadError, RuntimeError):
    """The database cannot be used right now; the message says why, in one line."""


@dataclass(frozen=True)
class Task:
    task_id: str
    status: TaskStatus
    prompt: str
    requester_id: str
    result_payload: str | None
    error_details: str | None
    attempts: int
    created_at: str
    updated_at: str


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = f"{type(exc).__module__}.{type(exc).__name__}".removeprefix("builtins.")
    return f"{name}: {text}" if text else name


def cancelled_by(by: str, *, before_running: bool) -> str:
    """The ``error_details`` of a cancelled task: who cancelled it, and when."""
    return f"cancelled by {by} " + ("before it ran" if before_running else "while running")


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


def connect(path: str) -> sqlite3.Connection:
    """Open (creating the parent directory and file) and migrate the database."""
    parent = Path(path).parent
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(f"unable to open database file: {parent} is not a directory")
    parent.mkdir(parents=True, exist_ok=True)
    check_writable(Path(path))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch the journal to WAL (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection) -> int:
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
    return SCHEMA_VERSION


class _Writer(threading.Thread):
    """The one thread that touches the connection; runs operations in grouped commits."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(name="fiedler-sqlite", daemon=True)
        self.conn = conn
        self.jobs: queue.SimpleQueue[tuple[Operation, concurrent.futures.Future[Any]] | None]
        self.jobs = queue.SimpleQueue()

    def submit(self, op: Operation) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.jobs.put((op, future))
        return future

    def stop(self) -> None:
        self.jobs.put(None)

    def run(self) -> None:
        try:
            while True:
                job = self.jobs.get()
                if job is None:
                    return
                batch = [job]
                stop = False
                while len(batch) < MAX_BATCH:
                    try:
                        more = self.jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                self._run_batch(batch)
                if stop:
                    return
        finally:
            with contextlib.suppress(Exception):
                self.conn.close()

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


class TaskStore:
    def __init__(self, path: str, logger: logging.Logger | None = None) -> None:
        self.path = path
        self.log = logger or logging.getLogger("fiedler")
        self._writer: _Writer | None = None
        self.last_error: str | None = "not opened yet"

    @property
    def ok(self) -> bool:
        return self._writer is not None and self.last_error is None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Open and migrate; raises :class:`StoreUnavailableError` with the reason."""
        if self._writer is not None:
            return
        try:
            conn = await asyncio.to_thread(connect, self.path)
        except (sqlite3.Error, OSError) as exc:
            self.last_error = describe(exc)
            raise StoreUnavailableError(self.last_error) from None
        self._writer = _Writer(conn)
        self._writer.start()
        self.last_error = None

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop()
            await asyncio.to_thread(writer.join, 10)

    async def _run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StoreUnavailableError(f"task store not open: {self.last_error}")
        try:
            return await asyncio.wrap_future(self._writer.submit(op))
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
        """Store a new PENDING task; with a ``request_key`` already stored, return that task
        instead (``created`` False) — a redelivered request makes no second task."""

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
        """The newest tasks first, optionally only in one status or from one requester."""
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

    async def start(self, task_id: str) -> Task | None:
        """PENDING (or RUNNING left by a crash) -> RUNNING; None when the task is unknown or
        already finished. A RUNNING task whose cancellation was asked for before a crash is
        CANCELLED instead (the returned task says so)."""

        def op(conn: sqlite3.Connection) -> Task | None:
            stamp = now()
            cursor = conn.execute(
                "UPDATE tasks SET status = 'CANCELLED', updated_at = ?, "
                "error_details = 'cancelled by ' || cancel_requested_by || ' while running' "
                "WHERE task_id = ? AND status = 'RUNNING' AND cancel_requested_by IS NOT NULL",
                (stamp, task_id),
            )
            if cursor.rowcount == 1:
                return _fetch(conn, task_id)
            cursor = conn.execute(
                "UPDATE tasks SET status = 'RUNNING', attempts = attempts + 1, updated_at = ? "
                "WHERE task_id = ? AND status IN ('PENDING', 'RUNNING')",
                (stamp, task_id),
            )
            if cursor.rowcount != 1:
                return None
            return _fetch(conn, task_id)

        return await self._run(op)

    async def finish(
        self, task_id: str, status: TaskStatus, result: str | None, error: str | None
    ) -> Task | None:
        """RUNNING -> COMPLETED | FAILED | CANCELLED; None if the task was not RUNNING."""
        status = TaskStatus(status)
        if not status.terminal:
            raise ValueError(f"{status} is not a terminal status")

        def op(conn: sqlite3.Connection) -> Task | None:
            cursor = conn.execute(
                "UPDATE tasks SET status = ?, result_payload = ?, error_details = ?, "
                "updated_at = ? WHERE task_id = ? AND status = 'RUNNING'",
                (status, result, error, now(), task_id),
            )
            if cursor.rowcount != 1:
                return None
            return _fetch(conn, task_id)

        return await self._run(op)

    async def cancel(self, task_id: str, by: str) -> tuple[Task, bool] | None:
        """Cancel a task: a PENDING one at once (it never runs); for a RUNNING one the
        request is recorded (the worker aborts it, and a restart cancels instead of running
        it again). Returns the task as it now is — its status says what happened (terminal
        ones are left as they were) — and whether it was cancelled just now; None when it
        is unknown."""
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

    async def cancel_requested(self, task_id: str) -> str | None:
        """Who asked for this RUNNING task to be cancelled, if anyone."""

        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT cancel_requested_by FROM tasks WHERE task_id = ?", (task_id,)
            ).fetchone()
            return None if row is None else row[0]

        return await self._run(op)

    async def unfinished(self, limit: int = 10_000) -> list[tuple[str, TaskStatus]]:
        """``(task_id, status)`` of tasks not yet terminal, oldest first (what a restart
        must pick up)."""
        rows = await self._run(
            lambda conn: conn.execute(
                "SELECT task_id, status FROM tasks WHERE status IN ('PENDING', 'RUNNING') "
                "ORDER BY rowid LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [(str(task_id), TaskStatus(status)) for task_id, status in rows]

    async def counts(self) -> dict[TaskStatus, int]:
        sql = "SELECT status, count(*) FROM tasks GROUP BY status"
        rows = await self._run(lambda conn: conn.execute(sql).fetchall())
        found = dict(rows)
        return {status: int(found.get(status, 0)) for status in TaskStatus}
