"""The bus's storage as Rogers sees it: the size of Redis's append-only file, read from
``INFO persistence`` now and then (never on the per-message path), beside the size of the
volume it lives on when the substrate gives that a size."""

from __future__ import annotations

import asyncio
import logging

from mads.core.bus import Bus
from mads.core.errors import BusError


class BusStorage:
    """The latest reading of the bus's append-only file size; None while unknown (the bus
    unreachable, or append-only persistence off)."""

    def __init__(
        self,
        bus: Bus,
        logger: logging.Logger,
        *,
        interval_s: float,
        volume_bytes: int | None = None,
    ) -> None:
        self.bus = bus
        self.log = logger
        self.interval_s = interval_s
        self.volume_bytes = volume_bytes
        self.aof_bytes: int | None = None

    async def read(self) -> None:
        """Take one reading."""
        try:
            persistence = await self.bus.info("persistence")
        except BusError as exc:
            self.aof_bytes = None
            self.log.debug("could not read the bus's persistence: %s", exc)
            return
        enabled = str(persistence.get("aof_enabled", "0")) == "1"
        size = persistence.get("aof_current_size")
        self.aof_bytes = int(size) if enabled and size is not None else None

    async def run(self) -> None:
        while True:
            await self.read()
            await asyncio.sleep(self.interval_s)
