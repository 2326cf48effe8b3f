"""Running tasks: ``PENDING -> RUNNING -> COMPLETED | FAILED``, or ``CANCELLED``.

A bounded number of runners take task ids from one queue. The queue is fed by new tasks
and by a sweep of the store, at start and then periodically, for tasks that are not yet
terminal and not already queued or running here: that is how tasks left ``PENDING`` or
``RUNNING`` by a crash are picked up again, and how a task whose start could not be written
(the disk was briefly unavailable) is retried. Only this process writes the store, and it
tracks what it holds, so no task runs twice at the same time.

Cancelling a running task cancels the asyncio task of its provider call (for the
OpenAI-compatible provider that closes the HTTP stream) and ends it ``CANCELLED``; the runner
then takes the next task. The request is also in the store, so a task whose cancellation was
asked for before a crash is cancelled, not run again, when the sweep picks it up.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
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
    StoreUnavailableError,
    Task,
    TaskStore,
    cancelled_by,
)


class Worker:
    def __init__(
        self,
        store: TaskStore,
        provider: Provider,
        announcer: Announcer,
        logger: logging.Logger,
        *,
        concurrency: int,
        sweep_interval: float = 5.0,
    ) -> None:
        self.store = store
        self.provider = provider
        self.announcer = announcer
        self.log = logger
        self.concurrency = concurrency
        self.sweep_interval = sweep_interval
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._held: set[str] = set()  # queued or running in this process
        self._calls: dict[str, asyncio.Task[str]] = {}  # provider calls running now
        self._cancels: dict[str, str] = {}  # who asked to cancel a task this process holds
        self._done: dict[str, asyncio.Event] = {}
        self._traces: dict[str, Any] = {}  # the trace a queued task continues
        self.chunks = ChunkFeed()  # each task's chunks, for clients that asked for progress
        self.status_changes: collections.Counter[str] = collections.Counter()
        self._queued_at: dict[str, float] = {}  # queued here, not started yet (monotonic)

    # -- cancelling ------------------------------------------------------------------------

    def request_cancel(self, task_id: str, by: str) -> bool:
        """Abort ``task_id``'s provider call if it runs here (or as soon as it starts);
        True when this process holds the task."""
        if task_id not in self._held:
            return False
        self._cancels.setdefault(task_id, by)
        call = self._calls.get(task_id)
        if call is not None:
            call.cancel()
        return True

    async def wait_done(self, task_id: str, timeout: float) -> None:
        """Until this process no longer holds ``task_id`` (or ``timeout`` seconds)."""
        if task_id not in self._held:
            return
        event = self._done.setdefault(task_id, asyncio.Event())
        waiter = asyncio.create_task(event.wait())
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            waiter.cancel()

    # -- feeding ---------------------------------------------------------------------------

    def submit(self, task_id: str, trace_context: Any = None) -> None:
        """Queue a task; ``trace_context`` (the request that created it) is what its run
        continues, so the provider's calls are in the caller's trace."""
        if task_id not in self._held:
            self._held.add(task_id)
            if trace_context is not None:
                self._traces[task_id] = trace_context
            self._queued_at[task_id] = time.monotonic()
            self._queue.put_nowait(task_id)

    async def sweep(self, *, first: bool = False) -> int:
        """Queue every unfinished task this process does not hold; returns how many."""
        found = 0
        for task_id, status in await self.store.unfinished():
            if task_id in self._held:
                continue
            found += 1
            if first:
                self.log.info("Resuming task %s left %s by an earlier run", task_id, status)
            self.submit(task_id)
        return found

    async def run(self) -> None:
        """The runners and the sweep, for the life of the process."""
        runners = [asyncio.create_task(self._runner()) for _ in range(self.concurrency)]
        try:
            first = True
            while True:
                try:
                    found = await self.sweep(first=first)
                    if first and found:
                        self.log.info("Recovered %d unfinished task(s) from an earlier run", found)
                    first = False
                except StoreUnavailableError as exc:
                    self.log.warning("Cannot look for unfinished tasks: %s", exc)
                await asyncio.sleep(self.sweep_interval)
        finally:
            for runner in runners:
                runner.cancel()
            await asyncio.gather(*runners, return_exceptions=True)

    async def _runner(self) -> None:
        while True:
            task_id = await self._queue.get()
            try:
                with tracing.within(self._traces.pop(task_id, None), f"fiedler task {task_id}"):
                    await self.process(task_id)
            except StoreUnavailableError as exc:
                # The task stays PENDING/RUNNING in the store; a later sweep retries it.
                self.log.error("Task %s could not be recorded: %s", task_id, exc)
            except Exception:
                self.log.exception("Task %s: unexpected error", task_id)
            finally:
                self._held.discard(task_id)
                self._cancels.pop(task_id, None)
                event = self._done.pop(task_id, None)
                if event is not None:
                    event.set()

    # -- one task --------------------------------------------------------------------------

    # -- figures -----------------------------------------------------------------------------

    def queue_depth(self) -> int:
        """Tasks queued here and not started yet."""
        return len(self._queued_at)

    def oldest_queued_s(self) -> float:
        """How long the task queued longest here has waited to start (0 when none waits)."""
        if not self._queued_at:
            return 0.0
        return max(0.0, time.monotonic() - min(self._queued_at.values()))

    def running(self) -> int:
        return len(self._calls)

    async def process(self, task_id: str) -> None:
        self._queued_at.pop(task_id, None)
        task = await self.store.start(task_id)
        if task is None:
            return  # unknown or already finished
        self.changed(task)
        if task.status == CANCELLED:  # asked for before a crash: cancelled, not run again
            self.end_stream(task, 0)
            return
        seq = 0

        def emit(delta: str) -> None:
            nonlocal seq
            seq += 1
            self._chunk(task_id, {"task_id": task_id, "seq": seq, "delta": delta, "done": False})

        outcome = await self._answer(task, emit)
        finished = await self.store.finish(task_id, *outcome)
        if finished is None:
            return
        self.changed(finished)
        self.end_stream(finished, seq)

    async def _answer(self, task: Task, emit: Any) -> tuple[TaskStatus, str | None, str | None]:
        """The provider's answer, as the task's outcome; CANCELLED when its cancellation
        was asked for while it ran."""
        call = asyncio.create_task(self.provider.answer(task.prompt, emit))
        self._calls[task.task_id] = call
        if task.task_id in self._cancels:
            call.cancel()
        try:
            await asyncio.wait({call})
        except asyncio.CancelledError:  # this runner is stopping: so is the call
            call.cancel()
            raise
        finally:
            self._calls.pop(task.task_id, None)
        if call.cancelled():
            by = self._cancels.get(task.task_id) or "an unknown caller"
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
