"""Running tasks: ``PENDING -> RUNNING -> COMPLETED | FAILED``.

A bounded number of runners take task ids from one queue. The queue is fed by new tasks
and by a sweep of the store, at start and then periodically, for tasks that are not yet
terminal and not already queued or running here: that is how tasks left ``PENDING`` or
``RUNNING`` by a crash are picked up again, and how a task whose start could not be written
(the disk was briefly unavailable) is retried. Only this process writes the store, and it
tracks what it holds, so no task runs twice at the same time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mads.core import channels
from mads.fiedler.announcer import Announcer
from mads.fiedler.contract import CONTRACT, TASK_STATUS_CHANNEL, TaskStatus
from mads.fiedler.providers import Provider, ProviderError
from mads.fiedler.store import COMPLETED, FAILED, RUNNING, StoreUnavailableError, Task, TaskStore


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

    # -- feeding ---------------------------------------------------------------------------

    def submit(self, task_id: str) -> None:
        if task_id not in self._held:
            self._held.add(task_id)
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
                await self.process(task_id)
            except StoreUnavailableError as exc:
                # The task stays PENDING/RUNNING in the store; a later sweep retries it.
                self.log.error("Task %s could not be recorded: %s", task_id, exc)
            except Exception:
                self.log.exception("Task %s: unexpected error", task_id)
            finally:
                self._held.discard(task_id)

    # -- one task --------------------------------------------------------------------------

    async def process(self, task_id: str) -> None:
        task = await self.store.start(task_id)
        if task is None:
            return  # unknown or already finished
        self._changed(task)
        seq = 0

        def emit(delta: str) -> None:
            nonlocal seq
            seq += 1
            self.announcer.announce(
                channels.stream(task_id),
                {"task_id": task_id, "seq": seq, "delta": delta, "done": False},
                conversation_id=task_id,
            )

        outcome: tuple[TaskStatus, str | None, str | None]
        try:
            result = await self.provider.answer(task.prompt, emit)
        except ProviderError as exc:
            outcome = (FAILED, None, str(exc))
        except Exception as exc:
            self.log.exception("Task %s: the %s provider failed", task_id, self.provider.name)
            outcome = (FAILED, None, f"internal error in the {self.provider.name} provider: {exc}")
        else:
            outcome = (COMPLETED, result, None)
        finished = await self.store.finish(task_id, *outcome)
        if finished is None:
            return
        self._changed(finished)
        self.announcer.announce(
            channels.stream(task_id),
            {
                "task_id": task_id,
                "seq": seq + 1,
                "done": True,
                "status": finished.status,
                "error_details": finished.error_details,
            },
            conversation_id=task_id,
        )

    def _changed(self, task: Task) -> None:
        self.log.info(CONTRACT.log_line("status", task_id=task.task_id, status=task.status))
        if task.status == FAILED:
            self.log.info("Task %s failed: %s", task.task_id, task.error_details)
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
        if task.status == FAILED:
            payload["error_details"] = task.error_details
        self.announcer.announce(TASK_STATUS_CHANNEL, payload, conversation_id=task.task_id)
