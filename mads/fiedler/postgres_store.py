"""Fiedler's PostgreSQL task store: shared by any number of Fiedler replicas.

Statements run through a psycopg 3 connection pool, each on its own autocommit connection
unless it needs a transaction. Replicas claim work with ``FOR UPDATE SKIP LOCKED`` (two
replicas never take the same task, and neither waits for the other), hold it under a lease
timed by the database's clock (replicas' clocks do not matter), and finish it fenced by the
lease's generation. ``LISTEN``/``NOTIFY`` tells the other replicas at once that there is new
work (``fiedler_tasks``) or that a running task is to be cancelled (``fiedler_cancels``);
each replica also looks for work periodically and learns of cancellations when it renews
its leases, so a notification missed during a reconnect delays, never loses, anything.

A connection that broke (PostgreSQL restarted, a failover moved the primary behind the same
address) is not used again: an operation that failed on one has the pool check its idle
connections (dropping the broken ones) and is tried once more. Every operation is safe to
repeat: a task is created under its own id and request key, a finish already written under
the same lease is recognised as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from mads.fiedler.contract import TaskStatus
from mads.fiedler.postgres_schema import migrate
from mads.fiedler.postgres_uri import PostgresTarget
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
    written_by,
)

T = TypeVar("T")
Conn = AsyncConnection[TupleRow]

NEW_WORK = "fiedler_tasks"
CANCELS = "fiedler_cancels"
RECONNECT_S = 4.0
"""How long the pool retries a lost connection (backing off 1 s, 2 s...) before it lets the
attempt go; the next request starts a fresh one. Keeps the pool from backing off for long
once PostgreSQL is back after an outage."""
CHECK_S = 2.0
"""The longest a health check (the status line, readiness) waits for an answer."""
MAX_BATCH = 256
"""Most tasks stored by one statement."""
LISTEN_KEEPALIVE_S = 5.0
"""How long the notification connection may stay silent before a query checks it is alive."""

COLUMNS = (
    "task_id, status, prompt, requester_id, result_payload, error_details, attempts, "
    "created_at, updated_at, lease_owner, lease_generation"
)
CLAIMABLE = (
    "(status = 'PENDING' OR (status = 'RUNNING' "
    "AND (lease_expires_at IS NULL OR lease_expires_at < now())))"
)
"""Tasks a claim may take: waiting, or running under a lease that expired or was let go."""
CLAIMABLE_WITHOUT_TAKE_OVER = (
    "(status = 'PENDING' OR (status = 'RUNNING' AND lease_expires_at IS NULL))"
)
"""Waiting, or running under a lease that was let go: no expired lease is taken over."""
CANCEL_ON_CLAIM = "(picked.was = 'RUNNING' AND picked.cancel_by IS NOT NULL)"
"""A task whose holder was lost after its cancellation was asked for: cancelled, not run."""

CLAIM = """
WITH picked AS (
    SELECT task_id, status AS was, lease_owner AS previous, cancel_requested_by AS cancel_by
    FROM tasks WHERE {claimable} AND NOT (task_id = ANY(%(exclude)s::text[]))
    ORDER BY seq LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks AS t SET
    status = CASE WHEN {cancel} THEN 'CANCELLED' ELSE 'RUNNING' END,
    attempts = t.attempts + CASE WHEN {cancel} THEN 0 ELSE 1 END,
    error_details = CASE WHEN {cancel}
        THEN 'cancelled by ' || picked.cancel_by || ' while running' ELSE t.error_details END,
    lease_owner = %(owner)s,
    lease_generation = t.lease_generation + 1,
    lease_expires_at = CASE WHEN {cancel}
        THEN NULL ELSE now() + make_interval(secs => %(lease_s)s) END,
    updated_at = now()
FROM picked
WHERE t.task_id = picked.task_id
RETURNING t.seq, picked.was, picked.previous, {returning}
"""
RETURNING = ", ".join("t." + column for column in COLUMNS.split(", "))
CLAIMS = {
    take_over: CLAIM.format(claimable=claimable, cancel=CANCEL_ON_CLAIM, returning=RETURNING)
    .strip()
    .encode()
    for take_over, claimable in ((True, CLAIMABLE), (False, CLAIMABLE_WITHOUT_TAKE_OVER))
}
"""The claim statement, with and without taking over expired leases."""


def _task(row: tuple[Any, ...]) -> Task:
    task_id, status, prompt, requester, result, error, attempts, created, updated, *lease = row
    return Task(
        task_id,
        TaskStatus(status),
        prompt,
        requester,
        result,
        error,
        attempts,
        _stamp(created),
        _stamp(updated),
        *lease,
    )


Create = tuple[str, str, str, str | None, "asyncio.Future[tuple[Task, bool]]"]
"""A task waiting to be stored: id, prompt, requester, request key, and who awaits it."""


async def _insert(conn: Conn, *, batch: list[Create]) -> list[tuple[Task, bool]]:
    """Insert ``batch`` in order; an entry whose request key is already stored gets that
    task (``created`` False). One whose own id is already stored was inserted by an earlier
    try of this very statement (the reply was lost, the statement tried again): created."""
    ids = [entry[0] for entry in batch]
    prompts = [entry[1] for entry in batch]
    requesters = [entry[2] for entry in batch]
    keys = [entry[3] for entry in batch]
    cursor = await conn.execute(
        "INSERT INTO tasks (task_id, status, prompt, requester_id, request_key) "
        "SELECT task_id, 'PENDING', prompt, requester_id, request_key "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) WITH ORDINALITY "
        "AS given(task_id, prompt, requester_id, request_key, n) ORDER BY n "
        f"ON CONFLICT DO NOTHING RETURNING {COLUMNS}",
        (ids, prompts, requesters, keys),
    )
    inserted = {task.task_id: task for task in map(_task, await cursor.fetchall())}
    missing = [entry for entry in batch if entry[0] not in inserted]
    found: dict[str, Task] = {}
    if missing:
        cursor = await conn.execute(
            f"SELECT {COLUMNS}, request_key FROM tasks "
            "WHERE task_id = ANY(%s) OR request_key = ANY(%s)",
            ([entry[0] for entry in missing], [entry[3] for entry in missing if entry[3]]),
        )
        for *row, key in await cursor.fetchall():
            task = _task(tuple(row))
            found[task.task_id] = task
            if key is not None:
                found[f"key:{key}"] = task
    outcomes: list[tuple[Task, bool]] = []
    for task_id, _prompt, _requester, key, _waiting in batch:
        if task_id in inserted:
            outcomes.append((inserted[task_id], True))
        elif task_id in found:
            outcomes.append((found[task_id], True))
        else:
            outcomes.append((found[f"key:{key}"], False))
    return outcomes


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL: it is stored as U+FFFD (the same input always maps
    to the same text, so lookups and request keys still match)."""
    return value.replace("\x00", "\ufffd")


def _text_or_none(value: str | None) -> str | None:
    return None if value is None else _text(value)


async def _probe(conn: Conn) -> None:
    cursor = await conn.execute("SELECT max(version) FROM schema_version")
    row = await cursor.fetchone()
    version = row[0] if row else None
    if version != SCHEMA_VERSION:
        raise StoreUnavailableError(f"unexpected schema version {version}")
    await conn.execute("SELECT count(*) FROM tasks WHERE status = 'PENDING'")


def _stamp(value: datetime | str) -> str:
    return iso(value) if isinstance(value, datetime) else value


class PostgresTaskStore:
    """A store shared by every Fiedler replica of a group."""

    kind = "PostgreSQL"
    shared = True

    def __init__(
        self,
        target: PostgresTarget,
        logger: logging.Logger | None = None,
        *,
        pool_size: int = 10,
        timeout_s: float = 10.0,
    ) -> None:
        self.target = target
        self.location = target.location
        self.log = logger or logging.getLogger("fiedler")
        self.pool_size = pool_size
        self.timeout_s = timeout_s
        self._pool: AsyncConnectionPool[Conn] | None = None
        self.last_error: str | None = "not opened yet"
        self._announcing: asyncio.Task[None] | None = None
        self._more_work = False
        self._creates: list[Create] = []
        self._creating: asyncio.Task[None] | None = None

    @property
    def ok(self) -> bool:
        return self._pool is not None and self.last_error is None

    def _describe(self, exc: BaseException) -> str:
        return self.target.redact(describe(exc))

    @property
    def _connection_options(self) -> dict[str, Any]:
        """libpq options every connection gets (over the same ones in the URI, if any)."""
        return {
            "application_name": "fiedler",
            "connect_timeout": max(1, round(min(self.timeout_s, 10))),
        }

    async def _connect(self, **options: Any) -> Conn:
        return await AsyncConnection.connect(self.target.uri, **self._connection_options, **options)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Migrate (once across replicas) and open the pool; raises
        :class:`StoreUnavailableError` with the reason."""
        if self._pool is not None:
            return
        try:
            async with asyncio.timeout(self.timeout_s * 3):
                conn = await self._connect(autocommit=True)
                async with conn:
                    found = await migrate(conn)
        except StoreUnavailableError as exc:
            self.last_error = str(exc)
            raise
        except TimeoutError:
            self.last_error = f"no answer from {self.location} within {self.timeout_s * 3:g} s"
            raise StoreUnavailableError(self.last_error) from None
        except (psycopg.Error, OSError) as exc:
            self.last_error = self._describe(exc)
            raise StoreUnavailableError(self.last_error) from None
        if found != SCHEMA_VERSION:
            self.log.info(
                "Migrated the PostgreSQL task store at %s from schema version %d to %d",
                self.location,
                found,
                SCHEMA_VERSION,
            )
        # The pool says each failed reconnection attempt; Database reports the outage once.
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
        self._pool = AsyncConnectionPool(
            self.target.uri,
            kwargs={"autocommit": True, **self._connection_options},
            min_size=1,
            max_size=self.pool_size,
            open=False,
            timeout=self.timeout_s,
            reconnect_timeout=RECONNECT_S,
            name="fiedler",
        )
        await self._pool.open(wait=False)
        self.last_error = None

    async def close(self) -> None:
        if self._announcing is not None:
            self._announcing.cancel()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close(timeout=5)

    async def _run(self, op: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``op`` on a pooled connection; once more on a fresh one if the connection
        broke under it. Raises :class:`StoreUnavailableError` with the reason."""
        if self._pool is None:
            raise StoreUnavailableError(f"task store not open: {self.last_error}")
        # While the store is known to be down, fail fast: callers retry on their own.
        timeout = self.timeout_s if self.last_error is None else min(self.timeout_s, CHECK_S)
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(timeout), self._pool.connection(timeout) as conn:
                    return await op(conn)
            except (PoolTimeout, TimeoutError):  # before OperationalError: PoolTimeout is one
                waited = f"no answer from {self.location} within {timeout:g} s"
                self.last_error = await self._reason(waited)
            except psycopg.OperationalError as exc:
                if attempt == 1:
                    # The connection broke (a restart, a failover): the pool's others
                    # likely did too. Drop the broken ones, then once more.
                    with contextlib.suppress(psycopg.Error, TimeoutError):
                        async with asyncio.timeout(CHECK_S):
                            await self._pool.check()
                    continue
                self.last_error = self._describe(exc)
            except psycopg.Error as exc:
                self.last_error = self._describe(exc)
            raise StoreUnavailableError(self.last_error) from None
        raise AssertionError("unreachable")

    async def _reason(self, otherwise: str) -> str:
        """Why no connection could be had: a fresh connection's error says it better than
        a timeout; ``otherwise`` when a fresh connection works."""
        try:
            async with asyncio.timeout(CHECK_S):
                conn = await self._connect()
                await conn.close()
        except TimeoutError:
            return otherwise
        except (psycopg.Error, OSError) as failure:
            return self._describe(failure)
        return otherwise

    async def check(self) -> str | None:
        """A real query within :data:`CHECK_S`: through the pool while the store is
        healthy, on a fresh connection once it is not (which also says why it fails)."""
        if self._pool is None:
            return self.last_error or "not opened"
        try:
            async with asyncio.timeout(CHECK_S):
                if self.last_error is None:
                    async with self._pool.connection(timeout=CHECK_S) as conn:
                        await _probe(conn)
                else:
                    async with await self._connect() as conn:
                        await _probe(conn)
        except StoreUnavailableError as exc:
            self.last_error = str(exc)
        except (PoolTimeout, TimeoutError):  # before OSError and psycopg.Error: it is both
            self.last_error = f"no answer from {self.location} within {CHECK_S:g} s"
        except (psycopg.Error, OSError) as exc:
            self.last_error = self._describe(exc)
        else:
            self.last_error = None
        return self.last_error

    # -- tasks -----------------------------------------------------------------------------

    async def create(
        self, task_id: str, prompt: str, requester_id: str, request_key: str | None = None
    ) -> tuple[Task, bool]:
        """Stored with the other creates waiting at that moment, in one statement and one
        commit (as the SQLite store groups its commits): under load, many tasks share a
        round trip and an fsync."""
        waiting: asyncio.Future[tuple[Task, bool]] = asyncio.get_running_loop().create_future()
        entry = (_text(task_id), _text(prompt), _text(requester_id), _text_or_none(request_key))
        self._creates.append((*entry, waiting))
        if self._creating is None or self._creating.done():
            self._creating = asyncio.create_task(self._store_creates())
        return await waiting

    async def _store_creates(self) -> None:
        while self._creates:
            batch = self._creates[:MAX_BATCH]
            del self._creates[:MAX_BATCH]
            try:
                outcomes = await self._run(functools.partial(_insert, batch=batch))
            except StoreUnavailableError as exc:
                for *_entry, waiting in batch:
                    if not waiting.done():
                        waiting.set_exception(StoreUnavailableError(str(exc)))
                continue
            for (*_entry, waiting), outcome in zip(batch, outcomes, strict=True):
                if not waiting.done():
                    waiting.set_result(outcome)
            if any(created for _task, created in outcomes):
                self._announce_new_work()

    def _announce_new_work(self) -> None:
        """``NOTIFY fiedler_tasks`` soon, once for every burst of new tasks: a notification
        in each creating transaction would serialise their commits on PostgreSQL's
        notification queue. Best effort: replicas also look for work periodically."""
        self._more_work = True
        if self._announcing is None or self._announcing.done():
            self._announcing = asyncio.create_task(self._announce())

    async def _announce(self) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute("SELECT pg_notify(%s, '')", (NEW_WORK,))

        while self._more_work:
            self._more_work = False
            with contextlib.suppress(StoreUnavailableError):
                await self._run(op)

    async def get(self, task_id: str) -> Task | None:
        async def op(conn: Conn) -> Task | None:
            cursor = await conn.execute(
                f"SELECT {COLUMNS} FROM tasks WHERE task_id = %s", (_text(task_id),)
            )
            row = await cursor.fetchone()
            return None if row is None else _task(row)

        return await self._run(op)

    async def recent(
        self, status: TaskStatus | None = None, requester_id: str | None = None, limit: int = 50
    ) -> list[Task]:
        async def op(conn: Conn) -> list[Task]:
            cursor = await conn.execute(
                f"SELECT {COLUMNS} FROM tasks "
                "WHERE (%(status)s::text IS NULL OR status = %(status)s) "
                "AND (%(requester)s::text IS NULL OR requester_id = %(requester)s) "
                "ORDER BY seq DESC LIMIT %(limit)s",
                {
                    "status": None if status is None else str(status),
                    "requester": _text_or_none(requester_id),
                    "limit": limit,
                },
            )
            return [_task(row) for row in await cursor.fetchall()]

        return await self._run(op)

    async def counts(self) -> dict[TaskStatus, int]:
        async def op(conn: Conn) -> dict[str, int]:
            cursor = await conn.execute("SELECT status, count(*) FROM tasks GROUP BY status")
            return {str(status): int(n) for status, n in await cursor.fetchall()}

        found = await self._run(op)
        return {status: found.get(status, 0) for status in TaskStatus}

    async def cancel(self, task_id: str, by: str) -> tuple[Task, bool] | None:
        task_id, by = _text(task_id), _text(by)

        async def op(conn: Conn) -> tuple[Task, bool] | None:
            async with conn.transaction():
                cursor = await conn.execute(
                    "UPDATE tasks SET status = 'CANCELLED', error_details = %s, "
                    "updated_at = now() WHERE task_id = %s AND status = 'PENDING' "
                    "RETURNING task_id",
                    (cancelled_by(by, before_running=True), task_id),
                )
                now_cancelled = await cursor.fetchone() is not None
                if not now_cancelled:
                    cursor = await conn.execute(
                        "UPDATE tasks SET cancel_requested_by = "
                        "coalesce(cancel_requested_by, %s) WHERE task_id = %s "
                        "AND status = 'RUNNING' RETURNING cancel_requested_by",
                        (by, task_id),
                    )
                    asked = await cursor.fetchone()
                    if asked is not None:  # the holder hears it on commit
                        notice = json.dumps({"task_id": task_id, "by": asked[0]})
                        await conn.execute("SELECT pg_notify(%s, %s)", (CANCELS, notice))
                cursor = await conn.execute(
                    f"SELECT {COLUMNS} FROM tasks WHERE task_id = %s", (task_id,)
                )
                row = await cursor.fetchone()
            return None if row is None else (_task(row), now_cancelled)

        return await self._run(op)

    async def unfinished(self, limit: int = 10_000) -> list[tuple[str, TaskStatus]]:
        async def op(conn: Conn) -> list[tuple[str, TaskStatus]]:
            cursor = await conn.execute(
                f"SELECT task_id, status FROM tasks WHERE {CLAIMABLE} ORDER BY seq LIMIT %s",
                (limit,),
            )
            return [
                (str(task_id), TaskStatus(status)) for task_id, status in await cursor.fetchall()
            ]

        return await self._run(op)

    async def backlog(self) -> tuple[int, float]:
        async def op(conn: Conn) -> tuple[int, float]:
            cursor = await conn.execute(
                "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) "
                "FROM tasks WHERE status = 'PENDING'"
            )
            row = await cursor.fetchone()
            assert row is not None
            return int(row[0]), max(0.0, float(row[1]))

        return await self._run(op)

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
        params = {"limit": limit, "owner": owner, "lease_s": lease_s, "exclude": list(exclude)}

        async def op(conn: Conn) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(CLAIMS[take_over], params)
            return await cursor.fetchall()

        rows = sorted(await self._run(op), key=lambda row: int(row[0]))
        return [
            Claim(_task(row[3:]), taken_over_from=row[2] if row[1] == "RUNNING" else None)
            for row in rows
        ]

    async def renew(
        self, owner: str, held: Mapping[str, int], lease_s: float
    ) -> dict[str, str | None]:
        async def op(conn: Conn) -> dict[str, str | None]:
            cursor = await conn.execute(
                "UPDATE tasks AS t SET lease_expires_at = now() + make_interval(secs => %s) "
                "FROM unnest(%s::text[], %s::bigint[]) AS held(task_id, generation) "
                "WHERE t.task_id = held.task_id AND t.lease_generation = held.generation "
                "AND t.lease_owner = %s AND t.status = 'RUNNING' "
                "RETURNING t.task_id, t.cancel_requested_by",
                (lease_s, list(held), list(held.values()), owner),
            )
            return {str(task_id): by for task_id, by in await cursor.fetchall()}

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
        result, error = _text_or_none(result), _text_or_none(error)

        async def op(conn: Conn) -> Task | None:
            cursor = await conn.execute(
                "UPDATE tasks SET status = %s, result_payload = %s, error_details = %s, "
                "updated_at = now(), lease_expires_at = NULL WHERE task_id = %s "
                "AND status = 'RUNNING' AND lease_owner = %s AND lease_generation = %s "
                f"RETURNING {COLUMNS}",
                (str(status), result, error, task_id, owner, generation),
            )
            row = await cursor.fetchone()
            if row is not None:
                return _task(row)
            cursor = await conn.execute(
                f"SELECT {COLUMNS} FROM tasks WHERE task_id = %s", (task_id,)
            )
            row = await cursor.fetchone()
            task = None if row is None else _task(row)
            return task if written_by(task, status, owner, generation) else None

        return await self._run(op)

    async def release(self, owner: str, held: Mapping[str, int]) -> None:
        async def op(conn: Conn) -> None:
            async with conn.transaction():
                await conn.execute(
                    "UPDATE tasks AS t SET lease_expires_at = NULL "
                    "FROM unnest(%s::text[], %s::bigint[]) AS held(task_id, generation) "
                    "WHERE t.task_id = held.task_id AND t.lease_generation = held.generation "
                    "AND t.lease_owner = %s AND t.status = 'RUNNING'",
                    (list(held), list(held.values()), owner),
                )
                await conn.execute("SELECT pg_notify(%s, '')", (NEW_WORK,))

        await self._run(op)

    # -- retention -------------------------------------------------------------------------

    async def prune(self, retention: Retention, limit: int) -> int:
        """Replicas pruning at once skip each other's rows (``SKIP LOCKED``) rather than
        wait; the database's clock says what is old."""

        async def op(conn: Conn) -> int:
            deleted = 0
            async with conn.transaction():
                if retention.max_age_s is not None:
                    cursor = await conn.execute(
                        "DELETE FROM tasks WHERE task_id IN (SELECT task_id FROM tasks "
                        f"WHERE {FINISHED_SQL} "
                        "AND updated_at < now() - make_interval(secs => %s) "
                        "ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED)",
                        (retention.max_age_s, limit),
                    )
                    deleted += cursor.rowcount
                if retention.max_tasks is not None and deleted < limit:
                    cursor = await conn.execute(
                        "DELETE FROM tasks WHERE task_id IN (SELECT task_id FROM tasks "
                        f"WHERE {FINISHED_SQL} ORDER BY updated_at DESC "
                        "LIMIT %s OFFSET %s FOR UPDATE SKIP LOCKED)",
                        (limit - deleted, retention.max_tasks),
                    )
                    deleted += cursor.rowcount
            return deleted

        return await self._run(op)

    async def reclaim(self) -> None:
        """Nothing to do: autovacuum makes the space of deleted rows reusable."""

    async def listen(self, wake: Wake, cancel_asked: CancelAsked) -> None:
        """Hear ``fiedler_tasks`` and ``fiedler_cancels`` on a connection of its own,
        reconnecting for as long as it runs; after each (re)connection ``wake`` is called
        once, for whatever was announced while no one listened."""
        delay = 0.5
        while True:
            try:
                conn = await self._connect(autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {NEW_WORK}")
                    await conn.execute(f"LISTEN {CANCELS}")
                    wake()
                    delay = 0.5
                    while True:
                        async for notice in conn.notifies(timeout=LISTEN_KEEPALIVE_S):
                            if notice.channel == CANCELS:
                                asked = json.loads(notice.payload)
                                cancel_asked(str(asked["task_id"]), str(asked["by"]))
                            else:
                                wake()
                        await conn.execute("SELECT 1")  # a silent connection may be dead
            except (psycopg.Error, OSError, ValueError, KeyError) as exc:
                self.log.debug("Task notifications interrupted: %s", self._describe(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
