"""Redis's memory against its limit, as Rogers (the group's one view of the bus) sees it.

Redis runs with ``maxmemory`` and, by default, ``noeviction``: past the limit it refuses
writes — a relayed request, a heartbeat, a client's buffer — with an error, rather than
drop what it holds. So the limit must be seen coming: every :data:`INTERVAL_S` Rogers reads
``INFO memory`` and keeps the figures for ``/metrics`` (``rogers_bus_memory_used_bytes``,
``rogers_bus_memory_max_bytes``; the alert ``MadBusMemoryHigh`` fires on their ratio), and
says in its log when the data passes :data:`WARN_SHARE` of the limit, and when it is back
under it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from mads.core.bus import Bus
from mads.core.errors import BusError

INTERVAL_S = 10.0
WARN_SHARE = 0.8
"""The share of ``maxmemory`` past which Rogers warns (the alert's threshold too)."""


@dataclass(frozen=True)
class BusMemory:
    """Redis's memory as ``INFO memory`` says: what its data takes, and its limit
    (``maxmemory``; 0 when it has none)."""

    used: int
    limit: int

    @classmethod
    def of(cls, info: dict[str, object]) -> BusMemory:
        """From the fields of ``INFO memory``."""
        return cls(used=int(str(info["used_memory"])), limit=int(str(info.get("maxmemory", 0))))


def mib(count: int) -> str:
    return f"{count / 1024**2:.1f} MiB"


class BusMemoryWatch:
    def __init__(self, bus: Bus, logger: logging.Logger, interval_s: float = INTERVAL_S) -> None:
        self.bus = bus
        self.log = logger
        self.interval_s = interval_s
        self.last: BusMemory | None = None
        """The latest reading; None until the first, and while Redis cannot be read."""
        self._high = False

    async def sample(self) -> None:
        try:
            self.last = BusMemory.of(await self.bus.info("memory"))
        except BusError:
            self.last = None  # the bus's own reports say why
            return
        used, limit = self.last.used, self.last.limit
        high = limit > 0 and used >= WARN_SHARE * limit
        if high and not self._high:
            self.log.warning(
                "Redis holds %s of data, %.0f%% of its maxmemory of %s: at the limit it "
                "refuses writes (noeviction); raise spec.redis.maxmemory or find what grows",
                mib(used),
                100 * used / limit,
                mib(limit),
            )
        elif self._high and not high:
            self.log.info(
                "Redis holds %s of data, under %.0f%% of its maxmemory again",
                mib(used),
                100 * WARN_SHARE,
            )
        self._high = high

    async def run(self) -> None:
        while True:
            await self.bus.wait_connected()
            await self.sample()
            await asyncio.sleep(self.interval_s)
