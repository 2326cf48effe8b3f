"""What Grace knows of the tasks it relayed, so that a client polling one costs the owner
nothing while nothing changes.

An owner that runs tasks publishes every change of a task's status on its status channel
(:attr:`~mads.core.contract.TaskTools.status_channel`, Fiedler's ``mad.fiedler.task.status``:
``{"task_id", "status", "updated_at", ...}``). For each task a client is asking about,
:class:`TaskStatuses` keeps the owner's last full answer (its status tool's reply, from a
relayed call) and the newest change published for it. The answer is *fresh*, and is given
again without asking the owner, while

- no change newer than it was published (a task that changes is asked about once per
  change, however many clients poll it);
- the subscription to the status channel has been up since it was read (a change published
  while it was down was not heard: every answer then counts as stale);
- it is final (a finished task changes no more), or younger than :data:`MAX_AGE_S` (an owner
  whose own link to the bus failed may have dropped a change).

Otherwise the owner is asked (one relayed call, shared by everyone asking at that moment).
So every answer is one the owner gave, never one made up here. A task no client has asked
about for :data:`KEEP_S` is forgotten, and at most :data:`MAX_TASKS` are kept.

The status channels are listened to only while some task is kept: an owner publishes every
change of every task (three or more per task), and a Grace no client asks about tasks has
no use for them. The first answers read before the subscription is made count as stale, as
after any (re)subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mads.core.bus import Bus, BusError
from mads.core.contract import TaskTools

Status = Mapping[str, Any]
MAX_AGE_S = 30.0
"""How long an answer for a task still working is trusted without a change heard."""
KEEP_S = 600.0
"""How long a task no client asks about is remembered."""
MAX_TASKS = 100_000
FOLLOW_CHECK_S = 5.0
"""How often the listener checks whether any task is still kept (else it stops)."""


@dataclass
class _Known:
    answer: Status | None = None
    """The owner's last full answer (its status tool's reply)."""
    read_at: float = float("-inf")
    change: tuple[str, str] | None = None
    """The newest change published: ``(status, updated_at)``."""
    asked_at: float = 0.0
    reading: asyncio.Future[Status] | None = None


def _later(first: str, second: str) -> bool:
    """Whether timestamp ``first`` is after ``second`` (ISO-8601; unreadable ones differ)."""
    try:
        return datetime.fromisoformat(first) > datetime.fromisoformat(second)
    except ValueError:
        return first != second


class TaskStatuses:
    """The owners' task answers, kept fresh by their status channels."""

    def __init__(self, bus: Bus, owners: Mapping[str, TaskTools], logger: logging.Logger) -> None:
        self.bus = bus
        self.log = logger
        self.channels = {
            tools.status_channel: (owner, tools)
            for owner, tools in owners.items()
            if tools.status_channel is not None
        }
        self._known: OrderedDict[tuple[str, str], _Known] = OrderedDict()
        self._heard_since = float("inf")
        """When the status channels were last (re)subscribed to: answers read before then
        may have missed a change."""
        self.reads = 0
        """Answers asked of owners (relayed status calls)."""
        self.subscriptions = 0
        """Times the status channels were (re)subscribed to."""
        self._wanted = asyncio.Event()
        """Set while some task is kept: the status channels are listened to."""

    async def run(self) -> None:
        """Listen to the status channels while some task is kept. Raises
        :class:`BusError` when Redis refuses the subscription."""
        if not self.channels:
            return
        while True:
            await self._wanted.wait()
            listener = asyncio.create_task(self._listen(), name="task-status-listener")
            try:
                while not listener.done():
                    await asyncio.wait({listener}, timeout=FOLLOW_CHECK_S)
                    self._forget_old(time.monotonic())
                    if not self._known:
                        self._wanted.clear()
                        break
            finally:
                self._heard_since = float("inf")  # nothing is heard from here on
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener  # a refused subscription is raised here

    async def _listen(self) -> None:
        async for message in self.bus.messages(
            channels_=list(self.channels), subscribed=self._subscribed
        ):
            found = self.channels.get(message.channel)
            if found is None or message.envelope is None:
                continue
            owner, tools = found
            if message.envelope.sender_id != owner:
                continue
            payload = message.envelope.payload
            task_id, status, updated = (
                payload.get(tools.id_field),
                payload.get("status"),
                payload.get("updated_at"),
            )
            if not (isinstance(task_id, str) and isinstance(status, str)):
                continue
            known = self._known.get((owner, task_id))
            if known is not None:
                self._heard(known, status, updated if isinstance(updated, str) else "")

    def _subscribed(self) -> None:
        self._heard_since = time.monotonic()
        self.subscriptions += 1

    @property
    def following(self) -> bool:
        """Whether the status channels are listened to now (answers can be kept)."""
        return self._heard_since != float("inf")

    @staticmethod
    def _heard(known: _Known, status: str, updated: str) -> None:
        """Keep the newest change published (a late one for an older change is ignored)."""
        if (
            known.change is None
            or _later(updated, known.change[1])
            or (updated == known.change[1] and status != known.change[0])
        ):
            known.change = (status, updated)

    def _fresh(self, known: _Known, tools: TaskTools, now: float) -> bool:
        answer = known.answer
        if answer is None or known.read_at < self._heard_since:
            return False
        status, updated = str(answer.get("status")), str(answer.get("updated_at"))
        if known.change is not None:
            changed_status, changed_at = known.change
            if _later(changed_at, updated) or (changed_at == updated and changed_status != status):
                return False
        return tools.terminal(status) or now - known.read_at < MAX_AGE_S

    def remember(self, owner: str, task_id: str, answer: Status, read_at: float) -> None:
        """An answer the owner gave at ``read_at`` (monotonic), for a task a client asks about
        (a cancel's reply, say)."""
        known = self._entry(owner, task_id, time.monotonic())
        if read_at >= known.read_at:
            known.answer, known.read_at = answer, read_at

    async def status(
        self,
        owner: str,
        task_id: str,
        tools: TaskTools,
        read: Callable[[], Awaitable[Status]],
    ) -> Status:
        """The owner's answer for its task ``task_id``: the one kept while it is fresh,
        else ``read()`` (one read at a time per task; whoever asks meanwhile shares it)."""
        now = time.monotonic()
        known = self._entry(owner, task_id, now)
        if known.answer is not None and self._fresh(known, tools, now):
            return known.answer
        if known.reading is None:
            reading = known.reading = asyncio.ensure_future(self._read(known, read))

            def done(_: asyncio.Future[Status]) -> None:
                known.reading = None
                if not reading.cancelled():
                    reading.exception()  # retrieved here too: its askers may have left

            reading.add_done_callback(done)
        return await asyncio.shield(known.reading)

    async def _read(self, known: _Known, read: Callable[[], Awaitable[Status]]) -> Status:
        started = time.monotonic()
        self.reads += 1
        answer = await read()
        if started >= known.read_at:
            known.answer, known.read_at = answer, started
        return answer

    def _entry(self, owner: str, task_id: str, now: float) -> _Known:
        key = (owner, task_id)
        known = self._known.get(key)
        if known is None:
            known = self._known[key] = _Known()
            self._wanted.set()
        else:
            self._known.move_to_end(key)
        known.asked_at = now
        self._forget_old(now)
        return known

    def _forget_old(self, now: float) -> None:
        """Drop the tasks no one asked about for :data:`KEEP_S`, and the oldest past
        :data:`MAX_TASKS` (the first entries are the least recently asked about)."""
        while self._known:
            key, known = next(iter(self._known.items()))
            if len(self._known) <= MAX_TASKS and now - known.asked_at < KEEP_S:
                return
            if known.reading is not None:
                return  # a read under way: forgotten once it is done and old enough
            del self._known[key]

    def __len__(self) -> int:
        return len(self._known)


async def keep(statuses: TaskStatuses) -> None:
    """Run ``statuses`` for the life of the process; a subscription Redis refuses is said
    once, and then answers are read from the owners each time."""
    try:
        await statuses.run()
    except BusError as exc:
        statuses.log.warning(
            "Not following the owners' task status channels (%s): task states are read "
            "from the owners at each request",
            exc,
        )
