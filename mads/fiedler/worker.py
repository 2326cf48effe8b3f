"""Running tasks: ``PENDING -> RUNNING -> COMPLETED | FAILED``, or ``CANCELLED``.

The worker claims tasks from the store (:mod:`mads.fiedler.store`), at most
``concurrency`` at a time, and runs each under the lease its claim took: it renews its
leases every third of their length, and writes each outcome fenced by the lease, so a task
completes exactly once whichever replica (or restart) ran it. It claims when a task was
created here, when another replica stored one (the store's notifications), when a runner
comes free, and every ``poll_s`` besides — which is how a task whose holder died (its lease
expired) or whose start could not be written is picked up again.

With the SQLite store this process is the only one: at start, the tasks an earlier run
left unfinished are claimable at once (``Resuming task <id> left RUNNING by an earlier
run``). With PostgreSQL several replicas share the work: a task is taken over only when
its holder's lease expired (``Taking over task <id> from <replica>: its lease expired``).

Cancelling a running task cancels the asyncio task of its provider call (for the
OpenAI-compatible provider that closes the HTTP stream) and ends it ``CANCELLED``. The
request is in the store, so it reaches the holder wherever it was asked: at once through
the store's notifications, at the latest with the next lease renewal. A replica that finds
its lease gone (it stalled, and another replica took the task over) stops the provider
call; its late finish is refused by the store and logged, and changes nothing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from mads.core import channels, tracing
from mads.fiedler.announcer import Announcer
from mads.fiedler.chunks import ChunkFeed
from mads.fiedler.contract import CONTRACT, TASK_STATUS_CHANNEL, TaskStatus
from mads.fiedler.providers import Provider, ProviderError
from mads.fiedler.store import (
    CANCELLED,
    COMPLETED,
    FAILED,
    RUNNING,
    Claim,
    StoreUnavailableError,
    Task,
    TaskStore,
    cancelled_by,
)

RETRY_S = 0.5
"""How soon an outcome or a lease renewal that could not be written (the store is down) is
tried again."""
MAX_TRACES = 10_000

Outcome = tuple[TaskStatus, str | None, str | None]


def replica_id() -> str:
    """This process's name as a lease holder: host (a Pod's name), pid and a random tag,
    so a restarted process never passes for the one before it."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass
