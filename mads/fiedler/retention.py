"""The retention of finished tasks: what has been kept long enough is deleted, a little at a
time, and the space it held given back.

Every ``FIEDLER_RETENTION_INTERVAL_S`` (and once the store opens) the pruner deletes the
finished tasks (COMPLETED, FAILED, CANCELLED) past the retention — finished more than
``FIEDLER_RETENTION_MAX_AGE_S`` ago, or older than the newest
``FIEDLER_RETENTION_MAX_TASKS`` finished ones — in batches of :data:`BATCH` tasks, each its
own short transaction with a pause after it, so the store keeps serving the worker and the
tools between them. PENDING and RUNNING tasks are never deleted. Then the store gives the
space back (:meth:`~mads.fiedler.store.TaskStore.reclaim`).
"""

from __future__ import annotations

import asyncio
import logging

from mads.fiedler.store import Retention, StoreUnavailableError, TaskStore

BATCH = 500
"""Most tasks deleted by one transaction."""
PAUSE_S = 0.05
"""The pause between two batches: room for the worker's and the tools' own statements."""


class Pruner:
    def __init__(
        self,
        store: TaskStore,
        retention: Retention,
        logger: logging.Logger,
        interval_s: float,
        batch: int = BATCH,
    ) -> None:
        self.store = store
        self.retention = retention
        self.log = logger
        self.interval_s = interval_s
        self.batch = batch
        self.pruned = 0
        """Tasks deleted since start (a metric)."""

    def describe(self) -> str:
        """The retention in words, for the log."""
        parts = []
        if self.retention.max_age_s is not None:
            parts.append(f"for {self.retention.max_age_s:g} s after they finish")
        if self.retention.max_tasks is not None:
            parts.append(f"at most the newest {self.retention.max_tasks}")
        return " and ".join(parts) if parts else "all of them"

    async def prune(self) -> int:
        """One pass: batches until none is left past the retention, then the space given
        back. Returns how many tasks were deleted."""
        deleted = 0
        while True:
            count = await self.store.prune(self.retention, self.batch)
            deleted += count
            self.pruned += count
            if count < self.batch:
                break
            await asyncio.sleep(PAUSE_S)
        if deleted:
            await self.store.reclaim()
            self.log.info(
                "Deleted %d finished task(s) past the retention (%s)", deleted, self.describe()
            )
        return deleted

    async def run(self) -> None:
        """A pass every :attr:`interval_s`, from when the store is open; a pass the store
        cannot serve is tried at the next (the store's outage is reported on its own)."""
        if self.retention.keeps_everything:
            return
        self.log.info("Keeping finished tasks %s", self.describe())
        while True:
            try:
                await self.prune()
            except StoreUnavailableError as exc:
                self.log.debug("Retention pass skipped: %s", exc)
            await asyncio.sleep(self.interval_s)
