"""The connections table: who is on the bus and how recently they were heard from.

Any valid envelope from a sender counts as that sender's heartbeat. A MAD is ``HEALTHY``
while heard from within ``stale_after`` heartbeat periods, ``STALE`` after that, and
``DISCONNECTED`` after ``disconnected_after`` periods. Status is computed when asked, so it
is exact at the moment of the question; :meth:`ConnectionTable.transitions` reports changes
for the log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict

from mads.rogers.contract import ConnectionStatus

HEALTHY, STALE, DISCONNECTED = (
    ConnectionStatus.HEALTHY,
    ConnectionStatus.STALE,
    ConnectionStatus.DISCONNECTED,
)
STATUSES = tuple(ConnectionStatus)


class ConnectionView(TypedDict):
    mad_id: str
    status: str
    last_heartbeat: str
    first_seen: str


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Entry:
    first_seen: datetime
    last_seen: datetime
    last_seen_mono: float
    reported: ConnectionStatus = HEALTHY


class ConnectionTable:
    def __init__(
        self,
        heartbeat_s: float,
        *,
        stale_after: int = 3,
        disconnected_after: int = 12,
        max_entries: int = 1000,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_after * heartbeat_s
        self.disconnected_s = disconnected_after * heartbeat_s
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._wall = wall
        self._entries: dict[str, _Entry] = {}

    def saw(self, mad_id: str) -> None:
        now = self._monotonic()
        entry = self._entries.get(mad_id)
        if entry is None:
            if len(self._entries) >= self.max_entries:
                self._evict_oldest()
            wall = self._wall()
            self._entries[mad_id] = _Entry(first_seen=wall, last_seen=wall, last_seen_mono=now)
            return
        entry.last_seen_mono = now
        entry.last_seen = self._wall()

    def _evict_oldest(self) -> None:
        oldest = min(self._entries, key=lambda k: self._entries[k].last_seen_mono)
        del self._entries[oldest]

    def _status(self, entry: _Entry, now: float) -> ConnectionStatus:
        silent = now - entry.last_seen_mono
        if silent > self.disconnected_s:
            return DISCONNECTED
        if silent > self.stale_s:
            return STALE
        return HEALTHY

    def status_of(self, mad_id: str) -> ConnectionStatus | None:
        entry = self._entries.get(mad_id)
        return None if entry is None else self._status(entry, self._monotonic())

    def snapshot(self) -> list[ConnectionView]:
        now = self._monotonic()
        return [
            ConnectionView(
                mad_id=mad_id,
                status=self._status(entry, now),
                last_heartbeat=iso_utc(entry.last_seen),
                first_seen=iso_utc(entry.first_seen),
            )
            for mad_id, entry in sorted(self._entries.items())
        ]

    def counts(self) -> dict[ConnectionStatus, int]:
        now = self._monotonic()
        counts = dict.fromkeys(STATUSES, 0)
        for entry in self._entries.values():
            counts[self._status(entry, now)] += 1
        return counts

    def transitions(self) -> list[tuple[str, ConnectionStatus, ConnectionStatus]]:
        """``(mad_id, old, new)`` for every status change since the last call."""
        now = self._monotonic()
        changes: list[tuple[str, ConnectionStatus, ConnectionStatus]] = []
        for mad_id, entry in self._entries.items():
            status = self._status(entry, now)
            if status != entry.reported:
                changes.append((mad_id, entry.reported, status))
                entry.reported = status
        return changes
