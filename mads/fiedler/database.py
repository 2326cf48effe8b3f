"""Keeping the task store open and its health visible.

Opening is tried at start and, when it fails (a volume not mounted yet, wrong permissions),
again every few seconds — Fiedler stays up and says why in ``Database Status: ERROR
(<reason>)`` instead of exiting. Once open, a real query on a fresh connection keeps the
status line and readiness honest.
"""

from __future__ import annotations

import asyncio
import logging

from mads.core.status import StatusLine
from mads.fiedler.contract import CONTRACT, DATABASE_LABEL
from mads.fiedler.store import StoreUnavailableError, TaskStore

LABEL = DATABASE_LABEL


class Database:
    def __init__(self, store: TaskStore, logger: logging.Logger, retry_s: float = 2.0) -> None:
        self.store = store
        self.log = logger
        self.retry_s = retry_s
        self.opened = asyncio.Event()
        self._open_error: str | None = None

    async def try_open(self) -> bool:
        if self.opened.is_set():
            return True
        try:
            await self.store.open()
        except StoreUnavailableError as exc:
            if str(exc) != self._open_error:  # once per distinct reason, not every retry
                self._open_error = str(exc)
                self.log.error(
                    "Cannot open the SQLite state database at %s: %s; retrying every %g s",
                    self.store.path,
                    exc,
                    self.retry_s,
                )
            return False
        self.opened.set()
        self.log.info(CONTRACT.log_line("database", path=self.store.path))
        return True

    async def run(self) -> None:
        """Open when not yet open; then check health periodically (feeds readiness)."""
        while not await self.try_open():
            await asyncio.sleep(self.retry_s)
        previous: str | None = None
        while True:
            problem = await self.store.check()
            if problem != previous:
                if problem:
                    self.log.error("SQLite state database at %s: %s", self.store.path, problem)
                else:
                    self.log.info("SQLite state database at %s is OK again", self.store.path)
                previous = problem
            await asyncio.sleep(self.retry_s)

    def ready(self) -> bool:
        return self.store.ok

    async def status_line(self) -> StatusLine:
        problem = await self.store.check()
        if problem is None:
            return StatusLine(label=LABEL, value="OK", ok=True)
        return StatusLine(label=LABEL, value=f"ERROR ({problem})", ok=False, detail=problem)
