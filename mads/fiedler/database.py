"""Keeping the task store open and its health visible.

Opening is tried at start and, when it fails (a volume not mounted yet, wrong permissions,
PostgreSQL not reachable yet), again every few seconds — Fiedler stays up and says why in
``Database Status: ERROR (<reason>)`` instead of exiting. Once open, a real query keeps the
status line and readiness honest; while it fails, ``/readyz`` says so and relayed requests
wait in their stream (see ``service.py``).

The guide's line, ``Initialized SQLite state database at <path>...``, is the SQLite store's
alone; the PostgreSQL store's names its host and database (never the URI or a password).
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
                    "Cannot open the %s at %s: %s; retrying every %g s",
                    self.what,
                    self.store.location,
                    exc,
                    self.retry_s,
                )
            return False
        self.opened.set()
        if self.store.shared:
            self.log.info(CONTRACT.log_line("database_shared", location=self.store.location))
        else:
            self.log.info(CONTRACT.log_line("database", path=self.store.location))
        return True

    @property
    def what(self) -> str:
        """How log lines name the store."""
        if self.store.shared:
            return f"{self.store.kind} task store"
        return f"{self.store.kind} state database"

    async def run(self) -> None:
        """Open when not yet open; then check health periodically (feeds readiness)."""
        while not await self.try_open():
            await asyncio.sleep(self.retry_s)
        previous: str | None = None
        while True:
            problem = await self.store.check()
            if problem != previous:
                if problem:
                    self.log.error("%s at %s: %s", self.what, self.store.location, problem)
                else:
                    self.log.info("%s at %s is OK again", self.what, self.store.location)
                previous = problem
            await asyncio.sleep(self.retry_s)

    def ready(self) -> bool:
        return self.store.ok

    async def status_line(self) -> StatusLine:
        problem = await self.store.check()
        if problem is None:
            return StatusLine(label=LABEL, value="OK", ok=True)
        return StatusLine(label=LABEL, value=f"ERROR ({problem})", ok=False, detail=problem)