class _Held:
    """A task this process holds under a lease."""

    generation: int
    call: asyncio.Task[str] | None = None
    cancel_by: str | None = None
    lost: bool = False
    finishing: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Worker:
    def __init__(
        self,
        store: TaskStore,
        provider: Provider,
        announcer: Announcer,
        logger: logging.Logger,
        *,
        concurrency: int,
        lease_s: float = 15.0,
        poll_s: float = 1.0,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.announcer = announcer
        self.log = logger
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.owner = owner or replica_id()
        self._held: dict[str, _Held] = {}
        self._runners: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._traces: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._store_problem: str | None = None
        self._store_back_at = time.monotonic()
        self.chunks = ChunkFeed()  # each task's chunks, for clients that asked for progress
        self.status_changes: collections.Counter[str] = collections.Counter()
        self._backlog: tuple[int, float] = (0, 0.0)

    # -- feeding ---------------------------------------------------------------------------

    def submit(self, task_id: str, trace_context: Any = None) -> None:
        """A task was stored here: claim work now. ``trace_context`` (the request that
        created it) is what its run continues, when this process runs it."""
        if trace_context is not None:
            self._traces[task_id] = trace_context
            while len(self._traces) > MAX_TRACES:  # tasks another replica ran
                self._traces.popitem(last=False)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # -- cancelling ------------------------------------------------------------------------

    def request_cancel(self, task_id: str, by: str) -> bool:
        """Abort ``task_id``'s provider call if it runs here (or as soon as it starts);
        True when this process holds the task."""
        held = self._held.get(task_id)
        if held is None:
            return False
        if held.cancel_by is None:
            held.cancel_by = by
        if held.call is not None:
            held.call.cancel()
        return True

    async def wait_done(self, task_id: str, timeout: float) -> None:
        """Until this process no longer holds ``task_id`` (or ``timeout`` seconds)."""
        held = self._held.get(task_id)
        if held is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await held.done.wait()

    # -- the loops -------------------------------------------------------------------------

    async def run(self) -> None:
        """Claiming, lease renewal and the store's notifications, for the life of the
        process; at the end the leases still held are let go."""
        await self._recover()
        loops = [
            asyncio.create_task(self._claim_loop()),
            asyncio.create_task(self._renew_loop()),
            asyncio.create_task(self.store.listen(self.wake, self._cancel_asked)),
        ]
        try:
            await asyncio.gather(*loops)
        finally:
            for loop in loops:
                loop.cancel()
            await self._stop_runners()

    async def _recover(self) -> None:
        """Say what an earlier run left (the SQLite store: this process is its only one)."""
        if self.store.shared:
            return
        try:
            found = await self.store.unfinished()
        except StoreUnavailableError as exc:
            self.log.warning("Cannot look for unfinished tasks: %s", exc)
            return
        for task_id, status in found:
            self.log.info("Resuming task %s left %s by an earlier run", task_id, status)
        if found:
            self.log.info("Recovered %d unfinished task(s) from an earlier run", len(found))

    def _may_take_over(self) -> bool:
        """Whether expired leases may be taken over now: not within one lease period of
        this replica's start or of the store's return after an outage, so that holders
        whose leases ran out while the store was away renew them (or write their outcome)
        before anyone else takes their tasks and runs them a second time."""
        return time.monotonic() - self._store_back_at >= self.lease_s

    async def _claim_loop(self) -> None:
        while True:
            self._wake.clear()
            free = self.concurrency - len(self._held)
            if free > 0:
                try:
                    claims = await self.store.claim(
                        self.owner,
                        free,
                        self.lease_s,
                        exclude=list(self._held),
                        take_over=self._may_take_over(),
                    )
                except StoreUnavailableError as exc:
                    self._store_down("Cannot claim tasks", exc)
                else:
                    self._store_up()
                    for claim in claims:
                        self._start(claim)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()

    async def _renew_loop(self) -> None:
        pause = self.lease_s / 3
        while True:
            await asyncio.sleep(pause)
            pause = self.lease_s / 3
            held = {task_id: h.generation for task_id, h in self._held.items() if not h.finishing}
            try:
                renewed = await self.store.renew(self.owner, held, self.lease_s) if held else {}
                self._backlog = await self.store.backlog()
            except StoreUnavailableError as exc:
                self._store_down("Cannot renew task leases", exc)
                pause = min(pause, RETRY_S)
                continue
            self._store_up()
            for task_id, generation in held.items():
                h = self._held.get(task_id)
                if h is None or h.finishing or h.generation != generation:
                    continue  # finished meanwhile
                if task_id not in renewed:
                    self._lose(task_id, h)
                elif renewed[task_id] is not None:
                    self.request_cancel(task_id, str(renewed[task_id]))

    def _cancel_asked(self, task_id: str, by: str) -> None:
        self.request_cancel(task_id, by)

    def _lose(self, task_id: str, held: _Held) -> None:
        held.lost = True
        self.log.warning(
            "Task %s: this replica's lease (generation %d) passed to another replica; "
            "stopping its provider call",
            task_id,
            held.generation,
        )
        if held.call is not None:
            held.call.cancel()

    def _store_down(self, doing: str, exc: StoreUnavailableError) -> None:
        self._store_back_at = time.monotonic()  # no take-over until a lease after it is back
        if str(exc) != self._store_problem:  # once per distinct reason
            self._store_problem = str(exc)
            self.log.warning("%s: %s", doing, exc)

    def _store_up(self) -> None:
        if self._store_problem is not None:
            self._store_problem = None
            self._store_back_at = time.monotonic()

    async def _stop_runners(self) -> None:
        held = {task_id: h.generation for task_id, h in self._held.items()}
        runners = list(self._runners)
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        if held:
            with contextlib.suppress(StoreUnavailableError):
                await self.store.release(self.owner, held)

    # -- one task --------------------------------------------------------------------------

    def _start(self, claim: Claim) -> None:
        task = claim.task
        held = _Held(task.lease_generation)
        self._held[task.task_id] = held
        runner = asyncio.create_task(self._run_claimed(claim, held))
        self._runners.add(runner)

        def done(_runner: asyncio.Task[None]) -> None:
            self._runners.discard(runner)
            if self._held.get(task.task_id) is held:
                del self._held[task.task_id]
            held.done.set()
            self._wake.set()  # a runner came free

        runner.add_done_callback(done)

    async def _run_claimed(self, claim: Claim, held: _Held) -> None:
        task = claim.task
        if claim.taken_over_from is not None and self.store.shared:
            self.log.info(
                "Taking over task %s from %s: its lease expired",
                task.task_id,
                claim.taken_over_from,
            )
        try:
            with tracing.within(
                self._traces.pop(task.task_id, None), f"fiedler task {task.task_id}"
            ):
                await self.process(task, held)
        except Exception:
            self.log.exception("Task %s: unexpected error", task.task_id)

    async def process(self, task: Task, held: _Held) -> None:
        self.changed(task)
        if task.status == CANCELLED:  # asked for while an earlier holder ran it
            self.end_stream(task, 0)
            return
        seq = 0
        task_id = task.task_id

        def emit(delta: str) -> None:
            nonlocal seq
            seq += 1
            self._chunk(task_id, {"task_id": task_id, "seq": seq, "delta": delta, "done": False})

        outcome = await self._answer(task, held, emit)
        finished = await self._finish(task, held, outcome)
        if finished is None:
            return
        self.changed(finished)
        self.end_stream(finished, seq)

    async def _finish(self, task: Task, held: _Held, outcome: Outcome) -> Task | None:
        """Write the outcome under the task's lease, retrying while the store is down;
        None when the store refused it (the lease passed on)."""
        held.finishing = True
        problem: str | None = None
        while True:
            try:
                finished = await self.store.finish(
                    task.task_id, *outcome, owner=self.owner, generation=held.generation
                )
                break
            except StoreUnavailableError as exc:
                if str(exc) != problem:
                    problem = str(exc)
                    self.log.warning(
                        "Task %s: its outcome cannot be written yet (%s); retrying every %g s",
                        task.task_id,
                        exc,
                        RETRY_S,
                    )
                await asyncio.sleep(RETRY_S)
        if finished is None:
            self.log.warning(
                "Task %s: late finish refused: this replica's lease (generation %d) passed "
                "to another replica; the stored outcome stays as it is",
                task.task_id,
                held.generation,
            )
        return finished

    async def _answer(self, task: Task, held: _Held, emit: Any) -> Outcome:
        """The provider's answer, as the task's outcome; CANCELLED when its cancellation
        was asked for (or its lease was lost) while it ran."""
        call = asyncio.create_task(self.provider.answer(task.prompt, emit))
        held.call = call
        if held.cancel_by is not None or held.lost:
            call.cancel()
        try:
            await asyncio.wait({call})
        except asyncio.CancelledError:  # this runner is stopping: so is the call
            call.cancel()
            raise
        finally:
            held.call = None
        if call.cancelled():
            if held.cancel_by is None and held.lost:
                return (CANCELLED, None, "this replica lost the task's lease")
            by = held.cancel_by or "an unknown caller"
            return (CANCELLED, None, cancelled_by(by, before_running=False))
        exc = call.exception()
        if isinstance(exc, ProviderError):
            return (FAILED, None, str(exc))
        if exc is not None:
            self.log.error(
                "Task %s: the %s provider failed", task.task_id, self.provider.name, exc_info=exc
            )
            return (FAILED, None, f"internal error in the {self.provider.name} provider: {exc}")
        return (COMPLETED, call.result(), None)

    # -- figures ---------------------------------------------------------------------------

    def queue_depth(self) -> int:
        """Tasks waiting to start (PENDING in the store), as of the last look."""
        return self._backlog[0]

    def oldest_queued_s(self) -> float:
        """How long the oldest waiting task has waited, as of the last look."""
        return self._backlog[1]

    def running(self) -> int:
        return sum(1 for held in self._held.values() if held.call is not None)

    # -- events ----------------------------------------------------------------------------

    def end_stream(self, finished: Task, seq: int) -> None:
        """The last chunk on the task's stream: done, with its terminal status."""
        task_id = finished.task_id
        self._chunk(
            task_id,
            {
                "task_id": task_id,
                "seq": seq + 1,
                "done": True,
                "status": finished.status,
                "error_details": finished.error_details,
            },
        )

    def _chunk(self, task_id: str, chunk: dict[str, Any]) -> None:
        """On ``mad.stream.<task_id>`` for the bus, and to this process's followers."""
        self.announcer.announce(channels.stream(task_id), chunk, conversation_id=task_id)
        self.chunks.put(task_id, chunk)

    def changed(self, task: Task) -> None:
        """Log and publish a status change (every one, whoever made it)."""
        self.log.info(CONTRACT.log_line("status", task_id=task.task_id, status=task.status))
        self.status_changes[task.status] += 1
        if task.status in (FAILED, CANCELLED):
            self.log.info("Task %s %s: %s", task.task_id, task.status.lower(), task.error_details)
        self.announce_status(task)

    def announce_status(self, task: Task) -> None:
        payload: dict[str, Any] = {
            "task_id": task.task_id,
            "status": task.status,
            "requester_id": task.requester_id,
            "updated_at": task.updated_at,
            "stream_topic": channels.stream(task.task_id),
        }
        if task.status == RUNNING:
            payload["attempt"] = task.attempts
        if task.status in (FAILED, CANCELLED):
            payload["error_details"] = task.error_details
        self.announcer.announce(TASK_STATUS_CHANNEL, payload, conversation_id=task.task_id)
