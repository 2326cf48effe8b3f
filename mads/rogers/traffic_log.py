"""The traffic log: ``[Metrics] Received message from sender: <s> on channel: <c>``.

The first message of a sender/channel pair in an interval is logged as it arrives (so the
guide's line appears at once); further messages of that pair are counted and reported as
one summary line when the interval ends. The number of pairs tracked per interval is capped;
beyond the cap messages are counted in one overflow line.

A MAD's own channels are shown as they are, as the guide's step 9 shows them
(``... on channel: mad.fiedler.task.status``). A channel an outside client named through
Grace (``mad.topic.*``), and any channel that is not a plain name of the bus's characters,
is quoted and cut short, like every client-supplied value in a log line.
"""

from __future__ import annotations

import asyncio
import logging
import re

from mads.core import channels
from mads.core.logs import quoted
from mads.rogers.contract import METRICS_LOG

RECEIVED = METRICS_LOG.format(sender="%s", channel="%s")
SUMMARY = "[Metrics] Received %d more message(s) from sender: %s on channel: %s in the last %g s"
OVERFLOW = "[Metrics] Received %d message(s) on further sender/channel pairs in the last %g s"
PLAIN_CHANNEL = re.compile(r"^mad\.[A-Za-z0-9_.:@-]{1,124}$")
CLIENT_NAMED = channels.TOPICS.removesuffix("*")


def shown_channel(channel: str) -> str:
    """``channel`` as a log line shows it: as it is when it is a MAD's own, else quoted."""
    if PLAIN_CHANNEL.match(channel) and not channel.startswith(CLIENT_NAMED):
        return channel
    return quoted(channel)


class TrafficLog:
    def __init__(self, logger: logging.Logger, interval_s: float, max_pairs: int = 500) -> None:
        self.log = logger
        self.interval_s = interval_s
        self.max_pairs = max_pairs
        self._counts: dict[tuple[str, str], int] = {}
        self._overflow = 0

    def saw(self, sender: str, channel: str) -> None:
        key = (sender, channel)
        count = self._counts.get(key)
        if count is not None:
            self._counts[key] = count + 1
        elif len(self._counts) < self.max_pairs:
            self._counts[key] = 0
            self.log.info(RECEIVED, sender, shown_channel(channel))
        else:
            self._overflow += 1

    def flush(self) -> None:
        for (sender, channel), count in self._counts.items():
            if count:
                self.log.info(SUMMARY, count, sender, shown_channel(channel), self.interval_s)
        if self._overflow:
            self.log.info(OVERFLOW, self._overflow, self.interval_s)
        self._counts.clear()
        self._overflow = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.flush()
