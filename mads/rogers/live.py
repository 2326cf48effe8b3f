"""What Rogers' live view shows, kept as the bus is watched: the latest envelopes (payloads
cut short, secret-looking values hidden), messages per channel over the last minute, and
the tasks the MADs' contracts publish the status of (Fiedler's), in their latest state."""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any

from mads.core.bus import BusMessage
from mads.core.envelope import Envelope
from mads.core.registry import contracts

PAYLOAD_CHARS = 240
KEPT_ENVELOPES = 20
KEPT_TASKS = 50
RATE_WINDOW_S = 60.0
HIDDEN = "<hidden>"
SECRET_KEY = re.compile(r"pass|token|secret|key|auth|credential", re.IGNORECASE)


def hide_secrets(value: Any) -> Any:
    """``value`` with the value of every secret-looking key hidden, at any depth."""
    if isinstance(value, Mapping):
        return {
            str(k): HIDDEN if SECRET_KEY.search(str(k)) else hide_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [hide_secrets(v) for v in value]
    return value


def _shown(channel: str, envelope: Envelope) -> dict[str, Any]:
    payload = json.dumps(hide_secrets(envelope.payload), default=str)
    if len(payload) > PAYLOAD_CHARS:
        payload = payload[: PAYLOAD_CHARS - 1] + "…"
    return {
        "time": envelope.timestamp.isoformat(timespec="seconds"),
        "channel": channel[:128],
        "sender": envelope.sender_id,
        "payload": payload,
    }


def status_channels() -> frozenset[str]:
    return frozenset(
        c.tasks.status_channel
        for c in contracts().values()
        if c.tasks is not None and c.tasks.status_channel is not None
    )


class LiveView:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, channels: frozenset[str] | None = None
    ) -> None:
        self._clock = clock
        self._envelopes: deque[tuple[str, Envelope]] = deque(maxlen=KEPT_ENVELOPES)
        self._recent: deque[tuple[float, str]] = deque()
        self._tasks: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._task_channels = status_channels() if channels is None else channels

    def saw(self, message: BusMessage) -> None:
        envelope = message.envelope
        if envelope is None:
            return
        now = self._clock()
        self._recent.append((now, message.channel))
        self._forget_before(now - RATE_WINDOW_S)
        # Kept as it came; cut short and its secrets hidden only when a snapshot shows it,
        # so the per-message path does no formatting.
        self._envelopes.appendleft((message.channel, envelope))
        if message.channel in self._task_channels:
            self._task(envelope.payload, envelope.timestamp.isoformat(timespec="seconds"))

    def _task(self, payload: Mapping[str, Any], when: str) -> None:
        task_id, status = payload.get("task_id"), payload.get("status")
        if not isinstance(task_id, str) or not isinstance(status, str):
            return
        self._tasks.pop(task_id, None)
        self._tasks[task_id] = {
            "task_id": task_id[:64],
            "status": status[:32],
            "requester_id": str(payload.get("requester_id", ""))[:64],
            "updated_at": str(payload.get("updated_at") or when),
        }
        while len(self._tasks) > KEPT_TASKS:
            self._tasks.popitem(last=False)

    def _forget_before(self, cutoff: float) -> None:
        while self._recent and self._recent[0][0] < cutoff:
            self._recent.popleft()

    def snapshot(self) -> dict[str, Any]:
        self._forget_before(self._clock() - RATE_WINDOW_S)
        per_channel: dict[str, int] = {}
        for _, channel in self._recent:
            per_channel[channel] = per_channel.get(channel, 0) + 1
        return {
            "rates": dict(sorted(per_channel.items(), key=lambda kv: -kv[1])[:30]),
            "envelopes": [_shown(channel, e) for channel, e in list(self._envelopes)],
            "tasks": list(reversed(self._tasks.values()))[:30],
        }
