"""The task store Fiedler works against, whichever database holds it.

Two stores implement :class:`TaskStore`: SQLite (``mads/fiedler/sqlite_store.py``, the
default: one file, one writer, one replica) and PostgreSQL
(``mads/fiedler/postgres_store.py``: shared by any number of replicas). Both keep the same
schema versions, and both hand work out the same way, so the worker has one code path:

- a replica **claims** claimable tasks (``PENDING``, or ``RUNNING`` under a lease that has
  expired) and holds each under a **lease**: its owner id, an expiry it renews while the
  task runs, and a **generation** that every claim increments (the fencing token);
- **finishing is fenced**: the result is written only while the task is still ``RUNNING``
  under the same owner and generation, so a replica that lost its lease (it stalled, and
  another took the task over) cannot overwrite what the new holder wrote;
- a cancellation is recorded in the store and reaches the holder wherever it was asked
  (the store's notifications, and the answer to each lease renewal).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from mads.core.errors import MadError
from mads.fiedler.contract import TaskStatus

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = (
    TaskStatus.PENDING,
    TaskStatus.RUNNING,
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
)

FINISHED = tuple(status for status in TaskStatus if status.terminal)
"""The states a retention may delete a task in: never a PENDING or RUNNING one."""
FINISHED_SQL = "status IN ('COMPLETED', 'FAILED', 'CANCELLED')"
"""Both stores' condition for a finished task, word for word the condition of their index of
finished tasks (SQLite uses a partial index only for a query that states its condition)."""
assert f"status IN ({', '.join(repr(str(s)) for s in FINISHED)})" == FINISHED_SQL

SCHEMA_VERSION = 4
"""Both stores: 1 tasks, 2 ``CANCELLED`` and ``cancel_requested_by``, 3 leases (owner,
expiry, generation), 4 an index of finished tasks by when they finished (the retention's).
A store at a newer version than this Fiedler knows is refused."""


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
    lease_owner: str | None = None
    """The replica that holds (or last held) the task's lease."""
    lease_generation: int = 0
    """How many times the task has been claimed: the fencing token of the current lease."""


@dataclass(frozen=True)
class Claim:
    """A task this replica now holds (``RUNNING``), or ended ``CANCELLED`` on claiming
    because its cancellation had been asked for while its earlier holder ran it."""

    task: Task
    taken_over_from: str | None = None
    """The replica whose expired lease this claim replaced (None: the task was PENDING)."""


@dataclass(frozen=True)
class Retention:
    """Which finished tasks are deleted: those that finished more than ``max_age_s`` ago,
    and those beyond the newest ``max_tasks`` finished ones (None: no such limit)."""

    max_age_s: float | None = None
    max_tasks: int | None = None

    @property
    def keeps_everything(self) -> bool:
        return self.max_age_s is None and self.max_tasks is None


Wake = Callable[[], None]
"""Called when there may be new work to claim."""
CancelAsked = Callable[[str, str], None]
"""Called with ``(task_id, by)`` when a cancellation of a running task was recorded."""


class TaskStore(Protocol):
    kind: str
    """``SQLite`` or ``PostgreSQL``: how the store names itself in log lines."""
    location: str
    """Where it is, safe to log: the file's path, or host and database (never a password)."""
    shared: bool
    """True when several replicas may use the store at once."""
    last_error: str | None

    @property
    def ok(self) -> bool:
        """Open, and the last check found it healthy."""
        ...

    async def open(self) -> None:
        """Connect and migrate; raises :class:`StoreUnavailableError` with the reason."""
        ...

    async def close(self) -> None: ...

    async def check(self) -> str | None:
        """A real query: None when healthy, else the reason (one line)."""
        ...

    async def create(
        self, task_id: str, prompt: str, requester_id: str, request_key: str | None = None
    ) -> tuple[Task, bool]:
        """Store a new PENDING task; with a ``request_key`` already stored, return that task
        instead (``created`` False): a redelivered or retried request makes no second task."""
        ...

    async def get(self, task_id: str) -> Task | None: ...

    async def recent(
        self, status: TaskStatus | None = None, requester_id: str | None = None, limit: int = 50
    ) -> list[Task]:
        """The newest tasks first, optionally only in one status or from one requester."""
        ...

    async def counts(self) -> dict[TaskStatus, int]: ...

    async def cancel(self, task_id: str, by: str) -> tuple[Task, bool] | None:
        """Cancel a task: a PENDING one at once (it never runs); for a RUNNING one the
        request is recorded and its holder told. Returns the task as it now is and whether
        it was cancelled just now; None when it is unknown."""
        ...

    async def unfinished(self, limit: int = 10_000) -> list[tuple[str, TaskStatus]]:
        """``(task_id, status)`` of the tasks a claim could take now, oldest first."""
        ...

    async def backlog(self) -> tuple[int, float]:
        """How many tasks are PENDING, and the age in seconds of the oldest (0 when none)."""
        ...

    async def claim(
        self,
        owner: str,
        limit: int,
        lease_s: float,
        exclude: Collection[str] = (),
        *,
        take_over: bool = True,
    ) -> list[Claim]:
        """Take up to ``limit`` claimable tasks, oldest first, under leases of ``lease_s``
        seconds held by ``owner``: each becomes RUNNING (``attempts`` + 1, generation + 1),
        or CANCELLED if its cancellation was asked for while an earlier holder ran it.
        Claimable: PENDING, RUNNING under a lease let go (:meth:`release`, or voided at
        open), and, with ``take_over``, RUNNING under a lease that expired. ``exclude``:
        tasks the caller still runs (their leases may have lapsed while the store was
        unreachable; they are renewed, not claimed again)."""
        ...

    async def renew(
        self, owner: str, held: Mapping[str, int], lease_s: float
    ) -> dict[str, str | None]:
        """Extend the leases ``owner`` holds (``task_id -> generation``). Returns the tasks
        still held, each with who asked for its cancellation (or None); a task missing from
        the answer is no longer this owner's."""
        ...

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
        """RUNNING -> COMPLETED | FAILED | CANCELLED, fenced: only while ``owner`` still
        holds the lease of ``generation``. None when refused (the lease passed on, or the
        task is not RUNNING). Writing the same outcome again under the same lease returns
        the task (a retry after a lost reply is not a refusal)."""
        ...

    async def release(self, owner: str, held: Mapping[str, int]) -> None:
        """Let the leases go at once (a replica stopping): the tasks stay RUNNING and
        another replica, or the next start, claims them without waiting for the expiry."""
        ...

    async def prune(self, retention: Retention, limit: int) -> int:
        """Delete up to ``limit`` finished tasks past ``retention``, the longest finished
        first, in one short transaction; never a PENDING or RUNNING task. Returns how many
        were deleted (fewer than ``limit``: none is left past the retention)."""
        ...

    async def reclaim(self) -> None:
        """Give the space deleted tasks held back where the database does not do so on its
        own (SQLite's file; PostgreSQL's autovacuum needs no help)."""
        ...

    async def listen(self, wake: Wake, cancel_asked: CancelAsked) -> None:
        """Until cancelled: call ``wake`` when another replica stored new work and
        ``cancel_asked`` when it recorded a cancellation. A store used by one replica only
        has nothing to tell and just waits."""
        ...


def now() -> str:
    return iso(datetime.now(UTC))


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``: how every timestamp is shown."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = f"{type(exc).__module__}.{type(exc).__name__}".removeprefix("builtins.")
    return f"{name}: {text}" if text else name


def cancelled_by(by: str, *, before_running: bool) -> str:
    """The ``error_details`` of a cancelled task: who cancelled it, and when."""
    return f"cancelled by {by} " + ("before it ran" if before_running else "while running")


def written_by(task: Task | None, status: TaskStatus, owner: str, generation: int) -> bool:
    """The task already ended ``status`` under this very lease: a finish that is retried
    after its first reply was lost (the write had committed), not one that is refused."""
    return (
        task is not None
        and task.status == status
        and task.lease_owner == owner
        and task.lease_generation == generation
    )
